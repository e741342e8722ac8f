//! The `timing` section: its rules, and what the numbers mean for the lease, an unplanned
//! failover and a planned switchover (`regent explain-timing`).
//!
//! Invariant: the lease figure is computed by the core's own formula (`raft::Config::lease_ns`),
//! so what `explain-timing` prints is what the running node does.

use super::ConfigError;
use regent_raft::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bounds of `timing.election_timeout_min_ms`: below 10 ms scheduling jitter alone would start
/// elections; above a minute the daemon would no longer make anything highly available.
pub const ELECTION_TIMEOUT_MIN_MS_RANGE: (u64, u64) = (10, 60_000);
/// The largest `timing.persist_stall_max_ms`.
pub const PERSIST_STALL_MAX_MS_LIMIT: u64 = 600_000;
/// The largest `timing.clock_drift_max`: a clock more than 10% off is broken, not drifting.
pub const CLOCK_DRIFT_MAX_LIMIT: f64 = 0.1;

/// What `explain-timing` assumes for one network round trip, in ms (a LAN, with room).
pub const ROUND_TRIP_MS_ASSUMED: f64 = 5.0;
/// What `explain-timing` assumes for one fsync of the log, in ms (an SSD).
pub const FSYNC_MS_ASSUMED: f64 = 5.0;

/// The timing of elections, heartbeats and the lease (the `timing` section). Times in ms of
/// the monotonic clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimingConfig {
    /// Election timeouts are drawn from [min, 2·min); a follower also refuses votes for this
    /// long after it last heard from its leader, and the lease is this long minus the drift.
    pub election_timeout_min_ms: u64,
    /// How often the leader starts a heartbeat round, which renews the lease. At most a third
    /// of `election_timeout_min_ms`.
    pub heartbeat_interval_ms: u64,
    /// Bound on the rate difference between two nodes' clocks, a fraction in (0, 0.1]. The
    /// lease is shortened by this fraction of `election_timeout_min_ms`.
    pub clock_drift_max: f64,
    /// The clock check: a voter whose clock rate, as measured from its stamps, differs from
    /// this node's by more than this fraction of `clock_drift_max` counts as drifting (the
    /// lease stops counting it; a leader without a quorum of agreeing clocks stops claiming
    /// the lease and hands over). A fraction in (0, 1]; 0.5 by default.
    pub clock_drift_alarm: f64,
    /// A leader whose own log write has been outstanding this long steps down.
    pub persist_stall_max_ms: u64,
    /// The watch stream warns this long before an unrenewed lease lapses.
    pub lease_warning_ms: u64,
}

impl TimingConfig {
    /// The drift bound in parts per million, as the core takes it (rounded, at least 1 for any
    /// positive bound, so a valid bound never turns into no margin at all).
    pub fn clock_drift_max_ppm(&self) -> u64 {
        // NaN and non-positive bounds give 0, which `validate` refuses.
        if self.clock_drift_max.is_nan() || self.clock_drift_max <= 0.0 {
            return 0;
        }
        ((self.clock_drift_max * 1e6).round() as u64).max(1)
    }

    /// The clock check's threshold, in millionths of `clock_drift_max` (as the replica takes
    /// it).
    pub fn clock_drift_alarm_ppm(&self) -> u64 {
        if self.clock_drift_alarm.is_nan() || self.clock_drift_alarm <= 0.0 {
            return 0;
        }
        ((self.clock_drift_alarm * 1e6).round() as u64).clamp(1, 1_000_000)
    }

    /// The lease in nanoseconds, by the core's formula.
    pub fn lease_ns(&self) -> u64 {
        let mut core = regent_raft::Config::new(NodeId(1));
        core.election_timeout_min_ms = self.election_timeout_min_ms;
        core.clock_drift_max_ppm = self.clock_drift_max_ppm();
        core.lease_ns()
    }

    /// Checks the rules among the timing fields; errors name the field (`timing.*`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let field = |name: &str| format!("timing.{name}");
        let (lo, hi) = ELECTION_TIMEOUT_MIN_MS_RANGE;
        let min = self.election_timeout_min_ms;
        if !(lo..=hi).contains(&min) {
            return Err(ConfigError::invalid(
                field("election_timeout_min_ms"),
                format!("{min} is not within {lo}..={hi} ms"),
            ));
        }
        let heartbeat = self.heartbeat_interval_ms;
        if heartbeat == 0 {
            return Err(ConfigError::invalid(
                field("heartbeat_interval_ms"),
                "must be at least 1 ms",
            ));
        }
        if heartbeat.saturating_mul(3) > min {
            return Err(ConfigError::invalid(
                field("heartbeat_interval_ms"),
                format!(
                    "{heartbeat} ms is more than a third of timing.election_timeout_min_ms \
                     ({min} ms); heartbeat × 3 ≤ election timeout, so that a lease survives a \
                     lost heartbeat and followers do not start elections between heartbeats"
                ),
            ));
        }
        let drift = self.clock_drift_max;
        if !(drift > 0.0 && drift <= CLOCK_DRIFT_MAX_LIMIT) {
            return Err(ConfigError::invalid(
                field("clock_drift_max"),
                format!(
                    "{drift} is not within (0, {CLOCK_DRIFT_MAX_LIMIT}]: it bounds how much \
                     faster one clock may run than another, as a fraction (0.05 is 5%); 0 would \
                     let a lease outlive the followers' promise not to elect anyone"
                ),
            ));
        }
        let alarm = self.clock_drift_alarm;
        if !(alarm > 0.0 && alarm <= 1.0) {
            return Err(ConfigError::invalid(
                field("clock_drift_alarm"),
                format!(
                    "{alarm} is not within (0, 1]: it is the fraction of timing.clock_drift_max \
                     at which a measured clock rate difference counts as drift; above 1 a clock \
                     could pass the bound the lease rests on before it is noticed"
                ),
            ));
        }
        let stall = self.persist_stall_max_ms;
        if stall < heartbeat || stall > PERSIST_STALL_MAX_MS_LIMIT {
            return Err(ConfigError::invalid(
                field("persist_stall_max_ms"),
                format!(
                    "{stall} is not within timing.heartbeat_interval_ms ({heartbeat}) \
                     ..={PERSIST_STALL_MAX_MS_LIMIT} ms"
                ),
            ));
        }
        let lease_ns = self.lease_ns();
        let warning_ns = self.lease_warning_ms.saturating_mul(1_000_000);
        if warning_ns.saturating_add(heartbeat * 1_000_000) >= lease_ns {
            return Err(ConfigError::invalid(
                field("lease_warning_ms"),
                format!(
                    "{} ms must be less than the lease ({} ms) minus \
                     timing.heartbeat_interval_ms ({heartbeat} ms), or a healthy leader, \
                     renewing its lease every heartbeat, would warn all the time",
                    self.lease_warning_ms,
                    ms(lease_ns as f64 / 1e6),
                ),
            ));
        }
        Ok(())
    }
}

/// What a `TimingConfig` means in time, under stated assumptions about the network and the
/// disk. `Display` prints every figure with its formula and the numbers filled in.
///
/// Facts of the core the figures rest on (`docs/raft.md`, `node/lease.rs`, `node/election.rs`):
/// the lease runs from the start of the newest quorum-acknowledged heartbeat round for
/// election_timeout_min × (1 − drift); a follower refuses votes for election_timeout_min after
/// it last heard from its leader; election timeouts are drawn from [min, 2·min); a pre-vote
/// round precedes the vote; vote requests and grants leave only after their fsync; a new
/// leader is writable once its no-op is applied and a heartbeat round it started was
/// acknowledged by a quorum; a transfer not done within election_timeout_min is abandoned.
#[derive(Clone, Debug, PartialEq)]
pub struct TimingExplanation {
    pub timing: TimingConfig,
    /// Assumed time of one network round trip, in ms.
    pub round_trip_ms: f64,
    /// Assumed time of one fsync of the log, in ms.
    pub fsync_ms: f64,
}

impl TimingExplanation {
    /// Explains `timing` under the default assumptions (`ROUND_TRIP_MS_ASSUMED`,
    /// `FSYNC_MS_ASSUMED`); set the public fields for others.
    pub fn new(timing: &TimingConfig) -> TimingExplanation {
        TimingExplanation {
            timing: timing.clone(),
            round_trip_ms: ROUND_TRIP_MS_ASSUMED,
            fsync_ms: FSYNC_MS_ASSUMED,
        }
    }

    fn min_ms(&self) -> f64 {
        self.timing.election_timeout_min_ms as f64
    }

    fn heartbeat_ms(&self) -> f64 {
        self.timing.heartbeat_interval_ms as f64
    }

    /// The lease: election_timeout_min × (1 − drift).
    pub fn lease_ms(&self) -> f64 {
        self.timing.lease_ns() as f64 / 1e6
    }

    /// How much sooner the lease ends than the followers' refusal to vote.
    pub fn lease_margin_ms(&self) -> f64 {
        self.min_ms() - self.lease_ms()
    }

    /// The most heartbeat rounds that may be lost in a row while the lease is kept: the largest
    /// n with (n + 1) × heartbeat + RTT < lease. None if even the next round, none lost, is
    /// acknowledged too late.
    pub fn heartbeats_lost_max(&self) -> Option<u64> {
        let (lease, heartbeat) = (self.lease_ms(), self.heartbeat_ms());
        if heartbeat <= 0.0 || heartbeat + self.round_trip_ms >= lease {
            return None;
        }
        let mut n = 0u64;
        while (n + 2) as f64 * heartbeat + self.round_trip_ms < lease {
            n += 1;
        }
        Some(n)
    }

    /// From the leader's crash to a new writable leader: pre-vote, vote and no-op rounds.
    fn election_rounds_ms(&self) -> f64 {
        3.0 * self.round_trip_ms + 4.0 * self.fsync_ms
    }

    /// The worst case of an unplanned failover (no split vote).
    pub fn failover_worst_ms(&self) -> f64 {
        2.0 * self.min_ms() + self.election_rounds_ms()
    }

    /// The best case of an unplanned failover.
    pub fn failover_best_ms(&self) -> f64 {
        self.min_ms() - self.heartbeat_ms() + self.election_rounds_ms()
    }

    /// The worst case when the leader's disk stalls instead of the leader crashing.
    pub fn disk_stall_failover_ms(&self) -> f64 {
        self.timing.persist_stall_max_ms as f64 + self.failover_worst_ms()
    }

    /// The clock check's threshold: a measured rate difference past this fraction counts as
    /// drift (clock_drift_max × clock_drift_alarm).
    pub fn clock_threshold(&self) -> f64 {
        self.timing.clock_drift_max * self.timing.clock_drift_alarm
    }

    /// The clock check's window: samples older than this are forgotten; it is also the
    /// hold-down before a drifting clock counts as agreeing again.
    pub fn clock_window_ms(&self) -> f64 {
        regent_replica::CLOCK_WINDOW_ELECTION_TIMEOUTS as f64 * self.min_ms()
    }

    /// How long a clock must have been measured before it counts, for or against.
    pub fn clock_trusted_after_ms(&self) -> f64 {
        regent_replica::CLOCK_SPAN_ELECTION_TIMEOUTS as f64 * self.min_ms()
    }

    /// The pause in writes of a planned switchover that succeeds.
    pub fn switchover_ms(&self) -> f64 {
        3.5 * self.round_trip_ms + 5.0 * self.fsync_ms
    }

    /// The longest pause of a planned switchover: an abandoned transfer, then the old leader's
    /// next acknowledged heartbeat round.
    pub fn switchover_max_ms(&self) -> f64 {
        self.min_ms() + self.heartbeat_ms() + self.round_trip_ms
    }
}

impl fmt::Display for TimingExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.timing;
        let (min, hb) = (ms(self.min_ms()), ms(self.heartbeat_ms()));
        let (rtt, fsync) = (ms(self.round_trip_ms), ms(self.fsync_ms));
        let drift = t.clock_drift_max;
        let lease = ms(self.lease_ms());
        writeln!(
            f,
            "timing: election_timeout_min_ms {min}, heartbeat_interval_ms {hb}, \
             clock_drift_max {drift},\n        persist_stall_max_ms {}, lease_warning_ms {}",
            t.persist_stall_max_ms, t.lease_warning_ms
        )?;
        writeln!(
            f,
            "assumed: a network round trip (RTT) of {rtt} ms and an fsync of {fsync} ms \
             (a LAN and SSDs)"
        )?;
        writeln!(f)?;

        writeln!(f, "lease: {lease} ms")?;
        writeln!(
            f,
            "  = election_timeout_min × (1 − clock_drift_max) = {min} ms × (1 − {drift})"
        )?;
        writeln!(
            f,
            "  on the leader's clock, from the start of the newest heartbeat round a quorum \
             acknowledged;\n  every acknowledged round (one each {hb} ms) renews it"
        )?;
        writeln!(f, "lease safety margin: {} ms", ms(self.lease_margin_ms()))?;
        writeln!(
            f,
            "  = election_timeout_min × clock_drift_max = {min} ms × {drift}\n  a voter that \
             acknowledged a round refuses votes for {min} ms after it on its own clock;\n  the \
             lease ends sooner, which covers clock rates that differ by up to {}%",
            ms(drift * 100.0)
        )?;
        match self.heartbeats_lost_max() {
            Some(n) => writeln!(
                f,
                "heartbeat rounds that may be lost in a row with the lease kept: {n}\n  \
                 = the largest n with (n + 1) × heartbeat_interval + RTT < lease: \
                 ({n} + 1) × {hb} + {rtt} = {} < {lease}",
                ms((n + 1) as f64 * self.heartbeat_ms() + self.round_trip_ms)
            )?,
            None => writeln!(
                f,
                "heartbeat rounds that may be lost in a row with the lease kept: none \
                 (heartbeat_interval + RTT ≥ lease)"
            )?,
        }
        writeln!(
            f,
            "lease warning: {} ms before an unrenewed lease lapses, {} ms after the newest \
             acknowledged round started\n  = lease − lease_warning_ms = {lease} − {}",
            t.lease_warning_ms,
            ms(self.lease_ms() - t.lease_warning_ms as f64),
            t.lease_warning_ms
        )?;
        writeln!(f)?;

        let window = ms(self.clock_window_ms());
        let trusted = ms(self.clock_trusted_after_ms());
        let threshold = ms(self.clock_threshold() * 100.0);
        writeln!(
            f,
            "clock check: a voter whose clock rate differs from ours by more than {threshold}% \
             drifts\n  = clock_drift_max × clock_drift_alarm = {drift} × {}",
            t.clock_drift_alarm
        )?;
        writeln!(
            f,
            "  every node sends every member its monotonic time each {hb} ms and answers theirs \
             at once;\n  the round trips over the last {window} ms (8 × election_timeout_min) \
             bound a peer's rate from\n  both sides; a peer agrees once they span {trusted} ms \
             (1 × election_timeout_min) and\n  every rate they allow is within 1.5 × \
             {threshold}%; it drifts when every one is past {threshold}%"
        )?;
        writeln!(
            f,
            "  the lease counts only voters whose clocks agree: no lease before a quorum's \
             clocks were\n  measured (a new cluster's first lease waits about {trusted} ms); \
             a leader without such a\n  quorum says writable: false, reason: clock_drift, and \
             hands over; a node whose clock a\n  quorum disagrees with does not campaign"
        )?;
        writeln!(
            f,
            "  detection: a clock off from the start never agrees; a rate that changes while \
             running\n  leaves the line the round trips drew, and the peer stops agreeing (the \
             lease drops it) at its\n  next round trip (about {hb} ms after a change of 6% or \
             more, measured with a LAN's jitter);\n  it counts as drifting about {} ms after. A \
             leader cut off from its quorum before the\n  change is seen is not covered \
             (docs/raft.md, \"Clock rates\")",
            ms(self.clock_trusted_after_ms() + 2.0 * self.heartbeat_ms())
        )?;
        writeln!(
            f,
            "  healing: a drifting clock counts as agreeing again once its rate stayed within \
             the\n  threshold for a window ({window} ms)"
        )?;
        writeln!(f)?;

        writeln!(
            f,
            "unplanned failover (the leader crashes or is cut off), worst case: {} ms",
            ms(self.failover_worst_ms())
        )?;
        writeln!(
            f,
            "  = 2 × election_timeout_min   a follower's timer, drawn from [min, 2·min) and \
             counted\n                               from the last heartbeat it got"
        )?;
        writeln!(f, "  + RTT                        the pre-vote round")?;
        writeln!(
            f,
            "  + RTT + 2 × fsync            the vote round: the candidate stores its vote, \
             then the voter"
        )?;
        writeln!(
            f,
            "  + RTT + 2 × fsync            the new leader's no-op, stored by a quorum, then \
             applied\n                               (its first heartbeat round is acknowledged \
             meanwhile)"
        )?;
        writeln!(
            f,
            "  = 2 × {min} + 3 × {rtt} + 4 × {fsync} = {} ms",
            ms(self.failover_worst_ms())
        )?;
        writeln!(
            f,
            "  best case {} ms (= election_timeout_min − heartbeat_interval + 3 × RTT + 4 × \
             fsync);\n  each split vote adds up to another 2 × election_timeout_min ({} ms)",
            ms(self.failover_best_ms()),
            ms(2.0 * self.min_ms())
        )?;
        writeln!(
            f,
            "  a leader cut off from its quorum stops being writable when its lease ends, at \
             most\n  {lease} ms after its last acknowledged round started: before any voter \
             will elect a successor"
        )?;
        writeln!(
            f,
            "  with election priorities (election.priority), a candidate waits another \
             2 × election_timeout_min\n  ({} ms) per level of live candidates of higher priority \
             before it campaigns; when a nofailover\n  or witness node holds the most complete \
             log it leads first and hands over (one switchover more)",
            ms(2.0 * self.min_ms())
        )?;
        writeln!(
            f,
            "after the leader's disk stalls: {} ms\n  = persist_stall_max + worst-case failover \
             = {} + {}",
            ms(self.disk_stall_failover_ms()),
            t.persist_stall_max_ms,
            ms(self.failover_worst_ms())
        )?;
        writeln!(f)?;

        writeln!(
            f,
            "planned switchover (leadership transfer), pause in writes: {} ms",
            ms(self.switchover_ms())
        )?;
        writeln!(
            f,
            "  = RTT + fsync                at most one append round for the target to catch \
             up (none when idle)"
        )?;
        writeln!(f, "  + ½ RTT                      TimeoutNow to the target")?;
        writeln!(f, "  + RTT + 2 × fsync            the vote round")?;
        writeln!(
            f,
            "  + RTT + 2 × fsync            the new leader's no-op, stored and applied"
        )?;
        writeln!(
            f,
            "  = 3.5 × {rtt} + 5 × {fsync} = {} ms",
            ms(self.switchover_ms())
        )?;
        writeln!(
            f,
            "  bounded by election_timeout_min: a transfer not done within {min} ms is \
             abandoned, and the\n  old leader is writable again after its next acknowledged \
             round, at most {min} + {hb} + {rtt} = {} ms\n  after the transfer began",
            ms(self.switchover_max_ms())
        )
    }
}

/// A duration in ms for people: whole when it is whole, else up to two decimals.
pub(crate) fn ms(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(min: u64, hb: u64, drift: f64) -> TimingExplanation {
        TimingExplanation::new(&TimingConfig {
            election_timeout_min_ms: min,
            heartbeat_interval_ms: hb,
            clock_drift_max: drift,
            ..TimingConfig::default()
        })
    }

    #[test]
    fn defaults_are_valid() {
        TimingConfig::default().validate().unwrap();
    }

    #[test]
    fn the_lease_is_the_cores() {
        let e = explain(500, 100, 0.05);
        assert_eq!(e.lease_ms(), 475.0);
        assert_eq!(e.lease_margin_ms(), 25.0);
        // The core's formula, integer nanoseconds: 333 ms × (1 − 0.05) = 316.35 ms.
        assert_eq!(explain(333, 100, 0.05).timing.lease_ns(), 316_350_000);
    }

    #[test]
    fn figures_follow_their_formulas() {
        let e = explain(500, 100, 0.05);
        // (3 + 1) × 100 + 5 = 405 < 475, and (4 + 1) × 100 + 5 = 505 is not.
        assert_eq!(e.heartbeats_lost_max(), Some(3));
        assert_eq!(e.failover_worst_ms(), 1035.0);
        assert_eq!(e.failover_best_ms(), 435.0);
        assert_eq!(e.disk_stall_failover_ms(), 3035.0);
        assert_eq!(e.switchover_ms(), 42.5);
        assert_eq!(e.switchover_max_ms(), 605.0);
        // At the edge of the heartbeat rule the lease is 285 ms: (1 + 1) × 100 + 5 = 205 < 285,
        // but (2 + 1) × 100 + 5 = 305 is not.
        assert_eq!(explain(300, 100, 0.05).heartbeats_lost_max(), Some(1));
    }

    #[test]
    fn display_shows_formulas_with_numbers() {
        let text = explain(500, 100, 0.05).to_string();
        for needle in [
            "lease: 475 ms",
            "500 ms × (1 − 0.05)",
            "lease safety margin: 25 ms",
            "worst case: 1035 ms",
            "2 × 500 + 3 × 5 + 4 × 5 = 1035 ms",
            "pause in writes: 42.5 ms",
            "500 + 100 + 5 = 605 ms",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn rules_name_the_field() {
        type Mutate = fn(&mut TimingConfig);
        let cases: [(Mutate, &str); 10] = [
            (|t| t.clock_drift_alarm = 0.0, "timing.clock_drift_alarm"),
            (|t| t.clock_drift_alarm = 1.5, "timing.clock_drift_alarm"),
            (
                |t| t.clock_drift_alarm = f64::NAN,
                "timing.clock_drift_alarm",
            ),
            (
                |t| t.heartbeat_interval_ms = 200,
                "timing.heartbeat_interval_ms",
            ),
            (
                |t| t.heartbeat_interval_ms = 0,
                "timing.heartbeat_interval_ms",
            ),
            (
                |t| t.election_timeout_min_ms = 5,
                "timing.election_timeout_min_ms",
            ),
            (|t| t.clock_drift_max = 0.0, "timing.clock_drift_max"),
            (|t| t.clock_drift_max = f64::NAN, "timing.clock_drift_max"),
            (
                |t| t.persist_stall_max_ms = 50,
                "timing.persist_stall_max_ms",
            ),
            (|t| t.lease_warning_ms = 375, "timing.lease_warning_ms"),
        ];
        for (mutate, field) in cases {
            let mut t = TimingConfig::default();
            mutate(&mut t);
            let err = t.validate().unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
        }
        let t = TimingConfig {
            clock_drift_max: 0.1,
            lease_warning_ms: 0,
            ..TimingConfig::default()
        };
        t.validate().unwrap();
        assert_eq!(t.clock_drift_max_ppm(), 100_000);
        let t = TimingConfig {
            clock_drift_alarm: 1.0,
            ..TimingConfig::default()
        };
        t.validate().unwrap();
        assert_eq!(t.clock_drift_alarm_ppm(), 1_000_000);
    }

    #[test]
    fn the_clock_check_is_explained_with_its_threshold_window_and_detection_time() {
        let e = TimingExplanation::new(&TimingConfig::default());
        assert_eq!(ms(e.clock_threshold() * 100.0), "2.5");
        assert_eq!(e.clock_window_ms(), 4000.0);
        assert_eq!(e.clock_trusted_after_ms(), 500.0);
        let text = e.to_string();
        for expected in [
            "more than 2.5% drifts",
            "= clock_drift_max × clock_drift_alarm = 0.05 × 0.5",
            "over the last 4000 ms",
            "span 500 ms",
            "reason: clock_drift",
            "drifting about 700 ms after",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        // The replica is given the same threshold: 2.5% of the core's 5%.
        let config = regent_raft::Config {
            clock_drift_max_ppm: 50_000,
            ..regent_raft::Config::new(NodeId(1))
        };
        let check = regent_replica::ClockCheck::for_config(
            &config,
            TimingConfig::default().clock_drift_alarm_ppm(),
        );
        assert_eq!(check.threshold_ppm, 25_000);
    }

    #[test]
    fn ms_is_readable() {
        assert_eq!(ms(475.0), "475");
        assert_eq!(ms(42.5), "42.5");
        assert_eq!(ms(316.35), "316.35");
    }
}

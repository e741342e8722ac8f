//! `GET /metrics` in the Prometheus text format (version 0.0.4). Counters and histograms are
//! atomics the driver bumps; gauges come from the status it publishes. Names follow Prometheus
//! conventions: the `regent_` prefix, `_total` for counters, base units (`_seconds`, `_bytes`).

use super::status::NodeStatus;
use regent_raft::Role;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe_micros(&self, micros: u64) {
        let seconds = micros as f64 / 1e6;
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// What the driver counts.
#[derive(Default)]
pub struct Metrics {
    pub leader_changes: AtomicU64,
    /// Campaigns this node started (pre-vote or vote).
    pub elections: AtomicU64,
    pub proposals: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub proposal_seconds: Histogram,
    pub fsync_seconds: Histogram,
    pub snapshots_sent: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub snapshot_bytes_sent: AtomicU64,
    /// The virtual IP is on this node's interface.
    pub vip_held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Scheduled backups (`backup:`) written and failed, and the last written one's time (Unix
    /// seconds, 0: none yet) and applied index.
    pub backups_written: AtomicU64,
    pub backups_failed: AtomicU64,
    pub backup_last_unix: AtomicU64,
    pub backup_last_index: AtomicU64,
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// The whole exposition.
pub fn render(metrics: &Metrics, s: &NodeStatus, now_ns: u64, unix_now: i64) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP regent_role The node's role (1 for the current one).\n# TYPE regent_role gauge"
    );
    for (name, role) in [
        ("leader", Role::Leader),
        ("follower", Role::Follower),
        ("candidate", Role::Candidate),
        ("learner", Role::Learner),
    ] {
        let current = s.role == role || (role == Role::Candidate && s.role == Role::PreCandidate);
        let _ = writeln!(out, "regent_role{{role=\"{name}\"}} {}", u8::from(current));
    }
    gauge(&mut out, "regent_term", "The current Raft term.", s.term.0);
    gauge(
        &mut out,
        "regent_commit_index",
        "The highest log index known committed.",
        s.commit_index.0,
    );
    gauge(
        &mut out,
        "regent_applied_index",
        "The highest log index applied here.",
        s.applied_index.0,
    );
    gauge(
        &mut out,
        "regent_kv_revision",
        "The key-value store's revision.",
        s.revision,
    );
    gauge(
        &mut out,
        "regent_writable",
        "1 while the host beside this node may write (leader, lease valid, caught up).",
        u8::from(s.writable_at(now_ns)),
    );
    gauge(
        &mut out,
        "regent_paused",
        "1 while the cluster is paused (an operator's maintenance: nothing moves leadership by itself).",
        u8::from(s.pause.is_some()),
    );
    gauge(
        &mut out,
        "regent_drained",
        "1 while this node is drained (it does not lead until undrained).",
        u8::from(s.drained.contains(&s.node_id)),
    );
    gauge(
        &mut out,
        "regent_election_candidate",
        "1 while this node's election role lets it lead (candidate), 0 for nofailover or witness.",
        u8::from(s.election.own.role.may_lead()),
    );
    gauge(
        &mut out,
        "regent_election_priority",
        "This node's election priority (higher leads first).",
        s.election.own.priority,
    );
    gauge(
        &mut out,
        "regent_ready_to_lead",
        "1 while this node would campaign if no leader held it back (a candidate, not drained, its host healthy).",
        u8::from(s.ready_to_lead),
    );
    gauge(
        &mut out,
        "regent_cluster_version",
        "The cluster version as applied here: the newest wire and command version every voter speaks.",
        s.cluster_version,
    );
    gauge(
        &mut out,
        "regent_wire_version_max",
        "The newest wire and command version this node speaks.",
        s.version_max,
    );
    gauge(
        &mut out,
        "regent_lease_remaining_seconds",
        "Time left on this leader's lease (0 without one).",
        s.lease_deadline_ns
            .map_or(0.0, |d| d.saturating_sub(now_ns) as f64 / 1e9),
    );
    let _ = writeln!(
        out,
        "# HELP regent_peer_up Whether the QUIC link to a peer is up.\n# TYPE regent_peer_up gauge"
    );
    for (peer, up) in &s.links {
        let _ = writeln!(
            out,
            "regent_peer_up{{peer=\"{}\"}} {}",
            peer.0,
            u8::from(*up)
        );
    }
    let _ = writeln!(
        out,
        "# HELP regent_peer_lag_entries On the leader: log entries a member is behind.\n# TYPE regent_peer_lag_entries gauge"
    );
    for m in s.members.iter().filter(|m| m.id != s.node_id) {
        if let Some(matched) = m.match_index {
            let lag = s.last_index.0.saturating_sub(matched.0);
            let _ = writeln!(out, "regent_peer_lag_entries{{peer=\"{}\"}} {lag}", m.id.0);
        }
    }
    let _ = writeln!(
        out,
        "# HELP regent_peer_clock_rate_ppm How much faster a peer's clock runs than this node's, in millionths, as measured from its stamps.\n# TYPE regent_peer_clock_rate_ppm gauge"
    );
    for peer in &s.clock.peers {
        if let Some(rate) = peer.rate_ppm {
            let _ = writeln!(
                out,
                "regent_peer_clock_rate_ppm{{peer=\"{}\"}} {rate}",
                peer.id.0
            );
        }
    }
    gauge(
        &mut out,
        "regent_clock_unhealthy",
        "1 while a voter's clock rate differs from this node's past timing.clock_drift_alarm × timing.clock_drift_max.",
        u8::from(!s.clock.healthy),
    );
    gauge(
        &mut out,
        "regent_host_healthy",
        "1 while the master beside regent passes its health probe (1 without a probe).",
        u8::from(s.host_healthy),
    );
    if let Some(not_after) = s.certificate_not_after_unix {
        gauge(
            &mut out,
            "regent_certificate_expiry_seconds",
            "Seconds until this node's certificate expires (negative once expired).",
            not_after - unix_now,
        );
    }
    gauge(
        &mut out,
        "regent_vip_held",
        "1 while the virtual IP (vip:) is on this node's interface.",
        u8::from(metrics.vip_held.load(Ordering::Relaxed)),
    );
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &mut out,
        "regent_backups_written_total",
        "Scheduled backups (backup:) written, complete and synced, into backup.dir.",
        load(&metrics.backups_written),
    );
    counter(
        &mut out,
        "regent_backups_failed_total",
        "Scheduled backups that failed (the log says why).",
        load(&metrics.backups_failed),
    );
    gauge(
        &mut out,
        "regent_backup_last_success_unix_seconds",
        "When the last scheduled backup was written (Unix seconds; 0: none yet). Alert on its age.",
        load(&metrics.backup_last_unix),
    );
    gauge(
        &mut out,
        "regent_backup_last_index",
        "The applied index the last scheduled backup holds (0: none yet).",
        load(&metrics.backup_last_index),
    );
    counter(
        &mut out,
        "regent_leader_changes_total",
        "Changes of the known leader.",
        load(&metrics.leader_changes),
    );
    counter(
        &mut out,
        "regent_elections_total",
        "Campaigns this node started.",
        load(&metrics.elections),
    );
    counter(
        &mut out,
        "regent_proposals_total",
        "Writes proposed through this node.",
        load(&metrics.proposals),
    );
    counter(
        &mut out,
        "regent_proposals_failed_total",
        "Writes refused or not applied (not the leader, fenced, superseded, ...).",
        load(&metrics.proposals_failed),
    );
    metrics.proposal_seconds.render(
        &mut out,
        "regent_proposal_duration_seconds",
        "From a write's arrival to its answer (committed and applied).",
    );
    metrics.fsync_seconds.render(
        &mut out,
        "regent_fsync_duration_seconds",
        "Durable writes of a batch (one redb transaction and its fsync).",
    );
    counter(
        &mut out,
        "regent_snapshots_sent_total",
        "Snapshots streamed to followers.",
        load(&metrics.snapshots_sent),
    );
    counter(
        &mut out,
        "regent_snapshots_installed_total",
        "Snapshots installed from a leader.",
        load(&metrics.snapshots_installed),
    );
    counter(
        &mut out,
        "regent_snapshot_sent_bytes_total",
        "Bytes of snapshots streamed to followers.",
        load(&metrics.snapshot_bytes_sent),
    );
    out
}

/// The hooks' figures: `regent_hook_runs_total{hook,result}`, the histogram
/// `regent_hook_duration_seconds{hook}`, and `regent_fence_pending`.
pub fn render_hooks(out: &mut String, hooks: &crate::hooks::HooksView) {
    use crate::hooks::DURATION_BUCKETS;
    let stats = hooks.stats.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(
        out,
        "# HELP regent_hook_runs_total Hook and fence method runs, by hook and result (ok, failed, timeout, not_started).\n# TYPE regent_hook_runs_total counter"
    );
    for ((hook, result), runs) in &stats.runs {
        let _ = writeln!(
            out,
            "regent_hook_runs_total{{hook=\"{hook}\",result=\"{result}\"}} {runs}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP regent_hook_duration_seconds How long hooks and fence methods ran.\n# TYPE regent_hook_duration_seconds histogram"
    );
    for (hook, (buckets, count, sum)) in &stats.durations {
        for (bound, n) in DURATION_BUCKETS.iter().zip(buckets) {
            let _ = writeln!(
                out,
                "regent_hook_duration_seconds_bucket{{hook=\"{hook}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "regent_hook_duration_seconds_bucket{{hook=\"{hook}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "regent_hook_duration_seconds_sum{{hook=\"{hook}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "regent_hook_duration_seconds_count{{hook=\"{hook}\"}} {count}"
        );
    }
    gauge(
        out,
        "regent_fence_pending",
        "1 while a promotion waits for a fence method to succeed (fencing.required).",
        u8::from(hooks.fence_pending.load(Ordering::Relaxed)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::default();
        h.observe_micros(50);
        h.observe_micros(3_000);
        h.observe_micros(60_000_000);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(out.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
    }
}

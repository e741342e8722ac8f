//! Configuration of one core, validated once: every limit is named `*_max` and every timing
//! rule is checked with an error that names the field and the rule.

use super::types::{Nanos, NodeId};
use thiserror::Error;

/// Tunables of one Raft node. Times are in milliseconds of the caller's monotonic clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub id: NodeId,
    /// The election timeout is drawn uniformly from [min, 2·min) after every reset.
    pub election_timeout_min_ms: u64,
    /// How often a leader starts a heartbeat round (also the lease renewal period).
    pub heartbeat_interval_ms: u64,
    /// Bound on the rate difference between any two clocks, in parts per million. The lease is
    /// shortened by this fraction so that it ends before a follower's stickiness does.
    pub clock_drift_max_ppm: u64,
    /// Ask for pre-votes before a real election (no term inflation by partitioned nodes).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within the minimum election timeout steps down.
    pub check_quorum: bool,
    /// Appends in flight to one follower in the replicate state.
    pub inflight_max: usize,
    /// Bytes of entries in one AppendEntries (at least one entry is always sent).
    pub append_bytes_max: usize,
    /// Entries in one AppendEntries.
    pub append_entries_max: usize,
    /// Bytes of proposed but uncommitted entries a leader accepts before refusing proposals.
    pub uncommitted_bytes_max: usize,
    /// A leader whose own durable write has been outstanding longer than this steps down.
    pub persist_stall_max_ms: u64,
    /// Linearizable reads pending on this node (confirming, forwarded, or awaiting apply).
    pub reads_pending_max: usize,
    /// A learner is promoted only when its match index is within this many entries of the
    /// leader's last index.
    pub promote_lag_max: u64,
    /// A joint configuration not left within this time is aborted (back to the old voters).
    pub conf_change_timeout_ms: u64,
    /// Compaction policy: a snapshot is due once this many entries, or this many bytes of
    /// entries, were applied since the last one.
    pub compaction_entries_max: u64,
    pub compaction_bytes_max: u64,
    /// On restart the core is given at most this many of the entries its caller already
    /// applied (the newest; never one before the last applied membership change): a long log
    /// need not be read whole before the node serves. A follower that needs an older entry
    /// gets a snapshot, as for a compacted one. (Read by the caller that builds the
    /// `RestoredState`.)
    pub restore_entries_max: u64,
    /// A follower that has not confirmed a snapshot within this time is probed again (and
    /// asked for a new snapshot if it still needs one).
    pub snapshot_timeout_ms: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("raft config: id must not be 0 (0 means \"nobody\")")]
    ZeroId,
    #[error("raft config: {field} must be at least {min}, got {value}")]
    TooSmall {
        field: &'static str,
        min: u64,
        value: u64,
    },
    #[error("raft config: {field} must be at most {max}, got {value}")]
    TooLarge {
        field: &'static str,
        max: u64,
        value: u64,
    },
    #[error(
        "raft config: heartbeat_interval_ms ({heartbeat}) must be at most a third of \
         election_timeout_min_ms ({election}) so that a lease survives one lost heartbeat"
    )]
    HeartbeatTooSlow { heartbeat: u64, election: u64 },
}

impl Config {
    /// Defaults suited to a LAN: elections after 1–2 s of silence, heartbeats every 100 ms.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_min_ms: 1000,
            heartbeat_interval_ms: 100,
            clock_drift_max_ppm: 50_000,
            pre_vote: true,
            check_quorum: true,
            inflight_max: 4,
            append_bytes_max: 1 << 20,
            append_entries_max: 4096,
            uncommitted_bytes_max: 64 << 20,
            persist_stall_max_ms: 5000,
            reads_pending_max: 10_000,
            promote_lag_max: 1000,
            conf_change_timeout_ms: 10_000,
            compaction_entries_max: 100_000,
            compaction_bytes_max: 256 << 20,
            restore_entries_max: 100_000,
            snapshot_timeout_ms: 60_000,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.0 == 0 {
            return Err(ConfigError::ZeroId);
        }
        let at_least = |field, value: u64, min: u64| {
            if value < min {
                Err(ConfigError::TooSmall { field, min, value })
            } else {
                Ok(())
            }
        };
        let at_most = |field, value: u64, max: u64| {
            if value > max {
                Err(ConfigError::TooLarge { field, max, value })
            } else {
                Ok(())
            }
        };
        at_least("election_timeout_min_ms", self.election_timeout_min_ms, 3)?;
        at_most(
            "election_timeout_min_ms",
            self.election_timeout_min_ms,
            3_600_000,
        )?;
        at_least("heartbeat_interval_ms", self.heartbeat_interval_ms, 1)?;
        if self.heartbeat_interval_ms * 3 > self.election_timeout_min_ms {
            return Err(ConfigError::HeartbeatTooSlow {
                heartbeat: self.heartbeat_interval_ms,
                election: self.election_timeout_min_ms,
            });
        }
        at_most("clock_drift_max_ppm", self.clock_drift_max_ppm, 500_000)?;
        at_least("inflight_max", self.inflight_max as u64, 1)?;
        at_most("inflight_max", self.inflight_max as u64, 1024)?;
        at_least("append_bytes_max", self.append_bytes_max as u64, 1)?;
        at_least("append_entries_max", self.append_entries_max as u64, 1)?;
        at_least(
            "uncommitted_bytes_max",
            self.uncommitted_bytes_max as u64,
            self.append_bytes_max as u64,
        )?;
        at_least(
            "persist_stall_max_ms",
            self.persist_stall_max_ms,
            self.heartbeat_interval_ms,
        )?;
        at_least("reads_pending_max", self.reads_pending_max as u64, 1)?;
        at_least("compaction_entries_max", self.compaction_entries_max, 1)?;
        at_least("compaction_bytes_max", self.compaction_bytes_max, 1)?;
        at_least(
            "snapshot_timeout_ms",
            self.snapshot_timeout_ms,
            self.heartbeat_interval_ms,
        )?;
        at_least(
            "conf_change_timeout_ms",
            self.conf_change_timeout_ms,
            self.election_timeout_min_ms,
        )?;
        Ok(())
    }

    // Every `*_ms` field the core measures against its nanosecond clock, converted here once.

    pub fn election_timeout_min_ns(&self) -> Nanos {
        ms_to_ns(self.election_timeout_min_ms)
    }

    pub fn heartbeat_interval_ns(&self) -> Nanos {
        ms_to_ns(self.heartbeat_interval_ms)
    }

    pub fn persist_stall_max_ns(&self) -> Nanos {
        ms_to_ns(self.persist_stall_max_ms)
    }

    pub fn conf_change_timeout_ns(&self) -> Nanos {
        ms_to_ns(self.conf_change_timeout_ms)
    }

    pub fn snapshot_timeout_ns(&self) -> Nanos {
        ms_to_ns(self.snapshot_timeout_ms)
    }

    /// How long after a quorum-acknowledged round the leader may consider itself the only one:
    /// the minimum election timeout shortened by the drift bound.
    pub fn lease_ns(&self) -> Nanos {
        let min = self.election_timeout_min_ns() as u128;
        (min * (1_000_000 - self.clock_drift_max_ppm as u128) / 1_000_000) as u64
    }
}

/// Milliseconds of configuration as nanoseconds of the caller's clock (saturating: a limit too
/// large to represent never expires).
fn ms_to_ns(ms: u64) -> Nanos {
    ms.saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = Config::new(NodeId(1));
        c.inflight_max = 0;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("inflight_max"), "{err}");

        let mut c = Config::new(NodeId(1));
        c.heartbeat_interval_ms = 400;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HeartbeatTooSlow { .. })
        ));

        let c = Config::new(NodeId(0));
        assert_eq!(c.validate(), Err(ConfigError::ZeroId));
    }

    #[test]
    fn lease_is_shortened_by_the_drift_bound() {
        let mut c = Config::new(NodeId(1));
        c.election_timeout_min_ms = 1000;
        c.clock_drift_max_ppm = 100_000;
        assert_eq!(c.lease_ns(), 900_000_000);
    }
}

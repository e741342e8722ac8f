//! What one run simulates: the run's settings, and what its seed draws before the first event
//! (the core's limits and the fault rates of the network, the disks and the fault schedule).
//!
//! Invariant: the draws happen in one fixed order, here; changing it changes every seed.

use super::network::NetworkFaults;
use super::storage::DiskFaults;
use super::time::MS;
use regent_raft::{Config, NodeId, SplitMix64};

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Simulated time with faults before healing.
    pub safety_ms: u64,
    /// Simulated time allowed after healing for a leader to be writable.
    pub liveness_ms_max: u64,
    /// Simulated time allowed after healing for the clients to finish and every member to
    /// catch up. Longer than `liveness_ms_max`: a lone voter commits at its own disk's pace
    /// during the faults, and learners on slow disks, fed one entry per append with one
    /// append in flight (the smallest limits drawn), catch up at about 15 entries a second
    /// (seeds 7791 and 13565 took more than 15 s).
    pub settle_ms_max: u64,
    /// Events processed at most in one run.
    pub steps_max: u64,
    /// Lines of trace kept: the last events of a failing seed's replay (0: no trace).
    pub trace_lines_max: usize,
    /// Entries a learner may lag behind the leader and still be promoted (the core's
    /// `promote_lag_max`); `None`: drawn per seed with the core's limits.
    pub promote_lag_max: Option<u64>,
}

impl SimConfig {
    pub fn new(seed: u64, nodes: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            safety_ms: 3000,
            liveness_ms_max: 15_000,
            settle_ms_max: 40_000,
            steps_max: 3_000_000,
            trace_lines_max: 0,
            promote_lag_max: None,
        }
    }
}

/// The core's batch, window and compaction sizes, drawn per seed.
#[derive(Clone, Debug)]
pub struct CoreLimits {
    /// Small batches split a new leader's catch-up from its no-op, which is where committing
    /// an older term's entry by counting (Raft figure 8) shows.
    pub append_entries_max: usize,
    pub inflight_max: usize,
    /// Small thresholds compact often, so lagging and restarted followers need snapshots.
    pub compaction_entries_max: u64,
    /// A learner is promoted only within this many entries of the leader's log: 4 promotes
    /// caught-up learners only; the core's default of 1000 promotes far-behind ones too,
    /// whose configuration may be so stale that it does not name the candidates they must
    /// vote for (a vote is granted without consulting the configuration: Raft §4.1).
    pub promote_lag_max: u64,
}

impl CoreLimits {
    fn draw(rng: &mut SplitMix64) -> CoreLimits {
        CoreLimits {
            append_entries_max: [1, 2, 8][rng.below(3) as usize],
            inflight_max: [1, 2, 4][rng.below(3) as usize],
            compaction_entries_max: [20, 50, 200, 100_000][rng.below(4) as usize],
            promote_lag_max: [PROMOTE_LAG_MAX, 1000][rng.below(2) as usize],
        }
    }

    /// The configuration node `id` runs with these limits.
    pub fn config(&self, id: NodeId) -> Config {
        let mut config = raft_config(id);
        config.append_entries_max = self.append_entries_max;
        config.inflight_max = self.inflight_max;
        config.compaction_entries_max = self.compaction_entries_max;
        // Where compaction is lazy, a restarted core is given only the newest 30 applied
        // entries: followers that need older ones get snapshots (no draw of its own, so that
        // every seed keeps its meaning).
        if self.compaction_entries_max >= 100_000 {
            config.restore_entries_max = 30;
        }
        config.promote_lag_max = self.promote_lag_max;
        config
    }
}

/// Per-run fault rates, drawn from the seed so that campaigns cover calm and stormy clusters.
#[derive(Clone, Debug)]
pub struct FaultRates {
    pub network: NetworkFaults,
    /// Mean time between fault events (partitions, crashes, heals).
    pub fault_every_ns: u64,
    pub disk: DiskFaults,
}

/// Draws what a seed decides before the run starts.
pub fn draw(rng: &mut SplitMix64) -> (CoreLimits, FaultRates) {
    // The network's minimum delay comes first: the order of draws is part of every seed.
    let delay_min_ns = 50_000 + rng.below(1_000_000);
    let limits = CoreLimits::draw(rng);
    let network = NetworkFaults::draw(rng, delay_min_ns);
    let fault_every_ns = [60, 100, 300, 800, 100_000][rng.below(5) as usize] * MS;
    let disk = DiskFaults::draw(rng);
    let rates = FaultRates {
        network,
        fault_every_ns,
        disk,
    };
    (limits, rates)
}

/// The core configuration every simulated node runs: short timeouts, small limits, so that a
/// few simulated seconds exercise many elections and backpressure.
pub fn raft_config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.election_timeout_min_ms = 150;
    c.heartbeat_interval_ms = 30;
    c.clock_drift_max_ppm = 200_000;
    c.inflight_max = 3;
    c.append_entries_max = 8;
    c.append_bytes_max = 4096;
    c.uncommitted_bytes_max = 8192;
    c.persist_stall_max_ms = 500;
    c.snapshot_timeout_ms = 300;
    c.promote_lag_max = PROMOTE_LAG_MAX;
    c
}

/// Entries a learner may lag behind the leader's last index and still be promoted, in the
/// seeds that promote only caught-up learners.
pub const PROMOTE_LAG_MAX: u64 = 4;

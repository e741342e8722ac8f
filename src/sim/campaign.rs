//! A campaign: many seeds run one after another, their totals, and the first violation of
//! each failing seed (with its replay command).

use super::checker::Violation;
use super::cluster::{Cluster, SimOutcome};
use super::config::SimConfig;

/// Totals of a campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub seeds: u64,
    pub violations: u64,
    pub elections: u64,
    pub commits: u64,
    pub max_election_ms: u64,
    /// Leadership hand-overs completed (`transfers=` on the summary line).
    pub handovers: u64,
    pub reads: u64,
    pub conf_changes: u64,
    pub snapshots: u64,
    pub retries: u64,
    /// The first violation of each failing seed; each carries its replay command.
    pub failures: Vec<Violation>,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "sim: seeds={} violations={} elections={} commits={} max_election_ms={} snapshots={} conf_changes={} transfers={} reads={} retries={}",
            self.seeds,
            self.violations,
            self.elections,
            self.commits,
            self.max_election_ms,
            self.snapshots,
            self.conf_changes,
            self.handovers,
            self.reads,
            self.retries
        )
    }

    fn add(&mut self, outcome: SimOutcome) {
        self.seeds += 1;
        self.elections += outcome.elections;
        self.commits += outcome.commits;
        self.handovers += outcome.handovers;
        self.reads += outcome.reads;
        self.conf_changes += outcome.conf_changes;
        self.retries += outcome.retries;
        self.snapshots += outcome.snapshots;
        self.max_election_ms = self
            .max_election_ms
            .max(outcome.election_after_heal_ns / 1_000_000);
        self.violations += outcome.violations.len() as u64;
        if let Some(first) = outcome.violations.into_iter().next() {
            self.failures.push(first);
        }
    }
}

/// The cluster size for a seed when none is forced: alternate 3 and 5.
pub fn nodes_for(seed: u64, forced: Option<usize>) -> usize {
    forced.unwrap_or(if seed.is_multiple_of(2) { 3 } else { 5 })
}

/// Runs one seed.
pub fn run_seed(seed: u64, nodes: usize, trace: bool) -> SimOutcome {
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.trace = trace;
    Cluster::new(cfg).run()
}

/// Runs `count` consecutive seeds from `first`.
pub fn campaign(first: u64, count: u64, nodes: Option<usize>) -> Summary {
    let mut summary = Summary::default();
    for seed in first..first + count {
        summary.add(run_seed(seed, nodes_for(seed, nodes), false));
    }
    summary
}

//! A campaign: many seeds run one after another, their totals, and the first violation of
//! each failing seed (with its replay command).

use super::checker::{Finding, Replay, Violation, ViolationKind};
use super::cluster::{Cluster, SimOutcome};
use super::config::SimConfig;
use super::panics;

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

/// Runs one seed; a panic becomes the seed's violation, with its message and location.
pub fn run_seed_caught(seed: u64, nodes: usize, trace: bool) -> SimOutcome {
    outcome_of(Replay { seed, nodes }, || run_seed(seed, nodes, trace))
}

/// The outcome of `run`, or a panic violation that replays with `replay`.
fn outcome_of(replay: Replay, run: impl FnOnce() -> SimOutcome) -> SimOutcome {
    panics::catch(run).unwrap_or_else(|message| {
        let finding = Finding::new(ViolationKind::Panic, message);
        SimOutcome {
            violations: vec![Violation::new(finding, replay)],
            ..SimOutcome::default()
        }
    })
}

/// Runs `count` consecutive seeds from `first`; a seed that panics counts as a violation and
/// the campaign goes on.
pub fn campaign(first: u64, count: u64, nodes: Option<usize>) -> Summary {
    let mut summary = Summary::default();
    for seed in first..first + count {
        summary.add(run_seed_caught(seed, nodes_for(seed, nodes), false));
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Class;

    #[test]
    fn a_panicking_seed_is_a_violation_of_that_seed_and_the_summary_counts_it() {
        let replay = Replay { seed: 42, nodes: 5 };
        let outcome = outcome_of(replay, || panic!("assertion failed: a broken invariant"));
        let [violation] = &outcome.violations[..] else {
            panic!("one violation expected: {:?}", outcome.violations);
        };
        assert_eq!(violation.kind, ViolationKind::Panic);
        assert_eq!(violation.class(), Class::Safety);
        assert_eq!(violation.replay, replay);
        assert!(
            violation.detail.contains("a broken invariant"),
            "{violation}"
        );
        let mut summary = Summary::default();
        summary.add(outcome);
        summary.add(outcome_of(replay, SimOutcome::default));
        assert_eq!((summary.seeds, summary.violations), (2, 1));
        assert!(summary.line().contains("violations=1"));
    }
}

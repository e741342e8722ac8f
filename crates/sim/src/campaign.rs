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
    /// Membership changes that entered a joint configuration.
    pub joint_changes: u64,
    /// Joint configurations entered that changed more than one voter at once.
    pub multi_voter_changes: u64,
    /// Changes the core refused while an earlier term's configuration was uncommitted.
    pub earlier_term_refusals: u64,
    /// Learners and members of the winners' configurations over every election, and the
    /// elections won while learners existed.
    pub learners_seen: u64,
    pub members_seen: u64,
    pub learner_elections: u64,
    pub snapshots: u64,
    pub retries: u64,
    /// Hand-overs the replicas answered done (`handovers=`: switchovers and SIGTERM stops).
    pub handovers_done: u64,
    pub promotions_refused: u64,
    pub fenced: u64,
    pub installs_during_writes: u64,
    pub host_reports: u64,
    /// Crashes that lost applied state not yet in storage (`unpersisted_crashes=`).
    pub unpersisted_crashes: u64,
    /// Promotions the replicas asked of their hosts, and those that failed (the gate is on in
    /// a third of the seeds).
    pub promotions: u64,
    pub promotions_failed: u64,
    /// The operator's pauses, drains and forced switchovers accepted (`pauses=`, `drains=`,
    /// `forced=`; maintenance runs in a third of the seeds).
    pub pauses: u64,
    pub drains: u64,
    pub forced: u64,
    /// Runs with election roles and priorities (`role_seeds=`, a quarter of the seeds), and
    /// the hand-overs leaders started for a higher priority (`preferred_handovers=`).
    pub role_seeds: u64,
    pub preferred_handovers: u64,
    /// Runs with a clock outside the drift bound (`clock_faults=`), and those in which some
    /// node measured a voter's clock drifting (`clock_drift_seen=`).
    pub clock_faults: u64,
    pub clock_drift_seen: u64,
    /// Over the clocks that left the bound mid-run: the longest time until some node saw the
    /// drift (`clock_detect_max_ms=`), and how many were never seen (`clock_undetected=`).
    pub clock_detect_max_ms: u64,
    pub clock_undetected: u64,
    /// Terms whose failover history record was applied (`history_records=`).
    pub history_records: u64,
    /// Of them, `disk_stall` records (`history_disk_stalls=`).
    pub history_disk_stalls: u64,
    /// The first violation of each failing seed; each carries its replay command.
    pub failures: Vec<Violation>,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "sim: seeds={} violations={} elections={} commits={} max_election_ms={} snapshots={} conf_changes={} joint_changes={} multi_voter_changes={} earlier_term_refusals={} transfers={} reads={} retries={} learner_share={}% learner_elections={} handovers={} promotions_refused={} fenced={} installs_during_writes={} host_reports={} unpersisted_crashes={} promotions={} promotions_failed={} pauses={} drains={} forced={} role_seeds={} preferred_handovers={} clock_faults={} clock_drift_seen={} clock_detect_max_ms={} clock_undetected={} history_records={} history_disk_stalls={}",
            self.seeds,
            self.violations,
            self.elections,
            self.commits,
            self.max_election_ms,
            self.snapshots,
            self.conf_changes,
            self.joint_changes,
            self.multi_voter_changes,
            self.earlier_term_refusals,
            self.handovers,
            self.reads,
            self.retries,
            self.learner_share_pct(),
            self.learner_elections,
            self.handovers_done,
            self.promotions_refused,
            self.fenced,
            self.installs_during_writes,
            self.host_reports,
            self.unpersisted_crashes,
            self.promotions,
            self.promotions_failed,
            self.pauses,
            self.drains,
            self.forced,
            self.role_seeds,
            self.preferred_handovers,
            self.clock_faults,
            self.clock_drift_seen,
            self.clock_detect_max_ms,
            self.clock_undetected,
            self.history_records,
            self.history_disk_stalls
        )
    }

    /// The share of learners among the members of the configurations elections were won in.
    pub fn learner_share_pct(&self) -> u64 {
        self.learners_seen * 100 / self.members_seen.max(1)
    }

    fn add(&mut self, outcome: SimOutcome) {
        self.seeds += 1;
        self.elections += outcome.elections;
        self.commits += outcome.commits;
        self.handovers += outcome.handovers;
        self.reads += outcome.reads;
        self.conf_changes += outcome.conf_changes;
        self.joint_changes += outcome.joint_changes;
        self.multi_voter_changes += outcome.multi_voter_changes;
        self.earlier_term_refusals += outcome.earlier_term_refusals;
        self.learners_seen += outcome.learners_seen;
        self.members_seen += outcome.members_seen;
        self.learner_elections += outcome.learner_elections;
        self.retries += outcome.retries;
        self.snapshots += outcome.snapshots;
        self.handovers_done += outcome.handovers_done;
        self.promotions_refused += outcome.promotions_refused;
        self.fenced += outcome.fenced;
        self.installs_during_writes += outcome.installs_during_writes;
        self.host_reports += outcome.host_reports;
        self.pauses += outcome.pauses;
        self.drains += outcome.drains;
        self.forced += outcome.forced;
        self.role_seeds += u64::from(outcome.roles);
        self.preferred_handovers += outcome.preferred_handovers;
        self.history_records += outcome.history_records;
        self.history_disk_stalls += outcome.history_disk_stalls;
        self.clock_faults += u64::from(outcome.clock_fault.is_some());
        self.clock_drift_seen += u64::from(outcome.clock_drift_seen);
        if outcome.clock_fault.is_some_and(|f| f.from > 0) {
            match outcome.clock_detect_ns {
                Some(ns) => self.clock_detect_max_ms = self.clock_detect_max_ms.max(ns / 1_000_000),
                None => self.clock_undetected += 1,
            }
        }
        self.unpersisted_crashes += outcome.unpersisted_crashes;
        self.promotions += outcome.promotions;
        self.promotions_failed += outcome.promotions_failed;
        self.max_election_ms = self
            .max_election_ms
            .max(outcome.election_after_heal_ns / 1_000_000);
        self.violations += outcome.violations.len() as u64;
        if let Some(first) = outcome.violations.into_iter().next() {
            self.failures.push(first);
        }
    }
}

/// The number of simulated nodes for a seed when none is forced: 3, 5 and 7 in turn (of which
/// the seed's layout makes some learners and leaves some outside the configuration).
pub fn nodes_for(seed: u64, forced: Option<usize>) -> usize {
    forced.unwrap_or([3, 5, 7][(seed % 3) as usize])
}

/// Lines of trace a replay keeps by default.
pub const TRACE_LINES: usize = 80;

/// Runs one seed, with a trace of its last events if `trace`.
pub fn run_seed(seed: u64, nodes: usize, trace: bool) -> SimOutcome {
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.trace_lines_max = if trace { TRACE_LINES } else { 0 };
    Cluster::new(cfg).run()
}

/// Runs one seed; a panic becomes the seed's violation, with its message and location.
pub fn run_seed_caught(seed: u64, nodes: usize, trace: bool) -> SimOutcome {
    outcome_of(Replay { seed, nodes }, || run_seed(seed, nodes, trace))
}

/// Runs one run as configured, a panic becoming its violation.
pub fn run_config(cfg: SimConfig) -> SimOutcome {
    let replay = Replay {
        seed: cfg.seed,
        nodes: cfg.nodes,
    };
    outcome_of(replay, || Cluster::new(cfg).run())
}

/// Replays one seed keeping the last `trace_lines` events of its trace.
pub fn replay(seed: u64, nodes: usize, trace_lines: usize) -> SimOutcome {
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.trace_lines_max = trace_lines;
    run_config(cfg)
}

/// The outcome of `run`, or a panic violation that replays with `replay`.
fn outcome_of(replay: Replay, run: impl FnOnce() -> SimOutcome) -> SimOutcome {
    panics::catch(run).unwrap_or_else(|panic| {
        let finding = Finding::new(ViolationKind::Panic, panic.message);
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
    use crate::Class;

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

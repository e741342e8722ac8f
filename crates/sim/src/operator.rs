//! The operator: what an administrator does to a running cluster — hand leadership over, and
//! change the membership: random single changes (add a learner, promote one, remove a member,
//! the leader included, down to the last voter, abort a joint configuration), or walks toward a
//! target set of voters drawn per seed (replacing voters, growing or shrinking the cluster):
//! one voter per joint step, or — per seed — every voter at once in one joint step
//! ({1,2,3} → {1,4,5}, 3 → 5, 5 → 3) once the new voters are learners. How eagerly it acts is
//! drawn per seed too: on its own cadence, at once on a new leader (before that leader's own
//! entry commits), or with a fault right behind a change that entered a joint configuration.
//!
//! Hand-overs go through the replica's own machinery (`Replica::switchover`, retried until its
//! deadline), and what comes back is checked: a hand-over answered done was done, none outlives
//! its deadline, and a leader with one in progress is transferring (or was refused a retry).
//! Promotions are checked against the promotion rule, computed here independently from the
//! leader's view of the learner before the change is asked: a lagging learner is refused, a
//! caught-up one accepted.
//!
//! Invariant: every request goes to the node that believes it leads, as an administrator's
//! would; the core decides whether it is allowed.

use super::checker::{Finding, ViolationKind};
use super::env::Env;
use super::node::SimNode;
use super::time::MS;
use regent_raft::{ConfChange, ConfChangeError, Membership, Nanos, NodeId, Role, SplitMix64, Term};
use regent_replica::{HandoverOutcome, Token};
use std::collections::BTreeSet;

/// Tokens of switchovers asked of a replica (apart from the clients' operations).
pub const SWITCHOVER: Token = 1 << 60;

/// How the operator behaves in one seed.
#[derive(Clone, Debug)]
pub struct Style {
    /// Percent of membership actions that walk toward the target voters (the others are random
    /// single changes).
    plan_pct: u64,
    /// Percent of the plan's voter changes made in one joint step for every voter that
    /// differs (the others change one voter per joint step).
    multi_pct: u64,
    /// Percent of new leaders asked for a change at once, before their term's entry commits:
    /// after an earlier term's change that never committed, the classic hazard of changes
    /// made one server at a time.
    pub eager_pct: u64,
    /// Percent of changes entering a joint configuration followed within milliseconds by a
    /// crash or a partial cut of their leader.
    pub joint_fault_pct: u64,
    /// Mean time between membership actions of the operator's own (besides those among the
    /// faults), if it has a cadence.
    pub every_ns: Option<Nanos>,
}

impl Style {
    pub fn draw(rng: &mut SplitMix64) -> Style {
        Style {
            plan_pct: [0, 50, 100][rng.below(3) as usize],
            multi_pct: [0, 50, 100][rng.below(3) as usize],
            eager_pct: [0, 20, 60][rng.below(3) as usize],
            joint_fault_pct: [0, 25, 50][rng.below(3) as usize],
            every_ns: [None, Some(60 * MS), Some(200 * MS), Some(600 * MS)][rng.below(4) as usize],
        }
    }
}

/// A membership change the operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Conf(ConfChange),
    /// Straight to these voters and learners, in one joint step when the voters change.
    To {
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    },
    Abort,
}

/// What became of a membership request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// Nothing was asked of the leader.
    Nothing,
    Refused,
    /// Accepted; `joint` if the leader entered a joint configuration.
    Accepted {
        joint: bool,
    },
}

pub struct Operator {
    pub style: Style,
    /// The voters the plan walks toward; empty until the first planned action draws them.
    target: BTreeSet<NodeId>,
    /// Hand-overs started: (target, term of the leader that started it).
    handovers_started: Vec<(NodeId, Term)>,
    /// Hand-overs completed: the target took over in the next term.
    pub handovers: u64,
    /// Membership changes accepted by a leader, and those of them that entered a joint
    /// configuration.
    pub conf_changes: u64,
    pub joint_changes: u64,
    /// Joint configurations entered whose old and new voters differ in more than one voter.
    pub multi_voter_changes: u64,
    /// Changes refused because a configuration an earlier term's leader appended was not yet
    /// committed (the hazard of one-server changes, which the core refuses).
    pub earlier_term_refusals: u64,
    /// Over every election: the learners and the members of the winner's configuration, and
    /// the elections won while there were learners.
    pub learners_seen: u64,
    pub members_seen: u64,
    pub learner_elections: u64,
    /// Hand-overs the replicas answered done (`handovers=`).
    pub handovers_done: u64,
    /// Promotions the leader refused because the learner lagged (`promotions_refused=`).
    pub promotions_refused: u64,
    /// The promotion rule: caught up means a match index above 0, at most this far behind.
    promote_lag_max: u64,
    next_switchover: Token,
    /// What the checks of the operator's requests found.
    pub findings: Vec<Finding>,
}

impl Operator {
    pub fn new(style: Style, promote_lag_max: u64) -> Operator {
        Operator {
            style,
            target: BTreeSet::new(),
            handovers_started: Vec::new(),
            handovers: 0,
            conf_changes: 0,
            joint_changes: 0,
            multi_voter_changes: 0,
            earlier_term_refusals: 0,
            learners_seen: 0,
            members_seen: 0,
            learner_elections: 0,
            handovers_done: 0,
            promotions_refused: 0,
            promote_lag_max,
            next_switchover: 0,
            findings: Vec::new(),
        }
    }

    /// Asks the leader at position `l` to hand over, to a random node or to the one it picks.
    pub fn hand_over(&mut self, env: &mut Env, nodes: &mut [SimNode], l: usize) {
        let n = nodes.len() as u64;
        let target = match env.rng.below(2) {
            0 => None,
            _ => Some(NodeId(env.rng.below(n) + 1)),
        };
        let now = nodes[l].local_now(env.now()).expect("the leader is up");
        let replica = nodes[l].live();
        let term = replica.core().status(now).term;
        self.next_switchover += 1;
        let token = SWITCHOVER | self.next_switchover;
        if let Ok(to) = replica.switchover(token, target, now) {
            self.handovers_started.push((to, term));
            env.note(format!("n{} hands leadership to {to}", l + 1));
        }
    }

    /// A hand-over on `node` ended: a `Done` one must be done as the replica itself sees it
    /// (it follows the target), and a `NotDone` one must not be given up while this node still
    /// leads before the deadline.
    pub fn handover_ended(&mut self, env: &mut Env, node: &SimNode, outcome: &HandoverOutcome) {
        let core = node.core().expect("live");
        let status = core.status(0);
        match *outcome {
            HandoverOutcome::Done { to, pause_ms, .. } => {
                self.handovers_done += 1;
                env.note(format!(
                    "{} handed leadership to {to} in {pause_ms} ms",
                    node.id
                ));
                if status.role == Role::Leader || status.leader != Some(to) {
                    let detail = format!(
                        "{} answered a hand-over to {to} done while it is {:?} and sees leader {:?}",
                        node.id, status.role, status.leader
                    );
                    self.findings
                        .push(Finding::new(ViolationKind::Handover, detail));
                }
            }
            HandoverOutcome::NotDone { to, waited_ms, .. } => {
                env.note(format!(
                    "{}: hand-over to {to} given up after {waited_ms} ms",
                    node.id
                ));
            }
        }
    }

    /// After every step of a live node: no hand-over outlives its deadline, and a leader with
    /// one in progress is transferring to its target (unless the core refused the retry).
    pub fn check_handovers(&mut self, node: &SimNode) {
        let Some(replica) = node.replica.as_ref() else {
            return;
        };
        // The replica's own time: its latest input (the caller ticks it at least every few
        // milliseconds), which is what its answers are due by.
        let now = replica.latest_input_time();
        let Some(deadline) = replica.handover_deadline() else {
            return;
        };
        if deadline <= now {
            let detail = format!(
                "{} still has a hand-over {} ms past its deadline",
                node.id,
                (now - deadline) / MS
            );
            self.findings
                .push(Finding::new(ViolationKind::Handover, detail));
            return;
        }
        let core = replica.core();
        if core.status(now).role != Role::Leader || replica.handover_retry_refused() {
            return;
        }
        // Transferring: to a hand-over's target, or to a node the core chose on its own (a
        // leader removed from the configuration hands over by itself).
        if core.transfer_target().is_none() {
            let targets = replica.handover_targets();
            let detail = format!(
                "{} leads with a hand-over to {targets:?} in progress, but is not transferring",
                node.id
            );
            self.findings
                .push(Finding::new(ViolationKind::Handover, detail));
        }
    }

    /// Asks the leader at position `l` for a membership change: a step of the plan, or a
    /// random one.
    pub fn change_membership(&mut self, env: &mut Env, nodes: &mut [SimNode], l: usize) -> Asked {
        let n = nodes.len();
        let planned = self.style.plan_pct > 0 && env.rng.below(100) < self.style.plan_pct;
        let m = nodes[l]
            .core()
            .expect("the leader is up")
            .membership()
            .clone();
        let change = if planned {
            self.plan_step(&mut env.rng, &m, n)
        } else {
            random_change(&mut env.rng, &m, n)
        };
        let Some(change) = change else {
            return Asked::Nothing;
        };
        let now = nodes[l].local_now(env.now()).expect("the leader is up");
        let promoted: Vec<NodeId> = match &change {
            Change::Conf(ConfChange::Promote(id)) => vec![*id],
            Change::To { voters, .. } => voters.difference(&m.voters).copied().collect(),
            _ => Vec::new(),
        };
        let lagging: Vec<NodeId> = {
            let core = nodes[l].core().expect("the leader is up");
            let last = core.status(now).last_index;
            promoted
                .iter()
                .copied()
                .filter(|&id| m.learners.contains(&id))
                .filter(|&id| {
                    let matched = core.match_index(id).map_or(0, |i| i.0);
                    matched == 0 || matched + self.promote_lag_max < last.0
                })
                .collect()
        };
        let replica = nodes[l].live();
        let result = match &change {
            Change::Abort => replica.abort_membership_change(now),
            Change::Conf(c) => replica.change_membership(*c, now),
            Change::To { voters, learners } => {
                replica.reconfigure(voters.clone(), learners.clone(), now)
            }
        };
        let refused_behind = matches!(result, Err(ConfChangeError::LearnerBehind { .. }));
        self.promotions_refused += u64::from(refused_behind);
        let all_learners = promoted.iter().all(|id| m.learners.contains(id));
        if result.is_ok() && !lagging.is_empty() {
            let detail = format!(
                "n{} promoted {lagging:?}, lagging learners (promote_lag_max {})",
                l + 1,
                self.promote_lag_max
            );
            self.findings
                .push(Finding::new(ViolationKind::PromotionRule, detail));
        } else if refused_behind && lagging.is_empty() && all_learners {
            let detail = format!(
                "n{} refused to promote {promoted:?} as lagging, but they are caught up \
                 (promote_lag_max {})",
                l + 1,
                self.promote_lag_max
            );
            self.findings
                .push(Finding::new(ViolationKind::PromotionRule, detail));
        }
        let index = match result {
            Ok(index) => index,
            Err(ConfChangeError::ChangeInProgress { index }) => {
                // The hazard of one-server changes, reached: a configuration appended by a
                // leader of an earlier term is not committed yet, and this leader's own term
                // has committed nothing; the core refuses until its no-op commits.
                let (core, status) = (replica.core(), replica.core().status(now));
                if index > status.commit_index && core.log_term(index) < Some(status.term) {
                    self.earlier_term_refusals += 1;
                }
                return Asked::Refused;
            }
            Err(_) => return Asked::Refused,
        };
        let after = replica.core().membership();
        let joint = after.is_joint();
        let changed = after.voters.symmetric_difference(&after.voters_outgoing);
        self.conf_changes += 1;
        self.joint_changes += u64::from(joint);
        self.multi_voter_changes += u64::from(joint && changed.count() > 1);
        env.note(format!(
            "n{} changes membership at {index} ({change:?}, from {m:?})",
            l + 1
        ));
        Asked::Accepted { joint }
    }

    /// The next step toward the target voters: add a missing one as a learner; then, one
    /// voter per joint step, promote a learner of the target or remove a voter outside it —
    /// or, per seed, change every voter at once in one joint step (keeping the learners
    /// outside the target). A new target once it is reached. While a joint configuration is
    /// in force, wait (or now and then abort it).
    fn plan_step(&mut self, rng: &mut SplitMix64, m: &Membership, n: usize) -> Option<Change> {
        if m.is_joint() {
            return (rng.below(4) == 0).then_some(Change::Abort);
        }
        if self.target.is_empty() {
            self.target = draw_target(rng, n);
        }
        let multi = self.style.multi_pct > 0 && rng.below(100) < self.style.multi_pct;
        for _ in 0..2 {
            let missing = self.target.iter().find(|id| !m.members().contains(id));
            if let Some(&id) = missing {
                return Some(Change::Conf(ConfChange::AddLearner(id)));
            }
            if multi && m.voters != self.target {
                let learners = m.learners.difference(&self.target).copied().collect();
                return Some(Change::To {
                    voters: self.target.clone(),
                    learners,
                });
            }
            let learner = self.target.iter().find(|id| m.learners.contains(id));
            let extra = m.voters.iter().find(|id| !self.target.contains(id));
            let step = learner
                .map(|&id| ConfChange::Promote(id))
                .or(extra.map(|&id| ConfChange::Remove(id)));
            if let Some(step) = step {
                return Some(Change::Conf(step));
            }
            self.target = draw_target(rng, n);
        }
        None
    }

    /// `id` was seen leading `term` under `membership`: a hand-over to it from the term before
    /// is complete, and the learners of its configuration are counted.
    pub fn new_leader(&mut self, id: NodeId, term: Term, membership: &Membership) {
        let before = self.handovers_started.len();
        self.handovers_started
            .retain(|&(to, from_term)| !(to == id && from_term.next() == term));
        self.handovers += (before - self.handovers_started.len()) as u64;
        self.learners_seen += membership.learners.len() as u64;
        self.members_seen += membership.members().len() as u64;
        self.learner_elections += u64::from(!membership.learners.is_empty());
    }
}

/// A random single change on a random node: promote a learner, remove a voter (the core
/// refuses to remove the last one), add a non-member as a learner, or abort a joint
/// configuration.
fn random_change(rng: &mut SplitMix64, m: &Membership, n: usize) -> Option<Change> {
    let x = NodeId(rng.below(n as u64) + 1);
    let abort = rng.below(3) == 0;
    let change = if m.is_joint() && abort {
        Change::Abort
    } else if m.learners.contains(&x) {
        Change::Conf(ConfChange::Promote(x))
    } else if m.voters.contains(&x) {
        Change::Conf(ConfChange::Remove(x))
    } else {
        Change::Conf(ConfChange::AddLearner(x))
    };
    Some(change)
}

/// A target set of two to five voters among the `n` nodes.
fn draw_target(rng: &mut SplitMix64, n: usize) -> BTreeSet<NodeId> {
    let k = [2, 3, 3, 4, 5][rng.below(5) as usize].min(n);
    let mut ids: Vec<NodeId> = (1..=n as u64).map(NodeId).collect();
    for i in 0..k {
        let j = i + rng.below((n - i) as u64) as usize;
        ids.swap(i, j);
    }
    ids[..k].iter().copied().collect()
}

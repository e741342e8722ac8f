//! The operator: what an administrator does to a running cluster — hand leadership over, and
//! change the membership: random single changes (add a learner, promote one, remove a member,
//! the leader included, down to the last voter, abort a joint configuration), or walks toward a
//! target set of voters drawn per seed (replacing voters, growing or shrinking the cluster):
//! one voter per joint step, or — per seed — every voter at once in one joint step
//! ({1,2,3} → {1,4,5}, 3 → 5, 5 → 3) once the new voters are learners. How eagerly it acts is
//! drawn per seed too: on its own cadence, at once on a new leader (before that leader's own
//! entry commits), or with a fault right behind a change that entered a joint configuration.
//!
//! Invariant: every request goes to the node that believes it leads, as an administrator's
//! would; the core decides whether it is allowed.

use super::env::Env;
use super::node::SimNode;
use super::time::MS;
use regent_raft::{ConfChange, ConfChangeError, Membership, Nanos, NodeId, SplitMix64, Term};
use std::collections::BTreeSet;

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
}

impl Operator {
    pub fn new(style: Style) -> Operator {
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
        if let Ok(to) = replica.transfer_leadership(target, now) {
            self.handovers_started.push((to, term));
            env.note(format!("n{} hands leadership to {to}", l + 1));
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
        let replica = nodes[l].live();
        let result = match &change {
            Change::Abort => replica.abort_membership_change(now),
            Change::Conf(c) => replica.change_membership(*c, now),
            Change::To { voters, learners } => {
                replica.reconfigure(voters.clone(), learners.clone(), now)
            }
        };
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

//! The operator: what an administrator does to a running cluster at random points — hand
//! leadership over, and change the membership (add a learner, promote one, remove a member,
//! the leader included, or abort a joint configuration).
//!
//! Invariant: every request goes to the node that believes it leads, as an administrator's
//! would; the core decides whether it is allowed.

use super::env::Env;
use super::node::SimNode;
use crate::raft::{ConfChange, NodeId, Term};

#[derive(Default)]
pub struct Operator {
    /// Hand-overs started: (target, term of the leader that started it).
    handovers_started: Vec<(NodeId, Term)>,
    /// Hand-overs completed: the target took over in the next term.
    pub handovers: u64,
    /// Membership changes accepted by a leader.
    pub conf_changes: u64,
}

impl Operator {
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

    /// Asks the leader at position `l` for a random membership change. Returns whether it was
    /// asked (and must be driven).
    pub fn change_membership(&mut self, env: &mut Env, nodes: &mut [SimNode], l: usize) -> bool {
        let n = nodes.len() as u64;
        let x = NodeId(env.rng.below(n) + 1);
        let abort = env.rng.below(3) == 0;
        let now = nodes[l].local_now(env.now()).expect("the leader is up");
        let replica = nodes[l].live();
        let m = replica.core().membership().clone();
        let result = if m.is_joint() && abort {
            replica.abort_membership_change(now)
        } else if m.learners.contains(&x) {
            replica.change_membership(ConfChange::Promote(x), now)
        } else if m.voters.contains(&x) {
            if m.voters.len() <= 2 {
                return false;
            }
            replica.change_membership(ConfChange::Remove(x), now)
        } else {
            replica.change_membership(ConfChange::AddLearner(x), now)
        };
        if let Ok(index) = result {
            self.conf_changes += 1;
            env.note(format!(
                "n{} changes membership at {index} ({x}, from {m:?})",
                l + 1
            ));
        }
        true
    }

    /// `id` was seen leading `term`: a hand-over to it from the term before is complete.
    pub fn new_leader(&mut self, id: NodeId, term: Term) {
        let before = self.handovers_started.len();
        self.handovers_started
            .retain(|&(to, from_term)| !(to == id && from_term.next() == term));
        self.handovers += (before - self.handovers_started.len()) as u64;
    }
}

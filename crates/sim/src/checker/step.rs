//! What is checked on one node after each input it handles: its commit and applied indexes
//! never go back, a leader commits only entries of its own term by counting (Raft §5.4.2),
//! what it commits and the terms it leads agree with the cluster's history.
//!
//! Invariant: `last_commit` and `last_applied` are what the node last showed (or what its
//! disk held when it restarted or installed a snapshot).

use super::facts::Facts;
use super::{Finding, ViolationKind};
use regent_raft::{LogIndex, Nanos, RaftNode, Role, Term};

/// What was last seen of one node.
#[derive(Default)]
pub struct Watch {
    was_leader_in: Option<Term>,
    last_commit: LogIndex,
    last_applied: LogIndex,
}

/// What one observation found.
#[derive(Default)]
pub struct Observation {
    pub findings: Vec<Finding>,
    /// The term the node was newly seen leading.
    pub leads: Option<Term>,
    /// As leader, the node advanced its commit index to this entry (index, term).
    pub leader_commit: Option<(LogIndex, Term)>,
}

impl Watch {
    /// The node (re)started with what its disk holds.
    pub fn restarted(&mut self, commit: LogIndex, applied: LogIndex) {
        self.last_commit = commit;
        self.last_applied = applied;
        self.was_leader_in = None;
    }

    /// The node installed a snapshot applied through `applied`.
    pub fn snapshot_installed(&mut self, applied: LogIndex) {
        self.last_applied = applied;
        self.last_commit = self.last_commit.max(applied);
    }

    /// Checks the node's state after it handled an input.
    pub fn observe(&mut self, core: &RaftNode, now: Nanos, facts: &mut Facts) -> Observation {
        let mut seen = Observation::default();
        let status = core.status(now);
        let id = status.id;
        if status.commit_index < self.last_commit {
            let detail = format!(
                "{id} commit index went back from {} to {}",
                self.last_commit, status.commit_index
            );
            seen.findings
                .push(Finding::new(ViolationKind::IndexWentBack, detail));
        }
        if status.applied_index < self.last_applied {
            let detail = format!(
                "{id} applied index went back from {} to {}",
                self.last_applied, status.applied_index
            );
            seen.findings
                .push(Finding::new(ViolationKind::IndexWentBack, detail));
        }
        let from = self.last_commit;
        if status.commit_index > from {
            let term_at_commit = core.log_term(status.commit_index);
            if status.role == Role::Leader && term_at_commit != Some(status.term) {
                let detail = format!(
                    "{id} leading {} committed {} of {term_at_commit:?} by counting",
                    status.term, status.commit_index
                );
                seen.findings
                    .push(Finding::new(ViolationKind::CommitRule, detail));
                return seen;
            }
            if let Err(f) = facts.on_commit(id, from, status.commit_index, |i| core.log_term(i)) {
                seen.findings.push(f);
            }
            if status.role == Role::Leader {
                seen.leader_commit = Some((status.commit_index, status.term));
            }
        }
        self.last_commit = status.commit_index;
        self.last_applied = status.applied_index;
        if status.role == Role::Leader && self.was_leader_in != Some(status.term) {
            self.was_leader_in = Some(status.term);
            seen.leads = Some(status.term);
            if let Err(f) = facts.on_leader(id, status.term, |i| core.log_term(i)) {
                seen.findings.push(f);
            }
        }
        seen
    }
}

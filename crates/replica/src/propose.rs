//! Proposals of the state machine's commands: early fencing of a stale `expected_term`, the
//! leader's log time, and the host's journal reports (counted at once for the hand-over rule,
//! forwarded to the leader from a follower, logged there in the reporter's name).
//!
//! Invariants: a command outside a session whose `expected_term` is not this node's current
//! term never reaches the log (the state machine fences it again where the entry lands, so
//! this check only answers sooner); a journal report is logged in the name of the node that
//! sent it (the authenticated peer), never in a name the report claims.

use crate::{Action, Replica, Token};
use regent_raft::{LogIndex, Nanos, NodeId, ProposeError, Role, Term};
use regent_storage::{Command, JournalRetention, JournalState, Proposal};

/// Why a command was not proposed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeRefusal {
    /// Fenced early: the host expected the leader of `expected`, and this node is in `current`.
    #[error("fenced: the write expected the leader of term {expected}, but this node is in term {current}")]
    TermMismatch { expected: u64, current: u64 },
    #[error(transparent)]
    Core(#[from] ProposeError),
}

impl Replica {
    /// Proposes a state machine command for the request `token` (answered with an
    /// [`Action::Proposal`] once an entry at the returned index is applied). `wall_ms` is the
    /// leader's wall clock, the log time the state machine expires sessions and journal
    /// operations by.
    ///
    /// Fencing, early: a command carrying `expected_term` is refused at once unless this node
    /// is in that term. Not for a command in a session: a retry of one that was applied must
    /// get its recorded answer, which only the state machine has (it fences a fresh one).
    ///
    /// A host's journal report also counts at once for the hand-over rule (replicated or not),
    /// and on a follower it is forwarded to the leader, which alone can log it.
    pub fn propose_command(
        &mut self,
        token: Token,
        mut proposal: Proposal,
        now: Nanos,
        wall_ms: u64,
    ) -> Result<(LogIndex, Term), ProposeRefusal> {
        self.observe(now);
        let status = self.core.status(now);
        if let Command::JournalReport {
            applied,
            checkpoint,
            ..
        } = proposal.command
        {
            if let Some(index) = applied {
                self.host_applied = (status.term, index.max(self.host_applied.1));
            }
            if let Some(leader) = status.leader.filter(|&l| l != self.id) {
                self.queued.push(Action::ForwardHostReport {
                    to: leader,
                    applied,
                    checkpoint,
                });
            }
        }
        if let Some(expected) = proposal
            .expected_term
            .filter(|_| proposal.session.is_none())
        {
            if expected != status.term.0 {
                self.fenced += 1;
                return Err(ProposeRefusal::TermMismatch {
                    expected,
                    current: status.term.0,
                });
            }
        }
        proposal.time_ms = wall_ms;
        Ok(self.propose(token, proposal.encode(), now)?)
    }

    /// A follower forwarded its host's journal report: the leader logs it in the follower's
    /// name (`from`, the authenticated peer). Nobody waits for the answer. Returns whether it
    /// was proposed.
    pub fn host_report(
        &mut self,
        from: NodeId,
        applied: Option<u64>,
        checkpoint: Option<u64>,
        retention: JournalRetention,
        now: Nanos,
        wall_ms: u64,
    ) -> bool {
        self.observe(now);
        if self.core.status(now).role != Role::Leader {
            return false;
        }
        let mut proposal = Proposal::new(Command::JournalReport {
            node: from.0,
            applied,
            checkpoint,
            retention,
        });
        proposal.time_ms = wall_ms;
        // The token is never answered to anyone: nobody waits for it.
        match self.core.propose(proposal.encode(), now) {
            Ok(_) => true,
            Err(err) => {
                tracing::debug!(node = %self.id, peer = %from, error = %err, "host report not logged");
                false
            }
        }
    }

    /// The hand-over rule: a writable leader reports the last journal index committed before
    /// its term (in `journal`, the state machine's journal summary) until its host says, in
    /// this term, that it applied up to it.
    pub fn catch_up_index(&self, journal: &JournalState, now: Nanos) -> Option<u64> {
        let status = self.core.status(now);
        if status.role != Role::Leader || !status.writable || !self.pause_allows_writable() {
            return None;
        }
        let index = journal.catch_up_index(status.term.0);
        let acked = self.host_applied.0 == status.term && self.host_applied.1 >= index;
        (!acked).then_some(index)
    }

    /// The journal index this node's host last reported as applied (in any term).
    pub fn host_applied_index(&self) -> u64 {
        self.host_applied.1
    }

    /// Commands refused by the early fencing check since the replica was built.
    pub fn fenced(&self) -> u64 {
        self.fenced
    }
}

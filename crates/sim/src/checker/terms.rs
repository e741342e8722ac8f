//! Stale terms: a message whose term is below its receiver's is answered (so that a deposed
//! leader or candidate learns the newer term) but never acted on — no append accepted, no
//! leader followed, no vote granted or counted, no hand-over obeyed (Raft §5.1, figure 2).
//!
//! Checked where messages are delivered: the receiver's state before and after the step.

use super::{Finding, ViolationKind};
use regent_raft::{LogIndex, Message, MessageBody, NodeId, RaftNode, Role, Term};

/// What a delivery may not change when the message's term is below the receiver's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    term: Term,
    role: Role,
    leader: Option<NodeId>,
    commit_index: LogIndex,
    last_index: LogIndex,
    last_term: Option<Term>,
}

impl Fingerprint {
    pub fn of(core: &RaftNode) -> Fingerprint {
        let status = core.status(0);
        Fingerprint {
            term: status.term,
            role: status.role,
            leader: status.leader,
            commit_index: status.commit_index,
            last_index: status.last_index,
            last_term: core.log_term(status.last_index),
        }
    }

    pub fn term(&self) -> Term {
        self.term
    }
}

/// The kinds Raft requires a receiver to reject (or ignore) when their term is stale.
pub fn must_reject_when_stale(body: &MessageBody) -> bool {
    matches!(
        body,
        MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::AppendEntriesResponse { .. }
            | MessageBody::HeartbeatResponse { .. }
            | MessageBody::RequestVote {
                pre_vote: false,
                ..
            }
            | MessageBody::RequestVoteResponse {
                pre_vote: false,
                ..
            }
            | MessageBody::TimeoutNow { .. }
            | MessageBody::TimeoutNowBecause { .. }
    )
}

/// `m`, of a term below the receiver's (`before`), left the receiver as it was (`after`).
pub fn check_not_acted_on(
    m: &Message,
    before: &Fingerprint,
    after: &Fingerprint,
) -> Result<(), Finding> {
    if before == after {
        return Ok(());
    }
    let detail = format!(
        "{} acted on {} from {} of {} while in {}: {before:?} became {after:?}",
        m.to, m.body, m.from, m.term, before.term
    );
    Err(Finding::new(ViolationKind::StaleTermActedOn, detail))
}

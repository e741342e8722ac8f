//! `Ready`: the side effects the core asks its caller to carry out, and the caller's duties.

use super::message::Message;
use super::types::{Entry, HardState, LogIndex, NodeId, Role, Term};

/// Work the core hands to its caller. Obtained with [`RaftNode::ready`](super::RaftNode::ready).
///
/// At most one `Ready` with durable work is outstanding at a time; the core keeps accepting
/// `tick`, `step` and `propose` while the caller works on it, and everything produced meanwhile
/// goes into the next one (group commit). Messages that need no durability are also available
/// at any time through [`RaftNode::take_messages`](super::RaftNode::take_messages), so timers
/// and heartbeats never wait on the disk.
///
/// The caller's duties, in this order:
///
/// 1. Send [`messages`](Ready::messages) now. They depend on nothing that is not yet durable
///    (the leader's own appends may go out before the leader persists the same entries: its
///    entry counts toward a quorum only once persisted).
/// 2. In one atomic, durable write: if [`truncate_from`](Ready::truncate_from) is set, delete every
///    log entry at or after it; append [`entries`](Ready::entries); save
///    [`hard_state`](Ready::hard_state) if set; apply
///    [`committed_entries`](Ready::committed_entries) to the state machine in index order (they
///    are all durable once this write is). A crash before the write completes must lose all of
///    it, or none.
/// 3. Only after that write is durable, send [`persisted_messages`](Ready::persisted_messages):
///    vote grants, vote requests and append acknowledgements promise durability.
/// 4. Answer the clients whose entries were applied (never earlier: an answer is a promise).
/// 5. Call [`RaftNode::advance`](super::RaftNode::advance) exactly once: it tells the core that
///    all of the above is durable and applied, and lets it produce the next `Ready`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// The new term, vote and commit index, when any changed.
    pub hard_state: Option<HardState>,
    /// Delete every durable entry at or after this index before appending.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append, contiguous, in index order.
    pub entries: Vec<Entry>,
    /// Committed entries to apply, contiguous, in index order.
    pub committed_entries: Vec<Entry>,
    /// Messages to send only once everything above is durable.
    pub persisted_messages: Vec<Message>,
    /// The role, term and leader, when any changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
}

/// What a node currently believes about leadership; not persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
}

impl Ready {
    /// Whether the caller must write anything durably for this `Ready`.
    pub fn needs_write(&self) -> bool {
        self.hard_state.is_some()
            || self.truncate_from.is_some()
            || !self.entries.is_empty()
            || !self.committed_entries.is_empty()
    }
}

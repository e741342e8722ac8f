//! `Ready`: the side effects the core asks its caller to carry out, and the caller's duties;
//! `Batch`: the one durable write a `Ready` carries, handed to storage as it is.
//!
//! Invariant: `Ready`s are numbered from 1, one more for each handed out, and at most one is
//! outstanding: the next comes only after `advance` acknowledged the number of the last.

use super::message::Message;
use super::types::{Entry, HardState, LogIndex, NodeId, Role, Term};

/// Work the core hands to its caller. Obtained with [`RaftNode::ready`](super::RaftNode::ready).
///
/// At most one `Ready` is outstanding at a time; the core keeps accepting `tick`, `step` and
/// `propose` while the caller works on it, and everything produced meanwhile goes into the next
/// one (group commit). Messages that need no durability are also available at any time through
/// [`RaftNode::take_messages`](super::RaftNode::take_messages), so timers and heartbeats never
/// wait on the disk.
///
/// The caller's duties, in this order:
///
/// 1. Send [`messages`](Ready::messages) now. They depend on nothing that is not yet durable
///    (the leader's own appends may go out before the leader persists the same entries: its
///    entry counts toward a quorum only once persisted).
/// 2. Write [`batch`](Ready::batch) as it is, in one atomic, durable write (storage's
///    `write_batch(&ready.batch)`): if `truncate_from` is set, delete every log entry at or
///    after it; append `entries`; save `hard_state` if set; apply `committed` to the state
///    machine in index order (they are all durable once this write is). A crash before the write
///    completes must lose all of it, or none. There is nothing to write when
///    [`needs_write`](Ready::needs_write) is false, and nothing that must be durable when
///    [`must_sync`](Ready::must_sync) is false: the caller may then carry out the `Ready` at
///    once (apply, send, advance) and never store the commit index it carries.
/// 3. Only after that write is durable, send [`persisted_messages`](Ready::persisted_messages):
///    vote grants, vote requests and append acknowledgements promise durability.
/// 4. Answer the clients whose entries were applied (never earlier: an answer is a promise).
/// 5. Call [`RaftNode::advance`](super::RaftNode::advance) with [`number`](Ready::number),
///    exactly once: it tells the core that all of the above is durable and applied, and lets it
///    produce the next `Ready`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// This `Ready`'s number, for [`RaftNode::advance`](super::RaftNode::advance): 1 for the
    /// first one a node hands out, one more for each after it.
    pub number: u64,
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// The durable write, to hand to storage as it is.
    pub batch: Batch,
    /// Messages to send only once the batch is durable.
    pub persisted_messages: Vec<Message>,
    /// The role, term and leader, when any changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// Whether the batch holds anything that must be durable before the persisted messages
    /// go out: entries, a truncation, or a new term or vote. A batch that only moves the
    /// commit index (and applies entries already durable here) needs no write at all: the
    /// commit index is volatile in Raft (etcd's `MustSync`), so the caller may carry out such
    /// a `Ready` at once, without storage.
    pub must_sync: bool,
}

/// What a Raft Ready asks to persist, as one atomic and durable write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The new term, vote and commit index, if they changed.
    pub hard_state: Option<HardState>,
    /// Delete every entry with an index at or after this one before appending. It must be
    /// above the commit index stored before this batch: committed entries are never deleted.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append: contiguous, the first at `truncate_from` or at last index + 1.
    pub entries: Vec<Entry>,
    /// Committed entries to apply, in order, the first at applied + 1, the last at or below the
    /// commit index (as of this batch). They must be in the log (stored or in `entries`).
    pub committed: Vec<Entry>,
}

/// What a node currently believes about leadership; not persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.committed.is_empty()
    }
}

impl Ready {
    /// Whether the caller must write anything durably for this `Ready`.
    pub fn needs_write(&self) -> bool {
        !self.batch.is_empty()
    }
}

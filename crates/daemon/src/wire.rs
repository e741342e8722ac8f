//! What regents say to each other over QUIC: Raft messages, and the reports of their hosts'
//! journal progress that a follower forwards to the leader (only the leader can put them in
//! the log, and the retention rule needs every member's checkpoint there).
//!
//! Invariant: a host report names no node of its own: the receiver attributes it to the
//! authenticated peer that sent it, so a regent can only report for its own host.

use regent_raft::Message;
use regent_transport::WireMessage;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    Raft(Message),
    /// The sender's host applied the journal up to `applied` and/or its durable checkpoint
    /// covers `checkpoint`.
    HostReport {
        applied: Option<u64>,
        checkpoint: Option<u64>,
    },
}

impl WireMessage for PeerMessage {
    fn coalesce_key(&self) -> Option<u64> {
        match self {
            PeerMessage::Raft(m) => m.coalesce_key(),
            // A queued report is replaced by a newer one: the indexes only grow. (The Raft
            // keys are 1 and 2.)
            PeerMessage::HostReport { .. } => Some(3),
        }
    }
}

//! Numbered Raft messages between nodes under test, and receiving them.

use super::node::Node;
use regent_raft::{LogIndex, Message, MessageBody, NodeId, Term};
use regent_transport::Inbound;
use std::time::Duration;

/// A Raft message carrying `seq` in its round, with `payload` bytes of entry data.
pub fn append(from: u64, to: u64, seq: u64, payload: usize) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(seq),
            prev_log_term: Term(1),
            entries: vec![regent_raft::Entry {
                term: Term(1),
                index: LogIndex(seq + 1),
                payload: regent_raft::EntryPayload::Normal(vec![7; payload]),
            }],
            leader_commit: LogIndex(seq),
            round: seq,
        },
    }
}

/// The sequence number `append` (or a heartbeat) put in a message.
pub fn seq_of(message: &Message) -> u64 {
    match &message.body {
        MessageBody::AppendEntries { round, .. } | MessageBody::Heartbeat { round, .. } => *round,
        other => panic!("unexpected message {other:?}"),
    }
}

/// Receives the next message (skipping snapshots), or panics after `timeout`.
pub async fn recv_message(node: &mut Node, timeout: Duration) -> (NodeId, Message) {
    loop {
        match tokio::time::timeout(timeout, node.inbound.recv()).await {
            Ok(Some(Inbound::Message { from, message })) => return (from, message),
            Ok(Some(Inbound::Snapshot(_) | Inbound::Call(_))) => {}
            Ok(None) => panic!("{}: inbound closed", node.handle.node_id()),
            Err(_) => panic!("{}: no message within {timeout:?}", node.handle.node_id()),
        }
    }
}

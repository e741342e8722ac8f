//! Durable before sent: a vote request, a granted vote and an append acknowledgement each
//! promise something about the sender's disk; the disk must already hold it when it leaves.

use super::{Finding, ViolationKind};
use regent_raft::{Message, MessageBody};
use regent_storage::LogState;

/// Checks that the sender's durable state (`disk`) holds what `m` promises.
pub fn check_before_send(disk: &LogState, m: &Message) -> Result<(), Finding> {
    let hs = disk.hard_state;
    let durable_last = disk.last_index;
    let broken = match &m.body {
        MessageBody::RequestVote {
            pre_vote: false, ..
        } => !(hs.term > m.term || (hs.term == m.term && hs.vote == Some(m.from))),
        MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        } => !(hs.term > m.term || (hs.term == m.term && hs.vote == Some(m.to))),
        MessageBody::AppendEntriesResponse {
            success: true,
            match_index,
            ..
        } => durable_last < *match_index,
        _ => false,
    };
    if !broken {
        return Ok(());
    }
    let detail = format!(
        "{} sent {} to {} before it was durable (durable term {} vote {:?}, {} entries)",
        m.from, m.body, m.to, hs.term, hs.vote, durable_last
    );
    Err(Finding::new(ViolationKind::DurableBeforeSend, detail))
}

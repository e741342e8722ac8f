//! Messages exchanged by Raft nodes. Every message carries the sender's term; a message from a
//! newer term moves the receiver to that term (except pre-votes, which never change a term).

use super::types::{Entry, LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term; for a pre-vote request, the term the sender would campaign in.
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// A candidate asks for a vote (or, with `pre_vote`, whether it would get one).
    RequestVote {
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
        /// Set when the leader handed over with TimeoutNow: the leader's heartbeat round at the
        /// hand-over. A voter that has seen no newer round from that leader votes despite
        /// stickiness; one that has seen a newer round refuses, since the leader may have
        /// counted it toward a lease after the hand-over was abandoned.
        transfer_round: Option<u64>,
    },
    RequestVoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// The leader replicates entries after (`prev_log_index`, `prev_log_term`).
    AppendEntries {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        /// The leader's heartbeat round when this was sent, echoed back for the lease.
        round: u64,
    },
    AppendEntriesResponse {
        success: bool,
        /// On success: the last index known to match the leader's log, durable here.
        /// On rejection: the `prev_log_index` that was rejected.
        match_index: LogIndex,
        /// On rejection: the follower's term at the rejected index (if it has one) and the
        /// first index it holds of that term, or its last index + 1 when its log is shorter.
        conflict: Option<ConflictHint>,
        round: u64,
    },
    /// A liveness and lease probe; `commit` is capped at what the follower is known to hold.
    Heartbeat {
        commit: LogIndex,
        round: u64,
    },
    HeartbeatResponse {
        round: u64,
    },
    /// A follower installed a snapshot up to `last_index` (its term is in the snapshot): the
    /// leader resumes appending after it.
    SnapshotInstalled {
        last_index: LogIndex,
    },
    /// Leadership transfer: the leader tells an up-to-date voter to campaign at once. The
    /// shape of wire version 2; this build sends [`MessageBody::TimeoutNowBecause`], which the
    /// caller turns into this for a peer that speaks only version 2.
    TimeoutNow {
        round: u64,
    },
    /// A follower asks the leader for a read index on behalf of its client.
    ReadIndex {
        ctx: u64,
    },
    /// The leader's answer: the index to wait for, or `None` if it cannot serve the read.
    ReadIndexResponse {
        ctx: u64,
        index: Option<LogIndex>,
    },
    /// The leader of this term stepped down because its disk stalled past
    /// `persist_stall_max_ms`. Information only: the core does nothing with it; the caller of
    /// the node that leads next reads it to record why leadership moved. Appended last, so the
    /// encoding of the variants above is unchanged.
    StallStepDown,
    /// [`MessageBody::TimeoutNow`] with the caller's reason for the hand-over (`cause`), opaque
    /// to the core: the target's caller reads it back
    /// ([`RaftNode::transfer_campaign`](crate::RaftNode::transfer_campaign)) to record why
    /// leadership moved. Appended last (wire version 3): a version-2 peer gets
    /// [`MessageBody::without_cause`] instead, and its plain TimeoutNow reads as cause 0.
    TimeoutNowBecause {
        round: u64,
        cause: u8,
    },
}

/// How a follower tells the leader where its log diverges, so the leader skips a whole
/// conflicting term per round trip instead of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// The follower's term at the rejected index, or `None` when its log is shorter.
    pub term: Option<Term>,
    /// The first index of `term` in the follower's log, or its last index + 1.
    pub first_index: LogIndex,
}

impl MessageBody {
    /// Whether this is a leadership transfer's TimeoutNow, with or without a cause.
    pub fn is_timeout_now(&self) -> bool {
        matches!(
            self,
            MessageBody::TimeoutNow { .. } | MessageBody::TimeoutNowBecause { .. }
        )
    }

    /// The body in wire version 2's vocabulary: a TimeoutNow without its cause. `None` for a
    /// body version 2 has no word for (`StallStepDown`: information only, not sent).
    pub fn without_cause(self) -> Option<MessageBody> {
        match self {
            MessageBody::TimeoutNowBecause { round, .. } => Some(MessageBody::TimeoutNow { round }),
            MessageBody::StallStepDown => None,
            body => Some(body),
        }
    }

    /// A short name for traces and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResp",
            MessageBody::AppendEntries { .. } => "Append",
            MessageBody::AppendEntriesResponse { .. } => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::SnapshotInstalled { .. } => "SnapshotInstalled",
            MessageBody::TimeoutNow { .. } | MessageBody::TimeoutNowBecause { .. } => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
            MessageBody::StallStepDown => "StallStepDown",
        }
    }
}

/// One line per message body, for traces and logs: the kind, then its fields.
impl fmt::Display for MessageBody {
    fn fmt(&self, s: &mut fmt::Formatter<'_>) -> fmt::Result {
        s.write_str(self.kind())?;
        match self {
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => {
                write!(s, " last={last_log_index}/{last_log_term}")
            }
            MessageBody::RequestVoteResponse { granted, .. } => {
                write!(s, " granted={granted}")
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            } => {
                write!(
                s,
                " prev={prev_log_index}/{prev_log_term} n={} commit={leader_commit} round={round}",
                entries.len()
            )
            }
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                conflict,
                round,
            } => {
                write!(
                    s,
                    " ok={success} match={match_index} hint={conflict:?} round={round}"
                )
            }
            MessageBody::Heartbeat { commit, round } => {
                write!(s, " commit={commit} round={round}")
            }
            MessageBody::HeartbeatResponse { round } => {
                write!(s, " round={round}")
            }
            MessageBody::TimeoutNow { round } => write!(s, " round={round}"),
            MessageBody::TimeoutNowBecause { round, cause } => {
                write!(s, " round={round}")?;
                if *cause != 0 {
                    write!(s, " cause={cause}")?;
                }
                Ok(())
            }
            MessageBody::SnapshotInstalled { last_index } => {
                write!(s, " last={last_index}")
            }
            MessageBody::ReadIndex { ctx } => {
                write!(s, " ctx={ctx}")
            }
            MessageBody::ReadIndexResponse { ctx, index } => {
                write!(s, " ctx={ctx} index={index:?}")
            }
            MessageBody::StallStepDown => Ok(()),
        }
    }
}

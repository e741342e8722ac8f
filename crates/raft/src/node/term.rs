//! The term check every message from a peer goes through before it is handled (Raft §5.1):
//! a newer term is adopted, a stale message is dropped or answered with the current term, and a
//! vote request that stickiness refuses changes nothing at all.
//!
//! Invariant: a node's term never decreases, and it never adopts the term of a vote request it
//! refuses on stickiness grounds (the leader's lease relies on that refusal).

use super::*;

/// What the term check decided about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TermVerdict {
    /// The check dealt with the message (ignored it, or answered a stale one): go no further.
    Done,
    /// Handle the message in the current term, which may just have been adopted from it.
    /// `vote_refused`: a vote request is refused on stickiness grounds (always false for other
    /// messages), decided on the state before the message changed anything.
    Handle { vote_refused: bool },
}

impl RaftNode {
    /// Compares the message's term with ours and acts on the difference: adopts a newer term
    /// (following the sender when it leads that term), answers a stale leader or pre-candidate
    /// with our term, and ignores vote requests refused by stickiness.
    pub(super) fn step_term(&mut self, m: &Message) -> TermVerdict {
        // A vote request is handled whoever sends it, without consulting our configuration
        // (Raft §4.1; etcd and raft-rs do the same): ours may be stale — a promoted learner
        // that has not yet received the configurations making the candidate a voter — and
        // ignoring such a candidate can leave a joint configuration that needs our vote with
        // no leader ever. It is safe: a vote only counts where the candidate's configuration
        // names us, and we vote once per term and only for an up-to-date log. A removed node
        // that does not know it yet cannot disrupt a cluster with a live leader: stickiness
        // refuses it without adopting its term, and pre-vote keeps it from raising terms.
        // Decided on the state before this message changes it: adopting a hand-over's term
        // forgets the leader whose round the decision compares against.
        let vote_refused = match &m.body {
            MessageBody::RequestVote { transfer_round, .. } => {
                self.would_refuse_vote_request(self.now, m.from, m.term, *transfer_round)
            }
            _ => false,
        };
        if m.term > self.term {
            match &m.body {
                MessageBody::RequestVote { .. } if vote_refused => {
                    // Stickiness: we heard from a live leader within the minimum election
                    // timeout (or we are the leader). Refuse without even adopting the term, so
                    // a disruptive node cannot depose a healthy leader; the lease relies on it.
                    return TermVerdict::Done;
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match &m.body {
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                    // A deposed leader: tell it our term so it steps down.
                    self.send(
                        m.from,
                        self.term,
                        MessageBody::HeartbeatResponse { round: 0 },
                    );
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    self.send(
                        m.from,
                        self.term,
                        MessageBody::RequestVoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return TermVerdict::Done;
        }
        TermVerdict::Handle { vote_refused }
    }
}

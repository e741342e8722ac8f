//! Linearizable reads (Raft thesis §6.4): ReadIndex on the leader or through it, lease reads.
//!
//! Invariant: a read is released only with this term's no-op committed, a quorum round started
//! after the request acknowledged (or a valid lease), and the read index applied here.

use super::*;

impl RaftNode {
    pub(super) fn start_read(&mut self, ctx: u64, from: NodeId) {
        // A round started after the request: its acknowledgement by a quorum proves no newer
        // leader existed when the read arrived.
        self.broadcast_heartbeat();
        let lead = self.lead_mut();
        let round = lead.round;
        lead.reads.push_back(PendingRead {
            ctx,
            from,
            round,
            index: None,
        });
        self.advance_reads();
    }

    /// Gives pending reads their index once this term's no-op is committed (the commit index
    /// then covers every write acknowledged by any leader), and answers those whose round a
    /// quorum has acknowledged.
    pub(super) fn advance_reads(&mut self) {
        let committed = self.log.committed;
        let mut confirmed = Vec::new();
        if let Some(lead) = self.leader_state.as_mut() {
            let term_committed = lead.noop_index > LogIndex(0) && committed >= lead.noop_index;
            for r in lead.reads.iter_mut() {
                if r.index.is_none() && term_committed {
                    r.index = Some(committed);
                }
            }
            while let Some(&r) = lead.reads.front() {
                let Some(index) = r.index else { break };
                if r.round > lead.quorum_round {
                    break;
                }
                lead.reads.pop_front();
                confirmed.push((r, index));
            }
        }
        for (r, index) in confirmed {
            if r.from == self.id {
                self.reads_awaiting_apply.push_back((r.ctx, index));
            } else {
                let body = MessageBody::ReadIndexResponse {
                    ctx: r.ctx,
                    index: Some(index),
                };
                self.send(r.from, self.term, body);
            }
        }
        self.release_reads();
    }

    /// Delivers confirmed reads once this node has applied their index.
    pub(super) fn release_reads(&mut self) {
        let applied = self.log.applied;
        let states = &mut self.read_states;
        self.reads_awaiting_apply.retain(|&(ctx, index)| {
            let ready = index <= applied;
            if ready {
                states.push(ReadState {
                    ctx,
                    result: Ok(index),
                });
            }
            !ready
        });
    }

    /// Fails the reads this node was confirming as leader.
    pub(super) fn fail_reads(&mut self, err: ReadError) {
        let reads = match self.leader_state.as_mut() {
            Some(lead) => std::mem::take(&mut lead.reads),
            None => VecDeque::new(),
        };
        for r in reads {
            if r.from == self.id {
                self.read_states.push(ReadState {
                    ctx: r.ctx,
                    result: Err(err.clone()),
                });
            } else {
                let body = MessageBody::ReadIndexResponse {
                    ctx: r.ctx,
                    index: None,
                };
                self.send(r.from, self.term, body);
            }
        }
    }

    pub(super) fn fail_forwarded_reads(&mut self) {
        for ctx in std::mem::take(&mut self.reads_forwarded) {
            self.read_states.push(ReadState {
                ctx,
                result: Err(ReadError::NotLeader),
            });
        }
    }
}

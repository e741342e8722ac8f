//! Elections (Raft §5.2, pre-vote §9.6, check-quorum §6.4), stickiness and role changes.
//!
//! Invariant: at most one vote per term, and no vote while this node would still honour a
//! leader's lease (see `would_refuse_vote_request`).

use super::*;

impl RaftNode {
    /// Whether stickiness is in force at `now`: this node leads, or heard from a leader of its
    /// term (or restarted, or stepped down as leader) less than a minimum election timeout ago.
    /// While it is, the node ignores vote requests and pre-votes of a higher term — all of them
    /// except a hand-over campaign that [`would_refuse_vote_request`] lets through. A leader's
    /// lease rests on a quorum of nodes for which this holds.
    ///
    /// [`would_refuse_vote_request`]: Self::would_refuse_vote_request
    pub fn sticky_refuses_votes(&self, now: Nanos) -> bool {
        self.role == Role::Leader
            || now.saturating_sub(self.last_leader_contact) < self.config.election_timeout_min_ns()
    }

    /// Whether a vote request (or pre-vote) from `candidate` for `term`, arriving at `now`, would
    /// be ignored on stickiness grounds; `transfer_round` as in `RequestVote` (`Some` for a
    /// hand-over campaign). Under stickiness, a hand-over campaign is still accepted when this
    /// node is the leader handing over to `candidate`, or when it follows a leader, `term` is
    /// the very next one, and it has seen no newer round from that leader than `transfer_round`
    /// — never during the refusal window after a restart. The decision `step` takes, exposed
    /// for the simulator's lease checks and for tests.
    pub fn would_refuse_vote_request(
        &self,
        now: Nanos,
        candidate: NodeId,
        term: Term,
        transfer_round: Option<u64>,
    ) -> bool {
        if !self.sticky_refuses_votes(now) {
            return false;
        }
        if now < self.restart_refusal_until {
            return true;
        }
        let Some(round) = transfer_round else {
            return true;
        };
        if self.role == Role::Leader {
            // Our own hand-over: let the target win.
            return self.lead().transfer.is_none_or(|t| t.target != candidate);
        }
        !(self.leader.is_some() && term == self.term.next() && round >= self.leader_round_seen)
    }

    /// Whether this node campaigns when its election timer fires: it votes in its newest
    /// configuration, or in one the cluster may still be running under — the one in force at
    /// its commit index, or a newer one. A node its own newest (uncommitted) configuration
    /// leaves out may be the vote the others need: a leader of two voters that removed itself,
    /// appended C_new and crashed before sending it holds the longest log, so the remaining
    /// voter, whose joint configuration needs both votes, can never win; this node can. It
    /// counts the votes of its newest configuration, where its own does not count, leads
    /// only until that configuration is committed, and then steps down (Raft §4.2.2: a leader
    /// may manage a configuration it is not part of).
    pub(super) fn may_campaign(&self) -> bool {
        self.configs.current().is_voter(self.id)
            || self.configs.votes_since(self.log.committed, self.id)
    }

    /// Starts a (pre-)election. With `transfer_round` it is a hand-over campaign (after
    /// TimeoutNow): no pre-vote, and voters may accept it despite stickiness.
    pub(super) fn campaign(&mut self, pre_vote: bool, transfer_round: Option<u64>) {
        assert_ne!(self.role, Role::Leader, "a leader never campaigns");
        if !self.may_campaign() {
            return;
        }
        self.reset_election_timer();
        self.leader = None;
        self.votes.clear();
        let term = if pre_vote {
            self.role = Role::PreCandidate;
            self.term.next()
        } else {
            self.role = Role::Candidate;
            self.term = self.term.next();
            self.vote = Some(self.id);
            self.term
        };
        // Our own vote counts like any other: a pre-vote at once (it promises nothing), a vote
        // once our term and vote are durable (`count_own_vote`, from `advance`). A lone voter
        // that won before would lead a term it may forget in a crash, and lead it again.
        if pre_vote {
            self.votes.insert(self.id, true);
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voters_except_me() {
            self.send(
                peer,
                term,
                MessageBody::RequestVote {
                    pre_vote,
                    last_log_index,
                    last_log_term,
                    transfer_round,
                },
            );
        }
        // Reads forwarded to the old leader will not be answered by it any more.
        self.fail_forwarded_reads();
        self.count_votes(pre_vote);
    }

    pub(super) fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
        refused: bool,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let granted = can_vote && !refused && self.log.is_up_to_date(last_log_index, last_log_term);
        if granted && !pre_vote {
            self.vote = Some(from);
            self.reset_election_timer();
        }
        let reply_term = if granted { term } else { self.term };
        self.send(
            from,
            reply_term,
            MessageBody::RequestVoteResponse { pre_vote, granted },
        );
    }

    pub(super) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) {
        let expected = match (pre_vote, self.role) {
            (true, Role::PreCandidate) => {
                term == self.term.next() || (!granted && term == self.term)
            }
            (false, Role::Candidate) => term == self.term,
            _ => false,
        };
        if !expected || !self.configs.current().is_voter(from) {
            return;
        }
        self.votes.insert(from, granted);
        self.count_votes(pre_vote);
    }

    /// A candidate whose term and vote just became durable counts its own vote.
    pub(super) fn count_own_vote(&mut self) {
        let durable = self.durable_term_vote == (self.term, Some(self.id));
        if self.role == Role::Candidate && durable && !self.votes.contains_key(&self.id) {
            self.votes.insert(self.id, true);
            self.count_votes(false);
        }
    }

    pub(super) fn count_votes(&mut self, pre_vote: bool) {
        match quorum::vote_result(self.configs.current(), |id| self.votes.get(&id).copied()) {
            VoteResult::Won if pre_vote => self.campaign(false, None),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if self.role == Role::Leader {
            // We counted ourselves in every round of our lease: keep refusing votes until the
            // lease we advertised is certainly over.
            self.last_leader_contact = self.now;
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = if self.configs.current().is_voter(self.id) {
            Role::Follower
        } else {
            Role::Learner
        };
        if self.leader != leader {
            self.leader_round_seen = 0;
            self.fail_forwarded_reads();
        }
        self.fail_reads(ReadError::NotLeader);
        self.leader_state = None;
        self.leader = leader;
        if leader.is_some() {
            self.last_leader_contact = self.now;
        }
        self.votes.clear();
        self.reset_election_timer();
    }

    pub(super) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        assert_eq!(self.vote, Some(self.id));
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        let last = self.log.last_index();
        let progress = self
            .configs
            .current()
            .members()
            .into_iter()
            .filter(|&id| id != self.id)
            .map(|id| (id, Progress::new(last, self.now)))
            .collect();
        self.leader_state = Some(LeaderState {
            progress,
            round: 0,
            round_starts: VecDeque::new(),
            next_heartbeat_at: self.now,
            lease_until: 0,
            quorum_round: 0,
            lease_round_floor: 0,
            noop_index: LogIndex(0),
            uncommitted_bytes: 0,
            transfer: None,
            reads: VecDeque::new(),
            joint_since: self.configs.current().is_joint().then_some(self.now),
        });
        // Raft §8: a new leader commits an entry of its own term, which commits everything
        // before it; until it is applied the host must not write.
        let noop_index = self.append_entry(EntryPayload::Noop);
        self.lead_mut().noop_index = noop_index;
        self.start_round();
        self.broadcast_append();
        self.maybe_commit();
    }

    /// A message from the leader of our term: follow it, and remember the contact.
    pub(super) fn accept_leader(
        &mut self,
        from: NodeId,
        term: Term,
        round: u64,
    ) -> Result<(), StepError> {
        assert_eq!(term, self.term);
        if self.role == Role::Leader {
            return Err(StepError::SecondLeader {
                from,
                term,
                me: self.id,
            });
        }
        if self.role != Role::Follower && self.role != Role::Learner || self.leader != Some(from) {
            self.become_follower(term, Some(from));
        }
        self.last_leader_contact = self.now;
        self.leader_round_seen = self.leader_round_seen.max(round);
        self.reset_election_timer();
        Ok(())
    }

    pub(super) fn reset_election_timer(&mut self) {
        let min = self.config.election_timeout_min_ns();
        let jitter = ((self.rng.next_u64() as u128 * min as u128) >> 64) as u64;
        self.election_deadline = self.now + min + jitter;
    }
}

//! Heartbeat rounds, check-quorum, the lease, and the leadership hand-over that gives it up.
//!
//! Invariant: the lease rests on the newest round a quorum of the configuration in force
//! acknowledged, and never on a round at or below the last TimeoutNow sent.

use super::*;

impl RaftNode {
    /// Every timer `tick_leader` checks has its instant in `next_leader_deadline`: change them
    /// together.
    pub(super) fn tick_leader(&mut self) {
        // A snapshot stream that made no progress in time is asked for again (hashicorp/raft
        // #212, dgraph #2707: no follower stays in the snapshot state forever).
        let now = self.now;
        for p in self.lead_mut().progress.values_mut() {
            if let ProgressState::Snapshot { retry_at, .. } = p.state {
                if now > retry_at {
                    p.become_probe(p.match_index.next());
                }
            }
        }
        if self.config.check_quorum {
            let window = self.config.election_timeout_min_ns();
            let progress = &self.lead().progress;
            let me = self.id;
            let active = quorum::is_quorum(self.configs.current(), |id| {
                id == me
                    || progress
                        .get(&id)
                        .is_some_and(|p| now.saturating_sub(p.last_heard) < window)
            });
            if !active {
                self.become_follower(self.term, None);
                return;
            }
        }
        if let Some(r) = &self.inflight {
            // A leader whose disk stalls must not keep leading (etcd #13527): its followers
            // would never elect anyone else while it answers heartbeats.
            if !self.stall_step_down_held
                && self.now.saturating_sub(r.issued_at) > self.config.persist_stall_max_ns()
            {
                // Tell the followers why no more heartbeats come: the next leader records it.
                for peer in self.voters_except_me() {
                    self.send(peer, self.term, MessageBody::StallStepDown);
                }
                self.become_follower(self.term, None);
                return;
            }
        }
        if let Some(since) = self.lead().joint_since {
            let timeout = self.config.conf_change_timeout_ns();
            if self.configs.current().is_joint() && self.now.saturating_sub(since) > timeout {
                // The new voters could not form a quorum in time (raft-rs #192): go back.
                let _ = self.abort_membership_change(self.now);
            }
        }
        let Some(lead) = self.leader_state.as_mut() else {
            return; // Nothing of what follows concerns a node that is no longer leader.
        };
        if let Some(t) = lead.transfer {
            if now >= t.deadline {
                // The target did not take over in time: resume. The lease comes back only with
                // rounds newer than any TimeoutNow we sent (see `lease_round_floor`).
                lead.transfer = None;
            }
        }
        if now >= lead.next_heartbeat_at {
            self.broadcast_heartbeat();
        }
    }

    /// The earliest instant at which one of `tick_leader`'s checks fires. A check that fires
    /// once `now - since > limit` fires first at `since + limit + 1`.
    pub(super) fn next_leader_deadline(&self) -> Nanos {
        let lead = self.lead();
        let after = |since: Nanos, limit: Nanos| since.saturating_add(limit).saturating_add(1);
        let mut next = lead.next_heartbeat_at;
        for p in lead.progress.values() {
            if let ProgressState::Snapshot { retry_at, .. } = p.state {
                next = next.min(retry_at.saturating_add(1));
            }
        }
        if self.config.check_quorum {
            // A member counts as heard from until `last_heard + window`; the quorum lapses
            // when fewer than a quorum are left, at the quorum value of those instants.
            let window = self.config.election_timeout_min_ns();
            let me = self.id;
            let lapses = quorum::quorum_value(
                self.configs.current(),
                |id| {
                    if id == me {
                        Nanos::MAX
                    } else {
                        lead.progress
                            .get(&id)
                            .map_or(0, |p| p.last_heard.saturating_add(window))
                    }
                },
                Nanos::MAX,
            );
            next = next.min(lapses);
        }
        if let Some(r) = self
            .inflight
            .as_ref()
            .filter(|_| !self.stall_step_down_held)
        {
            next = next.min(after(r.issued_at, self.config.persist_stall_max_ns()));
        }
        if let (Some(since), true) = (lead.joint_since, self.configs.current().is_joint()) {
            next = next.min(after(since, self.config.conf_change_timeout_ns()));
        }
        if let Some(t) = lead.transfer {
            next = next.min(t.deadline);
        }
        next
    }

    /// Starts a new round and sends every follower a heartbeat carrying it.
    pub(super) fn broadcast_heartbeat(&mut self) {
        self.start_round();
        let lead = self.lead();
        let (round, committed) = (lead.round, self.log.committed);
        let heartbeats: Vec<(NodeId, LogIndex)> = lead
            .progress
            .iter()
            .map(|(&peer, p)| (peer, committed.min(p.match_index)))
            .collect();
        for (peer, commit) in heartbeats {
            self.send(peer, self.term, MessageBody::Heartbeat { commit, round });
        }
    }

    /// Sends TimeoutNow to the transfer target once its log matches ours; until then keeps
    /// replicating to it.
    pub(super) fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let Some(lead) = self.leader_state.as_mut() else {
            return;
        };
        let Some(t) = lead.transfer else { return };
        let caught_up = lead
            .progress
            .get(&t.target)
            .is_some_and(|p| p.match_index == last);
        if caught_up {
            // Voters that saw a round newer than this one refuse the hand-over campaign, and
            // no round up to this one may extend our lease any more.
            lead.lease_round_floor = lead.lease_round_floor.max(lead.round);
            let round = lead.round;
            let cause = t.cause;
            self.send(
                t.target,
                self.term,
                MessageBody::TimeoutNowBecause { round, cause },
            );
        } else {
            self.send_append(t.target);
        }
    }

    pub(super) fn start_round(&mut self) {
        let (now, interval) = (self.now, self.config.heartbeat_interval_ns());
        let lead = self.lead_mut();
        lead.round += 1;
        lead.round_starts.push_back((lead.round, now));
        if lead.round_starts.len() > ROUNDS_REMEMBERED_MAX {
            lead.round_starts.pop_front();
        }
        lead.next_heartbeat_at = now + interval;
        // A lone voter is its own quorum.
        self.update_lease();
    }

    /// lease = start of the newest round a quorum answered + min election timeout × (1 − drift).
    /// Every voter that answered round r heard from us after it started, so it refuses votes
    /// until at least min election timeout after that on its own clock.
    pub(super) fn update_lease(&mut self) {
        let (me, now, lease_ns) = (self.id, self.now, self.config.lease_ns());
        let lead = self
            .leader_state
            .as_mut()
            .expect("only a leader has a lease");
        let (round, progress) = (lead.round, &lead.progress);
        let acked = quorum::quorum_value(
            self.configs.current(),
            |id| {
                if id == me {
                    round
                } else {
                    progress.get(&id).map_or(0, |p| p.acked_round)
                }
            },
            u64::MAX,
        );
        // The lease rests only on voters whose clocks agree with ours (`set_lease_clocks`);
        // read confirmations need no clock and count every voter.
        let clocks = self.lease_clocks.as_ref();
        let lease_acked = quorum::quorum_value(
            self.configs.current(),
            |id| {
                if id == me {
                    round
                } else if clocks.is_some_and(|agreeing| !agreeing.contains(&id)) {
                    0
                } else {
                    progress.get(&id).map_or(0, |p| p.acked_round)
                }
            },
            u64::MAX,
        );
        let news = acked > lead.quorum_round;
        lead.quorum_round = lead.quorum_round.max(acked);
        // Rounds too old to extend the lease are of no further use. (Older acknowledged
        // rounds are kept otherwise: a configuration change recomputes the lease from them.)
        while lead
            .round_starts
            .front()
            .is_some_and(|&(r, started)| r < round && started + lease_ns <= now)
        {
            lead.round_starts.pop_front();
        }
        let lease_allowed = lead.transfer.is_none() && lease_acked > lead.lease_round_floor;
        // Rounds are remembered in increasing order (up to `ROUNDS_REMEMBERED_MAX` of them).
        let started = lead
            .round_starts
            .binary_search_by_key(&lease_acked, |&(r, _)| r)
            .ok()
            .map(|at| lead.round_starts[at].1);
        if let (Some(started), true) = (started, lease_allowed) {
            lead.lease_until = lead.lease_until.max(started + lease_ns);
        }
        if news {
            self.advance_reads();
        }
    }

    pub(super) fn is_writable(&self, now: Nanos) -> bool {
        self.leader_state.as_ref().is_some_and(|lead| {
            lead.transfer.is_none()
                && now < lead.lease_until
                && lead.noop_index > LogIndex(0)
                && self.log.applied >= lead.noop_index
        })
    }
}

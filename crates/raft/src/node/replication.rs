//! Replication (Raft §5.3) and commit (§5.4.2): appends, their answers, conflict hints.
//!
//! Invariant: a follower truncates only from the first real conflict; the leader commits by
//! counting only entries of its own term, counting itself only once durable.

use super::*;

impl RaftNode {
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        round: u64,
    ) -> Result<(), StepError> {
        for (i, e) in entries.iter().enumerate() {
            let ok = e.index.0 == prev_log_index.0 + 1 + i as u64
                && e.term <= self.term
                && (i == 0 || e.term >= entries[i - 1].term)
                && e.term >= prev_log_term;
            if !ok {
                return Err(StepError::MalformedEntries {
                    from,
                    prev: prev_log_index,
                });
            }
        }
        let (mut prev, mut prev_term, mut entries) = (prev_log_index, prev_log_term, &entries[..]);
        let committed = self.log.committed;
        if prev < committed {
            // Everything up to our commit index matches the leader's log (leader completeness):
            // skip the part of the message it covers.
            let skip = ((committed.0 - prev.0) as usize).min(entries.len());
            entries = &entries[skip..];
            prev = committed;
            prev_term = self
                .log
                .term(committed)
                .expect("commit index inside the log");
        }
        if !self.log.matches(prev, prev_term) {
            let conflict = if prev > self.log.last_index() {
                ConflictHint {
                    term: None,
                    first_index: self.log.last_index().next(),
                }
            } else {
                ConflictHint {
                    term: self.log.term(prev),
                    first_index: self.log.first_index_of_term_at(prev),
                }
            };
            let body = MessageBody::AppendEntriesResponse {
                success: false,
                match_index: prev_log_index,
                conflict: Some(conflict),
                round,
            };
            self.send(from, self.term, body);
            return Ok(());
        }
        let (last_new, changed_from) = self.log.append_after(prev, entries);
        if let Some(from) = changed_from {
            // Configurations take effect when appended, and are forgotten when truncated.
            self.configs.truncate_from(from);
            for e in entries.iter().filter(|e| e.index >= from) {
                if let EntryPayload::Config(m) = &e.payload {
                    self.configs.push(e.index, m.clone());
                }
            }
            self.on_membership_changed();
        }
        self.log.commit_to(leader_commit.min(last_new));
        let body = MessageBody::AppendEntriesResponse {
            success: true,
            match_index: last_new,
            conflict: None,
            round,
        };
        self.send(from, self.term, body);
        Ok(())
    }

    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        match_index: LogIndex,
        conflict: Option<ConflictHint>,
        round: u64,
    ) {
        self.heard_from(from, round);
        let Some(p) = self
            .leader_state
            .as_mut()
            .and_then(|l| l.progress.get_mut(&from))
        else {
            return;
        };
        if success {
            if match_index > self.log.last_index() {
                return; // Not an index we ever sent: ignore rather than trust it.
            }
            if p.acknowledge(match_index) {
                self.maybe_commit();
            }
            // Committing may have removed this leader from the configuration: it then has no
            // transfer and no progress left, and what follows does nothing.
            let transfer = self.leader_state.as_ref().and_then(|l| l.transfer);
            if transfer.is_some_and(|t| t.target == from) {
                self.maybe_send_timeout_now();
            }
            self.send_append(from);
            return;
        }
        // A rejection of `match_index` as prev: find where to probe next.
        let rejected = match_index;
        let stale = match p.state {
            ProgressState::Replicate => rejected <= p.match_index,
            ProgressState::Snapshot { .. } => true,
            ProgressState::Probe => rejected != p.next_index.prev(),
        };
        if stale || rejected == LogIndex(0) {
            return;
        }
        let next = match conflict {
            None => rejected,
            Some(ConflictHint {
                term: None,
                first_index,
            }) => first_index,
            Some(ConflictHint {
                term: Some(term),
                first_index,
            }) => match self.log.last_index_of_term(term, rejected) {
                Some(i) => i.next(),
                None => first_index,
            },
        };
        let p = self
            .lead_mut()
            .progress
            .get_mut(&from)
            .expect("checked above");
        p.become_probe(next.min(rejected));
        self.send_append(from);
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        self.heard_from(from, round);
        let last = self.log.last_index();
        let Some(p) = self.lead_mut().progress.get_mut(&from) else {
            return;
        };
        if p.match_index < last {
            p.maybe_lost(round);
            self.send_append(from);
        }
    }

    /// Records that `from` answered in our term, which counts for CheckQuorum and the lease.
    pub(super) fn heard_from(&mut self, from: NodeId, round: u64) {
        let now = self.now;
        let lead = self.lead_mut();
        let current_round = lead.round;
        let Some(p) = lead.progress.get_mut(&from) else {
            return;
        };
        p.last_heard = now;
        if round > p.acked_round && round <= current_round {
            p.acked_round = round;
            self.update_lease();
        }
    }

    /// Sends `to` the entries it needs next, if its progress allows; asks for a snapshot when
    /// they were compacted away. Does nothing on a node that is not (or no longer) leader.
    pub(super) fn send_append(&mut self, to: NodeId) {
        let Some(lead) = self.leader_state.as_mut() else {
            return;
        };
        let round = lead.round;
        let Some(p) = lead.progress.get_mut(&to) else {
            return;
        };
        if p.is_paused(self.config.inflight_max) {
            return;
        }
        if p.state == ProgressState::Replicate && p.next_index > self.log.last_index() {
            return; // Nothing new; heartbeats carry the commit index.
        }
        let prev = p.next_index.prev();
        let Some(prev_term) = self.log.term(prev) else {
            // The entries this follower needs were compacted away: it needs a snapshot.
            let at_least = self.log.snapshot_index();
            let retry_at = self.now.saturating_add(self.config.snapshot_timeout_ns());
            p.become_snapshot(at_least, retry_at);
            self.snapshot_sends.push(SnapshotRequest { to, at_least });
            return;
        };
        let entries = self.log.slice(
            p.next_index,
            self.config.append_entries_max,
            self.config.append_bytes_max,
        );
        let last = entries.last().map_or(prev, |e| e.index);
        let had_entries = !entries.is_empty();
        p.sent(last, had_entries, round);
        let body = MessageBody::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.log.committed,
            round,
        };
        self.send(to, self.term, body);
    }

    pub(super) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = match &self.leader_state {
            Some(lead) => lead.progress.keys().copied().collect(),
            None => Vec::new(),
        };
        for peer in peers {
            self.send_append(peer);
        }
    }

    /// Commits the highest index a quorum holds durably, if it is of the current term (§5.4.2).
    pub(super) fn maybe_commit(&mut self) -> bool {
        let me = self.id;
        let persisted = self.log.persisted;
        let progress = &self.lead().progress;
        let index = quorum::quorum_value(
            self.configs.current(),
            |id| {
                if id == me {
                    persisted
                } else {
                    progress.get(&id).map_or(LogIndex(0), |p| p.match_index)
                }
            },
            LogIndex(u64::MAX),
        );
        if index <= self.log.committed || self.log.term(index) != Some(self.term) {
            return false;
        }
        let mut i = self.log.committed.next();
        while i <= index {
            if let Some(Entry {
                term,
                payload: EntryPayload::Normal(data),
                ..
            }) = self.log.entry(i)
            {
                if *term == self.term {
                    let lead = self.leader_state.as_mut().expect("only a leader commits");
                    lead.uncommitted_bytes = lead
                        .uncommitted_bytes
                        .saturating_sub(entry_bytes(data.len()));
                }
            }
            i = i.next();
        }
        self.log.commit_to(index);
        self.advance_reads();
        self.after_config_commit();
        true
    }
}

//! Carrying out a replica's actions, as the daemon's driver does with real I/O: messages onto
//! the packet simulator, batches onto the storage simulator, snapshot streams and the chunks
//! they bring, compactions, forwarded host reports, hand-overs ended, and answers to the
//! workload's clients and the fencer.
//!
//! Invariant: a node is checked (`observe`) after every batch of its actions.

use super::Cluster;
use crate::checker::{durability, history, Finding, ViolationKind};
use crate::hosts::{FENCE, HOST_REPORT};
use crate::snapshot::ChunkArrival;
use crate::time::Event;
use regent_raft::{Entry, LogIndex, Message};
use regent_replica::{Action, Persist};
use regent_storage::{LogStorage, StateFlush};

impl Cluster {
    /// Collects the node's output and carries it out: sends what may go now, starts a durable
    /// write when none is in progress; then checks the node.
    pub(super) fn drive(&mut self, i: usize) {
        let Some(replica) = self.nodes[i].replica.as_mut() else {
            return;
        };
        let mut actions = Vec::new();
        replica.poll(&mut actions);
        let healthy = replica.clock_status().healthy;
        if !healthy && self.env.tracing() {
            let line = format!(
                "n{} sees a clock drift: {:?}",
                i + 1,
                replica.clock_status()
            );
            self.env.note(line);
        }
        self.clock_drift_seen |= !healthy;
        if let (Some(at), None, false) = (self.clock_changed_at, self.clock_detect_ns, healthy) {
            self.clock_detect_ns = Some(self.env.now() - at);
        }
        self.carry_out(i, actions);
        self.observe(i);
        self.operator.check_handovers(&self.nodes[i]);
        self.maybe_finish_stop(i);
    }

    /// Carries out the replica's actions in order, as the daemon's driver does with real I/O.
    pub(super) fn carry_out(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Read { token, result } => {
                    let node = &self.nodes[i];
                    let op = token as usize;
                    if let Err(f) = self
                        .workload
                        .read_confirmed(&mut self.env, node, op, result)
                    {
                        self.violation(f);
                    }
                }
                Action::SendSnapshot { to } => {
                    let (env, network) = (&mut self.env, &mut self.network);
                    let to = (to.0 - 1) as usize;
                    if let Err(f) = self.snapshots.start(env, network, &self.nodes, i, to) {
                        self.violation(f);
                    }
                }
                Action::Send(m) => self.send(i, m),
                Action::SoftState(_) => {}
                Action::Demote { term } => {
                    if let Some(gate) = self.promotion_gate {
                        let delay = self.env.rng.below(gate.delay_ns_max + 1);
                        let event = Event::DemoteDone {
                            node: i,
                            incarnation: self.nodes[i].incarnation,
                            term,
                        };
                        self.env.schedule(delay, event);
                    }
                }
                Action::Promote { term, .. } => {
                    if let Some(gate) = self.promotion_gate {
                        let delay = self.env.rng.below(gate.delay_ns_max + 1);
                        let ok = self.env.rng.below(100) >= gate.fail_pct;
                        self.promotions += 1;
                        self.promotions_failed += u64::from(!ok);
                        let event = Event::PromotionDone {
                            node: i,
                            incarnation: self.nodes[i].incarnation,
                            term,
                            ok,
                        };
                        self.env.schedule(delay, event);
                    }
                }
                Action::Persist(persist) => self.start_write(i, persist),
                Action::PersistState(flush) => self.start_state_write(i, flush),
                Action::Applied(entries) => self.on_applied(i, &entries),
                Action::Fatal(err) => {
                    let detail = format!("{}: the state machine failed: {err}", self.nodes[i].id);
                    self.violation(Finding::new(ViolationKind::Contract, detail));
                }
                Action::Proposal { token, outcome } if token & FENCE != 0 => {
                    if let Err(f) = self.hosts.decided(&mut self.env, token, outcome) {
                        self.violation(f);
                    }
                }
                // Nobody waits for a journal report's answer.
                Action::Proposal { token, .. } if token & HOST_REPORT != 0 => {}
                // Nor for the operator's maintenance (its effect is checked on the replicas).
                Action::Proposal { token, .. } if token & crate::maintenance::MAINTENANCE != 0 => {}
                Action::Proposal { token, outcome } => {
                    self.workload
                        .proposal_decided(&mut self.env, token, outcome);
                }
                Action::Compact(index) => self.compact(i, index),
                Action::Handover { outcome, .. } => {
                    self.operator
                        .handover_ended(&mut self.env, &self.nodes[i], &outcome);
                }
                Action::ForwardHostReport {
                    to,
                    applied,
                    checkpoint,
                } => {
                    let to = (to.0 - 1) as usize;
                    let event = Event::HostReport {
                        from: i,
                        to,
                        applied,
                        checkpoint,
                    };
                    self.network.ship(&mut self.env, i, to, event);
                }
                Action::InstallChunk { from: _, chunk } => self.install_chunk(i, &chunk),
                Action::ClockStamp { to, stamp } => {
                    let to = (to.0 - 1) as usize;
                    let event = Event::ClockStamp { from: i, to, stamp };
                    self.network.ship(&mut self.env, i, to, event);
                }
                Action::InstallAnswer { token, verdict } => {
                    let (env, network, nodes) = (&mut self.env, &mut self.network, &mut self.nodes);
                    let arrival = self
                        .snapshots
                        .answered(env, network, nodes, i, token, verdict);
                    if let ChunkArrival::Installed { to, applied } = arrival {
                        self.watches[to].snapshot_installed(applied);
                    }
                }
            }
        }
    }

    pub(super) fn send(&mut self, from: usize, m: Message) {
        if let Err(f) = durability::check_before_send(self.nodes[from].disk.store.state(), &m) {
            self.violation(f);
        }
        if self.env.tracing() {
            let line = format!("send {} -> {} {} {}", m.from, m.to, m.term, m.body);
            self.env.note(line);
        }
        let to = (m.to.0 - 1) as usize;
        assert!(to < self.nodes.len(), "message to unknown {}", m.to);
        self.network.send(&mut self.env, from, to, m);
    }

    /// The disk starts writing a batch; it becomes durable when `WriteDone` arrives (a crash
    /// before then loses it).
    pub(super) fn start_write(&mut self, i: usize, persist: Persist) {
        let healed = self.heal_at.is_some();
        let lag = if self.layout.slow.contains(&i) {
            self.layout.lag_ns
        } else {
            0
        };
        let latency = self.disk_faults.latency(&mut self.env.rng, healed) + lag;
        self.nodes[i].disk.start_write(persist);
        let incarnation = self.nodes[i].incarnation;
        self.env.schedule(
            latency,
            Event::WriteDone {
                node: i,
                incarnation,
            },
        );
    }

    /// The durable write of a batch completes: it becomes durable all at once, committed
    /// entries are applied, clients answered, persisted messages sent.
    pub(super) fn write_done(&mut self, i: usize, incarnation: u64) {
        let node = &mut self.nodes[i];
        if node.incarnation != incarnation || node.replica.is_none() {
            return; // The node crashed first: the write is lost.
        }
        let id = node.id;
        // The vote is checked before storage sees it: the simulator's own record, not storage's
        // validation, is what says a node voted twice.
        if let Some(hs) = node.disk.writing().and_then(|p| p.batch.hard_state) {
            if let Err(f) = self.votes.on_durable(id, &hs) {
                self.violation(f);
            }
        }
        let (persist, results) = self.nodes[i].disk.finish_write();
        let results = match results {
            Ok(results) => results,
            Err(err) => {
                let detail = format!("{id}: storage refused a Ready: {err}");
                self.violation(Finding::new(ViolationKind::Contract, detail));
                return;
            }
        };
        debug_assert!(results.is_empty(), "the replica applies, not the batch");
        let store = &self.nodes[i].disk.store;
        let batch = &persist.batch;
        let durable =
            self.facts
                .on_durable_entries(id, |index| store.term(index).ok(), &batch.entries);
        if let Err(f) = durable {
            self.violation(f);
        }
        // The messages that promise durability go out the moment it holds, before the replica
        // hears of it (as the daemon's disk thread sends them).
        let mut actions: Vec<Action> = persist.then_send.into_iter().map(Action::Send).collect();
        let replica = self.nodes[i].live();
        replica.persisted(persist.number, &mut actions);
        self.carry_out(i, actions);
        self.drive(i);
    }

    /// The replica applied these committed entries (in memory): the same entry at each index
    /// on every node, and the host reports they carry are checked.
    fn on_applied(&mut self, i: usize, entries: &[Entry]) {
        let id = self.nodes[i].id;
        let applied = entries.iter().map(|e| self.facts.on_apply(id, e));
        let reports = entries.iter().map(|e| self.hosts.check_applied(e));
        let mut findings: Vec<Finding> = applied.chain(reports).filter_map(Result::err).collect();
        for e in entries {
            match history::records_in(e) {
                Ok(records) => {
                    for record in records {
                        if let Err(f) = history::check_record(&self.facts, e, &record) {
                            findings.push(f);
                        }
                        self.history_terms.insert(record.term);
                        if record.cause == regent_replica::Cause::DiskStall {
                            self.history_stall_terms.insert(record.term);
                        }
                    }
                }
                Err(f) => findings.push(f),
            }
        }
        for f in findings {
            self.violation(f);
        }
    }

    /// The disk starts writing a layer of the state machine; it lands when `StateWritten`
    /// arrives (not durably: a crash before the next durable write goes back before it).
    fn start_state_write(&mut self, i: usize, flush: StateFlush) {
        let latency = self.disk_faults.latency(&mut self.env.rng, true);
        let incarnation = self.nodes[i].incarnation;
        let event = Event::StateWritten {
            node: i,
            incarnation,
            flush,
        };
        self.env.schedule(latency, event);
    }

    /// A layer of the state machine is written.
    pub(super) fn state_written(&mut self, i: usize, incarnation: u64, flush: StateFlush) {
        let node = &mut self.nodes[i];
        if node.incarnation != incarnation || node.replica.is_none() {
            return; // The node crashed first: the layer is lost with the rest of its memory.
        }
        if let Err(err) = node.disk.store.write_state(&flush) {
            let detail = format!("{}: storage refused a state layer: {err}", node.id);
            self.violation(Finding::new(ViolationKind::Contract, detail));
            return;
        }
        let mut actions = Vec::new();
        node.live().state_persisted(flush.applied(), &mut actions);
        self.carry_out(i, actions);
        self.drive(i);
    }

    /// The replica hands a snapshot chunk to the disk (never while a batch is being written);
    /// storage's verdict goes straight back to the replica.
    fn install_chunk(&mut self, i: usize, chunk: &[u8]) {
        let Some(now) = self.nodes[i].local_now(self.env.now()) else {
            return;
        };
        assert!(
            !self.nodes[i].disk.is_writing(),
            "n{}: a snapshot chunk handed out while a batch is being written",
            i + 1
        );
        let store = &mut self.nodes[i].disk.store;
        let result = store.install_chunk(chunk);
        if result.is_err() {
            store.install_abort();
        }
        let applied = store.state().applied;
        let mut actions = Vec::new();
        self.nodes[i]
            .live()
            .chunk_installed(result, applied, now, &mut actions);
        self.carry_out(i, actions);
    }

    /// The replica's compaction policy: the disk drops its log through `index`.
    pub(super) fn compact(&mut self, i: usize, index: LogIndex) {
        let node = &mut self.nodes[i];
        let replica = node.replica.as_mut().expect("live");
        match node.disk.store.compact_log(index) {
            Ok(()) => {
                replica.compacted(index);
                self.compactions += 1;
            }
            Err(err) => {
                replica.compaction_failed();
                let detail = format!("{}: compaction at {index} failed: {err}", node.id);
                self.violation(Finding::new(ViolationKind::Contract, detail));
            }
        }
    }
}

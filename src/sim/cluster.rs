//! One simulated cluster, run from a seed: the real `RaftNode` core on every node, a network that
//! delays, loses, duplicates, reorders and partitions messages, disks whose unfinished writes a
//! crash loses, drifting clocks, and clients whose history is checked at the end.
//!
//! Invariant: everything is decided by the seed. The simulator owns the only clock (real
//! simulated nanoseconds) and the only random generator; a run is a pure function of its
//! `SimConfig`.

use super::checker::Checker;
use super::linearizability::{self, OpKind, Operation, Verdict};
use crate::raft::{
    ConfChange, Config, LogIndex, Membership, Message, MessageBody, Nanos, NodeId, ProposeError,
    RaftNode, RaftRng, ReadError, Role, SplitMix64, Term,
};
use crate::replica::{Action, Persist, ProposalOutcome, ReadMode, Replica, Token};
use crate::storage::{
    ApplyResult, ChangeKind, Command, Identity, InstallProgress, LogStorage, MemStorage, Proposal,
    Response, SessionSeq, SnapshotMeta, StorageError, StorageOptions,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

const MS: u64 = 1_000_000;

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Simulated time with faults before healing.
    pub safety_ms: u64,
    /// Simulated time allowed after healing for a leader to be elected and writes to settle.
    pub liveness_ms_max: u64,
    /// Events processed at most in one run.
    pub steps_max: u64,
    /// Keep a readable trace of the last events (for a failing seed's replay).
    pub trace: bool,
}

impl SimConfig {
    pub fn new(seed: u64, nodes: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            safety_ms: 3000,
            liveness_ms_max: 15_000,
            steps_max: 3_000_000,
            trace: false,
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug, Default)]
pub struct SimOutcome {
    pub violations: Vec<String>,
    pub elections: u64,
    pub commits: u64,
    pub election_after_heal_ns: u64,
    /// Leadership transfers completed (the target took over in the next term), and linearizable
    /// reads completed (ReadIndex, lease and log reads).
    pub transfers: u64,
    pub reads: u64,
    /// Membership changes accepted by a leader (add learner, promote, remove, abort).
    pub conf_changes: u64,
    /// Snapshots taken (log compactions) and installed on followers.
    pub snapshots: u64,
    /// Writes sent again after an unknown outcome (checked for exactly-once application).
    pub retries: u64,
    pub trace: Vec<String>,
}

/// Per-run fault rates, drawn from the seed so that campaigns cover calm and stormy clusters.
#[derive(Clone, Debug)]
struct Faults {
    /// Small batches split a new leader's catch-up from its no-op, which is where committing
    /// an older term's entry by counting (Raft figure 8) shows.
    append_entries_max: usize,
    inflight_max: usize,
    /// Small thresholds compact often, so lagging and restarted followers need snapshots.
    compaction_entries_max: u64,
    loss_ppm: u64,
    dup_ppm: u64,
    delay_min_ns: u64,
    delay_max_ns: u64,
    /// Messages held far longer than an election timeout (a stuck queue, a retransmission
    /// after a long stall): what makes stale vote requests and hand-overs arrive late.
    long_delay_ppm: u64,
    /// Mean time between fault events (partitions, crashes, heals).
    fault_every_ns: u64,
    disk_min_ns: u64,
    disk_max_ns: u64,
    disk_stall_ppm: u64,
}

#[derive(Clone, Debug)]
enum Event {
    Tick(usize),
    Deliver(Message),
    WriteDone {
        node: usize,
        incarnation: u64,
    },
    Restart(usize),
    Fault,
    ClientStart(usize),
    ClientTimeout {
        client: usize,
        op: usize,
    },
    Heal,
    /// Chunk `k` of snapshot transfer `id` reaches its receiver.
    SnapshotChunk {
        id: u64,
        k: usize,
    },
    /// The receiver's acknowledgement of chunk `k` reaches the sender.
    SnapshotAck {
        id: u64,
        k: usize,
    },
}

/// A snapshot being streamed from a leader to a follower, chunk by chunk, each acknowledged.
struct SnapshotTransfer {
    from: usize,
    to: usize,
    /// The incarnations of both ends when it started: a crash of either ends it.
    incarnations: (u64, u64),
    chunks: Vec<Vec<u8>>,
    meta: SnapshotMeta,
}

struct SimNode {
    id: NodeId,
    /// The replica (core and its glue), or `None` while the node is down.
    replica: Option<Replica>,
    incarnation: u64,
    clock_offset: u64,
    clock_rate_ppm: i64,
    /// The node's disk: the same storage contract as redb, in memory. It survives crashes;
    /// a write in progress when the node crashes never reaches it.
    disk: MemStorage,
    /// The batch being written, if any.
    writing: Option<Persist>,
    was_leader_in: Option<Term>,
    last_commit: LogIndex,
    last_applied: LogIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientOp {
    Write {
        key: u64,
        value: u64,
        seq: u64,
    },
    LogRead {
        key: u64,
    },
    LeaseRead {
        key: u64,
    },
    /// Opens the client's exactly-once session.
    Register,
    /// A ReadIndex read, on any node (followers ask the leader).
    IndexRead {
        key: u64,
    },
}

struct Client {
    leader_hint: Option<NodeId>,
    /// The operation in progress: its history index, or a not yet accepted request.
    current: Option<usize>,
    pending_request: Option<ClientOp>,
    done: bool,
    /// The exactly-once session (its client id), once registered.
    session: Option<u64>,
    registering_until: Nanos,
    next_seq: u64,
    /// The request of the current operation, and how many attempts it has had: a write whose
    /// outcome is unknown is retried with the same session sequence number.
    last_request: Option<ClientOp>,
    attempts: u32,
}

/// Attempts of one write before the client gives up on it (its outcome then stays unknown).
const WRITE_ATTEMPTS_MAX: u32 = 4;

/// Replica tokens: a history operation's index, or a client's session registration with this
/// bit set.
const REGISTRATION: Token = 1 << 63;

pub struct Cluster {
    cfg: SimConfig,
    rng: SplitMix64,
    faults: Faults,
    now: Nanos,
    seq: u64,
    queue: BinaryHeap<Reverse<(Nanos, u64)>>,
    events: BTreeMap<u64, Event>,
    nodes: Vec<SimNode>,
    /// Directed links that drop everything: (from, to) as node positions.
    blocked: BTreeSet<(usize, usize)>,
    healed: bool,
    heal_at: Nanos,
    clients: Vec<Client>,
    history: Vec<Operation>,
    transfers: BTreeMap<u64, SnapshotTransfer>,
    transfer_seq: u64,
    /// Hand-overs started: (target, term of the leader that started it).
    transfers_started: Vec<(NodeId, Term)>,
    /// Every write puts a value never written before.
    next_value: u64,
    /// Whether each history op ended in an acknowledged write: (index, term).
    acked_writes: Vec<(LogIndex, Term)>,
    failed_ops: BTreeSet<usize>,
    checker: Checker,
    outcome: SimOutcome,
    trace: VecDeque<String>,
    first_writable_after_heal: Option<Nanos>,
}

impl Cluster {
    pub fn new(cfg: SimConfig) -> Cluster {
        assert!(cfg.nodes >= 1 && cfg.nodes <= 7);
        let mut rng = SplitMix64::new(cfg.seed ^ 0x5EED_F00D_C1A5_7E85);
        let delay_min_ns = 50_000 + rng.below(1_000_000);
        let faults = Faults {
            append_entries_max: [1, 2, 8][rng.below(3) as usize],
            inflight_max: [1, 2, 4][rng.below(3) as usize],
            compaction_entries_max: [20, 50, 200, 100_000][rng.below(4) as usize],
            loss_ppm: [0, 10_000, 50_000, 150_000][rng.below(4) as usize],
            dup_ppm: [0, 10_000, 50_000][rng.below(3) as usize],
            delay_min_ns,
            delay_max_ns: delay_min_ns + [1, 5, 20, 60][rng.below(4) as usize] * MS,
            long_delay_ppm: [0, 2_000, 10_000][rng.below(3) as usize],
            fault_every_ns: [60, 100, 300, 800, 100_000][rng.below(5) as usize] * MS,
            disk_min_ns: 20_000 + rng.below(200_000),
            disk_max_ns: 300_000 + rng.below(3 * MS),
            disk_stall_ppm: [0, 0, 2_000, 20_000][rng.below(4) as usize],
        };
        let drift_ppm = raft_config(NodeId(1)).clock_drift_max_ppm as i64;
        let mut nodes = Vec::new();
        for i in 0..cfg.nodes {
            // Each clock runs within ±drift/2 of real time, so any two differ by at most the
            // configured bound.
            // Extremes are where lease bugs show, so they are drawn as often as the middle.
            let rate = [-2, -1, 0, 1, 2][rng.below(5) as usize] * drift_ppm / 4;
            nodes.push(SimNode {
                id: NodeId(i as u64 + 1),
                replica: None,
                incarnation: 0,
                clock_offset: rng.below(1_000 * MS) + 1,
                clock_rate_ppm: rate,
                disk: MemStorage::new(
                    Identity {
                        cluster_id: "sim".into(),
                        node_id: NodeId(i as u64 + 1),
                    },
                    StorageOptions::default(),
                )
                .expect("default storage options are valid")
                .0,
                writing: None,
                was_leader_in: None,
                last_commit: LogIndex(0),
                last_applied: LogIndex(0),
            });
        }
        let clients = (0..3)
            .map(|_| Client {
                leader_hint: None,
                current: None,
                pending_request: None,
                done: false,
                session: None,
                registering_until: 0,
                next_seq: 1,
                last_request: None,
                attempts: 0,
            })
            .collect();
        let mut cluster = Cluster {
            cfg,
            rng,
            faults,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes,
            blocked: BTreeSet::new(),
            healed: false,
            heal_at: 0,
            clients,
            history: Vec::new(),
            transfers_started: Vec::new(),
            transfers: BTreeMap::new(),
            transfer_seq: 0,
            next_value: 0,
            acked_writes: Vec::new(),
            failed_ops: BTreeSet::new(),
            checker: Checker::default(),
            outcome: SimOutcome::default(),
            trace: VecDeque::new(),
            first_writable_after_heal: None,
        };
        for i in 0..cluster.nodes.len() {
            cluster.start_node(i);
            let jitter = cluster.rng.below(5 * MS);
            cluster.schedule(jitter, Event::Tick(i));
        }
        for c in 0..cluster.clients.len() {
            let at = 100 * MS + cluster.rng.below(100 * MS);
            cluster.schedule(at, Event::ClientStart(c));
        }
        let first_fault = cluster.fault_delay();
        cluster.schedule(first_fault, Event::Fault);
        let heal_at = cluster.cfg.safety_ms * MS;
        cluster.schedule(heal_at, Event::Heal);
        cluster
    }

    /// Runs the safety phase, heals, runs the liveness phase, then checks the client history.
    pub fn run(mut self) -> SimOutcome {
        let deadline = self.cfg.safety_ms * MS + self.cfg.liveness_ms_max * MS;
        let mut steps = 0u64;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            let event = self.events.remove(&seq).expect("scheduled event");
            if at > deadline {
                break;
            }
            self.now = at;
            steps += 1;
            if steps > self.cfg.steps_max {
                self.violation(format!(
                    "step limit: more than {} events",
                    self.cfg.steps_max
                ));
                break;
            }
            self.handle(event);
            self.check_after_step();
            if !self.outcome.violations.is_empty() || self.settled() {
                break;
            }
        }
        if self.outcome.violations.is_empty() {
            self.final_checks();
        }
        self.outcome.trace = self.trace.into_iter().collect();
        self.outcome
    }

    // ----- Event handling -----

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                if let Some(now) = self.local_now(i) {
                    self.nodes[i].replica.as_mut().expect("live").tick(now);
                    self.drive(i);
                }
                let next = 5 * MS + self.rng.below(MS);
                self.schedule(next, Event::Tick(i));
            }
            Event::Deliver(m) => self.deliver(m),
            Event::WriteDone { node, incarnation } => self.write_done(node, incarnation),
            Event::Restart(i) => {
                if self.nodes[i].replica.is_none() {
                    self.start_node(i);
                    self.note(format!("restart n{}", i + 1));
                }
            }
            Event::Fault => {
                if !self.healed {
                    self.inject_fault();
                    let next = self.fault_delay();
                    self.schedule(next, Event::Fault);
                }
            }
            Event::ClientStart(c) => self.client_start(c),
            Event::ClientTimeout { client, op } => {
                if self.clients[client].current == Some(op) {
                    self.attempt_lost(client, 1);
                }
            }
            Event::Heal => self.heal(),
            Event::SnapshotChunk { id, k } => self.snapshot_chunk(id, k),
            Event::SnapshotAck { id, k } => {
                let Some(t) = self.transfers.get(&id) else {
                    return;
                };
                if self.incarnations_of(t) != t.incarnations || k + 1 >= t.chunks.len() {
                    self.transfers.remove(&id);
                    return;
                }
                let (from, to) = (t.from, t.to);
                self.ship(id, from, to, Event::SnapshotChunk { id, k: k + 1 });
            }
        }
    }

    fn deliver(&mut self, m: Message) {
        let to = (m.to.0 - 1) as usize;
        let Some(now) = self.local_now(to) else {
            return;
        };
        if self.cfg.trace {
            self.note(format!(
                "deliver {} -> {} {} {}",
                m.from, m.to, m.term, m.body
            ));
        }
        let replica = self.nodes[to].replica.as_mut().expect("live");
        if let Err(err) = replica.step(m, now) {
            let err = err.to_string();
            self.violation(format!("step error at n{}: {err}", to + 1));
        }
        self.drive(to);
    }

    /// Collects the node's output and carries it out: sends what may go now, starts a durable
    /// write when none is in progress.
    fn drive(&mut self, i: usize) {
        let Some(replica) = self.nodes[i].replica.as_mut() else {
            return;
        };
        let mut actions = Vec::new();
        replica.poll(&mut actions);
        self.carry_out(i, actions);
        self.observe_node(i);
    }

    /// Carries out the replica's actions in order, as the daemon's driver does with real I/O.
    fn carry_out(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Read { token, result } => self.finish_read(i, token as usize, result),
                Action::SendSnapshot { to } => self.start_snapshot_transfer(i, to),
                Action::Send(m) => self.send(i, m),
                Action::SoftState(_) => {}
                Action::Persist(persist) => self.start_write(i, persist),
                Action::Proposal { token, outcome } => self.finish_proposal(token, outcome),
                Action::Compact(index) => {
                    let id = self.nodes[i].id;
                    let node = &mut self.nodes[i];
                    let replica = node.replica.as_mut().expect("live");
                    match node.disk.compact_log(index) {
                        Ok(()) => {
                            replica.compacted(index);
                            self.outcome.snapshots += 1;
                        }
                        Err(err) => {
                            replica.compaction_failed();
                            self.violation(format!("{id}: compaction at {index} failed: {err}"));
                        }
                    }
                }
            }
        }
    }

    /// The disk starts writing a batch; it becomes durable when `WriteDone` arrives (a crash
    /// before then loses it).
    fn start_write(&mut self, i: usize, persist: Persist) {
        let latency = if self.rng.chance_ppm(self.faults.disk_stall_ppm) && !self.healed {
            200 * MS + self.rng.below(2000 * MS)
        } else {
            self.faults.disk_min_ns
                + self
                    .rng
                    .below(self.faults.disk_max_ns - self.faults.disk_min_ns)
        };
        self.nodes[i].writing = Some(persist);
        let incarnation = self.nodes[i].incarnation;
        self.schedule(
            latency,
            Event::WriteDone {
                node: i,
                incarnation,
            },
        );
    }

    /// The durable write of a batch completes: it becomes durable all at once, committed
    /// entries are applied, clients answered, persisted messages sent.
    fn write_done(&mut self, i: usize, incarnation: u64) {
        if self.nodes[i].incarnation != incarnation || self.nodes[i].replica.is_none() {
            return; // The node crashed first: the write is lost.
        }
        let persist = self.nodes[i].writing.take().expect("a write in progress");
        let id = self.nodes[i].id;
        let results = match self.nodes[i].disk.write_batch(&persist.batch) {
            Ok(results) => results,
            Err(err) => {
                self.violation(format!("{id}: storage refused a Ready: {err}"));
                return;
            }
        };
        let disk = &self.nodes[i].disk;
        let prev_term = |index: LogIndex| disk.term(index).ok();
        if let Err(v) = self
            .checker
            .on_durable_entries(id, prev_term, &persist.batch.entries)
        {
            self.violation(v);
        }
        for e in &persist.batch.committed {
            if let Err(v) = self.checker.on_apply(id, e) {
                self.violation(v);
            }
        }
        let mut actions = Vec::new();
        let replica = self.nodes[i].replica.as_mut().expect("live");
        replica.persisted(persist.number, results, &mut actions);
        self.carry_out(i, actions);
        self.drive(i);
    }

    /// The leader's caller streams its latest snapshot to a follower that needs one.
    fn start_snapshot_transfer(&mut self, from: usize, to: NodeId) {
        let to = (to.0 - 1) as usize;
        let mut source = match self.nodes[from].disk.snapshot() {
            Ok(source) => source,
            Err(err) => {
                self.violation(format!("n{}: snapshot failed: {err}", from + 1));
                return;
            }
        };
        let meta = source.meta().clone();
        let mut chunks = Vec::new();
        while let Some(chunk) = source.next_chunk().expect("in-memory snapshot reads") {
            chunks.push(chunk);
        }
        self.transfer_seq += 1;
        let id = self.transfer_seq;
        let t = SnapshotTransfer {
            from,
            to,
            incarnations: (self.nodes[from].incarnation, self.nodes[to].incarnation),
            chunks,
            meta,
        };
        self.note(format!(
            "n{} streams a snapshot to n{} ({} chunks)",
            from + 1,
            to + 1,
            t.chunks.len()
        ));
        self.transfers.insert(id, t);
        self.ship(id, from, to, Event::SnapshotChunk { id, k: 0 });
    }

    /// Every node of the simulated cluster, all voters: the configuration it starts with.
    fn bootstrap_membership(&self) -> Membership {
        Membership::new((1..=self.nodes.len() as u64).map(NodeId))
    }

    fn incarnations_of(&self, t: &SnapshotTransfer) -> (u64, u64) {
        (self.nodes[t.from].incarnation, self.nodes[t.to].incarnation)
    }

    /// Sends a snapshot chunk or acknowledgement over the faulty network; a lost one ends the
    /// transfer (the leader asks again after its snapshot timeout).
    fn ship(&mut self, id: u64, from: usize, to: usize, event: Event) {
        let lost = self.blocked.contains(&(from, to))
            || (!self.healed && self.rng.chance_ppm(self.faults.loss_ppm));
        if lost {
            self.transfers.remove(&id);
            return;
        }
        let spread = self.faults.delay_max_ns - self.faults.delay_min_ns;
        let delay = self.faults.delay_min_ns + self.rng.below(spread.max(1));
        self.schedule(delay, event);
    }

    fn snapshot_chunk(&mut self, id: u64, k: usize) {
        let Some(t) = self.transfers.get(&id) else {
            return;
        };
        let (from, to) = (t.from, t.to);
        if self.incarnations_of(t) != t.incarnations || self.nodes[to].replica.is_none() {
            self.transfers.remove(&id);
            return;
        }
        if self.nodes[to].writing.is_some() {
            // Installing under a write in progress would race it; drop this transfer.
            self.nodes[to].disk.install_abort();
            self.transfers.remove(&id);
            return;
        }
        let chunk = self.transfers[&id].chunks[k].clone();
        match self.nodes[to].disk.install_chunk(&chunk) {
            Ok(InstallProgress::Continue { .. }) => {
                self.ship(id, to, from, Event::SnapshotAck { id, k });
            }
            Ok(InstallProgress::Installed(state)) => {
                self.transfers.remove(&id);
                self.outcome.snapshots += 1;
                let meta = state.snapshot.clone();
                let now = self.local_now(to).expect("live");
                let leader = self.nodes[from].id;
                self.note(format!(
                    "n{} installed a snapshot at {}",
                    to + 1,
                    meta.last_included_index
                ));
                let replica = self.nodes[to].replica.as_mut().expect("live");
                replica.snapshot_installed(leader, meta, now);
                self.nodes[to].last_applied = state.applied;
                self.nodes[to].last_commit = self.nodes[to].last_commit.max(state.applied);
                self.drive(to);
            }
            Err(err) => {
                // A stale or refused snapshot (older than what the follower holds, a term it
                // has not durably seen yet, ...): the install is abandoned, the leader retries.
                self.note(format!("n{} refused a snapshot chunk: {err}", to + 1));
                self.nodes[to].disk.install_abort();
                let t = self.transfers.remove(&id).expect("checked above");
                if t.meta.last_included_index <= self.nodes[to].disk.state().applied {
                    // Stale: the core tells the leader where to resume.
                    let now = self.local_now(to).expect("live");
                    let leader = self.nodes[from].id;
                    let replica = self.nodes[to].replica.as_mut().expect("live");
                    replica.snapshot_installed(leader, t.meta, now);
                    self.drive(to);
                }
            }
        }
    }

    /// A proposal made on some node is decided: a session registration, or a client operation.
    fn finish_proposal(&mut self, token: Token, outcome: ProposalOutcome) {
        if token & REGISTRATION != 0 {
            if let ProposalOutcome::Applied {
                result: ApplyResult::Command(Ok(Response::SessionRegistered { client_id })),
                ..
            } = outcome
            {
                // A client keeps the first session it learns of: retrying a write under another
                // session would (rightly) apply it twice.
                let client = (token & !REGISTRATION) as usize;
                self.clients[client].session.get_or_insert(client_id);
            }
            return;
        }
        self.finish_op(token as usize, outcome);
    }

    fn finish_op(&mut self, op: usize, outcome: ProposalOutcome) {
        let client = self.history[op].client as usize;
        if self.history[op].complete.is_some() || self.failed_ops.contains(&op) {
            return;
        }
        let still_current = self.clients[client].current == Some(op);
        let ProposalOutcome::Applied {
            index,
            term,
            result,
        } = outcome
        else {
            // Another leader's entry took that index: this attempt will never be applied. A
            // write that had earlier attempts may still have been applied by one of them.
            if still_current {
                if self.clients[client].attempts > 1 {
                    self.attempt_lost(client, 1);
                } else {
                    self.failed_ops.insert(op);
                    self.client_next(client, 1);
                }
            }
            return;
        };
        if !still_current {
            return; // The client gave up (unknown outcome); keep it that way.
        }
        self.history[op].complete = Some(self.now);
        match &mut self.history[op].kind {
            OpKind::Write { .. } => {
                self.acked_writes.push((index, term));
                self.outcome.commits += 1;
            }
            OpKind::Read { observed } => {
                let ApplyResult::Command(Ok(Response::Get { kv, .. })) = result else {
                    panic!("a read entry answered with {result:?}");
                };
                *observed = kv.as_ref().map(|kv| value_of(&kv.value));
                self.outcome.reads += 1;
            }
        }
        self.client_next(client, 1);
    }

    /// A ReadIndex read on node `i` is confirmed (or failed): read the local state machine.
    fn finish_read(&mut self, i: usize, op: usize, result: Result<LogIndex, ReadError>) {
        let client = self.history[op].client as usize;
        if self.clients[client].current != Some(op) {
            return; // The client gave up on it: unknown outcome.
        }
        match result {
            Ok(index) => {
                let applied = self.nodes[i].disk.state().applied;
                if applied < index {
                    let id = self.nodes[i].id;
                    self.violation(format!(
                        "{id} released a read at {index} with applied {applied}"
                    ));
                    return;
                }
                let key = self.history[op].key;
                let observed = self.nodes[i]
                    .disk
                    .kv_get(&key_of(key))
                    .expect("in-memory reads do not fail")
                    .map(|kv| value_of(&kv.value));
                self.history[op].kind = OpKind::Read { observed };
                self.history[op].complete = Some(self.now);
                self.outcome.reads += 1;
            }
            Err(_) => {
                self.failed_ops.insert(op);
            }
        }
        self.client_next(client, 1);
    }

    /// The client's attempt ended without an answer (timeout, crash, or its entry replaced): a
    /// write is retried with the same session sequence number, which the state machine
    /// answers from its record if an earlier attempt was applied; otherwise the outcome stays
    /// unknown.
    fn attempt_lost(&mut self, client: usize, delay_ms: u64) {
        let c = &mut self.clients[client];
        c.current = None;
        c.leader_hint = None;
        match c.last_request {
            Some(request @ ClientOp::Write { .. }) if c.attempts < WRITE_ATTEMPTS_MAX => {
                c.pending_request = Some(request);
                self.outcome.retries += 1;
                self.schedule(delay_ms * MS, Event::ClientStart(client));
            }
            _ => self.client_next(client, delay_ms),
        }
    }

    fn client_next(&mut self, client: usize, delay_ms: u64) {
        self.clients[client].last_request = None;
        self.clients[client].attempts = 0;
        self.clients[client].current = None;
        let at = delay_ms * MS + self.rng.below(MS);
        self.schedule(at, Event::ClientStart(client));
    }

    fn client_start(&mut self, c: usize) {
        if self.clients[c].current.is_some() {
            return;
        }
        if self.healed && self.now > self.heal_at + 1000 * MS {
            self.clients[c].done = true;
            return;
        }
        if self.clients[c].session.is_none() {
            if self.now < self.clients[c].registering_until {
                self.schedule(20 * MS, Event::ClientStart(c));
                return;
            }
            self.clients[c].pending_request = Some(ClientOp::Register);
        }
        let request = match self.clients[c].pending_request.take() {
            Some(r) => r,
            None => {
                let key = self.rng.below(3);
                match self.rng.below(5) {
                    0 | 1 => {
                        let seq = self.clients[c].next_seq;
                        self.clients[c].next_seq += 1;
                        self.next_value += 1;
                        ClientOp::Write {
                            key,
                            value: self.next_value,
                            seq,
                        }
                    }
                    2 => ClientOp::LogRead { key },
                    3 => ClientOp::LeaseRead { key },
                    _ => ClientOp::IndexRead { key },
                }
            }
        };
        let target = match self.clients[c].leader_hint {
            Some(id) if self.rng.below(10) > 0 => (id.0 - 1) as usize,
            _ => self.rng.below(self.nodes.len() as u64) as usize,
        };
        let Some(now) = self.local_now(target) else {
            self.clients[c].pending_request = Some(request);
            self.clients[c].leader_hint = None;
            self.schedule(10 * MS, Event::ClientStart(c));
            return;
        };
        // A retried write is the same operation, invoked when it was first sent.
        let op = match self.clients[c].last_request {
            Some(last) if last == request && self.clients[c].attempts > 0 => {
                self.history.len()
                    - 1
                    - self
                        .history
                        .iter()
                        .rev()
                        .position(|o| {
                            o.client == c as u64 && matches!(o.kind, OpKind::Write { .. })
                        })
                        .expect("the write being retried")
            }
            _ => self.history.len(),
        };
        let replica = self.nodes[target].replica.as_mut().expect("live");
        let result = match request {
            ClientOp::IndexRead { key } | ClientOp::LeaseRead { key } => {
                let mode = match request {
                    ClientOp::LeaseRead { .. } => ReadMode::Lease,
                    _ => ReadMode::Index,
                };
                match replica.read(op as Token, mode, now) {
                    Ok(()) => {
                        self.history.push(Operation {
                            client: c as u64,
                            key,
                            kind: OpKind::Read { observed: None },
                            invoke: self.now,
                            complete: None,
                        });
                        self.clients[c].current = Some(op);
                        self.schedule(2000 * MS, Event::ClientTimeout { client: c, op });
                        self.drive(target);
                        return;
                    }
                    Err(_) => Err(ProposeError::NotLeader {
                        leader: replica
                            .core()
                            .status(now)
                            .leader
                            .filter(|&l| l != self.nodes[target].id),
                    }),
                }
            }
            ClientOp::Register => {
                let token = REGISTRATION | c as Token;
                replica.propose(token, encode(request, None, now / MS), now)
            }
            _ => {
                let session = self.clients[c].session;
                replica.propose(op as Token, encode(request, session, now / MS), now)
            }
        };
        match result {
            Ok(_) if request == ClientOp::Register => {
                self.clients[c].registering_until = self.now + 500 * MS;
                self.schedule(20 * MS, Event::ClientStart(c));
                self.drive(target);
            }
            Ok(_) => {
                let (key, kind) = match request {
                    ClientOp::Write { key, value, .. } => (key, OpKind::Write { value }),
                    ClientOp::LogRead { key }
                    | ClientOp::LeaseRead { key }
                    | ClientOp::IndexRead { key } => (key, OpKind::Read { observed: None }),
                    ClientOp::Register => unreachable!("handled above"),
                };
                if op == self.history.len() {
                    self.history.push(Operation {
                        client: c as u64,
                        key,
                        kind,
                        invoke: self.now,
                        complete: None,
                    });
                }
                self.clients[c].last_request = Some(request);
                self.clients[c].attempts += 1;
                self.clients[c].current = Some(op);
                self.clients[c].leader_hint = Some(self.nodes[target].id);
                self.schedule(2000 * MS, Event::ClientTimeout { client: c, op });
                self.drive(target);
            }
            Err(ProposeError::NotLeader { leader }) => {
                self.clients[c].leader_hint = leader;
                self.clients[c].pending_request = Some(request);
                let wait = 2 * MS + self.rng.below(20 * MS);
                self.schedule(wait, Event::ClientStart(c));
            }
            Err(ProposeError::Backpressure { .. } | ProposeError::Transferring { .. }) => {
                self.clients[c].pending_request = Some(request);
                self.schedule(20 * MS, Event::ClientStart(c));
            }
        }
    }

    // ----- Network -----

    fn send(&mut self, from: usize, m: Message) {
        self.check_durable_before_send(from, &m);
        if self.cfg.trace {
            self.note(format!("send {} -> {} {} {}", m.from, m.to, m.term, m.body));
        }
        let to = (m.to.0 - 1) as usize;
        assert!(to < self.nodes.len(), "message to unknown {}", m.to);
        if self.blocked.contains(&(from, to)) {
            return;
        }
        if !self.healed && self.rng.chance_ppm(self.faults.loss_ppm) {
            return;
        }
        let copies = if !self.healed && self.rng.chance_ppm(self.faults.dup_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let spread = self.faults.delay_max_ns - self.faults.delay_min_ns;
            let mut delay = self.faults.delay_min_ns + self.rng.below(spread.max(1));
            // Rare control messages are held back more often: a late vote request or
            // hand-over is where stickiness and lease bugs hide.
            let rare = matches!(
                m.body,
                MessageBody::TimeoutNow { .. } | MessageBody::RequestVote { .. }
            );
            let long_ppm = self.faults.long_delay_ppm * if rare { 20 } else { 1 };
            if !self.healed && self.rng.chance_ppm(long_ppm) {
                delay += 100 * MS + self.rng.below(900 * MS);
            }
            self.schedule(delay, Event::Deliver(m.clone()));
        }
    }

    // ----- Faults -----

    fn fault_delay(&mut self) -> Nanos {
        let mean = self.faults.fault_every_ns;
        mean / 2 + self.rng.below(mean)
    }

    fn inject_fault(&mut self) {
        let n = self.nodes.len();
        match self.rng.below(10) {
            9 => self.change_membership(),
            8 => {
                if let Some(l) = self.current_leader() {
                    let target = match self.rng.below(2) {
                        0 => None,
                        _ => Some(NodeId(self.rng.below(n as u64) + 1)),
                    };
                    let now = self.local_now(l).expect("the leader is up");
                    let replica = self.nodes[l].replica.as_mut().expect("live");
                    let term = replica.core().status(now).term;
                    if let Ok(to) = replica.transfer_leadership(target, now) {
                        self.transfers_started.push((to, term));
                        self.note(format!("n{} hands leadership to {to}", l + 1));
                    }
                    self.drive(l);
                }
            }
            0 => {
                // Full partition into two sides.
                self.blocked.clear();
                let side: Vec<bool> = (0..n).map(|_| self.rng.below(2) == 0).collect();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            self.blocked.insert((a, b));
                        }
                    }
                }
                self.note(format!("partition {side:?}"));
            }
            1 => {
                let (a, b) = (
                    self.rng.below(n as u64) as usize,
                    self.rng.below(n as u64) as usize,
                );
                if a != b {
                    self.blocked.insert((a, b));
                    self.note(format!("one-way cut n{} -> n{}", a + 1, b + 1));
                }
            }
            2 => {
                // Partial: cut the leader from some followers only, both ways.
                if let Some(l) = self.current_leader() {
                    for f in 0..n {
                        if f != l && self.rng.below(2) == 0 {
                            self.blocked.insert((l, f));
                            self.blocked.insert((f, l));
                        }
                    }
                    self.note(format!("leader n{} cut from some followers", l + 1));
                }
            }
            3 | 4 => {
                self.blocked.clear();
                self.note("heal network".to_string());
            }
            5 | 6 => {
                let victim = if self.rng.below(2) == 0 {
                    self.current_leader().unwrap_or(0)
                } else {
                    self.rng.below(n as u64) as usize
                };
                self.crash(victim);
                let down = 10 * MS + self.rng.below(self.faults.fault_every_ns.min(1000 * MS));
                self.schedule(down, Event::Restart(victim));
            }
            _ => {
                let victim = self.rng.below(n as u64) as usize;
                if self.nodes[victim].replica.is_some() {
                    self.crash(victim);
                    self.schedule(MS, Event::Restart(victim));
                }
            }
        }
    }

    /// A random membership change on the current leader: add a learner, promote one, remove a
    /// member (the leader included), or abort a joint configuration.
    fn change_membership(&mut self) {
        let Some(l) = self.current_leader() else {
            return;
        };
        let n = self.nodes.len() as u64;
        let x = NodeId(self.rng.below(n) + 1);
        let abort = self.rng.below(3) == 0;
        let now = self.local_now(l).expect("the leader is up");
        let replica = self.nodes[l].replica.as_mut().expect("live");
        let m = replica.core().membership().clone();
        let result = if m.is_joint() && abort {
            replica.abort_membership_change(now)
        } else if m.learners.contains(&x) {
            replica.change_membership(ConfChange::Promote(x), now)
        } else if m.voters.contains(&x) {
            if m.voters.len() <= 2 {
                return;
            }
            replica.change_membership(ConfChange::Remove(x), now)
        } else {
            replica.change_membership(ConfChange::AddLearner(x), now)
        };
        if let Ok(index) = result {
            self.outcome.conf_changes += 1;
            self.note(format!(
                "n{} changes membership at {index} ({x}, from {m:?})",
                l + 1
            ));
        }
        self.drive(l);
    }

    fn crash(&mut self, i: usize) {
        let Some(replica) = self.nodes[i].replica.take() else {
            return;
        };
        self.note(format!(
            "crash n{} (losing {})",
            i + 1,
            if self.nodes[i].writing.is_some() {
                "a write"
            } else {
                "nothing durable"
            }
        ));
        self.nodes[i].writing = None;
        self.nodes[i].incarnation += 1;
        let abandoned = replica.abandon();
        for op in abandoned.reads {
            let client = self.history[op as usize].client as usize;
            if self.clients[client].current == Some(op as usize) {
                self.client_next(client, 5);
            }
        }
        for token in abandoned.proposals {
            if token & REGISTRATION != 0 {
                continue;
            }
            // The client never hears back: unknown outcome, retried if a write.
            let op = token as usize;
            let client = self.history[op].client as usize;
            if self.clients[client].current == Some(op) {
                self.attempt_lost(client, 5);
            }
        }
    }

    fn start_node(&mut self, i: usize) {
        let bootstrap = self.bootstrap_membership();
        // A restart reopens the disk and rebuilds the replica from exactly what is durable.
        let disk = &mut self.nodes[i].disk;
        disk.install_abort();
        disk.reload().expect("the simulated disk reopens");
        self.nodes[i].incarnation += 1;
        let now = self.local_clock(i);
        let seed = self.rng.next_u64();
        let mut config = raft_config(self.nodes[i].id);
        config.append_entries_max = self.faults.append_entries_max;
        config.inflight_max = self.faults.inflight_max;
        config.compaction_entries_max = self.faults.compaction_entries_max;
        let rng = Box::new(SplitMix64::new(seed));
        let replica = Replica::new(config, &self.nodes[i].disk, bootstrap, rng, now)
            .expect("the simulated disk and config are valid");
        let node = &mut self.nodes[i];
        node.last_commit = replica.core().status(now).commit_index;
        node.last_applied = node.disk.state().applied;
        node.was_leader_in = None;
        node.replica = Some(replica);
    }

    fn heal(&mut self) {
        self.healed = true;
        self.heal_at = self.now;
        self.blocked.clear();
        self.note("heal: network whole, every node up, no more faults".to_string());
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() {
                self.start_node(i);
            }
        }
    }

    fn current_leader(&self) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.replica
                .as_ref()
                .is_some_and(|r| r.core().status(0).role == Role::Leader)
        })
    }

    // ----- Checks -----

    fn check_after_step(&mut self) {
        let mut writable = Vec::new();
        for i in 0..self.nodes.len() {
            let Some(now) = self.local_now(i) else {
                continue;
            };
            let status = self.core(i).expect("live").status(now);
            if status.writable {
                writable.push((status.id, status.term));
            }
        }
        if writable.len() > 1 {
            self.violation(format!(
                "lease safety: several nodes writable at once: {writable:?}"
            ));
        }
        // What the lease rests on, checked directly: while a node is writable, a quorum of
        // voters would refuse a vote to anyone else — a plain campaign, or a hand-over
        // campaign carrying any round the leader may still have in flight (a down node cannot
        // vote either).
        if let Some(&(leader, term)) = writable.first() {
            let l = (leader.0 - 1) as usize;
            let floor = self.core(l).expect("live").lease_round_floor();
            let other = NodeId(if leader.0 == 1 { 2 } else { 1 });
            let refusing: BTreeSet<NodeId> = (0..self.nodes.len())
                .filter(|&i| match (self.core(i), self.local_now(i)) {
                    (Some(core), Some(now)) => {
                        core.would_refuse_vote_request(now, other, term.next(), None)
                            && core.would_refuse_vote_request(now, other, term.next(), Some(floor))
                    }
                    _ => true,
                })
                .map(|i| self.nodes[i].id)
                .collect();
            let membership = self.core(l).expect("live").membership();
            if !membership.is_quorum(|id| refusing.contains(&id)) {
                self.violation(format!(
                    "lease safety: {leader} is writable in {term} but only {refusing:?} would refuse a vote in {membership:?}"
                ));
            }
        }
        if self.healed && self.first_writable_after_heal.is_none() && !writable.is_empty() {
            self.first_writable_after_heal = Some(self.now);
        }
    }

    /// Checks a node's state after it handled an input.
    fn observe_node(&mut self, i: usize) {
        let Some(now) = self.local_now(i) else { return };
        let status = self.core(i).expect("live").status(now);
        let id = status.id;
        if status.commit_index < self.nodes[i].last_commit {
            let msg = format!(
                "{id} commit index went back from {} to {}",
                self.nodes[i].last_commit, status.commit_index
            );
            self.violation(msg);
        }
        if status.applied_index < self.nodes[i].last_applied {
            let msg = format!(
                "{id} applied index went back from {} to {}",
                self.nodes[i].last_applied, status.applied_index
            );
            self.violation(msg);
        }
        let from = self.nodes[i].last_commit;
        if status.commit_index > from {
            let core = self.core(i).expect("live");
            let term_at_commit = core.log_term(status.commit_index);
            if status.role == Role::Leader && term_at_commit != Some(status.term) {
                let msg = format!(
                    "{id} leading {} committed {} of {term_at_commit:?} by counting (Raft §5.4.2)",
                    status.term, status.commit_index
                );
                self.violation(msg);
                return;
            }
            let core = self.nodes[i].replica.as_ref().expect("live").core();
            if let Err(v) = self
                .checker
                .on_commit(id, from, status.commit_index, |idx| core.log_term(idx))
            {
                self.violation(v);
            }
        }
        self.nodes[i].last_commit = status.commit_index;
        self.nodes[i].last_applied = status.applied_index;
        if status.role == Role::Leader && self.nodes[i].was_leader_in != Some(status.term) {
            self.nodes[i].was_leader_in = Some(status.term);
            self.outcome.elections += 1;
            let before = self.transfers_started.len();
            let term = status.term;
            self.transfers_started
                .retain(|&(to, from_term)| !(to == id && from_term.next() == term));
            self.outcome.transfers += (before - self.transfers_started.len()) as u64;
            self.note(format!("{id} leads {}", status.term));
            let core = self.nodes[i].replica.as_ref().expect("live").core();
            if let Err(v) = self
                .checker
                .on_leader(id, status.term, |idx| core.log_term(idx))
            {
                self.violation(v);
            }
        }
    }

    /// Vote grants, vote requests and append acknowledgements promise durability: check the
    /// disk holds what the message claims.
    fn check_durable_before_send(&mut self, i: usize, m: &Message) {
        let state = self.nodes[i].disk.state();
        let hs = state.hard_state;
        let durable_last = state.last_index;
        let problem = match &m.body {
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
        if problem {
            let msg = format!(
                "{} sent {} to {} before it was durable (durable term {} vote {:?}, {} entries)",
                m.from, m.body, m.to, hs.term, hs.vote, durable_last
            );
            self.violation(msg);
        }
    }

    /// Whether the liveness phase is over: healed, a leader writable, clients done, every node
    /// caught up with the commit index.
    fn settled(&self) -> bool {
        if !self.healed || self.first_writable_after_heal.is_none() {
            return false;
        }
        if !self.clients.iter().all(|c| c.done) {
            return false;
        }
        let commits: Vec<LogIndex> = self
            .nodes
            .iter()
            .map(|n| {
                n.replica
                    .as_ref()
                    .map_or(LogIndex(0), |r| r.core().status(0).commit_index)
            })
            .collect();
        let max = commits.iter().copied().max().unwrap_or_default();
        let members = self.final_members();
        !members.is_empty()
            && self
                .nodes
                .iter()
                .filter(|n| members.contains(&n.id))
                .all(|n| n.disk.state().applied == max)
    }

    /// The members of the configuration in force on the leader (nodes outside it may lag
    /// forever, as they should).
    fn final_members(&self) -> BTreeSet<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.replica.as_ref().map(Replica::core))
            .find(|c| c.status(0).role == Role::Leader)
            .map(|c| c.membership().members())
            .unwrap_or_default()
    }

    fn final_checks(&mut self) {
        if self.cfg.trace {
            for i in 0..self.nodes.len() {
                let line = match (self.core(i), self.local_now(i)) {
                    (Some(core), Some(now)) => format!(
                        "n{}: {:?} writing={} durable={:?}",
                        i + 1,
                        core.status(now),
                        self.nodes[i].writing.is_some(),
                        self.nodes[i].disk.state().hard_state
                    ),
                    _ => format!("n{}: down", i + 1),
                };
                self.note(line);
            }
        }
        let Some(elected) = self.first_writable_after_heal else {
            let msg = format!(
                "liveness: no writable leader within {} ms after healing",
                self.cfg.liveness_ms_max
            );
            self.violation(msg);
            return;
        };
        self.outcome.election_after_heal_ns = elected - self.heal_at;
        if !self.settled() {
            let applied: Vec<LogIndex> =
                self.nodes.iter().map(|n| n.disk.state().applied).collect();
            self.violation(format!(
                "liveness: cluster did not settle within {} ms after healing (applied {applied:?})",
                self.cfg.liveness_ms_max
            ));
            return;
        }
        // Every acknowledged write is applied everywhere, at the index it was acknowledged at.
        let members = self.final_members();
        for &(index, term) in &self.acked_writes {
            for n in self.nodes.iter().filter(|n| members.contains(&n.id)) {
                let state = n.disk.state();
                // Below a snapshot the entry is gone; the digests below compare the state.
                let compacted = index <= state.snapshot.last_included_index;
                let holds = n.disk.term(index).ok();
                if state.applied < index || (!compacted && holds != Some(term)) {
                    let msg = format!("acknowledged write at {index} ({term}) missing on {}", n.id);
                    self.outcome.violations.push(msg);
                    return;
                }
            }
        }
        // Every member applied the same log, so their state machines are identical, however
        // they got there (entries, snapshots, or both).
        let digests: Vec<(NodeId, _)> = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .map(|n| (n.id, n.disk.digest().expect("the digest reads")))
            .collect();
        if let Some((first, d0)) = digests.first() {
            if let Some((other, _)) = digests.iter().find(|(_, d)| d != d0) {
                let msg = format!("state machines differ after settling: {first} and {other}");
                self.outcome.violations.push(msg);
                return;
            }
        }
        // Exactly once: every write (a unique value) changed the state machine at most once,
        // however many times it was retried.
        for n in self.nodes.iter().filter(|n| members.contains(&n.id)) {
            // A snapshot install starts the feed over at the snapshot's revision.
            let page = match n.disk.changes_after(0, usize::MAX) {
                Err(StorageError::ChangesCompacted { floor, .. }) => {
                    n.disk.changes_after(floor, usize::MAX)
                }
                other => other,
            }
            .expect("the change feed reads");
            let mut seen = BTreeSet::new();
            for change in page.changes {
                if let ChangeKind::Put { value, .. } = change.kind {
                    if !seen.insert(value.clone()) {
                        let msg = format!(
                            "exactly-once: {} applied the write of {} twice (revision {})",
                            n.id,
                            value_of(&value),
                            change.revision
                        );
                        let mut details = Vec::new();
                        let last = n.disk.state().last_index;
                        for e in n
                            .disk
                            .entries(LogIndex(1), last.next(), usize::MAX)
                            .unwrap_or_default()
                        {
                            if let crate::raft::EntryPayload::Normal(data) = &e.payload {
                                if let Ok(p) = Proposal::decode(data) {
                                    if let Command::Put { value: v, .. } = &p.command {
                                        if *v == value {
                                            details.push(format!(
                                                "{} {} {:?}",
                                                e.index, e.term, p.session
                                            ));
                                        }
                                    }
                                }
                            }
                        }
                        self.outcome
                            .violations
                            .push(format!("{msg}: entries {details:?}"));
                        return;
                    }
                }
            }
        }
        let history: Vec<Operation> = self
            .history
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.failed_ops.contains(i))
            .map(|(_, op)| op.clone())
            .collect();
        match linearizability::check(&history, 2_000_000) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive { .. } => {}
            Verdict::Violation { key, explanation } => {
                self.violation(format!("linearizability (key {key}): {explanation}"));
            }
        }
    }

    fn violation(&mut self, what: String) {
        self.note(format!("VIOLATION: {what}"));
        self.outcome.violations.push(what);
    }

    // ----- Plumbing -----

    fn schedule(&mut self, after: Nanos, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// The node's local monotonic clock, or `None` when it is down.
    fn local_now(&self, i: usize) -> Option<Nanos> {
        self.nodes[i].replica.as_ref()?;
        Some(self.local_clock(i))
    }

    /// The node's consensus core, or `None` when it is down.
    fn core(&self, i: usize) -> Option<&RaftNode> {
        self.nodes[i].replica.as_ref().map(Replica::core)
    }

    fn local_clock(&self, i: usize) -> Nanos {
        let n = &self.nodes[i];
        let skew = self.now as i128 * n.clock_rate_ppm as i128 / 1_000_000;
        (n.clock_offset as i128 + self.now as i128 + skew) as Nanos
    }

    fn note(&mut self, line: String) {
        if self.cfg.trace {
            self.trace
                .push_back(format!("{:>10.3} ms  {line}", self.now as f64 / 1e6));
            if self.trace.len() > 80 {
                self.trace.pop_front();
            }
        }
    }
}

/// The core configuration every simulated node runs: short timeouts, small limits, so that a
/// few simulated seconds exercise many elections and backpressure.
pub fn raft_config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.election_timeout_min_ms = 150;
    c.heartbeat_interval_ms = 30;
    c.clock_drift_max_ppm = 200_000;
    c.inflight_max = 3;
    c.append_entries_max = 8;
    c.append_bytes_max = 4096;
    c.uncommitted_bytes_max = 8192;
    c.persist_stall_max_ms = 500;
    c.snapshot_timeout_ms = 300;
    c
}

/// The client's command in the real KV command encoding, so that the simulator runs the same
/// state machine code as the daemon.
fn encode(op: ClientOp, session: Option<u64>, time_ms: u64) -> Vec<u8> {
    let mut proposal = Proposal::new(match op {
        ClientOp::Write { key, value, .. } => Command::Put {
            key: key_of(key),
            value: value.to_le_bytes().to_vec(),
        },
        ClientOp::LogRead { key } | ClientOp::LeaseRead { key } | ClientOp::IndexRead { key } => {
            Command::Get { key: key_of(key) }
        }
        ClientOp::Register => Command::RegisterSession { ttl_ms: 60_000 },
    });
    if let (ClientOp::Write { seq, .. }, Some(client_id)) = (op, session) {
        proposal.session = Some(SessionSeq {
            client_id,
            seq,
            acked_below: seq,
        });
    }
    proposal.time_ms = time_ms;
    proposal.encode()
}

fn key_of(key: u64) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

fn value_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(
        bytes
            .try_into()
            .expect("the simulator writes 8-byte values"),
    )
}

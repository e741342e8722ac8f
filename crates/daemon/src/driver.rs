//! The driver: one task owns the replica and nothing else touches it. It carries out the
//! replica's actions with real I/O — QUIC sends, the disk thread, snapshot streams — and answers
//! the API's requests through oneshot channels.
//!
//! The loop is a biased select in a fixed order: shutdown, disk completions, inbound messages,
//! API requests, then a sleep until the core's next deadline. After each wake-up it drains
//! whatever else is already queued (so many proposals go into one batch and one fsync), ticks
//! the core, carries out the actions and publishes the node's status.
//!
//! Invariants: heartbeats and votes never wait behind the disk (messages that need no
//! durability go out as soon as the core produces them; the disk works on its own thread); at
//! most one batch is in flight to the disk, and a snapshot chunk is never installed while one
//! is; every request is answered exactly once (its oneshot is dropped only with an answer or at
//! shutdown).

use super::disk::{Disk, DiskDone, DiskRequest};
use super::notify::Notifier;
use super::wire::PeerMessage;
use crate::api::metrics::Metrics;
use crate::api::status::{MemberStatus, NodeStatus};
use crate::api::{
    self, BusyReason, HandoverAnswer, MembersRefusal, ReadAnswer, ReadQuery, ReloadRefusal,
    Request, RequestError, SnapshotAnswer, StorageFailure, TransferFailure, WriteAnswer,
};
use crate::clock;
use regent_raft::{Message, Nanos, NodeId, ProposeError, ReadError, Role};
use regent_replica::{Action, ProposalOutcome, Replica, Token};
use regent_storage::{
    ApplyResult, CommandError, InstallProgress, SnapshotMeta, SnapshotSource, StorageError,
};
use regent_transport::{Inbound, LinkEvent, SnapshotReceiver, TransportHandle};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Requests the driver takes from one wake-up before it ticks and writes: bounds the work of
/// one loop turn (and so the latency of timers) under a flood.
const DRAIN_MAX: usize = 4096;

/// The members' address records are read again at least this often.
const ADDRESS_REREAD: Duration = Duration::from_secs(5);

/// A learner is promoted only once its log is within this many entries of the leader's.
pub const PROMOTE_LAG_MAX: u64 = 256;

/// Why the driver stopped on its own: the storage failed in a way that leaves the outcome of
/// a write unknown, so the node must restart and reload what is durable.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("a durable write failed after {micros} µs, its outcome is unknown: {error}")]
    Persist { micros: u64, error: StorageError },
    /// The install's error is also sent to the stream's task, hence the `Arc`.
    #[error("a snapshot install failed: {error}")]
    SnapshotInstall { error: Arc<StorageError> },
}

/// The storage's verdict on one snapshot chunk: `true` once the snapshot is installed.
type ChunkVerdict = Result<bool, Arc<StorageError>>;

/// Messages from the driver's own helper tasks.
enum Internal {
    /// One chunk of an incoming snapshot, from its receiving task; answered with the storage's
    /// verdict.
    InstallChunk {
        from: NodeId,
        meta: SnapshotMeta,
        chunk: Vec<u8>,
        reply: oneshot::Sender<ChunkVerdict>,
    },
    /// A snapshot stream to `to` ended (sent or failed).
    /// `installed`: the index the follower acknowledged installing through (None: failed).
    SnapshotSent {
        to: NodeId,
        installed: Option<regent_raft::LogIndex>,
    },
    /// A snapshot stream to `to` is moving (chunks written within the flow-control window).
    SnapshotProgress { to: NodeId },
}

/// A request waiting for the replica or the disk.
enum Pending {
    Write {
        reply: oneshot::Sender<Result<WriteAnswer, RequestError>>,
        arrived: Instant,
    },
    Read {
        /// Taken when the read goes to the disk.
        query: Option<ReadQuery>,
        reply: oneshot::Sender<Result<ReadAnswer, RequestError>>,
    },
}

/// A snapshot chunk waiting for its turn on the disk.
struct QueuedChunk {
    from: NodeId,
    meta: SnapshotMeta,
    chunk: Vec<u8>,
    reply: oneshot::Sender<ChunkVerdict>,
}

/// Everything the driver needs, handed over by `daemon::run`.
pub struct DriverParts {
    pub replica: Replica,
    pub disk: Disk,
    pub disk_done: mpsc::UnboundedReceiver<DiskDone>,
    pub transport: TransportHandle<PeerMessage>,
    pub inbound: mpsc::Receiver<Inbound<PeerMessage>>,
    pub requests: mpsc::Receiver<Request>,
    pub status: watch::Sender<NodeStatus>,
    pub shutdown: watch::Receiver<bool>,
    /// Every known member's address: the configuration's, overridden by the replicated
    /// address records (`api::members`) read at start.
    pub addresses: BTreeMap<NodeId, SocketAddr>,
    pub persist_stall_max: Duration,
    /// How long a hand-over may take before it is abandoned (the core's own bound).
    pub handover_max: Duration,
    pub notifier: Notifier,
    pub metrics: Arc<Metrics>,
    /// The host's health, when a probe is configured.
    pub host_health: Option<watch::Receiver<bool>>,
    /// The API settings a reload may change.
    pub live: watch::Sender<api::LiveOptions>,
    /// The configuration file, read again on every reload, and what it said last.
    pub config_path: std::path::PathBuf,
    pub config: crate::config::DaemonConfig,
}

/// An operator's snapshot (or compaction) waiting for the log compaction through `index`.
struct Maintenance {
    previous_index: regent_raft::LogIndex,
    index: regent_raft::LogIndex,
    file: bool,
    reply: oneshot::Sender<Result<SnapshotAnswer, RequestError>>,
}

/// A hand-over this node started as leader.
struct Handover {
    to: NodeId,
    started: Nanos,
    deadline: Nanos,
    reply: Option<oneshot::Sender<Result<HandoverAnswer, RequestError>>>,
}

pub struct Driver {
    id: NodeId,
    replica: Replica,
    disk: Disk,
    disk_done: mpsc::UnboundedReceiver<DiskDone>,
    transport: TransportHandle<PeerMessage>,
    inbound: mpsc::Receiver<Inbound<PeerMessage>>,
    requests: mpsc::Receiver<Request>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal: mpsc::UnboundedReceiver<Internal>,
    links: broadcast::Receiver<LinkEvent>,
    status: watch::Sender<NodeStatus>,
    shutdown: watch::Receiver<bool>,
    addresses: BTreeMap<NodeId, SocketAddr>,
    /// The members' address records are re-read (from the state machine) when this is set
    /// and no read is in flight: on a membership change, while a member has no address (at
    /// most every second), and every `ADDRESS_REREAD`.
    addresses_due: bool,
    address_read: Option<Token>,
    address_read_at: Nanos,
    persist_stall_max: Duration,
    handover_max: Duration,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    host_health: Option<watch::Receiver<bool>>,
    host_healthy: bool,
    live: watch::Sender<api::LiveOptions>,
    config_path: std::path::PathBuf,
    config: crate::config::DaemonConfig,
    link_up: BTreeMap<NodeId, bool>,
    certificate_not_after_unix: Option<i64>,
    next_watchdog: Option<Nanos>,
    handovers: Vec<Handover>,
    /// Snapshots asked by an operator, waiting for their log compaction.
    maintenance: Vec<Maintenance>,
    /// Stopping: set when shutdown was asked; the loop ends once no hand-over is in progress.
    stopping: bool,

    pending: BTreeMap<Token, Pending>,
    next_token: Token,
    actions: Vec<Action>,
    /// When the batch on the disk was sent there (None when the disk is idle of batches).
    persist_started: Option<Nanos>,
    /// Snapshot chunks waiting for the disk, and whether one is on it now.
    chunks: VecDeque<QueuedChunk>,
    chunk_on_disk: Option<(SnapshotMeta, oneshot::Sender<ChunkVerdict>)>,
    /// Peers a snapshot is being streamed to.
    snapshot_sends: BTreeSet<NodeId>,
    stall_warned: bool,
    last_membership: regent_raft::Membership,
    last_leader: Option<NodeId>,
    /// The KV store's revision after the last batch.
    revision: u64,
    /// The host's journal after the last batch, and what this node's host last reported as
    /// applied (with the term it was reported in: the hand-over ack is per term).
    journal: regent_storage::JournalState,
    host_applied: (regent_raft::Term, u64),
    fatal: Option<DriverError>,
}

impl Driver {
    pub fn new(parts: DriverParts) -> Driver {
        let (internal_tx, internal) = mpsc::unbounded_channel();
        let links = parts.transport.subscribe();
        let last_membership = parts.replica.core().membership().clone();
        let not_after = parts.transport.identity_cert().not_after_unix;
        Driver {
            id: parts.replica.core().id(),
            replica: parts.replica,
            disk: parts.disk,
            disk_done: parts.disk_done,
            transport: parts.transport,
            inbound: parts.inbound,
            requests: parts.requests,
            internal_tx,
            internal,
            links,
            status: parts.status,
            shutdown: parts.shutdown,
            addresses: parts.addresses,
            addresses_due: false,
            address_read: None,
            address_read_at: 0,
            persist_stall_max: parts.persist_stall_max,
            handover_max: parts.handover_max,
            notifier: parts.notifier,
            certificate_not_after_unix: Some(not_after),
            metrics: parts.metrics,
            host_health: parts.host_health,
            host_healthy: true,
            live: parts.live,
            config_path: parts.config_path,
            config: parts.config,
            link_up: BTreeMap::new(),
            next_watchdog: None,
            handovers: Vec::new(),
            maintenance: Vec::new(),
            stopping: false,
            pending: BTreeMap::new(),
            next_token: 1,
            actions: Vec::new(),
            persist_started: None,
            chunks: VecDeque::new(),
            chunk_on_disk: None,
            snapshot_sends: BTreeSet::new(),
            stall_warned: false,
            last_membership,
            last_leader: None,
            revision: 0,
            journal: Default::default(),
            host_applied: Default::default(),
            fatal: None,
        }
    }

    /// Runs until shutdown is asked or storage fails. Returns the fatal error, if any.
    pub async fn run(mut self) -> Result<(), DriverError> {
        self.notifier.notify("READY=1");
        self.next_watchdog = self.notifier.watchdog_interval().map(|_| clock::now());
        self.sync_peers();
        self.turn(clock::now());
        loop {
            // No fixed tick: sleep until the core's next timer (quinn-proto's poll_timeout).
            // A learner has no timer at all (`Nanos::MAX`): wake at least every minute anyway.
            let mut deadline = self
                .replica
                .core()
                .next_deadline()
                .min(clock::now() + 60_000_000_000);
            if let Some(at) = self.next_watchdog {
                deadline = deadline.min(at);
            }
            if let Some(h) = self.handovers.iter().map(|h| h.deadline).min() {
                deadline = deadline.min(h);
            }
            let sleep = tokio::time::sleep(clock::until(deadline, clock::now()));
            tokio::select! {
                biased;
                changed = self.shutdown.changed(), if !self.stopping => {
                    if changed.is_err() || self.begin_stop() {
                        break;
                    }
                }
                Some(done) = self.disk_done.recv() => self.on_disk(done),
                Some(message) = self.internal.recv() => self.on_internal(message),
                Some(inbound) = self.inbound.recv() => self.on_inbound(inbound),
                Some(request) = self.requests.recv() => self.on_request(request),
                event = self.links.recv() => self.on_link_event(event),
                Some(healthy) = next_health(&mut self.host_health) => self.on_host_health(healthy),
                _ = sleep => {}
            }
            self.drain();
            if self.fatal.is_some() {
                break;
            }
            self.turn(clock::now());
            if self.fatal.is_some() || (self.stopping && self.handovers.is_empty()) {
                break;
            }
        }
        self.stop().await
    }

    /// The host turned unhealthy or healthy again: an unhealthy host's node holds its
    /// campaigns, and a leader beside an unhealthy host hands leadership over (as ZKFC and
    /// Patroni do).
    fn on_host_health(&mut self, healthy: bool) {
        if healthy == self.host_healthy {
            return;
        }
        self.host_healthy = healthy;
        self.replica.hold_campaigns(!healthy);
        let now = clock::now();
        if healthy {
            tracing::info!(node = %self.id, "host healthy: campaigning allowed again");
            return;
        }
        tracing::warn!(node = %self.id, "host unhealthy: no campaigns");
        if self.replica.core().status(now).role == Role::Leader && self.handovers.is_empty() {
            match self.replica.transfer_leadership(None, now) {
                Ok(to) => {
                    tracing::warn!(node = %self.id, %to, "host unhealthy: handing leadership over");
                    self.start_handover(to, now, None);
                }
                Err(err) => {
                    tracing::warn!(node = %self.id, reason = %err, "host unhealthy, but no hand-over is possible")
                }
            }
        }
    }

    /// Shutdown was asked: a leader first hands leadership to the most caught-up voter, so the
    /// hosts see a clean hand-over rather than an election. Returns whether to stop at once.
    fn begin_stop(&mut self) -> bool {
        self.stopping = true;
        self.notifier.notify("STOPPING=1");
        let now = clock::now();
        if self.replica.core().status(now).role != Role::Leader {
            return true;
        }
        match self.replica.transfer_leadership(None, now) {
            Ok(to) => {
                tracing::info!(node = %self.id, %to, "stopping: handing leadership over first");
                self.start_handover(to, now, None);
                false
            }
            Err(err) => {
                tracing::info!(node = %self.id, reason = %err, "stopping without a hand-over");
                true
            }
        }
    }

    fn start_handover(
        &mut self,
        to: NodeId,
        now: Nanos,
        reply: Option<oneshot::Sender<Result<HandoverAnswer, RequestError>>>,
    ) {
        self.handovers.push(Handover {
            to,
            started: now,
            deadline: now + self.handover_max.as_nanos() as u64,
            reply,
        });
    }

    /// Answers hand-overs that completed (this node sees the target lead) or ran out of time.
    ///
    /// The core abandons a hand-over whose target has not campaigned within a minimum election
    /// timeout (a target slowed by a loaded machine, a lost TimeoutNow) and resumes leading;
    /// until the hand-over's own deadline the driver then asks again, so one slow round does
    /// not fail a switchover or turn a clean stop into an election.
    fn check_handovers(&mut self, now: Nanos) {
        let status = self.replica.core().status(now);
        if status.role == Role::Leader && self.replica.core().transfer_target().is_none() {
            let retry = self
                .handovers
                .iter()
                .find(|h| now < h.deadline)
                .map(|h| h.to);
            if let Some(to) = retry {
                match self.replica.transfer_leadership(Some(to), now) {
                    Ok(_) => {
                        tracing::info!(node = %self.id, %to, "hand-over round timed out; asking again")
                    }
                    Err(err) => {
                        tracing::warn!(node = %self.id, %to, reason = %err, "hand-over cannot be asked again")
                    }
                }
            }
        }
        let id = self.id;
        self.handovers.retain_mut(|h| {
            let done = status.role != Role::Leader && status.leader == Some(h.to);
            let lost = status.role != Role::Leader && status.leader.is_some() && !done;
            if !(done || lost || now >= h.deadline) {
                return true;
            }
            let pause_ms = now.saturating_sub(h.started) / 1_000_000;
            let answer = if done {
                tracing::info!(node = %id, to = %h.to, pause_ms, "handed leadership over");
                Ok(HandoverAnswer {
                    from: id,
                    to: h.to,
                    pause_ms,
                })
            } else {
                tracing::warn!(node = %id, to = %h.to, "hand-over not completed");
                Err(RequestError::Transfer(TransferFailure::NotTakenOver {
                    target: h.to,
                    waited_ms: pause_ms,
                    leader: status.leader,
                }))
            };
            if let Some(reply) = h.reply.take() {
                let _ = reply.send(answer);
            }
            false
        });
    }

    /// Takes everything already queued without waiting, so that it shares one batch.
    fn drain(&mut self) {
        while let Ok(done) = self.disk_done.try_recv() {
            self.on_disk(done);
        }
        while let Ok(message) = self.internal.try_recv() {
            self.on_internal(message);
        }
        for _ in 0..DRAIN_MAX {
            let Ok(inbound) = self.inbound.try_recv() else {
                break;
            };
            self.on_inbound(inbound);
        }
        for _ in 0..DRAIN_MAX {
            let Ok(request) = self.requests.try_recv() else {
                break;
            };
            self.on_request(request);
        }
    }

    /// Ticks the core, carries out its actions, feeds the disk, publishes the status.
    fn turn(&mut self, now: Nanos) {
        self.replica.tick(now);
        if let (Some(at), Some(every)) = (self.next_watchdog, self.notifier.watchdog_interval()) {
            if now >= at {
                // From the loop itself: a loop that stops turning stops feeding the watchdog.
                self.notifier.notify("WATCHDOG=1");
                self.next_watchdog = Some(now + every.as_nanos() as u64);
            }
        }
        self.watch_stall(now);
        self.feed_chunk();
        let mut actions = std::mem::take(&mut self.actions);
        self.replica.poll(&mut actions);
        self.carry_out(&mut actions, now);
        self.actions = actions;
        self.log_membership();
        self.maybe_read_addresses(now);
        self.check_handovers(now);
        self.publish(now);
    }

    fn carry_out(&mut self, actions: &mut Vec<Action>, now: Nanos) {
        for action in actions.drain(..) {
            match action {
                Action::Send(m) => self.send(m),
                Action::Persist(persist) => {
                    self.persist_started = Some(now);
                    self.disk.send(DiskRequest::Persist(persist));
                }
                Action::SendSnapshot { to } => {
                    // While a stream to `to` is still finishing, a new request is not started:
                    // the core asks again once that stream's end is reported to it
                    // (`snapshot_sent` probes, `snapshot_failed` retries).
                    if self.snapshot_sends.insert(to) {
                        self.disk.send(DiskRequest::Snapshot { to });
                    }
                }
                Action::Proposal { token, outcome } => self.answer_proposal(token, outcome),
                Action::Read { token, result } => self.answer_read(token, result),
                Action::Compact(index) => self.disk.send(DiskRequest::Compact(index)),
                Action::SoftState(soft) => {
                    if soft.leader != self.last_leader {
                        self.last_leader = soft.leader;
                        self.metrics.leader_changes.fetch_add(1, Relaxed);
                    }
                    if matches!(soft.role, Role::PreCandidate | Role::Candidate) {
                        self.metrics.elections.fetch_add(1, Relaxed);
                    }
                    self.notifier.notify(&format!(
                        "STATUS={} in term {}, leader {}",
                        match soft.role {
                            Role::Leader => "leader",
                            Role::Follower => "follower",
                            Role::PreCandidate | Role::Candidate => "candidate",
                            Role::Learner => "learner",
                        },
                        soft.term.0,
                        soft.leader
                            .map_or("unknown".to_string(), |l| l.0.to_string())
                    ));
                    tracing::info!(
                        node = %self.id,
                        role = ?soft.role,
                        term = soft.term.0,
                        leader = ?soft.leader.map(|l| l.0),
                        "role or leader changed"
                    );
                }
            }
        }
    }

    fn send(&mut self, m: Message) {
        let to = m.to;
        if let Err(err) = self.transport.send(to, &PeerMessage::Raft(m)) {
            tracing::debug!(node = %self.id, peer = %to, error = %err, "message not queued");
        }
    }

    // ----- Inputs -----

    fn on_inbound(&mut self, inbound: Inbound<PeerMessage>) {
        match inbound {
            Inbound::Message {
                from,
                message:
                    PeerMessage::HostReport {
                        applied,
                        checkpoint,
                    },
            } => self.on_host_report(from, applied, checkpoint),
            Inbound::Message {
                from,
                message: PeerMessage::Raft(message),
            } => {
                if message.from != from {
                    tracing::warn!(node = %self.id, peer = %from, claimed = %message.from, "a peer sent a message in another node's name; dropped");
                    return;
                }
                if let Err(err) = self.replica.step(message, clock::now()) {
                    tracing::warn!(node = %self.id, peer = %from, error = %err, "message refused");
                }
            }
            Inbound::Snapshot(receiver) => {
                let internal = self.internal_tx.clone();
                tokio::spawn(receive_snapshot(*receiver, internal));
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        let now = clock::now();
        match request {
            Request::Members { change, reply } => {
                if let Some(regent_raft::ConfChange::Promote(id)) = change {
                    if let Some(refusal) = self.promotion_refusal(id, now) {
                        let _ = reply.send(Err(refusal));
                        return;
                    }
                }
                let result = match change {
                    Some(change) => self.replica.change_membership(change, now),
                    None => self.replica.abort_membership_change(now),
                };
                let answer = match result {
                    Ok(index) => {
                        tracing::info!(node = %self.id, ?change, %index, "membership change proposed");
                        Ok(index)
                    }
                    Err(regent_raft::ConfChangeError::NotLeader { leader }) => {
                        Err(self.not_leader(leader))
                    }
                    Err(err) => Err(RequestError::Members(MembersRefusal::Core(err))),
                };
                let _ = reply.send(answer);
            }
            Request::Reload { reply } => {
                self.notifier.notify("RELOADING=1");
                let outcome = self.reload();
                self.notifier.notify("READY=1");
                // Publish first: whoever asked then reads the new certificate in the status.
                self.publish(now);
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Request::Snapshot { file, reply } => self.snapshot_now(file, reply, now),
            Request::Transfer { target, reply } => {
                match self.replica.transfer_leadership(target, now) {
                    Ok(to) => {
                        tracing::info!(node = %self.id, %to, "switchover asked");
                        self.start_handover(to, now, Some(reply));
                    }
                    Err(regent_raft::TransferError::NotLeader { leader }) => {
                        let _ = reply.send(Err(self.not_leader(leader)));
                    }
                    Err(err) => {
                        let _ =
                            reply.send(Err(RequestError::Transfer(TransferFailure::Refused(err))));
                    }
                }
            }
            Request::Propose {
                mut proposal,
                reply,
            } => {
                if let regent_storage::Command::JournalReport {
                    applied,
                    checkpoint,
                    ..
                } = proposal.command
                {
                    let status = self.replica.core().status(now);
                    if let Some(index) = applied {
                        // The host's hand-over ack counts at once, replicated or not.
                        self.host_applied = (status.term, index.max(self.host_applied.1));
                    }
                    // Only the leader can log it: a follower forwards it there too.
                    if let Some(leader) = status.leader.filter(|&l| l != self.id) {
                        let report = PeerMessage::HostReport {
                            applied,
                            checkpoint,
                        };
                        if let Err(err) = self.transport.send(leader, &report) {
                            tracing::debug!(node = %self.id, %leader, error = %err, "host report not forwarded");
                        }
                    }
                }
                // Fencing, early: the state machine checks it again where the entry lands. Not
                // for a write in a session: a retry of one that was applied must get its
                // recorded answer, which only the state machine has (it fences a fresh one).
                if let Some(expected) = proposal
                    .expected_term
                    .filter(|_| proposal.session.is_none())
                {
                    let current = self.replica.core().status(now).term.0;
                    if expected != current {
                        let _ = reply.send(Err(RequestError::TermMismatch { expected, current }));
                        return;
                    }
                }
                proposal.time_ms = clock::unix_ms();
                let token = self.token();
                self.metrics.proposals.fetch_add(1, Relaxed);
                match self.replica.propose(token, proposal.encode(), now) {
                    Ok(_) => {
                        let arrived = Instant::now();
                        self.pending
                            .insert(token, Pending::Write { reply, arrived });
                    }
                    Err(err) => {
                        self.metrics.proposals_failed.fetch_add(1, Relaxed);
                        let _ = reply.send(Err(self.propose_error(err)));
                    }
                }
            }
            Request::Read {
                query,
                mode: None,
                reply,
            } => {
                let token = self.token();
                self.pending
                    .insert(token, Pending::Read { query: None, reply });
                self.disk.send(DiskRequest::Read { token, query });
            }
            Request::Read {
                query,
                mode: Some(mode),
                reply,
            } => {
                let token = self.token();
                match self.replica.read(token, mode, now) {
                    Ok(()) => {
                        let query = Some(query);
                        self.pending.insert(token, Pending::Read { query, reply });
                    }
                    Err(err) => {
                        let _ = reply.send(Err(self.read_error(err)));
                    }
                }
            }
        }
    }

    /// A follower forwarded its host's journal report: the leader logs it in the follower's
    /// name (the authenticated peer, never a name the message claims).
    fn on_host_report(&mut self, from: NodeId, applied: Option<u64>, checkpoint: Option<u64>) {
        let now = clock::now();
        if self.replica.core().status(now).role != Role::Leader {
            return;
        }
        let mut proposal = regent_storage::Proposal::new(regent_storage::Command::JournalReport {
            node: from.0,
            applied,
            checkpoint,
            retention: self.config.journal.retention(),
        });
        proposal.time_ms = clock::unix_ms();
        // Nobody waits for the answer: the token is never pending.
        let token = self.token();
        if let Err(err) = self.replica.propose(token, proposal.encode(), now) {
            tracing::debug!(node = %self.id, peer = %from, error = %err, "host report not logged");
        }
    }

    /// SIGHUP or `POST /v1/admin/reload`: reads the configuration file again and reloads the
    /// certificate, key and CA bundle; then applies what may change at run time — the log
    /// filter, the host health probe, who may call admin endpoints, the lease warning. All or
    /// nothing: a file that does not load, names another node or cluster, or a certificate
    /// that does not load is refused with the reason, and everything stays as it was. Settings
    /// that need a restart are named in the answer and the log, and keep their old values.
    fn reload(&mut self) -> Result<String, RequestError> {
        let refuse = |refusal: ReloadRefusal| {
            tracing::error!(node = %self.id, reason = %refusal, "reload refused; the old configuration and certificate stay");
            Err(RequestError::Reload(refusal))
        };
        let new = match crate::config::DaemonConfig::load(&self.config_path) {
            Ok(new) => new,
            Err(err) => return refuse(ReloadRefusal::Config(err)),
        };
        if new.cluster != self.config.cluster || new.node_id != self.config.node_id {
            return refuse(ReloadRefusal::OtherNode {
                path: self.config_path.clone(),
                file_node: new.node_id,
                file_cluster: new.cluster,
                node: self.config.node_id,
                cluster: self.config.cluster.clone(),
            });
        }
        let cert = match self.transport.reload_identity() {
            Ok(cert) => cert,
            Err(err) => return refuse(ReloadRefusal::Identity(err)),
        };
        self.certificate_not_after_unix = Some(cert.not_after_unix);
        let mut applied = Vec::new();
        if new.log_level != self.config.log_level {
            match super::logging::set_filter(new.log_level.as_deref()) {
                Ok(filter) => applied.push(format!("log filter {filter}")),
                // Validated with the file, so this is not expected; keep going with the rest.
                Err(err) => tracing::warn!(node = %self.id, error = %err, "log filter not changed"),
            }
        }
        let live = live_options(&new);
        if live != live_options(&self.config) {
            self.live.send_replace(live);
            applied.push("admin_uids, admin_gids, timing.lease_warning_ms, journal".into());
        }
        if new.host_health != self.config.host_health {
            // Dropping the old receiver ends the old probe's task; a new probe starts healthy.
            self.host_health = new.host_health.clone().map(super::health::start);
            if !self.host_healthy {
                self.host_healthy = true;
                self.replica.hold_campaigns(false);
            }
            applied.push(match &new.host_health {
                Some(_) => "host_health (a new probe, starting from healthy)".to_string(),
                None => "host_health removed (the host counts as healthy)".to_string(),
            });
        }
        let restart = restart_needed(&self.config, &new);
        // What was applied is now in force; what needs a restart keeps its old value here.
        let mut kept = new.clone();
        revert_restart_only(&mut kept, &self.config);
        self.config = kept;
        let mut text = format!(
            "certificate {} valid until {}",
            cert.serial,
            regent_transport::pki::identity::format_unix(cert.not_after_unix)
        );
        if !applied.is_empty() {
            text.push_str(&format!("; applied: {}", applied.join(", ")));
        }
        if !restart.is_empty() {
            text.push_str(&format!(
                "; changed but applied only at the next restart: {}",
                restart.join(", ")
            ));
            tracing::warn!(node = %self.id, fields = ?restart, "reload: these settings change only at the next restart");
        }
        tracing::info!(node = %self.id, serial = %cert.serial, applied = ?applied, "reloaded");
        Ok(text)
    }

    /// A learner is promoted only once caught up (as etcd's `member promote`): a voter that
    /// lags would count toward the quorum without being able to help it commit, and with a
    /// member down it could stall the cluster. On the leader: it has acknowledged entries, and
    /// its match index is within `PROMOTE_LAG_MAX` entries of the leader's last index.
    /// Elsewhere the core answers.
    fn promotion_refusal(&self, id: NodeId, now: Nanos) -> Option<RequestError> {
        let core = self.replica.core();
        let status = core.status(now);
        if status.role != Role::Leader || !core.membership().learners.contains(&id) {
            return None;
        }
        let matched = core.match_index(id).map_or(0, |m| m.0);
        let lag = status.last_index.0.saturating_sub(matched);
        (matched == 0 || lag > PROMOTE_LAG_MAX).then(|| {
            RequestError::Members(MembersRefusal::LearnerBehind {
                learner: id,
                matched,
                leader_last: status.last_index.0,
                lag,
                lag_max: PROMOTE_LAG_MAX,
            })
        })
    }

    /// `regent snapshot` / `regent compact`: compact the log through the applied index now
    /// (off the commit path: the disk thread runs it after the batch in flight), then, for
    /// `compact`, the database file.
    fn snapshot_now(
        &mut self,
        file: bool,
        reply: oneshot::Sender<Result<SnapshotAnswer, RequestError>>,
        now: Nanos,
    ) {
        let previous_index = self.replica.core().snapshot_index();
        let mut actions = std::mem::take(&mut self.actions);
        let started = self.replica.compact_now(now, &mut actions);
        self.carry_out(&mut actions, now);
        self.actions = actions;
        let waiting = Maintenance {
            previous_index,
            index: previous_index,
            file,
            reply,
        };
        match started {
            regent_replica::CompactNow::Started(index)
            | regent_replica::CompactNow::InFlight(index) => {
                tracing::info!(node = %self.id, %index, "snapshot asked by an operator");
                self.maintenance.push(Maintenance { index, ..waiting });
            }
            regent_replica::CompactNow::UpToDate(index) => {
                self.maintenance.push(Maintenance { index, ..waiting });
                self.finish_maintenance(index, None);
            }
        }
    }

    /// The log compaction through `index` is done (or failed): answers the snapshots that
    /// waited for it, compacting the file first for those that asked.
    fn finish_maintenance(
        &mut self,
        index: regent_raft::LogIndex,
        failed: Option<Arc<StorageError>>,
    ) {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.maintenance)
            .into_iter()
            .partition(|m| m.index <= index);
        self.maintenance = waiting;
        for m in done {
            if let Some(err) = &failed {
                let _ = m
                    .reply
                    .send(Err(RequestError::Storage(StorageFailure::Compaction {
                        index,
                        error: err.clone(),
                    })));
                continue;
            }
            let answer = SnapshotAnswer {
                previous_index: m.previous_index,
                index,
                file: None,
            };
            if !m.file {
                let _ = m.reply.send(Ok(answer));
                continue;
            }
            let (file_reply, file_done) = oneshot::channel();
            self.disk
                .send(DiskRequest::CompactFileNow { reply: file_reply });
            let id = self.id;
            tokio::spawn(async move {
                let result = match file_done.await {
                    Ok(Ok(file)) => {
                        tracing::info!(
                            node = %id, bytes_before = file.bytes_before, bytes_after = file.bytes_after,
                            busy = file.busy, "database file compacted by an operator"
                        );
                        Ok(SnapshotAnswer {
                            file: Some(file),
                            ..answer
                        })
                    }
                    Ok(Err(err)) => Err(RequestError::Storage(StorageFailure::FileCompaction(err))),
                    Err(_) => Err(RequestError::ShuttingDown),
                };
                let _ = m.reply.send(result);
            });
        }
    }

    fn on_internal(&mut self, message: Internal) {
        match message {
            Internal::InstallChunk {
                from,
                meta,
                chunk,
                reply,
            } => self.chunks.push_back(QueuedChunk {
                from,
                meta,
                chunk,
                reply,
            }),
            Internal::SnapshotSent { to, installed } => {
                self.snapshot_sends.remove(&to);
                match installed {
                    Some(index) => self.replica.snapshot_sent(to, index, clock::now()),
                    None => self.replica.snapshot_failed(to, clock::now()),
                }
            }
            Internal::SnapshotProgress { to } => self.replica.snapshot_progress(to, clock::now()),
        }
    }

    fn on_link_event(&mut self, event: Result<LinkEvent, broadcast::error::RecvError>) {
        match event {
            Ok(LinkEvent::Up { peer, dialed, .. }) => {
                self.link_up.insert(peer, true);
                tracing::info!(node = %self.id, %peer, dialed, "link up")
            }
            Ok(LinkEvent::Down { peer, reason }) => {
                self.link_up.insert(peer, false);
                tracing::info!(node = %self.id, %peer, %reason, "link down")
            }
            Ok(LinkEvent::Rejected {
                peer,
                remote,
                by,
                reason,
            }) => tracing::warn!(
                node = %self.id, peer = ?peer.map(|p| p.0), %remote, by = ?by, %reason,
                "connection refused"
            ),
            Ok(LinkEvent::DialFailed { peer, reason }) => {
                tracing::debug!(node = %self.id, %peer, %reason, "dial failed")
            }
            Ok(LinkEvent::IdentityReloaded { cert }) => {
                self.certificate_not_after_unix = Some(cert.not_after_unix);
                tracing::info!(node = %self.id, serial = %cert.serial, "certificate reloaded")
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(node = %self.id, missed = n, "link events missed")
            }
            Err(broadcast::error::RecvError::Closed) => {
                // The transport is gone; re-subscribing keeps the branch quiet.
                self.links = self.transport.subscribe();
            }
        }
    }

    fn on_disk(&mut self, done: DiskDone) {
        let now = clock::now();
        match done {
            DiskDone::Persisted {
                number,
                result,
                micros,
                revision,
                journal,
            } => {
                self.persist_started = None;
                self.revision = revision;
                self.journal = journal;
                self.metrics.fsync_seconds.observe_micros(micros);
                self.stall_warned = false;
                match result {
                    Ok(applied) => {
                        let mut actions = std::mem::take(&mut self.actions);
                        self.replica.persisted(number, applied, &mut actions);
                        self.carry_out(&mut actions, now);
                        self.actions = actions;
                    }
                    Err(err) => {
                        self.fatal = Some(DriverError::Persist { micros, error: err });
                    }
                }
            }
            DiskDone::Compacted { index, result } => match result {
                Ok(()) => {
                    self.replica.compacted(index);
                    tracing::info!(node = %self.id, %index, "log compacted (the state machine is the snapshot)");
                    self.disk.send(DiskRequest::CompactFile);
                    self.finish_maintenance(index, None);
                }
                Err(err) => {
                    self.replica.compaction_failed();
                    tracing::warn!(node = %self.id, %index, error = %err, "log compaction failed");
                    self.finish_maintenance(index, Some(Arc::new(err)));
                }
            },
            DiskDone::Answered => {}
            DiskDone::Read { token, result } if self.address_read == Some(token) => {
                self.address_read = None;
                self.on_address_records(result);
            }
            DiskDone::Read { token, result } => {
                if let Some(Pending::Read { reply, .. }) = self.pending.remove(&token) {
                    let _ = reply
                        .send(result.map_err(|e| RequestError::Storage(StorageFailure::Read(e))));
                }
            }
            DiskDone::Snapshot { to, result } => match result {
                Ok(source) => {
                    let transport = self.transport.clone();
                    let internal = self.internal_tx.clone();
                    let metrics = self.metrics.clone();
                    tokio::spawn(send_snapshot(transport, to, source, internal, metrics));
                }
                Err(err) => {
                    self.snapshot_sends.remove(&to);
                    self.replica.snapshot_failed(to, now);
                    tracing::warn!(node = %self.id, peer = %to, error = %err, "snapshot could not be opened");
                }
            },
            DiskDone::Installed {
                from,
                result,
                applied,
            } => self.on_chunk_installed(from, result, applied, now),
            DiskDone::InstallAborted => {}
            DiskDone::FileCompacted(result) => match result {
                Ok(true) => tracing::info!(node = %self.id, "database file compacted"),
                Ok(false) => {}
                Err(err) => tracing::warn!(node = %self.id, error = %err, "file compaction failed"),
            },
        }
    }

    // ----- Snapshots -----

    /// Hands the next queued snapshot chunk to the disk when no batch is in flight, holding
    /// new batches back until it is done.
    fn feed_chunk(&mut self) {
        if self.chunk_on_disk.is_some() || self.replica.is_persisting() {
            return;
        }
        let Some(q) = self.chunks.pop_front() else {
            return;
        };
        self.replica.hold_writes(true);
        self.chunk_on_disk = Some((q.meta, q.reply));
        self.disk.send(DiskRequest::InstallChunk {
            from: q.from,
            chunk: q.chunk,
        });
    }

    fn on_chunk_installed(
        &mut self,
        from: NodeId,
        result: Result<InstallProgress, StorageError>,
        applied: regent_raft::LogIndex,
        now: Nanos,
    ) {
        self.replica.hold_writes(false);
        let Some((meta, reply)) = self.chunk_on_disk.take() else {
            return;
        };
        match result {
            Ok(InstallProgress::Continue { .. }) => {
                let _ = reply.send(Ok(false));
            }
            Ok(InstallProgress::Installed(state)) => {
                tracing::info!(
                    node = %self.id, leader = %from,
                    index = %state.snapshot.last_included_index,
                    term = %state.snapshot.last_included_term,
                    "snapshot installed"
                );
                self.metrics.snapshots_installed.fetch_add(1, Relaxed);
                self.journal = state.journal.clone();
                self.replica
                    .snapshot_installed(from, state.snapshot.clone(), now);
                let _ = reply.send(Ok(true));
            }
            Err(err) if err.requires_reload() => {
                // The store refuses writes until it is reloaded (a full disk, an I/O error):
                // every later chunk and batch would fail the same way, and the follower would
                // wait forever. Stop as a failed batch does; the restart reloads what is durable
                // (the committed state, untouched: the install writes only staging tables).
                let error = Arc::new(err);
                let _ = reply.send(Err(error.clone()));
                self.fatal = Some(DriverError::SnapshotInstall { error });
            }
            Err(err) => {
                if meta.last_included_index <= applied {
                    // Stale: the core tells the leader where to resume.
                    self.replica.snapshot_installed(from, meta, now);
                }
                let _ = reply.send(Err(Arc::new(err)));
            }
        }
    }

    // ----- Answers -----

    fn answer_proposal(&mut self, token: Token, outcome: ProposalOutcome) {
        let Some(Pending::Write { reply, arrived }) = self.pending.remove(&token) else {
            return;
        };
        let micros = arrived.elapsed().as_micros() as u64;
        self.metrics.proposal_seconds.observe_micros(micros);
        let answer = match outcome {
            ProposalOutcome::Applied {
                index,
                term,
                result,
            } => match result {
                ApplyResult::Command(Ok(response)) => Ok(WriteAnswer {
                    index,
                    term,
                    response,
                }),
                ApplyResult::Command(Err(CommandError::TermMismatch { expected, actual })) => {
                    Err(RequestError::TermMismatch {
                        expected,
                        current: actual,
                    })
                }
                ApplyResult::Command(Err(err)) => Err(RequestError::Command(err)),
                other => Err(RequestError::Storage(StorageFailure::UnexpectedApply(
                    other,
                ))),
            },
            ProposalOutcome::Superseded { .. } => Err(RequestError::Superseded),
        };
        if answer.is_err() {
            self.metrics.proposals_failed.fetch_add(1, Relaxed);
        }
        let _ = reply.send(answer);
    }

    fn answer_read(&mut self, token: Token, result: Result<regent_raft::LogIndex, ReadError>) {
        let Some(pending) = self.pending.remove(&token) else {
            return;
        };
        let Pending::Read {
            query: Some(query),
            reply,
        } = pending
        else {
            self.pending.insert(token, pending);
            return;
        };
        match result {
            Ok(_) => {
                // The disk thread runs requests in order: this read sees every batch applied
                // before it, which includes the read index.
                self.pending
                    .insert(token, Pending::Read { query: None, reply });
                self.disk.send(DiskRequest::Read { token, query });
            }
            Err(err) => {
                let _ = reply.send(Err(self.read_error(err)));
            }
        }
    }

    fn propose_error(&self, err: ProposeError) -> RequestError {
        match err {
            ProposeError::NotLeader { leader } => self.not_leader(leader),
            ProposeError::Backpressure { .. } | ProposeError::Transferring { .. } => {
                RequestError::Busy(BusyReason::Propose(err))
            }
        }
    }

    fn read_error(&self, err: ReadError) -> RequestError {
        match err {
            ReadError::NoLeader | ReadError::NotLeader => {
                let leader = self.replica.core().status(clock::now()).leader;
                self.not_leader(leader.filter(|&l| l != self.id))
            }
            ReadError::Transferring | ReadError::Backpressure { .. } => {
                RequestError::Busy(BusyReason::Read(err))
            }
        }
    }

    fn not_leader(&self, leader: Option<NodeId>) -> RequestError {
        RequestError::NotLeader {
            leader,
            address: leader.and_then(|l| self.addresses.get(&l).copied()),
        }
    }

    fn token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    // ----- Watching -----

    /// The core steps down on its own when its durable write stalls past the bound; this says
    /// why in the log.
    fn watch_stall(&mut self, now: Nanos) {
        let Some(started) = self.persist_started else {
            return;
        };
        let outstanding = Duration::from_nanos(now.saturating_sub(started));
        if outstanding > self.persist_stall_max && !self.stall_warned {
            self.stall_warned = true;
            tracing::error!(
                node = %self.id,
                outstanding_ms = outstanding.as_millis() as u64,
                "the durable write is stalled past persist_stall_max_ms; a leader steps down"
            );
        }
    }

    fn log_membership(&mut self) {
        let current = self.replica.core().membership();
        if *current != self.last_membership {
            tracing::info!(
                node = %self.id,
                voters = ?current.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
                outgoing = ?current.voters_outgoing.iter().map(|v| v.0).collect::<Vec<_>>(),
                learners = ?current.learners.iter().map(|v| v.0).collect::<Vec<_>>(),
                "membership changed"
            );
            self.last_membership = current.clone();
            self.addresses_due = true;
            self.sync_peers();
        }
    }

    // ----- Members' addresses -----

    /// Asks the disk for the members' address records when they are due: after a membership
    /// change, and (at most once a second) while a member of the configuration has no known
    /// address — on a follower the record may be applied a little after the change appears.
    fn maybe_read_addresses(&mut self, now: Nanos) {
        if self.address_read.is_some() {
            return;
        }
        let missing = self
            .replica
            .core()
            .membership()
            .members()
            .into_iter()
            .any(|id| id != self.id && !self.addresses.contains_key(&id));
        // Also every ADDRESS_REREAD: a member moved with `regent members update` is found
        // there without a configuration change.
        let since = now.saturating_sub(self.address_read_at);
        let due = self.addresses_due
            || (missing && since >= 1_000_000_000)
            || since >= ADDRESS_REREAD.as_nanos() as u64;
        if !due {
            return;
        }
        self.addresses_due = false;
        self.address_read_at = now;
        let token = self.token();
        self.address_read = Some(token);
        self.disk.send(DiskRequest::Read {
            token,
            query: ReadQuery::Range {
                prefix: api::members::MEMBER_ADDRESS_PREFIX.to_vec(),
                limit: api::members::MEMBER_RECORDS_MAX,
            },
        });
    }

    fn on_address_records(&mut self, result: Result<ReadAnswer, StorageError>) {
        let kvs = match result {
            Ok(ReadAnswer::Range { kvs, .. }) => kvs,
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "reading the members' addresses failed");
                return;
            }
        };
        for kv in &kvs {
            match api::members::parse_member_address(kv) {
                Some((id, addr)) => {
                    if self.addresses.insert(id, addr) != Some(addr) {
                        tracing::info!(node = %self.id, member = %id, %addr, "learned a member's address");
                    }
                }
                None => tracing::warn!(
                    node = %self.id, key = ?String::from_utf8_lossy(&kv.key),
                    "an address record that does not parse; ignored"
                ),
            }
        }
        self.sync_peers();
    }

    /// The transport's peers: every other member of the configuration whose address is known
    /// (all known addresses while this node has no configuration yet, as a joining node).
    fn wanted_peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        let members = self.replica.core().membership().members();
        let others = self.addresses.iter().filter(|(&id, _)| id != self.id);
        if members.is_empty() {
            return others.map(|(&id, &a)| (id, a)).collect();
        }
        others
            .filter(|(id, _)| members.contains(id))
            .map(|(&id, &a)| (id, a))
            .collect()
    }

    fn sync_peers(&mut self) {
        let wanted = self.wanted_peers();
        if wanted == self.transport.peers() {
            return;
        }
        match self.transport.set_peers(&wanted) {
            Ok(changes) => {
                for (peer, addr) in changes.added {
                    tracing::info!(node = %self.id, %peer, %addr, "peer added");
                }
                for (peer, addr) in changes.removed {
                    self.link_up.remove(&peer);
                    tracing::info!(node = %self.id, %peer, %addr, "peer removed");
                }
            }
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "the transport's peers could not be changed")
            }
        }
    }

    fn publish(&mut self, now: Nanos) {
        let core = self.replica.core();
        let s = core.status(now);
        let membership = core.membership();
        let members = membership
            .members()
            .into_iter()
            .map(|id| MemberStatus {
                id,
                address: self.addresses.get(&id).copied(),
                voter: membership.is_voter(id),
                match_index: core.match_index(id),
            })
            .collect();
        let next = NodeStatus {
            node_id: s.id,
            role: s.role,
            term: s.term,
            leader_id: s.leader,
            leader_address: s.leader.and_then(|l| self.addresses.get(&l).copied()),
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_index: s.last_index,
            revision: self.revision,
            writable: s.writable,
            lease_deadline_ns: s.lease_deadline.filter(|_| s.role == Role::Leader),
            members,
            links: self.link_up.clone(),
            host_healthy: self.host_healthy,
            certificate_not_after_unix: self.certificate_not_after_unix,
            catch_up_index: self.catch_up_index(s.role, s.term, s.writable),
            journal: self.journal.clone(),
            host_applied_index: self.host_applied.1,
        };
        self.status.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
    }

    /// The hand-over rule: a writable leader reports the last journal index committed before
    /// its term until its host says (in this term) that it applied up to it.
    fn catch_up_index(&self, role: Role, term: regent_raft::Term, writable: bool) -> Option<u64> {
        if role != Role::Leader || !writable {
            return None;
        }
        let index = self.journal.catch_up_index(term.0);
        let acked = self.host_applied.0 == term && self.host_applied.1 >= index;
        (!acked).then_some(index)
    }

    // ----- Shutdown -----

    async fn stop(mut self) -> Result<(), DriverError> {
        // Stop taking requests; answer those waiting.
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Propose { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ShuttingDown));
                }
                Request::Read { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ShuttingDown));
                }
                Request::Transfer { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ShuttingDown));
                }
                Request::Members { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ShuttingDown));
                }
                Request::Snapshot { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ShuttingDown));
                }
                Request::Reload { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(RequestError::ShuttingDown));
                    }
                }
            }
        }
        // Flush: let the batch on the disk finish (bounded), so what was promised is durable.
        if self.fatal.is_none() && self.persist_started.is_some() {
            let wait = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(done) = self.disk_done.recv().await {
                    if matches!(done, DiskDone::Persisted { .. }) {
                        self.on_disk(done);
                        break;
                    }
                    self.on_disk(done);
                }
            });
            let _ = wait.await;
            // Send what waited for durability before the links close.
            let mut actions = std::mem::take(&mut self.actions);
            self.replica.poll(&mut actions);
            for action in actions.drain(..) {
                if let Action::Send(m) = action {
                    self.send(m);
                }
            }
        }
        for (_, pending) in std::mem::take(&mut self.pending) {
            match pending {
                Pending::Write { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ShuttingDown));
                }
                Pending::Read { reply, .. } => {
                    let _ = reply.send(Err(RequestError::ShuttingDown));
                }
            }
        }
        self.transport.shutdown().await;
        let disk = self.disk;
        let _ = tokio::task::spawn_blocking(move || disk.stop()).await;
        match self.fatal {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// The API settings a reload may change, from a configuration.
pub fn live_options(config: &crate::config::DaemonConfig) -> api::LiveOptions {
    api::LiveOptions {
        lease_warning_ms: config.timing.lease_warning_ms,
        admin_uids: config.admin_uids.clone(),
        admin_gids: config.admin_gids.clone(),
        journal_retention: config.journal.retention(),
    }
}

/// The settings of `new` that differ from `old` and take effect only at a restart.
fn restart_needed(
    old: &crate::config::DaemonConfig,
    new: &crate::config::DaemonConfig,
) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            fields.push(name);
        }
    };
    check("listen", old.listen != new.listen);
    check("members", old.members != new.members);
    check("join", old.join != new.join);
    check("data_dir", old.data_dir != new.data_dir);
    check("socket", old.socket != new.socket);
    check("socket_mode", old.socket_mode != new.socket_mode);
    check("socket_group", old.socket_group != new.socket_group);
    check("tls (paths)", old.tls != new.tls);
    let mut timing = new.timing.clone();
    timing.lease_warning_ms = old.timing.lease_warning_ms;
    check("timing", old.timing != timing);
    check("raft", old.raft != new.raft);
    check("transport", old.transport != new.transport);
    check("storage", old.storage != new.storage);
    check("api", old.api != new.api);
    fields
}

/// Puts back into `new` the settings that take effect only at a restart.
fn revert_restart_only(new: &mut crate::config::DaemonConfig, old: &crate::config::DaemonConfig) {
    let lease_warning_ms = new.timing.lease_warning_ms;
    let (log_level, host_health) = (new.log_level.clone(), new.host_health.clone());
    let (admin_uids, admin_gids) = (new.admin_uids.clone(), new.admin_gids.clone());
    let journal = new.journal.clone();
    *new = old.clone();
    new.journal = journal;
    new.timing.lease_warning_ms = lease_warning_ms;
    new.log_level = log_level;
    new.host_health = host_health;
    new.admin_uids = admin_uids;
    new.admin_gids = admin_gids;
}

/// The next change of the host's health; pending forever without a probe (or once it ends).
async fn next_health(health: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    match health {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => {
                *health = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// The header of a snapshot stream: what the snapshot holds, so a receiver can tell a stale
/// one without reading it.
fn encode_header(meta: &SnapshotMeta) -> Vec<u8> {
    postcard::to_stdvec(meta).expect("a snapshot header encodes")
}

/// How often a snapshot stream that keeps moving tells the core so (which restarts its
/// snapshot timeout).
const SNAPSHOT_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Streams a storage snapshot to a follower over the transport's snapshot streams.
async fn send_snapshot(
    transport: TransportHandle<PeerMessage>,
    to: NodeId,
    mut source: Box<dyn SnapshotSource>,
    internal: mpsc::UnboundedSender<Internal>,
    metrics: Arc<Metrics>,
) {
    let meta = source.meta().clone();
    let result = async {
        let mut sender = transport
            .open_snapshot(to, &encode_header(&meta))
            .await
            .map_err(|e| e.to_string())?;
        let mut reported = Instant::now();
        loop {
            // Reading a chunk is a bounded redb read (at most a chunk's worth of records).
            let chunk =
                tokio::task::block_in_place(|| source.next_chunk()).map_err(|e| e.to_string())?;
            let Some(chunk) = chunk else { break };
            sender
                .write_chunk(&chunk)
                .await
                .map_err(|e| e.to_string())?;
            // A chunk written means the receiver consumed the flow-control window: the stream
            // is alive, however long the whole snapshot takes (at most one report a second).
            if reported.elapsed() >= SNAPSHOT_PROGRESS_EVERY {
                reported = Instant::now();
                let _ = internal.send(Internal::SnapshotProgress { to });
            }
        }
        sender.finish().await.map_err(|e| e.to_string())
    }
    .await;
    let installed = result.is_ok().then_some(meta.last_included_index);
    match result {
        Ok(bytes) => {
            metrics.snapshots_sent.fetch_add(1, Relaxed);
            metrics.snapshot_bytes_sent.fetch_add(bytes, Relaxed);
            tracing::info!(
                peer = %to, index = %meta.last_included_index, term = %meta.last_included_term, bytes,
                "snapshot sent"
            )
        }
        Err(err) => tracing::warn!(peer = %to, error = %err, "snapshot not sent"),
    }
    let _ = internal.send(Internal::SnapshotSent { to, installed });
}

/// Receives a snapshot stream and feeds its chunks, one at a time, to the driver.
async fn receive_snapshot(
    mut receiver: SnapshotReceiver,
    internal: mpsc::UnboundedSender<Internal>,
) {
    let from = receiver.from();
    let meta: SnapshotMeta = match postcard::from_bytes(receiver.header()) {
        Ok(meta) => meta,
        Err(err) => {
            tracing::warn!(peer = %from, error = %err, "snapshot stream with an undecodable header; refused");
            return;
        }
    };
    loop {
        let chunk = match receiver.next_chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                tracing::warn!(peer = %from, "snapshot stream ended before the snapshot did");
                return;
            }
            Err(err) => {
                tracing::warn!(peer = %from, error = %err, "snapshot stream failed");
                return;
            }
        };
        let (reply, answer) = oneshot::channel();
        let sent = internal.send(Internal::InstallChunk {
            from,
            meta: meta.clone(),
            chunk,
            reply,
        });
        if sent.is_err() {
            return;
        }
        match answer.await {
            Ok(Ok(false)) => continue,
            Ok(Ok(true)) => break,
            Ok(Err(err)) => {
                tracing::info!(peer = %from, error = %err, "snapshot refused");
                return;
            }
            Err(_) => return,
        }
    }
    // Drain the end marker, then acknowledge.
    match receiver.next_chunk().await {
        Ok(None) => {
            if let Err(err) = receiver.accept().await {
                tracing::debug!(peer = %from, error = %err, "snapshot acknowledgement not delivered");
            }
        }
        Ok(Some(_)) => tracing::warn!(peer = %from, "snapshot stream continued past its end"),
        Err(err) => tracing::debug!(peer = %from, error = %err, "snapshot stream end"),
    }
}

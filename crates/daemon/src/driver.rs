//! The driver: one task owns the replica and nothing else touches it. It selects over its
//! sources, hands each input to the replica, and carries out the replica's actions with real
//! I/O — QUIC sends, the disk thread, snapshot streams, answers through oneshot channels. Every
//! decision about Raft, the state machine, the journal, hand-overs, promotions, fencing and
//! snapshot installs is the replica's (and so is run by the simulator); what is left here is
//! wiring, the node's address book (`peers`), its published status (`status`), operator
//! maintenance and reloads (`admin`), and the shutdown (`stop`).
//!
//! The loop is a biased select in a fixed order: shutdown, disk completions, stream events,
//! inbound messages, API requests, link events, the host's health, then a sleep until the
//! replica's next deadline. After each wake-up it drains whatever else is already queued (so
//! many proposals go into one batch and one fsync), ticks the replica, carries out the actions
//! and publishes the node's status. The clock is read at the loop's head and passed down.
//!
//! Invariants: heartbeats and votes never wait behind the disk (messages that need no
//! durability go out as soon as the core produces them; the disk works on its own thread); at
//! most one batch or snapshot chunk is on the disk (the replica sequences them); every request
//! is answered exactly once (its oneshot is dropped only with an answer or at shutdown).

mod admin;
mod answers;
mod links;
mod peers;
mod status;
mod stop;

pub use admin::live_options;
pub(crate) use links::send_raft;

use crate::api::metrics::Metrics;
use crate::api::status::NodeStatus;
use crate::api::{
    self, HandoverAnswer, HistoryAnswer, MembersRefusal, ReadAnswer, ReadQuery, Request,
    RequestError, StorageFailure, WriteAnswer,
};
use crate::clock;
use crate::disk::{self, Disk, DiskDone, DiskRequest};
use crate::notify::Notifier;
use crate::streams::{self, ChunkVerdict, StreamEvent};
use crate::wire::PeerMessage;
use regent_raft::{Nanos, NodeId};
use regent_replica::{Action, ProposeRefusal, Replica, Stop, Token};
use regent_storage::StorageError;
use regent_transport::{Inbound, LinkEvent, TransportHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Requests the driver takes from one wake-up before it ticks and writes: bounds the work of
/// one loop turn (and so the latency of timers) under a flood.
const DRAIN_MAX: usize = 4096;

/// A learner has no timer at all (`Nanos::MAX`): the loop wakes at least this often anyway.
const IDLE_WAKE_NS: Nanos = 60_000_000_000;

/// Why the driver stopped on its own: the storage failed in a way that leaves the outcome of
/// a write unknown, so the node must restart and reload what is durable.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("a durable write failed after {micros} µs, its outcome is unknown: {error}")]
    Persist { micros: u64, error: StorageError },
    /// The install's error is also sent to the stream's task, hence the `Arc`.
    #[error("a snapshot install failed: {error}")]
    SnapshotInstall { error: Arc<StorageError> },
    #[error("the state machine could not be read or persisted: {error}")]
    State { error: StorageError },
}

/// What woke the loop.
enum Wake {
    Start,
    Shutdown { closed: bool },
    Disk(DiskDone),
    Stream(StreamEvent),
    Inbound(Inbound<PeerMessage>),
    Request(Request),
    Link(Result<LinkEvent, broadcast::error::RecvError>),
    Health(bool),
    Timer,
}

/// A request waiting for the replica or the disk.
enum Pending {
    Write {
        reply: oneshot::Sender<Result<WriteAnswer, RequestError>>,
        arrived: Instant,
    },
    Read {
        query: ReadQuery,
        reply: oneshot::Sender<Result<ReadAnswer, RequestError>>,
    },
    Switchover {
        reply: oneshot::Sender<Result<HandoverAnswer, RequestError>>,
    },
    /// A snapshot chunk from a receiving task: `Ok(true)` once the snapshot is installed.
    Chunk {
        reply: oneshot::Sender<ChunkVerdict>,
    },
}

/// Everything the driver needs, handed over by `daemon::run`.
pub struct DriverParts {
    pub replica: Replica,
    pub disk: Disk,
    pub disk_done: mpsc::UnboundedReceiver<DiskDone>,
    pub transport: TransportHandle<PeerMessage>,
    pub inbound: mpsc::Receiver<Inbound<PeerMessage>>,
    /// Requests relayed by peers (`forward=true`), for the API to carry out.
    pub calls: mpsc::Sender<Box<regent_transport::CallRequest>>,
    /// The hooks and fence methods (the promotions the replica asks for go there).
    pub hooks: crate::hooks::Hooks,
    pub requests: mpsc::Receiver<Request>,
    pub status: watch::Sender<NodeStatus>,
    pub shutdown: watch::Receiver<bool>,
    /// Every known member's address: the configuration's, overridden by the replicated
    /// address records (`api::members`) read at start.
    pub addresses: BTreeMap<NodeId, SocketAddr>,
    pub persist_stall_max: Duration,
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

pub struct Driver {
    id: NodeId,
    replica: Replica,
    disk: Disk,
    disk_done: mpsc::UnboundedReceiver<DiskDone>,
    transport: TransportHandle<PeerMessage>,
    inbound: mpsc::Receiver<Inbound<PeerMessage>>,
    calls: mpsc::Sender<Box<regent_transport::CallRequest>>,
    hooks: crate::hooks::Hooks,
    requests: mpsc::Receiver<Request>,
    streams_tx: mpsc::UnboundedSender<StreamEvent>,
    streams: mpsc::UnboundedReceiver<StreamEvent>,
    links: broadcast::Receiver<LinkEvent>,
    shutdown: watch::Receiver<bool>,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    host_health: Option<watch::Receiver<bool>>,
    peers: peers::Peers,
    status: status::Publisher,
    admin: admin::Admin,
    pending: BTreeMap<Token, Pending>,
    /// Peers a snapshot is being streamed to (one stream each).
    snapshot_sends: BTreeSet<NodeId>,
    next_token: Token,
    actions: Vec<Action>,
    next_watchdog: Option<Nanos>,
    /// The clocks as read at the head of the current turn (CLOCK_MONOTONIC; the wall clock in
    /// milliseconds, the log time a leader stamps on proposals).
    now: Nanos,
    wall_ms: u64,
    fatal: Option<DriverError>,
}

impl Driver {
    pub fn new(parts: DriverParts) -> Driver {
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let links = parts.transport.subscribe();
        let not_after = parts.transport.identity_cert().not_after_unix;
        let membership = parts.replica.core().membership().clone();
        let mut replica = parts.replica;
        replica.set_promotion_gate(parts.hooks.gated, parts.hooks.backoff_ns);
        replica.set_election(parts.config.election.settings(), clock::now());
        let mut driver = Driver {
            id: replica.core().id(),
            replica,
            disk: parts.disk,
            disk_done: parts.disk_done,
            transport: parts.transport,
            inbound: parts.inbound,
            calls: parts.calls,
            hooks: parts.hooks,
            requests: parts.requests,
            streams_tx,
            streams,
            links,
            shutdown: parts.shutdown,
            notifier: parts.notifier,
            metrics: parts.metrics,
            host_health: parts.host_health,
            peers: peers::Peers::new(parts.addresses, membership),
            status: status::Publisher::new(parts.status, parts.persist_stall_max, not_after),
            admin: admin::Admin::new(parts.live, parts.config_path, parts.config),
            pending: BTreeMap::new(),
            snapshot_sends: BTreeSet::new(),
            next_token: 1,
            actions: Vec::new(),
            next_watchdog: None,
            now: 0,
            wall_ms: 0,
            fatal: None,
        };
        // Links that came up before the subscription.
        driver.sync_link_versions();
        driver
    }

    /// As `run`, for a node that must never campaign (a required watchdog device that does
    /// not work): it votes, follows and serves reads.
    pub async fn run_ineligible(mut self) -> Result<(), DriverError> {
        let now = clock::now();
        self.replica.set_campaign_eligible(false, now);
        self.run().await
    }

    /// Runs until shutdown is asked or storage fails. Returns the fatal error, if any.
    pub async fn run(mut self) -> Result<(), DriverError> {
        self.notifier.notify("READY=1");
        // Due at the first turn, then every interval.
        self.next_watchdog = self.notifier.watchdog_interval().map(|_| 0);
        self.sync_peers();
        let mut woke = Wake::Start;
        loop {
            // The loop's head: the turn's one reading of the clocks, passed down from here.
            let now = clock::now();
            self.now = now;
            self.wall_ms = clock::unix_ms();
            self.replica.set_wall_clock(now, self.wall_ms);
            if !self.on_wake(woke, now) {
                break;
            }
            self.drain(now);
            if self.fatal.is_some() {
                break;
            }
            self.turn(now);
            if self.fatal.is_some() || (self.replica.is_stopping() && !self.replica.handing_over())
            {
                break;
            }
            // No fixed tick: sleep until the replica's next deadline (quinn-proto's
            // poll_timeout).
            let mut deadline = self.replica.next_deadline().min(now + IDLE_WAKE_NS);
            if let Some(at) = self.next_watchdog {
                deadline = deadline.min(at);
            }
            let sleep = tokio::time::sleep(clock::until(deadline, now));
            let stopping = self.replica.is_stopping();
            woke = tokio::select! {
                biased;
                changed = self.shutdown.changed(), if !stopping => Wake::Shutdown {
                    closed: changed.is_err(),
                },
                Some(done) = self.disk_done.recv() => Wake::Disk(done),
                Some(event) = self.streams.recv() => Wake::Stream(event),
                Some(inbound) = self.inbound.recv() => Wake::Inbound(inbound),
                Some(request) = self.requests.recv() => Wake::Request(request),
                event = self.links.recv() => Wake::Link(event),
                Some(healthy) = next_health(&mut self.host_health) => Wake::Health(healthy),
                _ = sleep => Wake::Timer,
            };
        }
        self.stop().await
    }

    /// Hands what woke the loop to its handler. Returns false to stop at once.
    fn on_wake(&mut self, woke: Wake, now: Nanos) -> bool {
        match woke {
            Wake::Start | Wake::Timer => {}
            Wake::Shutdown { closed } => return !(closed || self.begin_stop(now)),
            Wake::Disk(done) => self.on_disk(done, now),
            Wake::Stream(event) => self.on_stream(event, now),
            Wake::Inbound(inbound) => self.on_inbound(inbound, now),
            Wake::Request(request) => self.on_request(request, now),
            Wake::Link(event) => self.on_link_event(event),
            Wake::Health(healthy) => self.replica.set_host_healthy(healthy, now),
        }
        true
    }

    /// Shutdown was asked: a leader hands leadership over first (the replica decides). Returns
    /// whether to stop at once.
    fn begin_stop(&mut self, now: Nanos) -> bool {
        self.notifier.notify("STOPPING=1");
        self.replica.begin_stop(now) == Stop::Now
    }

    /// Takes everything already queued without waiting, so that it shares one batch.
    fn drain(&mut self, now: Nanos) {
        while let Ok(done) = self.disk_done.try_recv() {
            self.on_disk(done, now);
        }
        while let Ok(event) = self.streams.try_recv() {
            self.on_stream(event, now);
        }
        for _ in 0..DRAIN_MAX {
            let Ok(inbound) = self.inbound.try_recv() else {
                break;
            };
            self.on_inbound(inbound, now);
        }
        for _ in 0..DRAIN_MAX {
            let Ok(request) = self.requests.try_recv() else {
                break;
            };
            self.on_request(request, now);
        }
    }

    /// Ticks the replica, carries out its actions, publishes the status.
    fn turn(&mut self, now: Nanos) {
        self.replica.tick(now);
        if let (Some(at), Some(every)) = (self.next_watchdog, self.notifier.watchdog_interval()) {
            if now >= at {
                // From the loop itself: a loop that stops turning stops feeding the watchdog.
                self.notifier.notify("WATCHDOG=1");
                self.next_watchdog = Some(now + every.as_nanos() as u64);
            }
        }
        self.status.watch_stall(self.id, now);
        self.poll(now);
        self.peers_turn(now);
        self.publish(now);
    }

    /// Carries out whatever the replica has for us now.
    fn poll(&mut self, now: Nanos) {
        let mut actions = std::mem::take(&mut self.actions);
        self.replica.poll(&mut actions);
        self.carry_out(&mut actions, now);
        self.actions = actions;
    }

    fn carry_out(&mut self, actions: &mut Vec<Action>, now: Nanos) {
        for action in actions.drain(..) {
            match action {
                Action::Send(m) => self.send(m),
                Action::Persist(persist) => {
                    self.status.persist_started(now);
                    self.disk.send(DiskRequest::Persist(persist));
                }
                Action::PersistState(flush) => self.disk.send(DiskRequest::PersistState(flush)),
                Action::Applied(_) => {}
                Action::Fatal(error) => self.fatal = Some(DriverError::State { error }),
                Action::SendSnapshot { to } => {
                    // While a stream to `to` is still finishing, a new request is not started:
                    // the core asks again once that stream's end is reported to it.
                    if self.snapshot_sends.insert(to) {
                        self.disk.send(DiskRequest::Snapshot { to });
                    }
                }
                Action::Proposal { token, outcome } => self.answer_proposal(token, outcome),
                Action::Read { token, result } => self.answer_read(token, result),
                Action::Compact(index) => self.disk.send(DiskRequest::Compact(index)),
                Action::SoftState(soft) => self.on_soft_state(&soft),
                Action::Handover { token, outcome } => self.answer_handover(token, outcome),
                Action::ForwardHostReport {
                    to,
                    applied,
                    checkpoint,
                } => {
                    let report = PeerMessage::HostReport {
                        applied,
                        checkpoint,
                    };
                    if let Err(err) = self.transport.send(to, &report) {
                        tracing::debug!(node = %self.id, leader = %to, error = %err, "host report not forwarded");
                    }
                }
                Action::InstallChunk { from, chunk } => {
                    self.disk.send(DiskRequest::InstallChunk { from, chunk });
                }
                Action::InstallAnswer { token, verdict } => self.answer_chunk(token, verdict),
                Action::Promote {
                    term,
                    previous_leader,
                    handover,
                } => {
                    let previous = previous_leader.map(|id| (id, self.peers.address(id)));
                    let status = self.status.current();
                    self.hooks.promote(term, previous, handover, &status);
                }
                Action::Demote { term } => {
                    let status = self.status.current();
                    self.hooks.demote(term, &status);
                }
                Action::ClockStamp { to, stamp } => {
                    if let Err(err) = self.transport.send(to, &PeerMessage::clock(stamp)) {
                        tracing::debug!(node = %self.id, peer = %to, error = %err, "clock stamp not queued");
                    }
                }
            }
        }
    }

    // ----- Inputs -----

    fn on_request(&mut self, request: Request, now: Nanos) {
        match request {
            Request::Members { change, reply } => {
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
            Request::Promoted { term, result } => self.replica.promotion_done(term, result, now),
            Request::Demoted { term } => self.replica.demote_done(term, now),
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
            // A read of what storage holds: the disk thread opens it and answers.
            Request::Backup { reply } => self.disk.send(DiskRequest::Backup { reply }),
            Request::History { limit, reply } => {
                let answer = self
                    .replica
                    .history(limit)
                    .map(|records| HistoryAnswer {
                        records,
                        applied_index: self.replica.state().applied(),
                    })
                    .map_err(|e| RequestError::Storage(StorageFailure::Read(e)));
                let _ = reply.send(answer);
            }
            Request::Transfer {
                target,
                force,
                reply,
            } => {
                let token = self.token();
                let started = if force {
                    self.replica
                        .force_switchover(token, target, now, self.wall_ms)
                } else {
                    self.replica.switchover(token, target, now)
                };
                match started {
                    // A forced switchover to this leader itself: nothing to hand over.
                    Ok(to) if to == self.id => {
                        let (from, pause_ms) = (to, 0);
                        let _ = reply.send(Ok(HandoverAnswer { from, to, pause_ms }));
                    }
                    Ok(_) => {
                        self.pending.insert(token, Pending::Switchover { reply });
                    }
                    Err(err) => {
                        let _ = reply.send(Err(self.maintenance_error(err)));
                    }
                }
            }
            Request::Maintenance { change, reply } => {
                let token = self.token();
                match self
                    .replica
                    .propose_maintenance(token, change, now, self.wall_ms)
                {
                    Ok(_) => {
                        let arrived = Instant::now();
                        self.pending
                            .insert(token, Pending::Write { reply, arrived });
                    }
                    Err(err) => {
                        let _ = reply.send(Err(self.maintenance_error(err)));
                    }
                }
            }
            Request::Propose { proposal, reply } => {
                let token = self.token();
                self.metrics.proposals.fetch_add(1, Relaxed);
                match self
                    .replica
                    .propose_command(token, proposal, now, self.wall_ms)
                {
                    Ok(_) => {
                        let arrived = Instant::now();
                        self.pending
                            .insert(token, Pending::Write { reply, arrived });
                    }
                    Err(ProposeRefusal::TermMismatch { expected, current }) => {
                        let _ = reply.send(Err(RequestError::TermMismatch { expected, current }));
                    }
                    Err(ProposeRefusal::Core(err)) => {
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
                let answer = disk::read(self.replica.state(), query);
                let _ =
                    reply.send(answer.map_err(|e| RequestError::Storage(StorageFailure::Read(e))));
            }
            Request::Read {
                query,
                mode: Some(mode),
                reply,
            } => {
                let token = self.token();
                match self.replica.read(token, mode, now) {
                    Ok(()) => {
                        self.pending.insert(token, Pending::Read { query, reply });
                    }
                    Err(err) => {
                        let _ = reply.send(Err(self.read_error(err)));
                    }
                }
            }
        }
    }

    fn on_stream(&mut self, event: StreamEvent, now: Nanos) {
        match event {
            StreamEvent::Chunk {
                from,
                meta,
                chunk,
                reply,
            } => {
                let token = self.token();
                self.pending.insert(token, Pending::Chunk { reply });
                self.replica.install_chunk(token, from, meta, chunk);
            }
            StreamEvent::Sent { to, installed } => {
                self.snapshot_sends.remove(&to);
                match installed {
                    Some(index) => self.replica.snapshot_sent(to, index, now),
                    None => self.replica.snapshot_failed(to, now),
                }
            }
            StreamEvent::Progress { to } => self.replica.snapshot_progress(to, now),
        }
    }

    fn on_disk(&mut self, done: DiskDone, now: Nanos) {
        match done {
            DiskDone::Persisted {
                number,
                result,
                micros,
            } => {
                self.status.persisted();
                self.metrics.fsync_seconds.observe_micros(micros);
                match result {
                    Ok(()) => {
                        let mut actions = std::mem::take(&mut self.actions);
                        self.replica.persisted(number, &mut actions);
                        self.carry_out(&mut actions, now);
                        self.actions = actions;
                    }
                    Err(error) => self.fatal = Some(DriverError::Persist { micros, error }),
                }
            }
            DiskDone::StatePersisted { applied, result } => match result {
                Ok(()) => {
                    let mut actions = std::mem::take(&mut self.actions);
                    self.replica.state_persisted(applied, &mut actions);
                    self.carry_out(&mut actions, now);
                    self.actions = actions;
                }
                Err(error) => self.fatal = Some(DriverError::State { error }),
            },
            DiskDone::Compacted { index, result } => match result {
                Ok(()) => {
                    self.replica.compacted(index);
                    tracing::info!(node = %self.id, %index, "log compacted (the state machine is the snapshot)");
                    self.finish_maintenance(index, None);
                }
                Err(err) => {
                    self.replica.compaction_failed();
                    tracing::warn!(node = %self.id, %index, error = %err, "log compaction failed");
                    self.finish_maintenance(index, Some(Arc::new(err)));
                }
            },
            DiskDone::Answered | DiskDone::InstallAborted => {}
            DiskDone::Snapshot { to, result } => match result {
                Ok(source) => {
                    let (transport, events) = (self.transport.clone(), self.streams_tx.clone());
                    let metrics = self.metrics.clone();
                    tokio::spawn(streams::send(transport, to, source, events, metrics));
                }
                Err(err) => {
                    self.snapshot_sends.remove(&to);
                    self.replica.snapshot_failed(to, now);
                    tracing::warn!(node = %self.id, peer = %to, error = %err, "snapshot could not be opened");
                }
            },
            DiskDone::Installed {
                from: _,
                result,
                applied,
            } => {
                if let Ok(regent_storage::InstallProgress::Installed(_)) = &result {
                    self.metrics.snapshots_installed.fetch_add(1, Relaxed);
                }
                let mut actions = std::mem::take(&mut self.actions);
                self.replica
                    .chunk_installed(result, applied, now, &mut actions);
                self.carry_out(&mut actions, now);
                self.actions = actions;
            }
            DiskDone::FileCompacted(result) => match result {
                Ok(true) => tracing::info!(node = %self.id, "database file compacted"),
                Ok(false) => {}
                Err(err) => tracing::warn!(node = %self.id, error = %err, "file compaction failed"),
            },
        }
    }

    fn token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        token
    }
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

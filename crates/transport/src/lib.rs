//! The transport: Raft messages between nodes over QUIC with mutual TLS.
//!
//! One quinn endpoint per node; one long-lived connection per pair of nodes, dialed by the
//! node with the LOWER id (the other side only accepts), so there is never a race between two
//! connections for one pair; Raft messages on one long-lived bidirectional stream of
//! length-prefixed frames (`frame`); snapshots on streams of their own (`snapshot`), at a
//! lower priority, so they never hold up a heartbeat.
//!
//! A link counts as up only after the hello exchange on the message stream: over TLS 1.3 a
//! client's handshake completes before the server has checked the client's certificate, so
//! the dialer waits for the server's `HelloAck` (see docs/transport.md).
//!
//! Invariants: `send` never blocks (bounded queue per peer, policy in `queue`); nothing a peer
//! sends can panic this process — a bad frame closes that peer's connection with an error
//! naming the peer; every connection is mutually authenticated against the material current
//! when it started, and `reload_identity` swaps material only after it loaded whole.

pub mod admission;
pub mod backoff;
pub mod call;
pub mod frame;
mod peer;
pub mod pki;
pub mod queue;
pub mod snapshot;
pub mod tls;

pub use crate::pki::TlsPaths;
pub use call::CallRequest;
pub use peer::{Hello, HelloAck};
pub use queue::{Pushed, QueueStats};
pub use snapshot::{SnapshotReceiver, SnapshotSender};

use crate::pki::{CertInfo, NodeIdentity, NodeMaterial, PkiError};
use regent_raft::{MessageBody, NodeId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// The most peers a node may have (a Raft group of 3–5, with room for changes).
pub const PEERS_MAX: usize = 32;
/// Concurrent snapshot streams per connection, each direction.
pub const SNAPSHOT_STREAMS_MAX: u32 = 4;
/// Incoming handshakes in progress at once from addresses that are not configured peers (all
/// of them together); more are refused. Configured peer addresses have budgets of their own.
pub const HANDSHAKES_MAX: usize = 16;
/// Incoming handshakes in progress at once from one source that is not a configured peer
/// address (an IPv4 address, or an IPv6 /64).
pub const HANDSHAKES_PER_SOURCE_MAX: usize = 4;
/// Incoming handshakes in progress at once from each configured peer address (a restarted
/// peer may dial again before its earlier attempt timed out).
pub const PEER_HANDSHAKES_MAX: usize = 2;
/// Authenticated connections of one peer waiting for their hello at once.
pub const HELLOS_PER_PEER_MAX: usize = 2;
/// Connection attempts quinn queues for the accept loop, which decides about each at once.
pub const INCOMING_MAX: usize = 1024;
/// Link events kept for slow subscribers before they lag.
pub const EVENTS_BUFFER_MAX: usize = 1024;

/// A message type the transport can carry. `coalesce_key` lets a newer message replace a
/// queued one with the same key (heartbeats); the default replaces nothing.
/// `wire_version_min` is the oldest wire version whose peers understand the message: it is
/// never written to a link that speaks an older one (dropped, as a lost message would be).
pub trait WireMessage: Serialize + DeserializeOwned + Send + 'static {
    fn coalesce_key(&self) -> Option<u64> {
        None
    }

    fn wire_version_min(&self) -> u8 {
        tls::WIRE_VERSION_MIN
    }
}

/// Raft messages: a newer heartbeat (or heartbeat response) replaces a queued one — only the
/// newest round matters to the lease, and the commit index it carries only grows.
impl WireMessage for regent_raft::Message {
    fn coalesce_key(&self) -> Option<u64> {
        match self.body {
            MessageBody::Heartbeat { .. } => Some(1),
            MessageBody::HeartbeatResponse { .. } => Some(2),
            _ => None,
        }
    }
}

/// The transport's configuration. `TransportConfig::new` fills the defaults; `validate`
/// checks every limit (named `*_max`) and timing, naming the field at fault.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub node_id: NodeId,
    pub cluster_name: String,
    /// The UDP address of this node's endpoint.
    pub listen_addr: SocketAddr,
    /// Every other node and its UDP address. The lower id of a pair dials.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub tls: TlsPaths,
    /// The largest frame after its length prefix; the same on every node (checked in the
    /// hello). Default 4 MiB.
    pub frame_bytes_max: usize,
    /// Frames queued per peer before the oldest are dropped. Default 4096.
    pub send_queue_max: usize,
    /// Bytes queued per peer before the oldest frames are dropped. Default 64 MiB.
    pub send_queue_bytes_max: usize,
    /// Inbound messages and snapshots waiting for the caller; when full, reading from peers
    /// pauses (QUIC flow control pushes back on them). Default 4096.
    pub inbound_queue_max: usize,
    /// Reconnect backoff: first ceiling and cap, with jitter. Defaults 50 ms and 2 s.
    pub reconnect_backoff_min_ms: u64,
    pub reconnect_backoff_max_ms: u64,
    /// Time allowed for the TLS handshake plus the hello exchange. Default 5 s.
    pub handshake_timeout_ms: u64,
    /// Time an incoming connection may take to complete TLS (the client's certificate
    /// verified) while it holds a handshake slot; at most `handshake_timeout_ms`. A handshake
    /// takes a few milliseconds on the networks regent runs on; this bounds how long an
    /// unauthenticated client can keep a slot. Default 1 s.
    pub unauthenticated_timeout_ms: u64,
    /// A connection silent this long is dead; keep-alives go every third of it. Default 10 s.
    pub idle_timeout_ms: u64,
    /// A snapshot stream without progress this long is aborted. Default 30 s.
    pub snapshot_stall_timeout_ms: u64,
    /// The largest snapshot accepted. Default 64 GiB.
    pub snapshot_bytes_max: u64,
    /// The newest wire version this node offers (ALPN `regent/<v>` down to
    /// `regent/<WIRE_VERSION_MIN>`). `WIRE_VERSION_MAX` but in tests that make a node speak
    /// as an older build would (the daemon's `REGENT_TEST_WIRE_VERSION_MAX`).
    pub wire_version_max: u8,
}

impl TransportConfig {
    pub fn new(
        node_id: NodeId,
        cluster_name: impl Into<String>,
        listen_addr: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        tls: TlsPaths,
    ) -> TransportConfig {
        TransportConfig {
            node_id,
            cluster_name: cluster_name.into(),
            listen_addr,
            peers,
            tls,
            frame_bytes_max: 4 << 20,
            send_queue_max: 4096,
            send_queue_bytes_max: 64 << 20,
            inbound_queue_max: 4096,
            reconnect_backoff_min_ms: 50,
            reconnect_backoff_max_ms: 2000,
            handshake_timeout_ms: 5000,
            unauthenticated_timeout_ms: 1000,
            idle_timeout_ms: 10_000,
            snapshot_stall_timeout_ms: 30_000,
            snapshot_bytes_max: 64 << 30,
            wire_version_max: tls::WIRE_VERSION_MAX,
        }
    }

    /// Checks every field; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), TransportError> {
        fn range<V: PartialOrd + std::fmt::Display>(
            field: &'static str,
            value: V,
            min: V,
            max: V,
        ) -> Result<(), TransportError> {
            if value < min || value > max {
                return Err(TransportError::Config {
                    field,
                    reason: format!("{value} is not within {min}..={max}"),
                });
            }
            Ok(())
        }
        let identity = NodeIdentity::new(&self.cluster_name, self.node_id)?;
        if self.peers.len() > PEERS_MAX {
            return Err(TransportError::Config {
                field: "peers",
                reason: format!("{} peers, more than {PEERS_MAX}", self.peers.len()),
            });
        }
        for id in self.peers.keys() {
            if id.0 == 0 || *id == identity.node_id {
                return Err(TransportError::Config {
                    field: "peers",
                    reason: format!("{id} cannot be a peer (0 or this node itself)"),
                });
            }
        }
        range(
            "frame_bytes_max",
            self.frame_bytes_max,
            frame::FRAME_BYTES_MIN,
            frame::FRAME_BYTES_LIMIT,
        )?;
        range("send_queue_max", self.send_queue_max, 1, 1 << 20)?;
        range(
            "send_queue_bytes_max",
            self.send_queue_bytes_max,
            self.frame_bytes_max + frame::LEN_BYTES,
            4 << 30,
        )?;
        range("inbound_queue_max", self.inbound_queue_max, 1, 1 << 20)?;
        range(
            "reconnect_backoff_min_ms",
            self.reconnect_backoff_min_ms,
            1,
            60_000,
        )?;
        range(
            "reconnect_backoff_max_ms",
            self.reconnect_backoff_max_ms,
            self.reconnect_backoff_min_ms,
            600_000,
        )?;
        range(
            "handshake_timeout_ms",
            self.handshake_timeout_ms,
            100,
            60_000,
        )?;
        range(
            "unauthenticated_timeout_ms",
            self.unauthenticated_timeout_ms,
            100,
            self.handshake_timeout_ms,
        )?;
        range("idle_timeout_ms", self.idle_timeout_ms, 300, 600_000)?;
        range(
            "snapshot_stall_timeout_ms",
            self.snapshot_stall_timeout_ms,
            100,
            600_000,
        )?;
        range("snapshot_bytes_max", self.snapshot_bytes_max, 1, 1 << 44)?;
        range(
            "wire_version_max",
            self.wire_version_max,
            tls::WIRE_VERSION_MIN,
            tls::WIRE_VERSION_MAX,
        )?;
        Ok(())
    }

    fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            cluster: self.cluster_name.clone(),
            node_id: self.node_id,
        }
    }
}

/// Every error of the transport layer. A message that includes an underlying error does not
/// also return it as its `source`, so a printed chain never says the same thing twice.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid transport config {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("the transport must start inside a tokio runtime")]
    NoRuntime,
    #[error("cannot bind UDP {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("TLS configuration: {what}: {error}")]
    Tls {
        what: &'static str,
        error: rustls::Error,
    },
    /// quinn refused the rustls configuration (it lacks the initial QUIC cipher suite).
    #[error("TLS configuration: {what}: {error}")]
    QuicCrypto {
        what: &'static str,
        error: quinn::crypto::rustls::NoInitialCipherSuite,
    },
    #[error("{0} is not a configured peer")]
    UnknownPeer(NodeId),
    #[error("no link to {0}")]
    NotConnected(NodeId),
    #[error("message to {peer}: {error}")]
    Encode {
        peer: NodeId,
        error: frame::FrameError,
    },
    #[error("bad frame from {peer}: {error}")]
    Frame {
        peer: NodeId,
        error: frame::FrameError,
    },
    #[error("link to {peer}: {reason}")]
    Link { peer: NodeId, reason: String },
    #[error("snapshot with {peer}: {reason}")]
    Snapshot { peer: NodeId, reason: String },
    /// The link to `peer` speaks wire version `link`, older than the `needed` one (a peer
    /// running an older build, during a rolling upgrade).
    #[error("the link to {peer} speaks regent/{link}; this needs regent/{needed}")]
    WireVersion { peer: NodeId, needed: u8, link: u8 },
    /// A call failed; `sent` says whether the request may have reached the peer (and so may
    /// have been carried out there).
    #[error("call to {peer}: {reason}")]
    Call {
        peer: NodeId,
        sent: bool,
        reason: String,
    },
    #[error("the transport is shut down")]
    Shutdown,
}

/// What the transport hands to its caller.
#[derive(Debug)]
pub enum Inbound<T> {
    Message {
        from: NodeId,
        message: T,
    },
    /// A snapshot stream opened by `from`; read it with `next_chunk`, then `accept` it.
    Snapshot(Box<SnapshotReceiver>),
    /// A call opened by a peer (`TransportHandle::call`): answer it with `reply`.
    Call(Box<CallRequest>),
}

/// Which side refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuser {
    /// This node refused the peer's certificate or hello.
    Us,
    /// The peer refused ours (a TLS alert or a refused hello reached us).
    Peer,
}

/// Link changes, for logs, metrics and tests.
#[derive(Clone, Debug)]
pub enum LinkEvent {
    /// The link is authenticated both ways and the hello was answered.
    Up {
        peer: NodeId,
        dialed: bool,
        peer_cert: CertInfo,
        /// The wire version the link speaks: the newest both ends offered.
        wire_version: u8,
    },
    Down {
        peer: NodeId,
        reason: String,
    },
    /// A connection was refused during the TLS handshake or the hello. `peer` is the node
    /// the connection was for, when known.
    Rejected {
        peer: Option<NodeId>,
        remote: SocketAddr,
        by: Refuser,
        reason: String,
    },
    /// A dial failed for another reason (timeout, unreachable).
    DialFailed {
        peer: NodeId,
        reason: String,
    },
    /// New certificate, key and CA bundle are in use for new connections.
    IdentityReloaded {
        cert: CertInfo,
    },
}

/// The state of one peer's link.
#[derive(Clone, Debug, Default)]
pub struct PeerStatus {
    pub connected: bool,
    /// Whether this node dialed the current link.
    pub dialed: bool,
    /// The certificate the peer presented on the current (or last) link.
    pub peer_cert: Option<CertInfo>,
    pub last_error: Option<String>,
    /// How many times a link to this peer came up.
    pub links_up: u64,
    /// The wire version the current link speaks (`None` while there is none).
    pub wire_version: Option<u8>,
}

/// What `TransportHandle::set_peers` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerChanges {
    pub added: Vec<(NodeId, SocketAddr)>,
    pub removed: Vec<(NodeId, SocketAddr)>,
}

/// Extra inputs of `Transport::start_with`.
#[derive(Default)]
pub struct StartOptions {
    /// An already bound UDP socket (lets tests bind port 0 and learn the address first).
    pub socket: Option<std::net::UdpSocket>,
    /// Material to use instead of loading `config.tls` with full checks. For tests that
    /// present bad certificates; the daemon leaves it `None`.
    pub material: Option<NodeMaterial>,
}

/// Starts transports.
pub struct Transport;

impl Transport {
    /// Binds the endpoint, loads and checks the TLS material, and starts one task per peer.
    /// Must be called inside a tokio runtime.
    pub fn start<T: WireMessage>(
        config: TransportConfig,
    ) -> Result<(TransportHandle<T>, mpsc::Receiver<Inbound<T>>), TransportError> {
        Transport::start_with(config, StartOptions::default())
    }

    pub fn start_with<T: WireMessage>(
        config: TransportConfig,
        options: StartOptions,
    ) -> Result<(TransportHandle<T>, mpsc::Receiver<Inbound<T>>), TransportError> {
        config.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let identity = config.identity();
        let material = match options.material {
            Some(m) => m,
            None => NodeMaterial::load(&config.tls, &identity)?,
        };
        let quic = Arc::new(quic_transport_config(&config)?);
        let peer_ids: BTreeSet<NodeId> = config.peers.keys().copied().collect();
        let crypto = tls::server_crypto(
            &material,
            &config.cluster_name,
            peer_ids,
            config.wire_version_max,
        )?;
        let server = tls::server_config(crypto, quic.clone());
        let socket = match options.socket {
            Some(s) => s,
            None => std::net::UdpSocket::bind(config.listen_addr).map_err(|error| {
                TransportError::Bind {
                    addr: config.listen_addr,
                    error,
                }
            })?,
        };
        let local_addr = socket.local_addr().map_err(|error| TransportError::Bind {
            addr: config.listen_addr,
            error,
        })?;
        enlarge_socket_buffers(&socket);
        let endpoint = {
            let _guard = runtime.enter();
            quinn::Endpoint::new(
                endpoint_config(&material),
                Some(server.clone()),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(|error| TransportError::Bind {
                addr: local_addr,
                error,
            })?
        };
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_max);
        let (events, _) = broadcast::channel(EVENTS_BUFFER_MAX);
        let (shutdown, _) = watch::channel(false);
        let mut peers = BTreeMap::new();
        let mut accepted = Vec::new();
        for (&id, &addr) in &config.peers {
            let (peer, rx) = peer::Peer::new(id, addr, &config);
            let peer = Arc::new(peer);
            peers.insert(id, peer.clone());
            accepted.push((peer, rx));
        }
        let shared = Arc::new(peer::Shared {
            identity,
            local_addr,
            endpoint,
            material: RwLock::new(material),
            quic,
            peers: RwLock::new(peers),
            inbound: inbound_tx,
            events,
            shutdown,
            server: std::sync::Mutex::new(server),
            gate: admission::Gate::new(config.peers.values().copied()),
            tasks: std::sync::Mutex::new(Vec::new()),
            config,
        });
        let mut tasks = Vec::new();
        for (peer, rx) in accepted {
            tasks.push(runtime.spawn(peer::peer_task::<T>(shared.clone(), peer, rx)));
        }
        tasks.push(runtime.spawn(peer::accept_loop::<T>(shared.clone())));
        *shared.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        let handle = TransportHandle {
            shared: shared.clone(),
            _guard: Arc::new(ShutdownGuard { shared }),
            _message: PhantomData,
        };
        Ok((handle, inbound_rx))
    }
}

/// Shuts the transport down when the last handle is dropped.
struct ShutdownGuard<T> {
    shared: Arc<peer::Shared<T>>,
}

impl<T> Drop for ShutdownGuard<T> {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}

/// The caller's side of a running transport. Cheap to clone; the transport stops when the
/// last clone is dropped or `shutdown` is called.
pub struct TransportHandle<T> {
    shared: Arc<peer::Shared<T>>,
    _guard: Arc<ShutdownGuard<T>>,
    _message: PhantomData<fn(T)>,
}

impl<T> Clone for TransportHandle<T> {
    fn clone(&self) -> Self {
        TransportHandle {
            shared: self.shared.clone(),
            _guard: self._guard.clone(),
            _message: PhantomData,
        }
    }
}

impl<T: WireMessage> TransportHandle<T> {
    /// Makes `wanted` the peers: starts a task for each new peer (dialing it when this node's
    /// id is lower), ends the task of each peer no longer wanted (closing its link), and
    /// restarts a peer whose address changed. The TLS verifier of incoming connections and
    /// the handshake budgets follow. Returns what changed, for the log.
    ///
    /// The daemon calls this when the replicated configuration or the members' recorded
    /// addresses change, so a member added at run time is reached without a restart.
    pub fn set_peers(
        &self,
        wanted: &BTreeMap<NodeId, SocketAddr>,
    ) -> Result<PeerChanges, TransportError> {
        let shared = &self.shared;
        if shared.is_shut_down() {
            return Err(TransportError::Shutdown);
        }
        let mut check = shared.config.clone();
        check.peers = wanted.clone();
        check.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let mut changes = PeerChanges::default();
        let mut started = Vec::new();
        {
            let mut peers = shared.peers.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<NodeId> = peers
                .iter()
                .filter(|(id, p)| wanted.get(id) != Some(&p.addr))
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                if let Some(peer) = peers.remove(&id) {
                    peer.remove();
                    changes.removed.push((id, peer.addr));
                }
            }
            for (&id, &addr) in wanted {
                if peers.contains_key(&id) {
                    continue;
                }
                let (peer, rx) = peer::Peer::new(id, addr, &shared.config);
                let peer = Arc::new(peer);
                peers.insert(id, peer.clone());
                started.push((peer, rx));
                changes.added.push((id, addr));
            }
        }
        if changes.added.is_empty() && changes.removed.is_empty() {
            return Ok(changes);
        }
        shared.gate.set_peers(wanted.values().copied());
        {
            let material = shared.material();
            let crypto = tls::server_crypto(
                &material,
                &shared.config.cluster_name,
                self.peer_ids(),
                shared.config.wire_version_max,
            )?;
            let mut server = shared.server.lock().unwrap_or_else(|p| p.into_inner());
            server.crypto = crypto;
            shared.endpoint.set_server_config(Some(server.clone()));
        }
        let mut tasks = shared.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        for (peer, rx) in started {
            tasks.push(runtime.spawn(peer::peer_task::<T>(shared.clone(), peer, rx)));
        }
        Ok(changes)
    }

    /// Queues `message` for `to` and returns at once; never waits on the network.
    ///
    /// When the peer's queue is full the oldest queued frames are dropped; a message with a
    /// coalesce key (heartbeats) replaces the queued one with the same key (see `queue`).
    /// Messages queued while the link is down go out once it is back; frames already handed
    /// to a connection that then fails are lost — Raft retries what matters.
    pub fn send(&self, to: NodeId, message: &T) -> Result<Pushed, TransportError> {
        if self.shared.is_shut_down() {
            return Err(TransportError::Shutdown);
        }
        let peer = self
            .shared
            .peer(to)
            .ok_or(TransportError::UnknownPeer(to))?;
        let mut frame = Vec::new();
        frame::encode(
            frame::FrameKind::Message,
            message,
            self.shared.config.frame_bytes_max,
            &mut frame,
        )
        .map_err(|error| TransportError::Encode { peer: to, error })?;
        peer.nudge();
        Ok(peer
            .queue
            .push(frame, message.coalesce_key(), message.wire_version_min()))
    }
}

impl<T> TransportHandle<T> {
    pub fn node_id(&self) -> NodeId {
        self.shared.identity.node_id
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Re-reads certificate, key and CA bundle from `config.tls` with every check of
    /// `NodeMaterial::load`. On success new connections (dialed and accepted) use the new
    /// material and established connections continue; on error nothing changes and the error
    /// says why. The daemon calls this on SIGHUP or from its control socket.
    pub fn reload_identity(&self) -> Result<CertInfo, TransportError> {
        let shared = &self.shared;
        let material = NodeMaterial::load(&shared.config.tls, &shared.identity)?;
        let crypto = tls::server_crypto(
            &material,
            &shared.config.cluster_name,
            self.peer_ids(),
            shared.config.wire_version_max,
        )?;
        // Build a client config too, so a reload that could not dial is refused here.
        tls::client_config(
            &material,
            shared.identity.clone(),
            shared.quic.clone(),
            shared.config.wire_version_max,
        )?;
        let cert = material.cert_info.clone();
        {
            // Only the TLS side changes: the Retry token key and the limits stay, so a Retry
            // answered across a reload still validates.
            let mut server = shared.server.lock().unwrap_or_else(|p| p.into_inner());
            server.crypto = crypto;
            shared.endpoint.set_server_config(Some(server.clone()));
        }
        *shared.material.write().unwrap_or_else(|p| p.into_inner()) = material;
        tracing::info!(serial = %cert.serial, not_after = cert.not_after_unix, "TLS identity reloaded");
        let _ = shared
            .events
            .send(LinkEvent::IdentityReloaded { cert: cert.clone() });
        Ok(cert)
    }

    /// The certificate this node presents to new connections.
    pub fn identity_cert(&self) -> CertInfo {
        self.shared.material().cert_info.clone()
    }

    /// Closes every link; each re-handshakes with the current material (the dialer redials
    /// after its backoff). Frames in flight on the closed connections are lost. Use after a
    /// CA drop, so no link authenticated by the dropped CA stays up.
    pub fn reset_links(&self) {
        for peer in self.shared.peer_list() {
            // notify_waiters stores no permit: a reset asked while a peer has no link must
            // not tear down the next link the moment it comes up.
            peer.reset.notify_waiters();
        }
    }

    /// Link events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LinkEvent> {
        self.shared.events.subscribe()
    }

    /// The wire version the link to `peer` speaks now (`None`: no link).
    pub fn wire_version(&self, peer: NodeId) -> Option<u8> {
        self.shared.peer(peer).and_then(|p| p.wire_version())
    }

    /// The newest wire version this node offers.
    pub fn wire_version_max(&self) -> u8 {
        self.shared.config.wire_version_max
    }

    pub fn peer_status(&self, peer: NodeId) -> Option<PeerStatus> {
        self.shared.peer(peer).map(|p| p.status.borrow().clone())
    }

    /// The current peers' ids.
    pub fn peer_ids(&self) -> BTreeSet<NodeId> {
        self.shared.peer_list().iter().map(|p| p.id).collect()
    }

    /// The current peers and their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.shared
            .peer_list()
            .iter()
            .map(|p| (p.id, p.addr))
            .collect()
    }

    /// A watch of one peer's status, to wait for a change.
    pub fn watch_peer(&self, peer: NodeId) -> Option<watch::Receiver<PeerStatus>> {
        self.shared.peer(peer).map(|p| p.status.subscribe())
    }

    /// Waits until the link to `peer` is up, or `timeout`. Returns whether it is up.
    pub async fn wait_connected(&self, peer: NodeId, timeout: Duration) -> bool {
        let Some(mut rx) = self.watch_peer(peer) else {
            return false;
        };
        tokio::time::timeout(timeout, rx.wait_for(|s| s.connected))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    pub fn queue_stats(&self, peer: NodeId) -> Option<QueueStats> {
        self.shared.peer(peer).map(|p| p.queue.stats())
    }

    /// Opens a snapshot stream to `peer` over the current link. `header` is the caller's
    /// description of the snapshot (index, term, membership…), at most one frame.
    pub async fn open_snapshot(
        &self,
        peer: NodeId,
        header: &[u8],
    ) -> Result<SnapshotSender, TransportError> {
        snapshot::open(&self.shared, peer, header).await
    }

    /// Sends `request` to `peer` on a stream of its own and waits at most `timeout` for the
    /// whole answer (the peer's caller gets it as `Inbound::Call`). At most `CALL_STREAMS_MAX`
    /// calls per peer are in flight; an error says whether the request may have been sent.
    pub async fn call(
        &self,
        peer: NodeId,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        call::call(&self.shared, peer, request, timeout).await
    }

    /// Stops every task and closes the endpoint, waiting briefly (at most about 1.5 s) for the
    /// tasks to end and the close frames to leave.
    pub async fn shutdown(&self) {
        self.shared.begin_shutdown();
        let tasks =
            std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        let idle = self.shared.endpoint.wait_idle();
        let _ = tokio::time::timeout(Duration::from_millis(500), idle).await;
    }
}

/// The endpoint's stateless-reset key and connection-id key, derived from the node's private
/// key so that they are the same after a restart. A restarted node answers packets of its
/// previous incarnation's connections with a stateless reset — but only for connection ids it
/// recognises as its own (quinn checks a keyed hash inside each id) — and a peer accepts the
/// reset only if its token matches the one the connection was made with. With both keys stable
/// the peer drops the dead connection at once and redials, instead of waiting for the idle
/// timeout, which for a pair whose dialer did not restart would keep the link down that long.
fn endpoint_config(material: &NodeMaterial) -> quinn::EndpointConfig {
    let key = material.key();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"regent endpoint keys v1\0");
    context.update(key.secret_der());
    let seed = context.finish();
    let seed = seed.as_ref();
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed[..16]);
    let cid_key = u64::from_le_bytes(seed[16..24].try_into().expect("8 bytes of a SHA-256"));
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

fn quic_transport_config(
    config: &TransportConfig,
) -> Result<quinn::TransportConfig, TransportError> {
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut quic = quinn::TransportConfig::default();
    quic.max_idle_timeout(Some(idle.try_into().map_err(|_| {
        TransportError::Config {
            field: "idle_timeout_ms",
            reason: "too large for QUIC".into(),
        }
    })?));
    // Frequent keep-alives (a few dozen bytes) let a link tell a silent peer within a second.
    quic.keep_alive_interval(Some((idle / 3).min(peer::KEEP_ALIVE_MAX)));
    // Peers share a site: a first estimate of 100 ms (QUIC's default, 333 ms, suits the open
    // internet) makes a handshake whose first packets were lost retry within a third of a
    // second instead of a second.
    quic.initial_rtt(peer::INITIAL_RTT);
    // The message stream, the snapshot streams and the call streams; no unidirectional
    // streams are used.
    quic.max_concurrent_bidi_streams((1 + SNAPSHOT_STREAMS_MAX + call::CALL_STREAMS_MAX).into());
    quic.max_concurrent_uni_streams(0u32.into());
    Ok(quic)
}

/// Asks for larger UDP buffers (the 208 KiB default drops packets under pipelining). Best
/// effort: the kernel caps the request at `net.core.rmem_max`/`wmem_max`.
fn enlarge_socket_buffers(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: a valid fd, a pointer to a c_int that lives across the call, and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&SOCKET_BUFFER_BYTES as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(option, "setsockopt failed; keeping the default buffer");
        }
    }
}

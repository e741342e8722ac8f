//! Peer links: dialing (lower id dials), accepting, the hello exchange that makes a link
//! count as authenticated, and the long-lived message stream of each link.
//!
//! Invariants: at most one live link per peer (a newer accepted link replaces the older,
//! whose connection is closed); a link is reported up only after the acceptor answered the
//! hello, because over TLS 1.3 the dialer's handshake completes before the acceptor has
//! verified the dialer's certificate; every error on a link closes its connection with a
//! reason naming the peer, and the dialer redials after a jittered, capped backoff.

use super::admission::{Decision, Gate, Slot};
use super::backoff::Backoff;
use super::frame::{self, FrameDecoder, FrameError, FrameKind};
use super::queue::SendQueue;
use super::{
    snapshot, tls, Inbound, LinkEvent, PeerStatus, Refuser, TransportConfig, TransportError,
    WireMessage,
};
use crate::pki::identity::identity_of;
use crate::pki::{CertInfo, NodeIdentity, NodeMaterial};
use regent_raft::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch, Notify, Semaphore};

/// Application close codes of a connection.
pub const CLOSE_SHUTDOWN: u32 = 0;
pub const CLOSE_FRAME_ERROR: u32 = 1;
pub const CLOSE_HELLO_REFUSED: u32 = 2;
pub const CLOSE_RESET: u32 = 3;
pub const CLOSE_REPLACED: u32 = 4;
pub const CLOSE_LINK_ERROR: u32 = 5;
pub const CLOSE_STALE: u32 = 6;

/// The message stream is sent before snapshot streams when both have data.
pub const MESSAGE_STREAM_PRIORITY: i32 = 10;

/// Bytes handed to one `write_all` on the message stream.
const WRITE_BATCH_BYTES_MAX: usize = 256 << 10;
/// Bytes read from a stream at once.
const READ_CHUNK_BYTES_MAX: usize = 64 << 10;
/// Longest close reason sent to a peer (it must fit in one packet).
const CLOSE_REASON_BYTES_MAX: usize = 512;
/// Accepted links waiting for their peer task.
const ACCEPTED_QUEUE_MAX: usize = 4;

/// How often a link checks that datagrams still arrive from its peer.
const SILENCE_TICK: Duration = Duration::from_millis(100);
/// Ticks in a row without a datagram after which a link is *silent*. On a healthy link the
/// keep-alives (at most `KEEP_ALIVE_MAX` apart) and their acknowledgements arrive several
/// times within it; ticks are counted, not time, so a node that was itself paused or starved
/// does not take its own stall for the peer's silence.
pub const SILENT_TICKS: u32 = 10;
/// The longest keep-alive interval: a link idle for this long sends a PING.
pub const KEEP_ALIVE_MAX: Duration = Duration::from_millis(250);
/// The round-trip estimate a new connection starts with.
pub const INITIAL_RTT: Duration = Duration::from_millis(100);
/// `Peer::silent_ticks` while the peer has no link.
const NO_LINK: u32 = u32::MAX;

/// The dialer's first frame: who it is and whom it dialed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub cluster: String,
    pub from: NodeId,
    pub to: NodeId,
    /// Both ends must agree, or one would refuse frames the other may send.
    pub frame_bytes_max: u64,
}

/// The acceptor's answer: the link is authenticated both ways.
#[derive(Debug, Serialize, Deserialize)]
pub struct HelloAck {
    pub from: NodeId,
    pub frame_bytes_max: u64,
}

/// What every task of one transport shares.
pub struct Shared<T> {
    pub config: TransportConfig,
    pub identity: NodeIdentity,
    pub local_addr: SocketAddr,
    pub endpoint: quinn::Endpoint,
    pub material: RwLock<NodeMaterial>,
    pub quic: Arc<quinn::TransportConfig>,
    /// The current peers. Changed at run time by `TransportHandle::set_peers` (members added
    /// or removed through the replicated configuration); a removed peer's task ends.
    pub peers: RwLock<BTreeMap<NodeId, Arc<Peer>>>,
    pub inbound: mpsc::Sender<Inbound<T>>,
    pub events: broadcast::Sender<LinkEvent>,
    pub shutdown: watch::Sender<bool>,
    /// The endpoint's server configuration; a reload replaces its TLS side only.
    pub server: Mutex<quinn::ServerConfig>,
    /// Which incoming attempts may hold a handshake slot.
    pub gate: Arc<Gate>,
    /// The peer tasks and the accept loop, awaited by `shutdown`.
    pub tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl<T> Shared<T> {
    /// The peer `id`, if it is one now.
    pub fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every current peer.
    pub fn peer_list(&self) -> Vec<Arc<Peer>> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The material new connections use.
    pub fn material(&self) -> NodeMaterial {
        self.material
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.endpoint
            .close(CLOSE_SHUTDOWN.into(), b"transport shut down");
    }

    fn emit(&self, event: LinkEvent) {
        match &event {
            LinkEvent::Rejected {
                peer,
                remote,
                by,
                reason,
            } => {
                tracing::warn!(?peer, %remote, ?by, %reason, "connection refused")
            }
            LinkEvent::Down { peer, reason } => tracing::info!(%peer, %reason, "link down"),
            LinkEvent::DialFailed { peer, reason } => {
                tracing::debug!(%peer, %reason, "dial failed")
            }
            LinkEvent::Up {
                peer,
                dialed,
                wire_version,
                ..
            } => tracing::info!(%peer, dialed, wire_version, "link up"),
            LinkEvent::IdentityReloaded { .. } => {}
        }
        let _ = self.events.send(event);
    }

    fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.config.handshake_timeout_ms)
    }

    fn unauthenticated_timeout(&self) -> Duration {
        Duration::from_millis(self.config.unauthenticated_timeout_ms)
    }

    async fn shutdown_signal(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// One configured peer.
pub struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub queue: SendQueue,
    pub status: watch::Sender<PeerStatus>,
    accepted: mpsc::Sender<Link>,
    pub reset: Notify,
    /// Asks the peer's task to replace a silent link, or to restart a dial that has been
    /// waiting for a handshake for a while (see `nudge`).
    stale: Notify,
    /// Ticks in a row in which the live link received no datagram; `NO_LINK` without one.
    silent_ticks: AtomicU32,
    /// The connection of the live link, for snapshot streams.
    pub current: Mutex<Option<quinn::Connection>>,
    /// Authenticated incoming connections of this peer waiting for their hello.
    hellos: Arc<Semaphore>,
    /// Slots for calls in flight to this peer (`call::CALL_STREAMS_MAX`).
    pub calls: Arc<Semaphore>,
    /// Slots for snapshot streams being sent to this peer (`SNAPSHOT_STREAMS_MAX`).
    pub snapshots: Arc<Semaphore>,
    /// Set when the peer is removed at run time: its task closes the link and ends.
    removed: watch::Sender<bool>,
    /// The wire version the live link speaks; 0 without one.
    version: AtomicU8,
}

impl Peer {
    pub fn new(
        id: NodeId,
        addr: SocketAddr,
        config: &TransportConfig,
    ) -> (Peer, mpsc::Receiver<Link>) {
        let (accepted, rx) = mpsc::channel(ACCEPTED_QUEUE_MAX);
        let peer = Peer {
            id,
            addr,
            queue: SendQueue::new(config.send_queue_max, config.send_queue_bytes_max),
            status: watch::channel(PeerStatus::default()).0,
            accepted,
            reset: Notify::new(),
            stale: Notify::new(),
            silent_ticks: AtomicU32::new(NO_LINK),
            current: Mutex::new(None),
            hellos: Arc::new(Semaphore::new(super::HELLOS_PER_PEER_MAX)),
            calls: Arc::new(Semaphore::new(super::call::CALL_STREAMS_MAX as usize)),
            snapshots: Arc::new(Semaphore::new(super::SNAPSHOT_STREAMS_MAX as usize)),
            removed: watch::channel(false).0,
            version: AtomicU8::new(0),
        };
        (peer, rx)
    }

    /// The wire version the live link speaks (`None`: no link).
    pub fn wire_version(&self) -> Option<u8> {
        Some(self.version.load(Ordering::Acquire)).filter(|&v| v != 0)
    }

    pub fn connection(&self) -> Option<quinn::Connection> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Called before a frame is queued for this peer. A peer that has been silent for
    /// `SILENT_TICKS` while this node has something to say gets a fresh connection: one that
    /// lived through a blackout with data in flight waits, after the heal, for QUIC's probe
    /// timeout, which doubles for every probe lost in the blackout (seconds after a few
    /// seconds of partition), whereas a new connection starts with fresh loss-recovery state
    /// and carries the frame one handshake later. Without a link, a dial older than the same
    /// span is restarted (a handshake's own retransmissions back off too). The frame stays
    /// queued and goes out on the new link. Costs one atomic load when the link is healthy.
    pub fn nudge(&self) {
        if self.silent_ticks.load(Ordering::Relaxed) >= SILENT_TICKS {
            self.stale.notify_waiters();
        }
    }

    /// Resolves on the first nudge that comes a silent span (`SILENT_TICKS`) or more after
    /// `since`: a dial or a backoff is cut short at most that often, whatever the rate of
    /// frames queued for a peer that is down.
    async fn nudged_since(&self, since: Instant) {
        loop {
            self.stale.notified().await;
            if since.elapsed() >= SILENCE_TICK * SILENT_TICKS {
                return;
            }
        }
    }

    /// Ends the peer's task (its link is closed); queued frames are dropped.
    pub fn remove(&self) {
        self.removed.send_replace(true);
    }

    /// Resolves once the transport shuts down or this peer is removed.
    async fn ended<T>(&self, shared: &Shared<T>) {
        let mut removed = self.removed.subscribe();
        tokio::select! {
            _ = shared.shutdown_signal() => {}
            _ = removed.wait_for(|r| *r) => {}
        }
    }

    fn set_connection(&self, conn: Option<quinn::Connection>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }
}

/// An authenticated link: the connection and its message stream, after the hello.
pub struct Link {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Bytes read past the hello stay here.
    decoder: FrameDecoder,
    peer_cert: CertInfo,
    dialed: bool,
    /// The wire version negotiated in the handshake (ALPN).
    version: u8,
}

/// Why a dial did not produce a link.
enum DialError {
    Refused { by: Refuser, reason: String },
    Failed(String),
}

/// Refused attempts are logged at most this often, with a count, so that a flood does not
/// become a flood of log lines.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Accepts connections for as long as the transport runs. Every attempt is decided at once:
/// a Retry for an address not yet validated, a handshake slot within the budgets of
/// `admission`, or a refusal.
pub async fn accept_loop<T: WireMessage>(shared: Arc<Shared<T>>) {
    let mut refused = 0u64;
    let mut last_log: Option<Instant> = None;
    loop {
        let incoming = tokio::select! {
            incoming = shared.endpoint.accept() => incoming,
            _ = shared.shutdown_signal() => return,
        };
        let Some(incoming) = incoming else { return };
        let remote = incoming.remote_address();
        match shared
            .gate
            .admit(remote, incoming.remote_address_validated())
        {
            Decision::Retry => {
                if let Err(e) = incoming.retry() {
                    // Only a validated attempt cannot be retried, and those are not retried.
                    tracing::debug!(%remote, "{e}");
                    e.into_incoming().refuse();
                }
            }
            Decision::Admit(slot) => {
                let shared = shared.clone();
                tokio::spawn(async move { accept_one(&shared, incoming, slot).await });
            }
            Decision::Refuse(why) => {
                refused += 1;
                if last_log.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL) {
                    let (peers, others) = shared.gate.in_progress();
                    tracing::warn!(%remote, reason = %why, refused, peers, others, "incoming handshakes refused");
                    refused = 0;
                    last_log = Some(Instant::now());
                }
                incoming.refuse();
            }
        }
    }
}

/// Completes one incoming connection: TLS (our verifier checks the client's certificate)
/// while holding `slot`, then the hello, then hands the link to the peer's task.
async fn accept_one<T: WireMessage>(
    shared: &Arc<Shared<T>>,
    incoming: quinn::Incoming,
    slot: Slot,
) {
    let remote = incoming.remote_address();
    let deadline = shared.handshake_timeout();
    let conn = match tokio::time::timeout(shared.unauthenticated_timeout(), incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            let (by, reason) = classify(&err);
            shared.emit(LinkEvent::Rejected {
                peer: None,
                remote,
                by,
                reason,
            });
            return;
        }
        Err(_) => {
            // Dropping the handshake closes it and frees the slot.
            tracing::debug!(%remote, "incoming handshake not authenticated in time");
            return;
        }
    };
    // The client's certificate is verified: from here on the peer's own limits apply.
    drop(slot);
    // The verifier already checked the certificate names a configured peer; read the id back.
    let Some(peer_id) = tls::peer_certificate(&conn)
        .and_then(|der| identity_of(der.as_ref()).ok())
        .map(|identity| identity.node_id)
    else {
        refuse_hello(shared, &conn, None, "no certificate naming a node".into());
        return;
    };
    let Some(peer) = shared.peer(peer_id) else {
        refuse_hello(
            shared,
            &conn,
            Some(peer_id),
            format!("{peer_id} is not a configured peer"),
        );
        return;
    };
    let Ok(_hello_permit) = peer.hellos.clone().try_acquire_owned() else {
        refuse_hello(
            shared,
            &conn,
            Some(peer_id),
            format!("too many connections from {peer_id} waiting for their hello"),
        );
        return;
    };
    let hello = tokio::time::timeout(deadline, async {
        let (send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| format!("no message stream: {e}"))?;
        let mut decoder = FrameDecoder::new(shared.config.frame_bytes_max);
        let frame = read_frame(&mut recv, &mut decoder)
            .await
            .map_err(|e| e.to_string())?;
        let hello: Hello =
            frame::decode_expected(&frame, FrameKind::Hello).map_err(|e| e.to_string())?;
        Ok::<_, String>((send, recv, decoder, hello))
    })
    .await;
    let (mut send, recv, decoder, hello) = match hello {
        Ok(Ok(parts)) => parts,
        Ok(Err(reason)) => {
            refuse_hello(
                shared,
                &conn,
                Some(peer_id),
                format!("hello from {peer_id}: {reason}"),
            );
            return;
        }
        Err(_) => {
            refuse_hello(
                shared,
                &conn,
                Some(peer_id),
                format!("no hello from {peer_id} in time"),
            );
            return;
        }
    };
    // The certificate names the node; the hello must claim the same node, for us.
    let refusal = if hello.cluster != shared.identity.cluster {
        Some(format!(
            "hello claims cluster {:?}, this is cluster {:?}",
            hello.cluster, shared.identity.cluster
        ))
    } else if hello.from != peer_id {
        Some(format!(
            "hello claims to be {} but the certificate names {peer_id}",
            hello.from
        ))
    } else if hello.to != shared.identity.node_id {
        Some(format!(
            "hello is for {} but this is {}",
            hello.to, shared.identity.node_id
        ))
    } else if hello.frame_bytes_max != shared.config.frame_bytes_max as u64 {
        Some(format!(
            "frame_bytes_max differs: {peer_id} has {}, {} has {}",
            hello.frame_bytes_max, shared.identity.node_id, shared.config.frame_bytes_max
        ))
    } else {
        None
    };
    if let Some(reason) = refusal {
        refuse_hello(shared, &conn, Some(peer_id), reason);
        return;
    }
    let ack = HelloAck {
        from: shared.identity.node_id,
        frame_bytes_max: shared.config.frame_bytes_max as u64,
    };
    let mut out = Vec::new();
    if frame::encode(
        FrameKind::HelloAck,
        &ack,
        shared.config.frame_bytes_max,
        &mut out,
    )
    .is_err()
        || send.write_all(&out).await.is_err()
    {
        return;
    }
    let Some(peer_cert) =
        tls::peer_certificate(&conn).and_then(|d| CertInfo::parse(d.as_ref()).ok())
    else {
        return;
    };
    // rustls refuses a handshake without a common protocol, so this is always known.
    let Some(version) = tls::negotiated_version(&conn) else {
        return;
    };
    let link = Link {
        conn,
        send,
        recv,
        decoder,
        peer_cert,
        dialed: false,
        version,
    };
    let _ = peer.accepted.send(link).await;
}

fn refuse_hello<T>(
    shared: &Shared<T>,
    conn: &quinn::Connection,
    peer: Option<NodeId>,
    reason: String,
) {
    close(conn, CLOSE_HELLO_REFUSED, &reason);
    shared.emit(LinkEvent::Rejected {
        peer,
        remote: conn.remote_address(),
        by: Refuser::Us,
        reason,
    });
}

/// Closes a connection with a reason the peer can log.
fn close(conn: &quinn::Connection, code: u32, reason: &str) {
    let mut bytes = reason.as_bytes();
    if bytes.len() > CLOSE_REASON_BYTES_MAX {
        bytes = &bytes[..CLOSE_REASON_BYTES_MAX];
    }
    conn.close(code.into(), bytes);
}

/// Who ended a connection, and why, from quinn's error.
fn classify(err: &quinn::ConnectionError) -> (Refuser, String) {
    use quinn::ConnectionError as E;
    match err {
        // Our side detected the error: our verifier refused the peer's certificate.
        E::TransportError(e) => (Refuser::Us, e.to_string()),
        // The peer closed during or right after the handshake: a TLS alert for our certificate.
        E::ConnectionClosed(close) => (Refuser::Peer, format!("closed by peer: {close}")),
        E::ApplicationClosed(close) => (
            Refuser::Peer,
            format!("closed by peer: {}", String::from_utf8_lossy(&close.reason)),
        ),
        other => (Refuser::Us, other.to_string()),
    }
}

/// Reads one frame from `recv`, buffering in `decoder`.
async fn read_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<frame::Frame, LinkFail> {
    let mut buf = vec![0u8; READ_CHUNK_BYTES_MAX];
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(frame);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(&buf[..n]),
            Ok(None) => {
                decoder.finish()?;
                return Err(LinkFail::Closed("the peer finished the stream".into()));
            }
            Err(e) => return Err(LinkFail::Read(e)),
        }
    }
}

/// Why a stream stopped.
#[derive(Debug)]
pub enum LinkFail {
    Frame(FrameError),
    Read(quinn::ReadError),
    Write(quinn::WriteError),
    Closed(String),
}

impl From<FrameError> for LinkFail {
    fn from(e: FrameError) -> Self {
        LinkFail::Frame(e)
    }
}

impl std::fmt::Display for LinkFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkFail::Frame(e) => write!(f, "bad frame: {e}"),
            LinkFail::Read(quinn::ReadError::ConnectionLost(e)) => {
                write!(f, "connection lost: {}", describe_close(e))
            }
            LinkFail::Read(e) => write!(f, "read: {e}"),
            LinkFail::Write(quinn::WriteError::ConnectionLost(e)) => {
                write!(f, "connection lost: {}", describe_close(e))
            }
            LinkFail::Write(e) => write!(f, "write: {e}"),
            LinkFail::Closed(reason) => f.write_str(reason),
        }
    }
}

fn describe_close(err: &quinn::ConnectionError) -> String {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => format!(
            "closed by peer (code {}): {}",
            close.error_code,
            String::from_utf8_lossy(&close.reason)
        ),
        other => other.to_string(),
    }
}

/// Dials `peer` and runs the hello; on success the link is authenticated both ways.
async fn dial<T>(shared: &Shared<T>, peer: &Peer) -> Result<Link, DialError> {
    let material = shared.material();
    let expected = NodeIdentity {
        cluster: shared.identity.cluster.clone(),
        node_id: peer.id,
    };
    let config = tls::client_config(
        &material,
        expected,
        shared.quic.clone(),
        shared.config.wire_version_max,
    )
    .map_err(|e| DialError::Failed(e.to_string()))?;
    let connecting = shared
        .endpoint
        .connect_with(config, peer.addr, tls::SERVER_NAME)
        .map_err(|e| DialError::Failed(format!("connect: {e}")))?;
    let deadline = shared.handshake_timeout();
    let conn = match tokio::time::timeout(deadline, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            let (by, reason) = classify(&err);
            return Err(match err {
                quinn::ConnectionError::TimedOut => DialError::Failed(reason),
                _ => DialError::Refused { by, reason },
            });
        }
        Err(_) => return Err(DialError::Failed("handshake timed out".into())),
    };
    // Over TLS 1.3 the handshake is complete here for us, but the acceptor may still refuse
    // our certificate: only its HelloAck proves it accepted us.
    let exchange = tokio::time::timeout(deadline, async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = Hello {
            cluster: shared.identity.cluster.clone(),
            from: shared.identity.node_id,
            to: peer.id,
            frame_bytes_max: shared.config.frame_bytes_max as u64,
        };
        let mut out = Vec::new();
        frame::encode(
            FrameKind::Hello,
            &hello,
            shared.config.frame_bytes_max,
            &mut out,
        )
        .map_err(|e| e.to_string())?;
        send.write_all(&out)
            .await
            .map_err(|e| LinkFail::Write(e).to_string())?;
        let mut decoder = FrameDecoder::new(shared.config.frame_bytes_max);
        let frame = read_frame(&mut recv, &mut decoder)
            .await
            .map_err(|e| e.to_string())?;
        let ack: HelloAck =
            frame::decode_expected(&frame, FrameKind::HelloAck).map_err(|e| e.to_string())?;
        Ok::<_, String>((send, recv, decoder, ack))
    })
    .await;
    let (send, recv, decoder, ack) = match exchange {
        Ok(Ok(parts)) => parts,
        Ok(Err(reason)) => {
            // A refusal shows as the connection closed by the peer, with its reason.
            return Err(match conn.close_reason() {
                Some(err @ quinn::ConnectionError::ConnectionClosed(_))
                | Some(err @ quinn::ConnectionError::ApplicationClosed(_)) => {
                    let (by, reason) = classify(&err);
                    DialError::Refused { by, reason }
                }
                _ => {
                    close(&conn, CLOSE_LINK_ERROR, &reason);
                    DialError::Failed(format!("hello: {reason}"))
                }
            });
        }
        Err(_) => {
            close(&conn, CLOSE_LINK_ERROR, "no hello answer in time");
            return Err(DialError::Failed("no hello answer in time".into()));
        }
    };
    if ack.from != peer.id || ack.frame_bytes_max != shared.config.frame_bytes_max as u64 {
        let reason = format!(
            "hello answer from {} with frame_bytes_max {} (expected {} with {})",
            ack.from, ack.frame_bytes_max, peer.id, shared.config.frame_bytes_max
        );
        close(&conn, CLOSE_HELLO_REFUSED, &reason);
        return Err(DialError::Refused {
            by: Refuser::Us,
            reason,
        });
    }
    let peer_cert = tls::peer_certificate(&conn)
        .and_then(|d| CertInfo::parse(d.as_ref()).ok())
        .ok_or_else(|| DialError::Failed("the peer's certificate is unreadable".into()))?;
    let version = tls::negotiated_version(&conn)
        .ok_or_else(|| DialError::Failed("no wire version negotiated".into()))?;
    Ok(Link {
        conn,
        send,
        recv,
        decoder,
        peer_cert,
        dialed: true,
        version,
    })
}

/// How a link ended.
enum LinkEnd {
    Failed(String),
    Replaced(Box<Link>),
    Reset,
    Stale,
    Shutdown,
}

/// Whether this node dials `peer`: the lower id dials, the higher only accepts.
fn is_dialer<T>(shared: &Shared<T>, peer: &Peer) -> bool {
    shared.identity.node_id < peer.id
}

/// The task of one peer: obtains links (dialing if this node's id is lower, else waiting for
/// accepted ones), runs each until it fails, and redials with backoff.
pub async fn peer_task<T: WireMessage>(
    shared: Arc<Shared<T>>,
    peer: Arc<Peer>,
    mut accepted: mpsc::Receiver<Link>,
) {
    let dials = is_dialer(&shared, &peer);
    let seed = {
        let mut bytes = [0u8; 8];
        let _ = crate::pki::fill_random(&mut bytes);
        u64::from_le_bytes(bytes) ^ peer.id.0
    };
    let mut backoff = Backoff::new(
        Duration::from_millis(shared.config.reconnect_backoff_min_ms),
        Duration::from_millis(shared.config.reconnect_backoff_max_ms),
        seed,
    );
    let mut next: Option<Link> = None;
    loop {
        let link = match next.take() {
            Some(link) => link,
            None if dials => {
                let started = Instant::now();
                let result = tokio::select! {
                    r = dial(&shared, &peer) => r,
                    Some(link) = accepted.recv() => Ok(link),
                    _ = peer.nudged_since(started) => {
                        tracing::debug!(peer = %peer.id, "restarting a dial that has waited a while");
                        continue;
                    }
                    _ = peer.ended(&shared) => return,
                };
                match result {
                    Ok(link) => link,
                    Err(err) => {
                        let reason = match err {
                            DialError::Refused { by, reason } => {
                                shared.emit(LinkEvent::Rejected {
                                    peer: Some(peer.id),
                                    remote: peer.addr,
                                    by,
                                    reason: reason.clone(),
                                });
                                reason
                            }
                            DialError::Failed(reason) => {
                                shared.emit(LinkEvent::DialFailed {
                                    peer: peer.id,
                                    reason: reason.clone(),
                                });
                                reason
                            }
                        };
                        peer.status.send_modify(|s| s.last_error = Some(reason));
                        let delay = backoff.next_delay();
                        let started = Instant::now();
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            Some(link) = accepted.recv() => next = Some(link),
                            // Something waits to be sent: dial now rather than after the backoff.
                            _ = peer.nudged_since(started) => {}
                            _ = peer.ended(&shared) => return,
                        }
                        continue;
                    }
                }
            }
            None => tokio::select! {
                Some(link) = accepted.recv() => link,
                _ = peer.ended(&shared) => return,
            },
        };
        backoff.reset();
        let conn = link.conn.clone();
        let peer_cert = link.peer_cert.clone();
        let dialed = link.dialed;
        let wire_version = link.version;
        peer.version.store(wire_version, Ordering::Release);
        peer.set_connection(Some(conn.clone()));
        peer.silent_ticks.store(0, Ordering::Relaxed);
        peer.status.send_modify(|s| {
            s.connected = true;
            s.dialed = dialed;
            s.peer_cert = Some(peer_cert.clone());
            s.links_up += 1;
            s.wire_version = Some(wire_version);
        });
        shared.emit(LinkEvent::Up {
            peer: peer.id,
            dialed,
            peer_cert,
            wire_version,
        });
        // Biased, resets first: a frame queued together with a nudge must stay queued for
        // the next link rather than be handed to the silent one.
        let end = tokio::select! {
            biased;
            _ = peer.ended(&shared) => LinkEnd::Shutdown,
            _ = peer.reset.notified() => LinkEnd::Reset,
            _ = peer.stale.notified() => LinkEnd::Stale,
            Some(newer) = accepted.recv() => LinkEnd::Replaced(Box::new(newer)),
            reason = run_link(&shared, &peer, link) => LinkEnd::Failed(reason),
        };
        peer.set_connection(None);
        peer.version.store(0, Ordering::Release);
        peer.silent_ticks.store(NO_LINK, Ordering::Relaxed);
        let reason = match end {
            LinkEnd::Failed(reason) => reason,
            LinkEnd::Replaced(newer) => {
                close(&conn, CLOSE_REPLACED, "replaced by a newer connection");
                next = Some(*newer);
                "replaced by a newer connection".to_string()
            }
            LinkEnd::Reset => {
                close(&conn, CLOSE_RESET, "link reset to re-authenticate");
                "link reset".to_string()
            }
            LinkEnd::Stale => {
                // The close goes out at once, whatever the congestion window: an acceptor's
                // close makes the dialer redial as soon as the network carries it.
                let reason = format!(
                    "nothing heard from {} for {} ms with frames to send: reconnecting",
                    peer.id,
                    (SILENCE_TICK * SILENT_TICKS).as_millis()
                );
                close(&conn, CLOSE_STALE, &reason);
                reason
            }
            LinkEnd::Shutdown => {
                close(&conn, CLOSE_SHUTDOWN, "transport shut down or peer removed");
                peer.status.send_modify(|s| {
                    s.connected = false;
                    s.wire_version = None;
                });
                return;
            }
        };
        peer.status.send_modify(|s| {
            s.connected = false;
            s.wire_version = None;
            s.last_error = Some(reason.clone());
        });
        shared.emit(LinkEvent::Down {
            peer: peer.id,
            reason,
        });
        if dials && next.is_none() {
            // Do not hammer a peer that keeps dropping links; a reset redials promptly.
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                Some(link) = accepted.recv() => next = Some(link),
                _ = peer.ended(&shared) => return,
            }
        }
    }
}

/// Runs one link until it fails: writes queued frames, reads and delivers messages, and
/// accepts snapshot streams. Returns why it ended; the connection is closed by then.
async fn run_link<T: WireMessage>(shared: &Arc<Shared<T>>, peer: &Arc<Peer>, link: Link) -> String {
    let Link {
        conn,
        mut send,
        mut recv,
        mut decoder,
        version,
        ..
    } = link;
    let _ = send.set_priority(MESSAGE_STREAM_PRIORITY);
    // Frames queued while the link was down may be waiting already.
    peer.queue.wake();
    let writer = async {
        let mut buf = Vec::with_capacity(WRITE_BATCH_BYTES_MAX);
        loop {
            buf.clear();
            if peer
                .queue
                .drain_into(&mut buf, WRITE_BATCH_BYTES_MAX, version)
                == 0
            {
                peer.queue.ready().await;
                continue;
            }
            if buf.is_empty() {
                continue;
            }
            if let Err(e) = send.write_all(&buf).await {
                return LinkFail::Write(e);
            }
        }
    };
    let reader = async {
        let mut buf = vec![0u8; READ_CHUNK_BYTES_MAX];
        loop {
            loop {
                let frame = match decoder.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return LinkFail::Frame(e),
                };
                let message: T = match frame::decode_expected(&frame, FrameKind::Message) {
                    Ok(m) => m,
                    Err(e) => return LinkFail::Frame(e),
                };
                let inbound = Inbound::Message {
                    from: peer.id,
                    message,
                };
                if shared.inbound.send(inbound).await.is_err() {
                    return LinkFail::Closed("the inbound receiver was dropped".into());
                }
            }
            match recv.read(&mut buf).await {
                Ok(Some(n)) => decoder.push(&buf[..n]),
                Ok(None) => {
                    if let Err(e) = decoder.finish() {
                        return LinkFail::Frame(e);
                    }
                    return LinkFail::Closed("the peer finished the message stream".into());
                }
                Err(e) => return LinkFail::Read(e),
            }
        }
    };
    let snapshots = async {
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    tokio::spawn(snapshot::receive(shared.clone(), peer.id, send, recv));
                }
                Err(e) => return LinkFail::Read(quinn::ReadError::ConnectionLost(e)),
            }
        }
    };
    // Counts the ticks without a datagram for `nudge`, and replaces a link that hears from
    // its peer again after a silence: the peer's first probe after a blackout shows that the
    // network is back while this side's own data may still wait for its backed-off probe
    // timeout. The dialing side also gives up a link silent for `SILENT_TICKS` and redials,
    // with or without frames to send: an acceptor can only wait for it.
    let dials = is_dialer(shared, peer);
    let silence = async {
        let mut ticker = tokio::time::interval(SILENCE_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = conn.stats().udp_rx.datagrams;
        let mut silent = 0u32;
        loop {
            ticker.tick().await;
            let now = conn.stats().udp_rx.datagrams;
            if now == seen {
                silent = silent.saturating_add(1);
                peer.silent_ticks.store(silent, Ordering::Relaxed);
                if dials && silent == SILENT_TICKS {
                    return LinkFail::Closed(format!(
                        "nothing heard for {} ms: redialing",
                        (SILENCE_TICK * silent).as_millis()
                    ));
                }
                continue;
            }
            seen = now;
            if silent >= SILENT_TICKS {
                return LinkFail::Closed(format!(
                    "heard from again after {} ms of silence: reconnecting to leave the \
                     backed-off probe timeout",
                    (SILENCE_TICK * silent).as_millis()
                ));
            }
            silent = 0;
            peer.silent_ticks.store(0, Ordering::Relaxed);
        }
    };
    let fail = tokio::select! {
        f = writer => f,
        f = reader => f,
        f = snapshots => f,
        f = silence => f,
    };
    let reason = format!("{}: {fail}", peer.id);
    let code = match fail {
        LinkFail::Frame(_) => CLOSE_FRAME_ERROR,
        _ => CLOSE_LINK_ERROR,
    };
    if let LinkFail::Frame(source) = &fail {
        // A frame error is the peer's fault or a bug: log it loudly, with the peer named.
        tracing::warn!(error = %TransportError::Frame { peer: peer.id, error: source.clone() }, "closing link");
    }
    close(&conn, code, &reason);
    reason
}

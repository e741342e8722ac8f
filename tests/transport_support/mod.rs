//! Shared helpers of the transport tests: a CA in a temp dir, node certificates, nodes on
//! loopback, and waiting for link events. Included by each `tests/transport_*.rs` with
//! `#[path]`, so not every helper is used by every test binary.
#![allow(dead_code)]

use regent::pki::issue::{self, IssueRequest, Validity};
use regent::pki::{CaDir, NodeIdentity, NodeMaterial, TlsPaths};
use regent::raft::{LogIndex, Message, MessageBody, NodeId, Term};
use regent::transport::{
    Inbound, LinkEvent, StartOptions, Transport, TransportConfig, TransportHandle,
};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub const CLUSTER: &str = "test";

/// A CA (and its directory) under a temp dir, issuing node certificates.
pub struct Pki {
    pub root: tempfile::TempDir,
    pub ca: CaDir,
}

impl Pki {
    pub fn new() -> Pki {
        let root = tempfile::tempdir().unwrap();
        let ca = CaDir::new(root.path().join("ca"));
        ca.init(30).unwrap();
        Pki { root, ca }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// Issues a good certificate for node `id` into `<root>/<name>/`.
    pub fn node(&self, name: &str, id: u64) -> TlsPaths {
        let identity = NodeIdentity::new(CLUSTER, NodeId(id)).unwrap();
        self.issue_into(name, IssueRequest::new(identity, 30))
    }

    /// Issues whatever `request` says into `<root>/<name>/`, with this CA's bundle.
    pub fn issue_into(&self, name: &str, request: IssueRequest) -> TlsPaths {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let paths = TlsPaths {
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
            ca_bundle: dir.join("ca-bundle.pem"),
        };
        let issued = issue::issue(&self.ca.load().unwrap(), &request).unwrap();
        issue::write_new(&issued, &paths.cert, &paths.key).unwrap();
        self.install_bundle(&paths);
        paths
    }

    /// Copies the CA directory's current bundle to a node.
    pub fn install_bundle(&self, paths: &TlsPaths) {
        let tmp = paths.ca_bundle.with_extension("tmp");
        std::fs::copy(self.ca.bundle_path(), &tmp).unwrap();
        std::fs::rename(&tmp, &paths.ca_bundle).unwrap();
    }

    /// A certificate valid from `from_days` to `to_days` relative to now.
    pub fn node_with_validity(
        &self,
        name: &str,
        id: u64,
        from_days: i64,
        to_days: i64,
    ) -> TlsPaths {
        let identity = NodeIdentity::new(CLUSTER, NodeId(id)).unwrap();
        let now = regent::pki::identity::unix_now();
        let mut request = IssueRequest::new(identity, 30);
        request.validity = Validity {
            not_before_unix: now + from_days * 86_400,
            not_after_unix: now + to_days * 86_400,
        };
        self.issue_into(name, request)
    }
}

/// A UDP socket on loopback, bound before any config needs its address.
pub fn bind() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Binds `addr` again after a node on it shut down (its endpoint driver may take a moment to
/// release the socket).
pub async fn rebind(addr: SocketAddr) -> UdpSocket {
    for _ in 0..100 {
        if let Ok(socket) = UdpSocket::bind(addr) {
            return socket;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} stayed in use");
}

/// A running node under test.
pub struct Node {
    pub id: NodeId,
    pub handle: TransportHandle<Message>,
    pub inbound: mpsc::Receiver<Inbound<Message>>,
    pub events: broadcast::Receiver<LinkEvent>,
    pub paths: TlsPaths,
}

/// A test config: short timeouts so failures show quickly.
pub fn config(
    id: u64,
    addr: SocketAddr,
    peers: &[(u64, SocketAddr)],
    paths: &TlsPaths,
) -> TransportConfig {
    let peers: BTreeMap<NodeId, SocketAddr> =
        peers.iter().map(|(id, a)| (NodeId(*id), *a)).collect();
    let mut config = TransportConfig::new(NodeId(id), CLUSTER, addr, peers, paths.clone());
    config.frame_bytes_max = 1 << 20;
    config.reconnect_backoff_min_ms = 20;
    config.reconnect_backoff_max_ms = 200;
    config.handshake_timeout_ms = 2000;
    config.idle_timeout_ms = 3000;
    config.snapshot_stall_timeout_ms = 3000;
    config
}

/// Starts a node with fully checked material.
pub fn start(config: TransportConfig, socket: UdpSocket) -> Node {
    start_with_material(config, socket, None)
}

/// Starts a node; `material` bypasses the self-checks so a node can present a bad certificate.
pub fn start_with_material(
    config: TransportConfig,
    socket: UdpSocket,
    material: Option<NodeMaterial>,
) -> Node {
    let id = config.node_id;
    let paths = config.tls.clone();
    let (handle, inbound) = Transport::start_with(
        config,
        StartOptions {
            socket: Some(socket),
            material,
        },
    )
    .unwrap();
    let events = handle.subscribe();
    Node {
        id,
        handle,
        inbound,
        events,
        paths,
    }
}

/// Starts nodes `ids` with good certificates from `pki`, all peers of each other.
pub fn start_cluster(pki: &Pki, ids: &[u64]) -> Vec<Node> {
    let sockets: Vec<_> = ids.iter().map(|_| bind()).collect();
    let addrs: Vec<(u64, SocketAddr)> = ids
        .iter()
        .zip(&sockets)
        .map(|(id, (_, a))| (*id, *a))
        .collect();
    let mut nodes = Vec::new();
    for (i, (socket, addr)) in sockets.into_iter().enumerate() {
        let id = ids[i];
        let paths = pki.node(&format!("n{id}"), id);
        let peers: Vec<_> = addrs.iter().copied().filter(|(p, _)| *p != id).collect();
        nodes.push(start(config(id, addr, &peers, &paths), socket));
    }
    nodes
}

/// Waits for the first event matching `pred`, or panics after `timeout` naming `what`.
pub async fn wait_event(
    events: &mut broadcast::Receiver<LinkEvent>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&LinkEvent) -> bool,
) -> LinkEvent {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, events.recv()).await {
            Ok(Ok(event)) if pred(&event) => return event,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("waiting for {what}: events closed: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// A Raft message carrying `seq` in its round, with `payload` bytes of entry data.
pub fn append(from: u64, to: u64, seq: u64, payload: usize) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(seq),
            prev_log_term: Term(1),
            entries: vec![regent::raft::Entry {
                term: Term(1),
                index: LogIndex(seq + 1),
                payload: regent::raft::EntryPayload::Normal(vec![7; payload]),
            }],
            leader_commit: LogIndex(seq),
            round: seq,
        },
    }
}

pub fn heartbeat(from: u64, to: u64, round: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(0),
            round,
        },
    }
}

/// The sequence number `append` put in a message.
pub fn seq_of(message: &Message) -> u64 {
    match &message.body {
        MessageBody::AppendEntries { round, .. } | MessageBody::Heartbeat { round, .. } => *round,
        other => panic!("unexpected message {other:?}"),
    }
}

/// Receives the next message (skipping snapshots), or panics after `timeout`.
pub async fn recv_message(node: &mut Node, timeout: Duration) -> (NodeId, Message) {
    loop {
        match tokio::time::timeout(timeout, node.inbound.recv()).await {
            Ok(Some(Inbound::Message { from, message })) => return (from, message),
            Ok(Some(Inbound::Snapshot(_))) => {}
            Ok(None) => panic!("{}: inbound closed", node.id),
            Err(_) => panic!("{}: no message within {timeout:?}", node.id),
        }
    }
}

pub fn path_of(paths: &TlsPaths) -> PathBuf {
    paths.cert.parent().unwrap().to_path_buf()
}

//! Transport nodes on loopback under test: a socket bound first, a config with short
//! timeouts, starting a node, and waiting for its link events.

use super::pki::CLUSTER;
use regent_raft::{Message, NodeId};
use regent_transport::pki::{NodeMaterial, TlsPaths};
use regent_transport::{
    Inbound, LinkEvent, StartOptions, Transport, TransportConfig, TransportHandle,
};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// A UDP socket on loopback, bound before any config needs its address.
pub fn bind() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A running node under test.
pub struct Node {
    pub handle: TransportHandle<Message>,
    /// Held for as long as the node runs: a dropped receiver fails every link.
    pub inbound: mpsc::Receiver<Inbound<Message>>,
    pub events: broadcast::Receiver<LinkEvent>,
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
        handle,
        inbound,
        events,
    }
}

impl Node {
    /// Shuts the transport down, and only then drops the messages it delivered, so that no
    /// link fails for a dropped receiver on the way down.
    pub async fn shutdown(self) {
        let Node {
            handle, inbound, ..
        } = self;
        handle.shutdown().await;
        drop(inbound);
    }
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

//! A peer that passes mutual TLS and the hello and then sends bad frames: the node closes that
//! peer's connection with an error naming the peer, and keeps serving.

mod transport_support {
    pub mod node;
    pub mod pki;
}

use regent_raft::NodeId;
use regent_transport::frame::{self, FrameDecoder, FrameKind};
use regent_transport::pki::{NodeIdentity, NodeMaterial};
use regent_transport::{tls, Hello, HelloAck, LinkEvent};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use transport_support::{node::*, pki::*};

const WAIT: Duration = Duration::from_secs(10);
const FRAME_MAX: usize = 1 << 20;

/// Dials `addr` as node 1 with a good certificate and completes the hello.
async fn raw_node1(
    material: &NodeMaterial,
    addr: SocketAddr,
) -> (quinn::Connection, quinn::SendStream) {
    let expected = NodeIdentity::new(CLUSTER, NodeId(2)).unwrap();
    let config = tls::client_config(
        material,
        expected,
        Arc::new(quinn::TransportConfig::default()),
        tls::WIRE_VERSION_MAX,
    )
    .unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(config, addr, tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = Hello {
        cluster: CLUSTER.into(),
        from: NodeId(1),
        to: NodeId(2),
        frame_bytes_max: FRAME_MAX as u64,
    };
    let mut out = Vec::new();
    frame::encode(FrameKind::Hello, &hello, FRAME_MAX, &mut out).unwrap();
    send.write_all(&out).await.unwrap();
    let mut decoder = FrameDecoder::new(FRAME_MAX);
    let mut buf = [0u8; 1024];
    let ack = loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            break f;
        }
        let n = recv.read(&mut buf).await.unwrap().unwrap();
        decoder.push(&buf[..n]);
    };
    let ack: HelloAck = frame::decode_expected(&ack, FrameKind::HelloAck).unwrap();
    assert_eq!(ack.from, NodeId(2));
    // Keep the receive side open; the node writes to it.
    std::mem::forget(recv);
    (conn, send)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_link_with_the_peer_named() {
    let pki = Pki::new();
    let (socket2, addr2) = bind();
    let (_socket1, addr1) = bind();
    let paths1 = pki.node("n1", 1);
    let paths2 = pki.node("n2", 2);
    let mut node2 = start(config(2, addr2, &[(1, addr1)], &paths2), socket2);
    let material1 =
        NodeMaterial::load(&paths1, &NodeIdentity::new(CLUSTER, NodeId(1)).unwrap()).unwrap();

    let oversized = ((FRAME_MAX + 1) as u32).to_le_bytes().to_vec();
    let unknown_version = vec![3, 0, 0, 0, 9, 3, 0];
    let garbage_body = vec![
        4,
        0,
        0,
        0,
        frame::FRAME_VERSION,
        FrameKind::Message as u8,
        0xff,
        0xff,
    ];
    let unexpected_kind = vec![
        3,
        0,
        0,
        0,
        frame::FRAME_VERSION,
        FrameKind::HelloAck as u8,
        1,
    ];
    let cases: [(&str, Vec<u8>); 4] = [
        ("exceeds frame_bytes_max", oversized),
        ("unknown frame version 9", unknown_version),
        ("does not decode", garbage_body),
        ("expected a Message frame", unexpected_kind),
    ];
    for (want, bytes) in cases {
        let (conn, mut send) = raw_node1(&material1, addr2).await;
        assert!(node2.handle.wait_connected(NodeId(1), WAIT).await);
        send.write_all(&bytes).await.unwrap();
        let event = wait_event(&mut node2.events, WAIT, "the link going down", |e| {
            matches!(e, LinkEvent::Down { .. })
        })
        .await;
        let LinkEvent::Down { peer, reason } = event else {
            unreachable!()
        };
        assert_eq!(peer, NodeId(1));
        assert!(
            reason.contains("n1") && reason.contains(want),
            "{reason:?} should name n1 and say {want:?}"
        );
        // The hostile peer is told why, by a close naming it.
        let closed = conn.closed().await.to_string();
        assert!(closed.contains("n1") && closed.contains(want), "{closed}");
    }
    // The node still serves a well-behaved peer afterwards.
    let (_conn, _send) = raw_node1(&material1, addr2).await;
    assert!(node2.handle.wait_connected(NodeId(1), WAIT).await);
    node2.shutdown().await;
}

//! Links between real transports on loopback: message flow and order, the send-queue
//! policy, reconnects, snapshots beside heartbeats, and hostile frames.

mod transport_support {
    pub mod cluster;
    pub mod node;
    pub mod pki;
    pub mod restart;
    pub mod traffic;
}

use regent_chaos::Relay;
use regent_raft::{LogIndex, Message, MessageBody, NodeId, Term};
use regent_transport::{Inbound, LinkEvent};
use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;
use transport_support::{cluster::*, node::*, pki::*, restart::*, traffic::*};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_messages_in_order() {
    let pki = Pki::new();
    let mut nodes = start_cluster(&pki, &[1, 2]);
    assert!(nodes[0].handle.wait_connected(NodeId(2), WAIT).await);
    assert!(nodes[1].handle.wait_connected(NodeId(1), WAIT).await);
    let status = nodes[0].handle.peer_status(NodeId(2)).unwrap();
    assert!(status.dialed, "the lower id dials");
    assert_eq!(
        status.peer_cert.unwrap().uris,
        vec!["regent://test/node/2".to_string()]
    );

    const N: u64 = 2000;
    for seq in 0..N {
        nodes[0]
            .handle
            .send(NodeId(2), &append(1, 2, seq, 200))
            .unwrap();
        nodes[1]
            .handle
            .send(NodeId(1), &append(2, 1, seq, 200))
            .unwrap();
    }
    for node in nodes.iter_mut() {
        for expected in 0..N {
            let (from, message) = recv_message(node, WAIT).await;
            assert_ne!(from, node.handle.node_id());
            assert_eq!(message.from, from);
            assert_eq!(
                seq_of(&message),
                expected,
                "{} got messages out of order",
                node.handle.node_id()
            );
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_drops_oldest_and_coalesces_heartbeats_while_down_then_flushes() {
    let pki = Pki::new();
    let (socket1, addr1) = bind();
    let (socket2, addr2) = bind();
    let paths1 = pki.node("n1", 1);
    let paths2 = pki.node("n2", 2);
    let mut config1 = config(1, addr1, &[(2, addr2)], &paths1);
    config1.send_queue_max = 10;
    let node1 = start(config1, socket1);
    // Node 2 is not running yet: node 1 queues.
    for seq in 0..25 {
        node1
            .handle
            .send(NodeId(2), &append(1, 2, seq, 10))
            .unwrap();
    }
    for round in 100..105 {
        node1
            .handle
            .send(NodeId(2), &heartbeat(1, 2, round))
            .unwrap();
    }
    let stats = node1.handle.queue_stats(NodeId(2)).unwrap();
    assert_eq!(stats.queued, 10);
    assert_eq!(stats.coalesced, 4, "five heartbeats leave one");
    assert_eq!(
        stats.dropped_oldest, 16,
        "25 appends + 1 heartbeat into 10 slots"
    );

    let mut node2 = start(config(2, addr2, &[(1, addr1)], &paths2), socket2);
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(seq_of(&recv_message(&mut node2, WAIT).await.1));
    }
    // The newest nine appends, then the newest heartbeat.
    assert_eq!(got, vec![16, 17, 18, 19, 20, 21, 22, 23, 24, 104]);
    node1.shutdown().await;
    node2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialer_reconnects_after_the_peer_restarts() {
    let pki = Pki::new();
    let (socket1, addr1) = bind();
    let (socket2, addr2) = bind();
    let paths1 = pki.node("n1", 1);
    let paths2 = pki.node("n2", 2);
    let mut node1 = start(config(1, addr1, &[(2, addr2)], &paths1), socket1);
    let node2 = start(config(2, addr2, &[(1, addr1)], &paths2), socket2);
    assert!(node1.handle.wait_connected(NodeId(2), WAIT).await);
    node2.shutdown().await;
    wait_event(
        &mut node1.events,
        WAIT,
        "link down",
        |e| matches!(e, LinkEvent::Down { peer, .. } if *peer == NodeId(2)),
    )
    .await;
    // Same address again, as after a process restart.
    let socket2 = rebind(addr2).await;
    let mut node2 = start(config(2, addr2, &[(1, addr1)], &paths2), socket2);
    assert!(node1.handle.wait_connected(NodeId(2), WAIT).await);
    node1.handle.send(NodeId(2), &append(1, 2, 5, 10)).unwrap();
    assert_eq!(seq_of(&recv_message(&mut node2, WAIT).await.1), 5);
    node1.shutdown().await;
    node2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_beside_heartbeats() {
    let pki = Pki::new();
    let mut nodes = start_cluster(&pki, &[1, 2]);
    assert!(nodes[0].handle.wait_connected(NodeId(2), WAIT).await);
    assert!(nodes[1].handle.wait_connected(NodeId(1), WAIT).await);
    let mut node2 = nodes.pop().unwrap();
    let node1 = nodes.pop().unwrap();

    // 8 MiB of snapshot, of a pattern the receiver can check.
    const SNAPSHOT_BYTES: usize = 8 << 20;
    let data: Vec<u8> = (0..SNAPSHOT_BYTES).map(|i| (i % 251) as u8).collect();
    let sender_handle = node1.handle.clone();
    let to_send = data.clone();
    let sending = tokio::spawn(async move {
        let mut sender = sender_handle
            .open_snapshot(NodeId(2), b"index=42")
            .await
            .unwrap();
        for chunk in to_send.chunks(100_000) {
            sender.write_chunk(chunk).await.unwrap();
        }
        sender.finish().await
    });

    // The receiver does not read the snapshot until heartbeats sent meanwhile arrived: a
    // stalled snapshot must not hold the message stream up.
    let mut snapshot = None;
    let mut beats = 0;
    let mut round = 0;
    while beats < 20 {
        round += 1;
        node1
            .handle
            .send(NodeId(2), &append(1, 2, round, 10))
            .unwrap();
        match tokio::time::timeout(WAIT, node2.inbound.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Inbound::Message { .. } => beats += 1,
            Inbound::Snapshot(s) => snapshot = Some(s),
            Inbound::Call(c) => panic!("unexpected call {c:?}"),
        }
    }
    let mut snapshot = match snapshot {
        Some(s) => s,
        None => loop {
            match tokio::time::timeout(WAIT, node2.inbound.recv())
                .await
                .unwrap()
                .unwrap()
            {
                Inbound::Snapshot(s) => break s,
                Inbound::Message { .. } | Inbound::Call(_) => {}
            }
        },
    };
    assert_eq!(snapshot.from(), NodeId(1));
    assert_eq!(snapshot.header(), b"index=42");
    let mut received = Vec::with_capacity(SNAPSHOT_BYTES);
    while let Some(chunk) = snapshot.next_chunk().await.unwrap() {
        // Messages keep flowing during the transfer.
        node1.handle.send(NodeId(2), &heartbeat(1, 2, 1)).unwrap();
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len(), SNAPSHOT_BYTES);
    assert!(received == data, "snapshot bytes differ");
    assert_eq!(snapshot.accept().await.unwrap(), SNAPSHOT_BYTES as u64);
    assert_eq!(sending.await.unwrap().unwrap(), SNAPSHOT_BYTES as u64);
    node1.shutdown().await;
    node2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_snapshot_is_an_error_for_the_sender() {
    let pki = Pki::new();
    let mut nodes = start_cluster(&pki, &[1, 2]);
    assert!(nodes[0].handle.wait_connected(NodeId(2), WAIT).await);
    assert!(nodes[1].handle.wait_connected(NodeId(1), WAIT).await);
    let mut sender = nodes[0]
        .handle
        .open_snapshot(NodeId(2), b"h")
        .await
        .unwrap();
    sender.write_chunk(&[1; 1000]).await.unwrap();
    let finishing = tokio::spawn(sender.finish());
    let snapshot = loop {
        if let Inbound::Snapshot(s) = nodes[1].inbound.recv().await.unwrap() {
            break s;
        }
    };
    drop(snapshot); // refused without reading
    let err = finishing.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("n2"), "{err}");
    for node in nodes {
        node.shutdown().await;
    }
}

/// Calls: a request larger than a frame crosses whole and its answer comes back; several
/// calls in flight at once keep their answers apart; a call the peer drops unanswered is an
/// error that says the request was sent (its outcome is unknown); a call to a peer without a
/// link says it was not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_a_request_and_its_answer() {
    let pki = Pki::new();
    let mut nodes = start_cluster(&pki, &[1, 2]);
    assert!(nodes[0].handle.wait_connected(NodeId(2), WAIT).await);
    assert!(nodes[1].handle.wait_connected(NodeId(1), WAIT).await);
    let caller = nodes[0].handle.clone();
    // Larger than one frame (frame_bytes_max is 4 MiB by default): split and joined again.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut calls = Vec::new();
    for n in 0..4u8 {
        let caller = caller.clone();
        let request = if n == 0 { big.clone() } else { vec![n; 10] };
        calls.push(tokio::spawn(async move {
            caller.call(NodeId(2), &request, WAIT).await
        }));
    }
    // The callee answers each request with its length and first byte, in the order received.
    let mut answered = 0;
    while answered < 4 {
        match tokio::time::timeout(WAIT, nodes[1].inbound.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Inbound::Call(call) => {
                assert_eq!(call.from(), NodeId(1));
                let r = call.request();
                if r.len() == big.len() {
                    assert!(r == big.as_slice(), "the big request arrived changed");
                }
                let mut answer = (r.len() as u64).to_le_bytes().to_vec();
                answer.push(r[0]);
                call.reply(&answer).await.unwrap();
                answered += 1;
            }
            Inbound::Message { .. } | Inbound::Snapshot(_) => {}
        }
    }
    for (n, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap().unwrap();
        let len = if n == 0 { big.len() } else { 10 };
        let mut expected = (len as u64).to_le_bytes().to_vec();
        expected.push(if n == 0 { 0 } else { n as u8 });
        assert_eq!(answer, expected, "call {n}");
    }
    // Dropped unanswered: the caller hears at once, with `sent` set.
    let dropped = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call(NodeId(2), b"drop me", WAIT).await }
    });
    loop {
        if let Inbound::Call(call) = nodes[1].inbound.recv().await.unwrap() {
            drop(call);
            break;
        }
    }
    match dropped.await.unwrap() {
        Err(regent_transport::TransportError::Call { peer, sent, .. }) => {
            assert_eq!(peer, NodeId(2));
            assert!(sent, "the request had reached the peer");
        }
        other => panic!("expected a failed call, got {other:?}"),
    }
    let node2 = nodes.pop().unwrap();
    node2.shutdown().await;
    // No link: not sent.
    let started = Instant::now();
    loop {
        match caller.call(NodeId(2), b"x", Duration::from_secs(1)).await {
            Err(regent_transport::TransportError::NotConnected(_)) => break,
            Err(regent_transport::TransportError::Call { sent: false, .. }) => break,
            other => {
                // The link may take a moment to be seen down.
                assert!(started.elapsed() < WAIT, "still {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
}

fn heartbeat(from: u64, to: u64, round: u64) -> Message {
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

/// A peer added at run time is dialed and accepted, its certificate now passes the verifier;
/// a removed peer's link closes and its id is refused again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_added_and_removed_at_run_time() {
    let pki = Pki::new();
    let (socket1, addr1) = bind();
    let (socket2, addr2) = bind();
    let paths1 = pki.node("n1", 1);
    let paths2 = pki.node("n2", 2);
    // Node 1 starts knowing nobody; node 2 knows node 1 (it waits to be dialed).
    let node1 = start(config(1, addr1, &[], &paths1), socket1);
    let mut node2 = start(config(2, addr2, &[(1, addr1)], &paths2), socket2);
    assert!(node1.handle.send(NodeId(2), &append(1, 2, 0, 10)).is_err());

    let wanted = [(NodeId(2), addr2)].into_iter().collect();
    let changes = node1.handle.set_peers(&wanted).unwrap();
    assert_eq!(changes.added, vec![(NodeId(2), addr2)]);
    assert_eq!(node1.handle.peers(), wanted);
    assert!(node1.handle.wait_connected(NodeId(2), WAIT).await);
    node1.handle.send(NodeId(2), &append(1, 2, 7, 10)).unwrap();
    let (from, message) = recv_message(&mut node2, WAIT).await;
    assert_eq!((from, seq_of(&message)), (NodeId(1), 7));
    // The same set again changes nothing.
    assert_eq!(node1.handle.set_peers(&wanted).unwrap(), Default::default());

    let mut events = node2.handle.subscribe();
    let changes = node1.handle.set_peers(&Default::default()).unwrap();
    assert_eq!(changes.removed, vec![(NodeId(2), addr2)]);
    assert!(node1.handle.send(NodeId(2), &append(1, 2, 8, 10)).is_err());
    wait_event(
        &mut events,
        WAIT,
        "node 1's link down on node 2",
        |e| matches!(e, LinkEvent::Down { peer, .. } if *peer == NodeId(1)),
    )
    .await;
    // Node 1 itself is refused as a peer, and a bad set is an error that changes nothing.
    let bad = [(NodeId(1), addr1)].into_iter().collect();
    assert!(node1.handle.set_peers(&bad).is_err());
    assert!(node1.handle.peers().is_empty());
    node1.shutdown().await;
    node2.shutdown().await;
}

// A link that lives through a network blackout (a partition shorter than the idle timeout)
// carries messages again soon after the heal, in both directions: QUIC's probe-timeout
// backoff grows through the blackout, and a connection left to it stays silent for up to about
// the blackout's length after the heal (1.7 s after a 6 s blackout before the fix).

const BLACKOUT_WAIT: Duration = Duration::from_secs(20);

/// Two nodes that reach each other only through the relay, with the daemon's default idle
/// timeout (10 s, keep-alives every few seconds).
fn start_pair(pki: &Pki) -> (Vec<Node>, Relay) {
    let (s1, a1) = bind();
    let (s2, a2) = bind();
    let relay = Relay::start(&BTreeMap::from([(1, a1), (2, a2)]));
    let mut nodes = Vec::new();
    for (id, socket, addr, peer) in [(1, s1, a1, 2u64), (2, s2, a2, 1u64)] {
        let paths = pki.node(&format!("n{id}"), id);
        let mut config = config(id, addr, &[(peer, relay.fronts[&peer])], &paths);
        config.idle_timeout_ms = 10_000;
        config.reconnect_backoff_max_ms = 2000;
        config.handshake_timeout_ms = 5000;
        nodes.push(start(config, socket));
    }
    (nodes, relay)
}

/// Sends one message from `from` and times its arrival at `to`, skipping older messages
/// still arriving.
async fn one_way(nodes: &mut [Node], from: usize, to: usize, seq: u64) -> Duration {
    let started = Instant::now();
    let (f, t) = (from as u64 + 1, to as u64 + 1);
    nodes[from]
        .handle
        .send(NodeId(t), &append(f, t, seq, 16))
        .unwrap();
    loop {
        let (sender, message) = recv_message(&mut nodes[to], BLACKOUT_WAIT).await;
        assert_eq!(sender, NodeId(f));
        if seq_of(&message) == seq {
            return started.elapsed();
        }
    }
}

/// Connects the pair, blacks the network out for six seconds (shorter than the idle timeout,
/// so the connection outlives it, long enough for the probe timeout to back off for seconds)
/// while the `senders` (from, to) keep sending, as a leader cut off from its followers does
/// (the frames lost in the blackout fill the congestion window, so nothing new leaves before
/// a probe), heals it, and times a message each way after the heal: node 2 (which never
/// dials) first, as a follower's vote request to a peer, then node 1.
async fn through_a_blackout(senders: &[(u64, u64)]) -> (Duration, Duration) {
    let pki = Pki::new();
    let (mut nodes, relay) = start_pair(&pki);
    assert!(
        nodes[0]
            .handle
            .wait_connected(NodeId(2), BLACKOUT_WAIT)
            .await
    );
    one_way(&mut nodes, 0, 1, 1).await;
    one_way(&mut nodes, 1, 0, 1).await;

    relay.cut(1, 2);
    relay.cut(2, 1);
    let blackout = Instant::now();
    let mut seq = 100;
    while blackout.elapsed() < Duration::from_secs(6) {
        for &(from, to) in senders {
            let _ = nodes[from as usize - 1]
                .handle
                .send(NodeId(to), &append(from, to, seq, 1024));
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.heal_all();

    let up = one_way(&mut nodes, 1, 0, 1_000_000).await;
    let down = one_way(&mut nodes, 0, 1, 1_000_000).await;
    println!("senders {senders:?}: after the heal 2 -> 1 in {up:?}, then 1 -> 2 in {down:?}");
    for node in nodes {
        node.shutdown().await;
    }
    (up, down)
}

/// Within a second of the heal plus one probe-free handshake retry.
const BOUND: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_both_sides_sent_on_through_a_blackout_carries_messages_soon_after_the_heal() {
    let (up, down) = through_a_blackout(&[(1, 2), (2, 1)]).await;
    assert!(up < BOUND, "2 -> 1 took {up:?} after the heal");
    assert!(down < BOUND, "1 -> 2 took {down:?} after the heal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_only_the_acceptor_sent_on_through_a_blackout_carries_messages_soon_after_the_heal()
{
    let (up, down) = through_a_blackout(&[(2, 1)]).await;
    assert!(up < BOUND, "2 -> 1 took {up:?} after the heal");
    assert!(down < BOUND, "1 -> 2 took {down:?} after the heal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_idle_through_a_blackout_carries_messages_soon_after_the_heal() {
    let (up, down) = through_a_blackout(&[]).await;
    assert!(up < BOUND, "2 -> 1 took {up:?} after the heal");
    assert!(down < BOUND, "1 -> 2 took {down:?} after the heal");
}

/// ALPN: a node offers `regent/3` and `regent/2` (newest first) and a link speaks the newest
/// version both ends offer; a node limited to version 2 links at 2 with either side dialing,
/// its messages flow, and calls (version 3) to it are refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_speaks_the_newest_version_both_ends_offer() {
    use regent_transport::{tls, TransportError};
    let pki = Pki::new();
    for old in [1u64, 2] {
        let (socket1, addr1) = bind();
        let (socket2, addr2) = bind();
        let paths1 = pki.node(&format!("old{old}-n1"), 1);
        let paths2 = pki.node(&format!("old{old}-n2"), 2);
        let mut config1 = config(1, addr1, &[(2, addr2)], &paths1);
        let mut config2 = config(2, addr2, &[(1, addr1)], &paths2);
        if old == 1 {
            config1.wire_version_max = tls::WIRE_VERSION_MIN;
        } else {
            config2.wire_version_max = tls::WIRE_VERSION_MIN;
        }
        let mut node1 = start(config1, socket1);
        let mut node2 = start(config2, socket2);
        let up = wait_event(&mut node1.events, WAIT, "link up", |e| {
            matches!(e, LinkEvent::Up { .. })
        })
        .await;
        assert!(
            matches!(
                up,
                LinkEvent::Up {
                    wire_version: 2,
                    ..
                }
            ),
            "{up:?}"
        );
        assert!(node2.handle.wait_connected(NodeId(1), WAIT).await);
        assert_eq!(node1.handle.wire_version(NodeId(2)), Some(2));
        assert_eq!(node2.handle.wire_version(NodeId(1)), Some(2));
        assert_eq!(
            node1.handle.peer_status(NodeId(2)).unwrap().wire_version,
            Some(2)
        );
        node1.handle.send(NodeId(2), &append(1, 2, 7, 10)).unwrap();
        assert_eq!(seq_of(&recv_message(&mut node2, WAIT).await.1), 7);
        let refused = node1
            .handle
            .call(NodeId(2), b"request", Duration::from_secs(1))
            .await;
        assert!(
            matches!(
                refused,
                Err(TransportError::WireVersion {
                    needed: 3,
                    link: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        node1.shutdown().await;
        node2.shutdown().await;
    }

    // Both at the newest version.
    let (socket1, addr1) = bind();
    let (socket2, addr2) = bind();
    let node1 = start(config(1, addr1, &[(2, addr2)], &pki.node("m1", 1)), socket1);
    let node2 = start(config(2, addr2, &[(1, addr1)], &pki.node("m2", 2)), socket2);
    assert!(node1.handle.wait_connected(NodeId(2), WAIT).await);
    assert_eq!(
        node1.handle.wire_version(NodeId(2)),
        Some(tls::WIRE_VERSION_MAX)
    );
    node1.shutdown().await;
    node2.shutdown().await;
}

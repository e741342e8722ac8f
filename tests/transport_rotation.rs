//! Certificate and CA rotation under traffic: a node's certificate renewed and reloaded while
//! messages flow; a full CA rotation across three nodes (new CA and dual bundle → reissue
//! each node → drop the old CA) with messages flowing throughout; and reloads of bad files,
//! which must keep the running identity.

mod transport_support {
    pub mod cluster;
    pub mod node;
    pub mod pki;
    pub mod restart;
    pub mod traffic;
}

use regent_raft::{Message, NodeId};
use regent_transport::pki::issue;
use regent_transport::pki::{NodeIdentity, NodeMaterial};
use regent_transport::{Inbound, LinkEvent, Refuser, TransportHandle};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use transport_support::{cluster::*, node::*, pki::*, restart::*, traffic::*};

const WAIT: Duration = Duration::from_secs(10);

/// Messages flowing between every pair of `handles`, checked for loss and order.
struct Flow {
    stop: Arc<AtomicBool>,
    /// By node id: how many numbered messages that node has sent to each of the others.
    sent: BTreeMap<u64, Arc<AtomicU64>>,
    /// The senders' final counts once they stopped: each receiver reads until it has them all.
    done: watch::Sender<Option<BTreeMap<u64, u64>>>,
    senders: Vec<(u64, tokio::task::JoinHandle<u64>)>,
    receivers: Vec<(u64, tokio::task::JoinHandle<BTreeMap<NodeId, u64>>)>,
}

impl Flow {
    /// Every node sends a numbered message to every other node every 2 ms; every receiver
    /// asserts each sender's numbers arrive consecutively.
    fn start(nodes: Vec<(TransportHandle<Message>, mpsc::Receiver<Inbound<Message>>)>) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let (done, _) = watch::channel::<Option<BTreeMap<u64, u64>>>(None);
        let ids: Vec<u64> = nodes.iter().map(|(h, _)| h.node_id().0).collect();
        let mut sent = BTreeMap::new();
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for (handle, mut inbound) in nodes {
            let me = handle.node_id().0;
            let others: Vec<u64> = ids.iter().copied().filter(|id| *id != me).collect();
            let stop_flag = stop.clone();
            let count = Arc::new(AtomicU64::new(0));
            sent.insert(me, count.clone());
            let to = others.clone();
            let sender = tokio::spawn(async move {
                let mut seq = 0;
                while !stop_flag.load(Ordering::Relaxed) {
                    for to in &to {
                        handle.send(NodeId(*to), &append(me, *to, seq, 64)).unwrap();
                    }
                    seq += 1;
                    count.store(seq, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                seq
            });
            senders.push((me, sender));
            let mut done = done.subscribe();
            receivers.push((
                me,
                tokio::spawn(async move {
                    let mut next: BTreeMap<NodeId, u64> = BTreeMap::new();
                    loop {
                        let finished = done.borrow_and_update().as_ref().is_some_and(|sent| {
                            others
                                .iter()
                                .all(|o| next.get(&NodeId(*o)).copied().unwrap_or(0) >= sent[o])
                        });
                        if finished {
                            return next;
                        }
                        let item = tokio::select! {
                            item = tokio::time::timeout(WAIT, inbound.recv()) => item,
                            changed = done.changed() => match changed {
                                Ok(()) => continue,
                                Err(_) => return next,
                            },
                        };
                        // Nothing for a long while: `finish` says what is missing.
                        let Ok(Some(item)) = item else {
                            return next;
                        };
                        let Inbound::Message { from, message } = item else {
                            continue;
                        };
                        let expected = next.entry(from).or_insert(0);
                        assert_eq!(
                            seq_of(&message),
                            *expected,
                            "n{me}: message from {from} lost or out of order"
                        );
                        *expected += 1;
                    }
                }),
            ));
        }
        Flow {
            stop,
            sent,
            done,
            senders,
            receivers,
        }
    }

    /// Waits until every node has sent `count` more messages to each other node than when
    /// called: messages flowed over whatever happened before (a rate would depend on how busy
    /// the machine is; a count does not).
    async fn flowing(&self, count: u64) {
        let from: BTreeMap<u64, u64> = self
            .sent
            .iter()
            .map(|(id, n)| (*id, n.load(Ordering::Relaxed)))
            .collect();
        let started = tokio::time::Instant::now();
        while self
            .sent
            .iter()
            .any(|(id, n)| n.load(Ordering::Relaxed) < from[id] + count)
        {
            assert!(
                started.elapsed() < WAIT,
                "fewer than {count} messages sent within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops sending and checks every receiver got every message of every sender.
    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = BTreeMap::new();
        for (id, s) in self.senders {
            sent.insert(id, s.await.unwrap());
        }
        self.done.send_replace(Some(sent.clone()));
        for (me, r) in self.receivers {
            let received = r.await.unwrap();
            assert_eq!(
                received.len(),
                sent.len() - 1,
                "n{me}: a receiver missed a sender entirely"
            );
            for (from, count) in &received {
                assert_eq!(
                    *count, sent[&from.0],
                    "n{me} received {count} of the messages {from} sent"
                );
                assert!(*count > 100, "too few messages flowed: {count}");
            }
        }
    }
}

/// No link between two of `ids` went down, according to `events`.
fn assert_no_link_down(events: &mut broadcast::Receiver<LinkEvent>, ids: &[u64]) {
    while let Ok(event) = events.try_recv() {
        if let LinkEvent::Down { peer, reason } = &event {
            assert!(!ids.contains(&peer.0), "link to {peer} went down: {reason}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_certificate_rotates_while_messages_flow() {
    let pki = Pki::new();
    let nodes = start_cluster(&pki, &[1, 2]);
    assert!(nodes[0].handle.wait_connected(NodeId(2), WAIT).await);
    assert!(nodes[1].handle.wait_connected(NodeId(1), WAIT).await);
    let mut events1 = nodes[0].events.resubscribe();
    let handles: Vec<_> = nodes.iter().map(|n| n.handle.clone()).collect();
    let paths2 = pki.paths("n2");
    let old_serial = handles[1].identity_cert().serial;
    let flow = Flow::start(nodes.into_iter().map(|n| (n.handle, n.inbound)).collect());

    flow.flowing(60).await;
    let renewal = issue::renew(&pki.ca.load().unwrap(), &paths2.cert, &paths2.key, 30).unwrap();
    assert_eq!(renewal.old.serial, old_serial);
    let reloaded = handles[1].reload_identity().unwrap();
    assert_eq!(reloaded.serial, renewal.new.serial);
    assert_ne!(reloaded.serial, old_serial);
    flow.flowing(60).await;
    flow.finish().await;
    assert_no_link_down(&mut events1, &[2]);

    // The established link kept the old certificate; a new connection shows the new one.
    handles[0].reset_links();
    let up = wait_event(&mut events1, WAIT, "the link back up", |e| {
        matches!(e, LinkEvent::Up { .. })
    })
    .await;
    let LinkEvent::Up { peer_cert, .. } = up else {
        unreachable!()
    };
    assert_eq!(peer_cert.serial, renewal.new.serial);
    for h in &handles {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_bad_files_keeps_the_old_identity() {
    let pki = Pki::new();
    let mut nodes = start_cluster(&pki, &[1, 2]);
    assert!(nodes[0].handle.wait_connected(NodeId(2), WAIT).await);
    let paths = pki.paths("n2");
    let handle = nodes[1].handle.clone();
    let before = handle.identity_cert();
    let backup = pki.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    let save = |name: &str, from: &std::path::Path| std::fs::copy(from, backup.join(name)).unwrap();
    save("cert", &paths.cert);
    save("key", &paths.key);
    save("bundle", &paths.ca_bundle);
    let restore = || {
        std::fs::copy(backup.join("cert"), &paths.cert).unwrap();
        std::fs::copy(backup.join("key"), &paths.key).unwrap();
        std::fs::copy(backup.join("bundle"), &paths.ca_bundle).unwrap();
        std::fs::set_permissions(&paths.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let other = pki.node("other", 1);
    let mismatched_key = || std::fs::copy(&other.key, &paths.key).unwrap();
    let wrong_identity = || {
        std::fs::copy(&other.cert, &paths.cert).unwrap();
        std::fs::copy(&other.key, &paths.key).unwrap();
    };
    let key_missing = || std::fs::remove_file(&paths.key).unwrap();
    let key_readable =
        || std::fs::set_permissions(&paths.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bundle_garbage = || std::fs::write(&paths.ca_bundle, b"not a bundle").unwrap();
    let untrusted = || {
        std::fs::copy(Pki::new().ca.bundle_path(), &paths.ca_bundle)
            .map(|_| ())
            .unwrap()
    };
    type BreakFiles<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, BreakFiles<'_>)> = vec![
        (
            "do not belong together",
            Box::new(move || {
                mismatched_key();
            }),
        ),
        (
            "names node 1 of cluster test, expected node 2",
            Box::new(wrong_identity),
        ),
        ("is missing", Box::new(key_missing)),
        ("chmod 600", Box::new(key_readable)),
        ("no PEM CERTIFICATE", Box::new(bundle_garbage)),
        ("not trusted by the CA bundle", Box::new(untrusted)),
    ];
    for (want, break_files) in cases {
        break_files();
        let err = handle.reload_identity().unwrap_err().to_string();
        assert!(err.contains(want), "error {err:?} should say {want:?}");
        assert_eq!(
            handle.identity_cert(),
            before,
            "a failed reload changed the identity"
        );
        restore();
    }
    // The node still authenticates new connections with its old material.
    let mut events = nodes[0].events.resubscribe();
    nodes[0].handle.reset_links();
    wait_event(&mut events, WAIT, "a new link", |e| {
        matches!(e, LinkEvent::Up { .. })
    })
    .await;
    nodes[0]
        .handle
        .send(NodeId(2), &append(1, 2, 0, 8))
        .unwrap();
    assert_eq!(seq_of(&recv_message(&mut nodes[1], WAIT).await.1), 0);
    for n in nodes {
        n.shutdown().await;
    }
}

/// Starts a probe, node 4, that nodes 1–3 dial (4 is the highest id); returns it.
fn probe(
    probe_socket: std::net::UdpSocket,
    probe_addr: std::net::SocketAddr,
    members: &[(u64, std::net::SocketAddr)],
    paths: &regent_transport::pki::TlsPaths,
) -> Node {
    let material = NodeMaterial::load_unverified(paths).unwrap();
    start_with_material(
        config(4, probe_addr, members, paths),
        probe_socket,
        Some(material),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_across_three_nodes_keeps_messages_flowing() {
    let pki = Pki::new();
    let ids = [1u64, 2, 3];
    let sockets: Vec<_> = ids.iter().map(|_| bind()).collect();
    let (probe_socket, probe_addr) = bind();
    let members: Vec<(u64, std::net::SocketAddr)> = ids
        .iter()
        .zip(&sockets)
        .map(|(id, (_, a))| (*id, *a))
        .collect();
    let mut nodes = Vec::new();
    for ((socket, addr), id) in sockets.into_iter().zip(ids) {
        let paths = pki.node(&format!("n{id}"), id);
        let mut peers: Vec<_> = members.iter().copied().filter(|(p, _)| *p != id).collect();
        peers.push((4, probe_addr));
        nodes.push(start(config(id, addr, &peers, &paths), socket));
    }
    for n in &nodes {
        for p in ids.iter().filter(|p| **p != n.handle.node_id().0) {
            assert!(n.handle.wait_connected(NodeId(*p), WAIT).await);
        }
    }
    // A probe certificate from the old CA, kept for the end.
    let old_probe = pki.node("probe-old", 4);
    let handles: Vec<TransportHandle<Message>> = nodes.iter().map(|n| n.handle.clone()).collect();
    let paths: Vec<_> = nodes
        .iter()
        .map(|n| pki.paths(&format!("n{}", n.handle.node_id().0)))
        .collect();
    let mut events: Vec<_> = nodes.iter().map(|n| n.handle.subscribe()).collect();
    let flow = Flow::start(nodes.into_iter().map(|n| (n.handle, n.inbound)).collect());
    flow.flowing(40).await;

    // 1. New CA; the bundle trusts old and new. Every node installs it and reloads.
    let rotation = pki.ca.rotate(30).unwrap();
    assert_ne!(rotation.old.subject, rotation.new.subject);
    for (h, p) in handles.iter().zip(&paths) {
        pki.install_bundle(p);
        h.reload_identity().unwrap();
    }
    // A node with a new-CA certificate is accepted by nodes still on old-CA certificates.
    let new_probe = pki.node("probe-new", 4);
    let p = probe(probe_socket, probe_addr, &members, &new_probe);
    for h in &handles {
        assert!(
            h.wait_connected(NodeId(4), WAIT).await,
            "{} to the new-CA probe",
            h.node_id()
        );
    }
    p.shutdown().await;

    // 2. Reissue every node from the new CA (new keys) and reload.
    let ca = pki.ca.load().unwrap();
    for (h, p) in handles.iter().zip(&paths) {
        let renewal = issue::renew(&ca, &p.cert, &p.key, 30).unwrap();
        assert_eq!(renewal.new.issuer, rotation.new.subject);
        h.reload_identity().unwrap();
    }
    flow.flowing(40).await;

    // 3. Drop the old CA; every node installs the new-only bundle and reloads.
    pki.ca.drop_old().unwrap();
    for (h, p) in handles.iter().zip(&paths) {
        pki.install_bundle(p);
        let cert = h.reload_identity().unwrap();
        assert_eq!(cert.issuer, rotation.new.subject);
    }
    // New connections: the new-CA probe is accepted, the old-CA probe refused by every node.
    let socket = rebind(probe_addr).await;
    let p = probe(socket, probe_addr, &members, &new_probe);
    for h in &handles {
        assert!(h.wait_connected(NodeId(4), WAIT).await);
    }
    p.shutdown().await;
    let mut watchers: Vec<_> = handles.iter().map(|h| h.subscribe()).collect();
    let socket = rebind(probe_addr).await;
    let p = probe(socket, probe_addr, &members, &old_probe);
    for (h, w) in handles.iter().zip(watchers.iter_mut()) {
        let event = wait_event(w, WAIT, "refusal of the old-CA probe", |e| {
            matches!(
                e,
                LinkEvent::Rejected {
                    peer: Some(NodeId(4)),
                    by: Refuser::Us,
                    ..
                }
            )
        })
        .await;
        let LinkEvent::Rejected { reason, .. } = event else {
            unreachable!()
        };
        assert!(
            reason.contains("UnknownIssuer"),
            "{}: {reason}",
            h.node_id()
        );
    }
    p.shutdown().await;

    flow.flowing(40).await;
    flow.finish().await;
    for e in events.iter_mut() {
        assert_no_link_down(e, &ids);
    }
    for h in &handles {
        let identity = NodeIdentity::new(CLUSTER, h.node_id()).unwrap();
        assert_eq!(h.identity_cert().identity().unwrap(), identity);
        h.shutdown().await;
    }
}

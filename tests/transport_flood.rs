//! A flood of QUIC handshakes that never complete, from addresses that are not peers, while
//! a peer restarts: the restarted peer's link must be up within a few seconds, while the flood
//! goes on (before the budgets it stayed out for as long as the flood lasted).
//!
//! The flooders are not QUIC stacks: they craft real QUIC v1 Initial packets carrying a real
//! TLS ClientHello (rustls' QUIC API gives the ClientHello and the Initial keys) on plain UDP
//! sockets bound to 127.0.0.2 and up, and never send anything past the first flight. One
//! flooder ignores Retry packets (a spoofed or fire-and-forget flood, the kind a probe found
//! keeping a peer out); the others answer each Retry with its token, as an attacker who owns
//! its addresses would, and then stall, so they hold every slot the budgets let them hold.

mod transport_support {
    pub mod node;
    pub mod pki;
    pub mod restart;
}

use regent_raft::NodeId;
use regent_transport::{tls, LinkEvent, TransportConfig};
use rustls::quic::{Keys, Version};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport_support::{node::*, pki::*, restart::*};

const WAIT: Duration = Duration::from_secs(10);
/// The bound of the test: a restarted link is up within this, while the flood goes on. It
/// takes milliseconds on an idle machine; without the budgets the flood held every slot for
/// the whole default handshake timeout (5 s), again and again, and the peer never got in. The
/// bound is below that timeout and leaves a busy machine seconds to start the node and
/// handshake.
const UP_WITHIN: Duration = Duration::from_secs(4);
/// The smallest UDP payload of a datagram carrying a client Initial (RFC 9000 §14.1).
const INITIAL_DATAGRAM_BYTES_MIN: usize = 1200;
const CID_BYTES: usize = 8;

/// What one flooding source saw.
#[derive(Clone, Copy, Debug, Default)]
struct FloodStats {
    /// Initial packets sent without a token (new attempts).
    attempts: u64,
    /// Retry packets received.
    retries: u64,
    /// Initial packets sent again with a Retry token.
    retried: u64,
    /// Attempts the server went on with (it sent its handshake flight): each held a slot.
    admitted: u64,
    /// Attempts the server closed at once (CONNECTION_REFUSED) and never went on with.
    refused: u64,
}

impl std::ops::AddAssign for FloodStats {
    fn add_assign(&mut self, o: FloodStats) {
        self.attempts += o.attempts;
        self.retries += o.retries;
        self.retried += o.retried;
        self.admitted += o.admitted;
        self.refused += o.refused;
    }
}

/// One attempt of a flooder, by the source connection id it chose.
struct Attempt {
    client_hello: Vec<u8>,
    retried: bool,
    admitted: bool,
    refused: bool,
}

/// A flooding source: a UDP socket on `source` sending `burst` new attempts to `target`
/// every `period`.
struct Flooder {
    source: IpAddr,
    follows_retry: bool,
    burst: usize,
    period: Duration,
}

impl Flooder {
    async fn run(self, target: SocketAddr, stop: Arc<AtomicBool>) -> FloodStats {
        let socket = tokio::net::UdpSocket::bind((self.source, 0)).await.unwrap();
        let tls = client_tls();
        let mut attempts: HashMap<[u8; CID_BYTES], Attempt> = HashMap::new();
        let mut stats = FloodStats::default();
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                _ = tick.tick() => {
                    for _ in 0..self.burst {
                        let dcid = random_cid();
                        let scid = random_cid();
                        let client_hello = client_hello(&tls, &scid);
                        let packet = initial(&dcid, &scid, &[], 0, &client_hello);
                        // A full socket buffer drops the packet, as the network would.
                        let _ = socket.send_to(&packet, target).await;
                        stats.attempts += 1;
                        attempts.insert(scid, Attempt { client_hello, retried: false, admitted: false, refused: false });
                    }
                }
                received = socket.recv_from(&mut buf) => {
                    let Ok((len, _)) = received else { continue };
                    match server_datagram(&buf[..len]) {
                        Some(Answer::Retry { our_cid, server_cid, token }) => {
                            stats.retries += 1;
                            let Some(attempt) = attempts.get_mut(&our_cid) else { continue };
                            if self.follows_retry && !attempt.retried {
                                attempt.retried = true;
                                let packet = initial(&server_cid, &our_cid, &token, 1, &attempt.client_hello);
                                let _ = socket.send_to(&packet, target).await;
                                stats.retried += 1;
                            }
                        }
                        Some(Answer::Flight { our_cid }) => {
                            if let Some(attempt) = attempts.get_mut(&our_cid) {
                                attempt.admitted = true;
                            }
                        }
                        Some(Answer::Closed { our_cid }) => {
                            if let Some(attempt) = attempts.get_mut(&our_cid) {
                                attempt.refused = true;
                            }
                        }
                        None => {}
                    }
                }
            }
        }
        for attempt in attempts.values() {
            if attempt.admitted {
                stats.admitted += 1;
            } else if attempt.refused {
                stats.refused += 1;
            }
        }
        stats
    }
}

/// The flood: flooders running until `stop`.
struct Flood {
    stop: Arc<AtomicBool>,
    ignoring_retry: tokio::task::JoinHandle<FloodStats>,
    following_retry: Vec<tokio::task::JoinHandle<FloodStats>>,
}

impl Flood {
    /// From 127.0.0.2, 800 attempts a second that ignore Retry (the probe's flood was 40 a
    /// second); from each of 127.0.0.3..=127.0.0.10, 200 attempts a second that answer Retry
    /// and then stall. The attempts are spread evenly (a few every 5 ms): a flood in bursts
    /// leaves quiet gaps in which a freed slot waits for whoever comes next.
    fn start(target: SocketAddr) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_millis(5);
        let ignoring_retry = tokio::spawn(
            Flooder {
                source: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                follows_retry: false,
                burst: 4,
                period,
            }
            .run(target, stop.clone()),
        );
        let following_retry = (3..=10)
            .map(|last| {
                tokio::spawn(
                    Flooder {
                        source: IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
                        follows_retry: true,
                        burst: 1,
                        period,
                    }
                    .run(target, stop.clone()),
                )
            })
            .collect();
        Flood {
            stop,
            ignoring_retry,
            following_retry,
        }
    }

    /// Stops the flood: (the source ignoring Retry, the sources following it).
    async fn stop(self) -> (FloodStats, FloodStats) {
        self.stop.store(true, Ordering::Relaxed);
        let ignoring = self.ignoring_retry.await.unwrap();
        let mut following = FloodStats::default();
        for task in self.following_retry {
            following += task.await.unwrap();
        }
        (ignoring, following)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_does_not_keep_a_restarting_peer_out() {
    let pki = Pki::new();
    let (socket1, addr1) = bind();
    let (socket2, addr2) = bind();
    let config1 = config(1, addr1, &[(2, addr2)], &pki.node("n1", 1));
    let mut config2 = config(2, addr2, &[(1, addr1)], &pki.node("n2", 2));
    // The flooded node keeps the default handshake timeout, as deployed: without budgets, a
    // stalled handshake would hold its slot that long.
    config2.handshake_timeout_ms = TransportConfig::new(
        NodeId(2),
        CLUSTER,
        addr2,
        BTreeMap::new(),
        config2.tls.clone(),
    )
    .handshake_timeout_ms;
    let mut node2 = start(config2, socket2);
    let node1 = start(config1.clone(), socket1);
    assert!(node1.handle.wait_connected(NodeId(2), WAIT).await);

    // Node 2 (the one node 1 dials) is flooded; give the flood time to take every slot it can.
    let flood = Flood::start(addr2);
    let flood_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Node 1 restarts and dials the flooded node.
    node1.shutdown().await;
    wait_event(&mut node2.events, WAIT, "node 2 seeing node 1 leave", |e| {
        matches!(e, LinkEvent::Down { .. })
    })
    .await;
    let socket1 = rebind(addr1).await;
    let started = Instant::now();
    let node1 = start(config1, socket1);
    let up = node1.handle.wait_connected(NodeId(2), UP_WITHIN).await;
    let restart_up = started.elapsed();

    let flood_duration = flood_started.elapsed();
    let (ignoring, following) = flood.stop().await;
    println!(
        "flood for {:.1} s; source ignoring Retry: {ignoring:?}; 8 sources following Retry: {following:?}",
        flood_duration.as_secs_f64()
    );
    println!("link up {restart_up:?} after the peer restarted");
    assert!(
        up,
        "node 1 restarted under the flood and had no link within {UP_WITHIN:?}"
    );
    // The flood was real: the handshakes that could hold slots did, until the budgets refused
    // the rest; the ones that never proved their address held none.
    assert!(
        ignoring.attempts > 100 && ignoring.retries > 100,
        "{ignoring:?}"
    );
    assert_eq!(
        ignoring.admitted, 0,
        "a handshake from an address never validated held a slot: {ignoring:?}"
    );
    assert!(
        following.admitted > 0 && following.refused > 0,
        "the validated flood should fill its budgets and be refused beyond them: {following:?}"
    );
    node1.shutdown().await;
    node2.shutdown().await;
}

// ---- QUIC v1 packets, as much of them as a flooder needs (RFC 9000 §17, RFC 9001 §5) ----

fn random_cid() -> [u8; CID_BYTES] {
    let mut cid = [0u8; CID_BYTES];
    regent_transport::pki::fill_random(&mut cid).unwrap();
    cid
}

/// A TLS client configuration that speaks regent's ALPN; its verifier never runs, because
/// the flooder never reads the server's answer.
fn client_tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![tls::ALPN.to_vec()];
    Arc::new(config)
}

/// A real ClientHello whose QUIC transport parameters name `scid` as the client's initial
/// source connection id (the one parameter a server requires).
fn client_hello(config: &Arc<rustls::ClientConfig>, scid: &[u8]) -> Vec<u8> {
    const INITIAL_SOURCE_CONNECTION_ID: u8 = 0x0f;
    let mut params = vec![INITIAL_SOURCE_CONNECTION_ID, scid.len() as u8];
    params.extend_from_slice(scid);
    let mut conn = rustls::quic::ClientConnection::new(
        config.clone(),
        Version::V1,
        tls::SERVER_NAME.try_into().unwrap(),
        params,
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_hs(&mut hello);
    assert!(!hello.is_empty());
    hello
}

fn initial_keys(dcid: &[u8]) -> Keys {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .unwrap()
        .quic_suite()
        .unwrap();
    suite.keys(dcid, rustls::Side::Client, Version::V1)
}

fn put_varint(out: &mut Vec<u8>, value: usize) {
    match value {
        0..=63 => out.push(value as u8),
        64..=16_383 => out.extend_from_slice(&(0x4000 | value as u16).to_be_bytes()),
        _ => out.extend_from_slice(&(0x8000_0000 | value as u32).to_be_bytes()),
    }
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let first = *bytes.get(*at)?;
    let len = 1usize << (first >> 6);
    let raw = bytes.get(*at..*at + len)?;
    let mut value = u64::from(first & 0x3f);
    for b in &raw[1..] {
        value = (value << 8) | u64::from(*b);
    }
    *at += len;
    usize::try_from(value).ok()
}

/// A client Initial packet, protected, in a datagram of at least 1200 bytes: a CRYPTO frame
/// with `crypto` at offset 0, then PADDING.
fn initial(dcid: &[u8], scid: &[u8], token: &[u8], pn: u32, crypto: &[u8]) -> Vec<u8> {
    const PN_BYTES: usize = 4;
    const TAG_BYTES: usize = 16;
    const LENGTH_BYTES: usize = 2;
    let keys = initial_keys(dcid);
    // Long header, fixed bit, type Initial, packet number length 4.
    let mut packet = vec![0xc0 | (PN_BYTES as u8 - 1)];
    packet.extend_from_slice(&1u32.to_be_bytes());
    packet.push(dcid.len() as u8);
    packet.extend_from_slice(dcid);
    packet.push(scid.len() as u8);
    packet.extend_from_slice(scid);
    put_varint(&mut packet, token.len());
    packet.extend_from_slice(token);
    let mut payload = vec![0x06, 0x00];
    put_varint(&mut payload, crypto.len());
    payload.extend_from_slice(crypto);
    let overhead = packet.len() + LENGTH_BYTES + PN_BYTES + TAG_BYTES;
    payload.resize(
        payload.len().max(INITIAL_DATAGRAM_BYTES_MIN - overhead),
        0x00,
    );
    let length = PN_BYTES + payload.len() + TAG_BYTES;
    assert!(length < 16_384);
    packet.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = packet.len();
    packet.extend_from_slice(&pn.to_be_bytes());
    let tag = keys
        .local
        .packet
        .encrypt_in_place(u64::from(pn), &packet, &mut payload)
        .unwrap();
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(tag.as_ref());
    let sample = packet[pn_offset + PN_BYTES..pn_offset + PN_BYTES + 16].to_vec();
    let (first, rest) = packet.split_at_mut(1);
    keys.local
        .header
        .encrypt_in_place(
            &sample,
            &mut first[0],
            &mut rest[pn_offset - 1..pn_offset - 1 + PN_BYTES],
        )
        .unwrap();
    assert!(packet.len() >= INITIAL_DATAGRAM_BYTES_MIN);
    packet
}

/// What a server datagram says about one attempt.
enum Answer {
    /// Retry with a token: try again to `server_cid` with `token`.
    Retry {
        our_cid: [u8; CID_BYTES],
        server_cid: Vec<u8>,
        token: Vec<u8>,
    },
    /// The server's handshake flight (a Handshake packet, or an ack-eliciting Initial, which
    /// a server pads to 1200 bytes): the attempt holds a slot.
    Flight { our_cid: [u8; CID_BYTES] },
    /// A short Initial alone: the server closed the attempt (CONNECTION_REFUSED).
    Closed { our_cid: [u8; CID_BYTES] },
}

/// Reads the unprotected parts of the long-header packets of a server datagram: type,
/// connection ids, token and length (header protection covers none of them).
fn server_datagram(datagram: &[u8]) -> Option<Answer> {
    let mut at = 0;
    let mut our_cid = None;
    let mut handshake = false;
    while at < datagram.len() {
        let first = datagram[at];
        if first & 0x80 == 0 {
            break; // A short header packet: nothing the flooder sends leads to one.
        }
        let version = datagram.get(at + 1..at + 5)?;
        if version == [0, 0, 0, 0] {
            return None; // Version negotiation.
        }
        let mut i = at + 5;
        let dcid_len = usize::from(*datagram.get(i)?);
        let dcid = datagram.get(i + 1..i + 1 + dcid_len)?;
        i += 1 + dcid_len;
        let scid_len = usize::from(*datagram.get(i)?);
        let scid = datagram.get(i + 1..i + 1 + scid_len)?;
        i += 1 + scid_len;
        let cid: [u8; CID_BYTES] = dcid.try_into().ok()?;
        our_cid = Some(cid);
        match (first >> 4) & 0x03 {
            3 => {
                let token = datagram.get(i..datagram.len().checked_sub(16)?)?;
                return Some(Answer::Retry {
                    our_cid: cid,
                    server_cid: scid.to_vec(),
                    token: token.to_vec(),
                });
            }
            0 => {
                let token_len = read_varint(datagram, &mut i)?;
                i += token_len;
            }
            2 => handshake = true,
            _ => {}
        }
        let length = read_varint(datagram, &mut i)?;
        at = i + length;
    }
    let our_cid = our_cid?;
    if handshake || datagram.len() >= INITIAL_DATAGRAM_BYTES_MIN {
        Some(Answer::Flight { our_cid })
    } else {
        Some(Answer::Closed { our_cid })
    }
}

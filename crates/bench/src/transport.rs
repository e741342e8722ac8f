//! `regent bench transport`: round-trip latency and one-way message rate between two nodes
//! on loopback, over the real transport (QUIC, mutual TLS 1.3, certificates made on the fly).
//!
//! A benchmark prints figures; it asserts nothing about speed.

use anyhow::Context;
use clap::Args;
use regent_raft::{Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Term};
use regent_transport::pki::{issue, CaDir, IssueRequest, NodeIdentity, TlsPaths};
use regent_transport::{Inbound, StartOptions, Transport, TransportConfig};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The most messages or round trips one run may ask for.
pub const BENCH_COUNT_MAX: u64 = 100_000_000;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Round trips measured one after another (after 1000 warm-up ones).
    #[arg(long, default_value_t = 20_000)]
    pub round_trips: u64,
    /// Messages sent back to back, one way, for the rate.
    #[arg(long, default_value_t = 500_000)]
    pub messages: u64,
    /// Size of each message frame on the wire, in bytes (length prefix included).
    #[arg(long, default_value_t = 256)]
    pub message_bytes: usize,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=BENCH_COUNT_MAX).contains(&args.round_trips)
            && (1..=BENCH_COUNT_MAX).contains(&args.messages),
        "--round-trips and --messages must be within 1..={BENCH_COUNT_MAX}"
    );
    anyhow::ensure!(
        (64..=1 << 20).contains(&args.message_bytes),
        "--message-bytes must be within 64..=1048576"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile_dir()?;
    let ca = CaDir::new(dir.join("ca"));
    ca.init(1)?;
    let loaded = ca.load()?;
    let mut paths = Vec::new();
    for id in [1u64, 2] {
        let node_dir = dir.join(format!("n{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let tls = TlsPaths {
            cert: node_dir.join("node.pem"),
            key: node_dir.join("node.key"),
            ca_bundle: ca.bundle_path(),
        };
        let identity = NodeIdentity::new("bench", NodeId(id))?;
        let issued = issue::issue(&loaded, &IssueRequest::new(identity, 1))?;
        issue::write_new(&issued, &tls.cert, &tls.key)?;
        paths.push(tls);
    }
    let sockets = [
        std::net::UdpSocket::bind("127.0.0.1:0")?,
        std::net::UdpSocket::bind("127.0.0.1:0")?,
    ];
    let addrs = [sockets[0].local_addr()?, sockets[1].local_addr()?];
    let mut nodes = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let peer = 1 - i;
        let peers = BTreeMap::from([(NodeId(peer as u64 + 1), addrs[peer])]);
        let mut config = TransportConfig::new(
            NodeId(i as u64 + 1),
            "bench",
            addrs[i],
            peers,
            paths[i].clone(),
        );
        config.send_queue_max = 1 << 16;
        config.inbound_queue_max = 1 << 16;
        let started = Transport::start_with::<Message>(
            config,
            StartOptions {
                socket: Some(socket),
                material: None,
            },
        )?;
        nodes.push(started);
    }
    let (n2, mut inbound2) = nodes.pop().context("node 2")?;
    let (n1, mut inbound1) = nodes.pop().context("node 1")?;
    let link_start = Instant::now();
    anyhow::ensure!(
        n1.wait_connected(NodeId(2), Duration::from_secs(10)).await
            && n2.wait_connected(NodeId(1), Duration::from_secs(10)).await,
        "the two nodes did not connect"
    );
    let link_ms = link_start.elapsed().as_secs_f64() * 1e3;

    let payload = payload_for(args.message_bytes)?;
    // Node 2 echoes every message back while the round trips run, then counts.
    let echo = {
        let n2 = n2.clone();
        let round_trips = args.round_trips + 1000;
        let messages = args.messages;
        tokio::spawn(async move {
            for _ in 0..round_trips {
                let Some(Inbound::Message { message, .. }) = inbound2.recv().await else {
                    return None;
                };
                let _ = n2.send(NodeId(1), &message);
            }
            for _ in 0..messages {
                inbound2.recv().await?;
            }
            Some(Instant::now())
        })
    };

    let mut samples = Vec::with_capacity(args.round_trips as usize);
    for i in 0..args.round_trips + 1000 {
        let message = message(i, &payload);
        let start = Instant::now();
        n1.send(NodeId(2), &message)?;
        match tokio::time::timeout(Duration::from_secs(5), inbound1.recv()).await {
            Ok(Some(Inbound::Message { .. })) => {}
            _ => anyhow::bail!("round trip {i} got no answer"),
        }
        if i >= 1000 {
            samples.push(start.elapsed());
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;

    let queue_cap = 1 << 15;
    let start = Instant::now();
    for i in 0..args.messages {
        // Stay under the queue bound, so no message is dropped by the queue policy.
        while n1.queue_stats(NodeId(2)).map(|s| s.queued).unwrap_or(0) >= queue_cap {
            tokio::task::yield_now().await;
        }
        n1.send(NodeId(2), &message(i, &payload))?;
    }
    let done = tokio::time::timeout(Duration::from_secs(120), echo)
        .await
        .context("the receiver did not get every message within 120 s")??
        .context("the receiver stopped early")?;
    let elapsed = done.duration_since(start).as_secs_f64();
    let rate = args.messages as f64 / elapsed;
    let stats = n1.queue_stats(NodeId(2)).context("stats")?;

    println!(
        "transport bench: 2 nodes on 127.0.0.1, QUIC + mutual TLS 1.3 (ring), {}-byte message frames",
        args.message_bytes
    );
    println!("  link up (handshake + hello):  {link_ms:.1} ms");
    println!(
        "  round trip, sequential ({} samples): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        samples.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  one way, pipelined: {} messages in {:.2} s = {:.0} msg/s ({:.1} MB/s of frames), {} dropped by the queue",
        args.messages,
        elapsed,
        rate,
        rate * args.message_bytes as f64 / 1e6,
        stats.dropped_oldest
    );
    n1.shutdown().await;
    n2.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

fn message(seq: u64, payload: &[u8]) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(1_000_000),
            prev_log_term: Term(1),
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(1_000_001),
                payload: EntryPayload::Normal(payload.to_vec()),
            }],
            leader_commit: LogIndex(1_000_000),
            round: seq | (1 << 40),
        },
    }
}

/// A payload that makes each encoded frame exactly `frame_bytes` long (varints make the size
/// depend on the payload length, so search).
fn payload_for(frame_bytes: usize) -> anyhow::Result<Vec<u8>> {
    for len in (0..frame_bytes).rev() {
        let mut out = Vec::new();
        regent_transport::frame::encode(
            regent_transport::frame::FrameKind::Message,
            &message(0, &vec![0xab; len]),
            4 << 20,
            &mut out,
        )?;
        if out.len() == frame_bytes {
            return Ok(vec![0xab; len]);
        }
    }
    anyhow::bail!("no payload makes a {frame_bytes}-byte frame")
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let mut suffix = [0u8; 8];
    regent_transport::pki::fill_random(&mut suffix)?;
    let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("regent-bench-transport-{name}"));
    regent_transport::pki::files::ensure_dir(&dir)?;
    Ok(dir)
}

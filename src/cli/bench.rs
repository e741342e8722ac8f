//! `regent bench cluster`: a three-node cluster of real `regent run` processes (mutual TLS on
//! loopback, as `regent demo` makes it, or an existing one through `--socket`), driven through
//! the leader's socket by closed-loop clients writing 256-byte values under unique keys.
//! Prints writes/s and latency percentiles per client count, then reads/s, failover and
//! switchover figures. Figures, not assertions: see README for the latest table.

use super::demo::{self, Nodes};
use anyhow::{bail, Context};
use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ClusterBenchArgs {
    /// Client counts to run, comma-separated.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Seconds per client count.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Failover rounds (kill -9 of the leader, time to the first successful write).
    #[arg(long, default_value_t = 3)]
    pub failovers: usize,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A client on one keep-alive connection.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn open(socket: &Path) -> anyhow::Result<Conn> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to {}", socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// One request on the kept-alive connection; returns the status code.
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: regent\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.writer.write_all(&request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

/// Runs `clients` closed-loop writers for `seconds`; returns (writes/s, sorted latencies).
fn write_load(socket: &Path, clients: usize, seconds: u64, round: usize) -> (f64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let value = vec![b'v'; 256];
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (socket, stop, value) = (socket.to_path_buf(), stop.clone(), value.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let Ok(mut conn) = Conn::open(&socket) else {
                    return latencies;
                };
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let path = format!("/v1/kv/bench-{round}-{c}-{i}");
                    let started = Instant::now();
                    match conn.call("PUT", &path, &value) {
                        Ok(200) => latencies.push(started.elapsed()),
                        Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                        Err(_) => match Conn::open(&socket) {
                            Ok(c) => conn = c,
                            Err(_) => return latencies,
                        },
                    }
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, all)
}

fn read_load(socket: &Path, clients: usize, seconds: u64, consistency: &str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (socket, stop) = (socket.to_path_buf(), stop.clone());
            let path = format!("/v1/kv/bench-read?consistency={consistency}");
            std::thread::spawn(move || {
                let mut done = 0u64;
                let Ok(mut conn) = Conn::open(&socket) else {
                    return 0;
                };
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(200) = conn.call("GET", &path, b"") {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

pub fn run(args: ClusterBenchArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::Builder::new().prefix("regent-bench-").tempdir()?;
    let cluster = temp.path().join("cluster");
    demo::init_cluster(&cluster)?;
    let mut nodes = Nodes::new(cluster.clone());
    for id in 1..=demo::NODES {
        nodes.start(id)?;
    }
    let mut leader = demo::wait_writable(&nodes, None, Duration::from_secs(30))?;
    if !args.json {
        println!(
            "regent bench cluster: 3 nodes on loopback, mutual TLS, 256-byte values, unique keys"
        );
        println!(
            "{:>8} {:>12} {:>9} {:>9} {:>9}",
            "clients", "writes/s", "p50 ms", "p99 ms", "p999 ms"
        );
    }
    for (round, &clients) in args.clients.iter().enumerate() {
        let (rate, latencies) = write_load(&nodes.socket(leader), clients, args.seconds, round);
        let (p50, p99, p999) = (
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
        );
        if args.json {
            println!(
                "{}",
                serde_json::json!({"clients": clients, "writes_per_sec": rate.round(),
                    "p50_ms": p50, "p99_ms": p99, "p999_ms": p999})
            );
        } else {
            println!("{clients:>8} {rate:>12.0} {p50:>9.2} {p99:>9.2} {p999:>9.2}");
        }
    }
    let socket = nodes.socket(leader);
    let mut conn = Conn::open(&socket)?;
    if conn.call("PUT", "/v1/kv/bench-read", b"value")? != 200 {
        bail!("the read key could not be written");
    }
    let linearizable = read_load(&socket, 64, args.seconds, "linearizable");
    let lease = read_load(&socket, 64, args.seconds, "lease");

    let mut failovers = Vec::new();
    for _ in 0..args.failovers {
        let killed = Instant::now();
        nodes.kill(leader);
        let next = demo::wait_writable(&nodes, Some(leader), Duration::from_secs(30))?;
        // Until the first successful write on the new leader.
        let mut conn = Conn::open(&nodes.socket(next))?;
        while conn.call("PUT", "/v1/kv/bench-failover", b"x")? != 200 {
            std::thread::sleep(Duration::from_millis(1));
        }
        failovers.push(killed.elapsed());
        nodes.start(leader)?;
        std::thread::sleep(Duration::from_secs(2));
        leader = next;
    }
    failovers.sort();
    let rss_kib = rss_kib(&nodes, leader);
    let switchover = switchover_pause(&nodes.socket(leader))?;
    let median = failovers
        .get(failovers.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let max = failovers.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"linearizable_reads_per_sec": linearizable.round(),
                "lease_reads_per_sec": lease.round(), "failover_median_ms": median,
                "failover_max_ms": max, "switchover_pause_ms": switchover,
                "leader_rss_kib": rss_kib})
        );
    } else {
        println!("reads/s with 64 clients: linearizable {linearizable:.0}, lease {lease:.0}");
        println!(
            "kill -9 failover to the first successful write over {} rounds: median {median:.0} ms, max {max:.0} ms",
            failovers.len()
        );
        println!("switchover pause: {switchover} ms");
        if let Some(kib) = rss_kib {
            println!("leader RSS after the runs: {} MiB", kib / 1024);
        }
    }
    nodes.stop_all();
    Ok(ExitCode::SUCCESS)
}

fn switchover_pause(socket: &Path) -> anyhow::Result<u64> {
    let answer = super::client::request(
        socket,
        "POST",
        "/v1/admin/switchover",
        b"",
        Duration::from_secs(15),
    )?;
    if answer.status != 200 {
        bail!("switchover: {}", answer.error_text());
    }
    Ok(answer.json()?["pause_ms"].as_u64().unwrap_or(0))
}

fn rss_kib(nodes: &Nodes, id: u64) -> Option<u64> {
    let pid = nodes.pid(id)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

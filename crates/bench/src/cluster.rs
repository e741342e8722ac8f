//! `regent bench cluster`: a three-node cluster of real `regent run` processes (mutual TLS on
//! loopback, as `regent demo` makes it) driven through the leader's socket by closed-loop
//! clients writing 256-byte values under unique keys. Prints every figure of the benchmark:
//! writes/s, p50/p99/p999 and max latency and the three nodes' CPU per write, per client count
//! (each run timed, or `--writes N` acknowledged writes); linearizable and lease reads/s; kill -9
//! failover (leader killed → first successful write) and switchover pause (switchover asked →
//! first successful write on the new leader), each over N rounds, median and max; restart time
//! of a node whose log holds 1,000,000 entries; idle RSS. Figures, not assertions: the README
//! and docs/bench.md keep the latest ones and what bounds each.
//!
//! Invariant: every process the bench starts is stopped when it ends, whichever way it ends
//! (`Nodes` kills its children when dropped; the restart node is a `ChildGuard`).

use crate::load::{self, round3, LoadResult, RegentWriter, RunLength, Writer};
use anyhow::{bail, Context};
use clap::Args;
use regent_client::fetch_status;
use regent_client::local::{self as demo, Nodes};
use regent_daemon::config::DaemonConfig;
use regent_raft::{Entry, EntryPayload, HardState, LogIndex};
use regent_storage::{Batch, Command as KvCommand, Identity, LogStorage, Proposal, RedbStorage};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ClusterBenchArgs {
    /// Client counts to run, comma-separated.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Seconds per client count (and per read measurement).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Acknowledged writes per client count instead of `--seconds` (the reads stay timed):
    /// a long run crosses log compactions (every 100,000 entries by default).
    #[arg(long, value_name = "N")]
    pub writes: Option<u64>,
    /// Rounds of kill -9 failover and of switchover (each reports its median and max).
    #[arg(long, alias = "failovers", default_value_t = 5)]
    pub rounds: usize,
    /// Log entries of the node whose restart is timed (0 skips the measurement).
    #[arg(long, default_value_t = 1_000_000)]
    pub restart_entries: u64,
    /// One JSON object a line instead of a table: one per client count, then one with the
    /// other figures.
    #[arg(long)]
    pub json: bool,
}

/// Figures other than the write runs.
#[derive(Default)]
struct Others {
    idle_rss_kib: Option<u64>,
    linearizable_reads_per_sec: f64,
    lease_reads_per_sec: f64,
    failovers: Vec<Duration>,
    switchovers: Vec<Duration>,
    loaded_rss_kib: Option<u64>,
    restart: Option<Restart>,
}

struct Restart {
    entries: u64,
    file_bytes: u64,
    /// Process start → the socket answers `/v1/status` (storage opened and checked, core
    /// rebuilt).
    serving: Duration,
    /// Process start → writable (adds the election a restarted single node waits for).
    writable: Duration,
    /// Process start → serving when every page is checked on open (what a start after a
    /// crash costs: `storage.verify_on_open: always`).
    serving_verified: Duration,
}

pub fn run(args: ClusterBenchArgs) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    let length = RunLength::from_args(args.seconds, args.writes);
    let temp = tempfile::Builder::new().prefix("regent-bench-").tempdir()?;
    let mut cluster = BenchCluster::start(&temp.path().join("cluster"))?;
    if !args.json {
        println!(
            "regent bench cluster: 3 nodes on loopback, mutual TLS, {}-byte values, unique keys, {}, {} cores",
            load::VALUE_BYTES,
            length.describe(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
    }
    let mut others = Others {
        idle_rss_kib: cluster.idle_rss()?,
        ..Others::default()
    };
    if !args.json {
        println!("{:>8}{}", "clients", RESULT_HEADING);
    }
    for (round, &clients) in args.clients.iter().enumerate() {
        let result = cluster.writes(clients, length, &format!("bench-{round}"));
        print_result(&result, args.json);
    }
    let (linearizable, lease) = cluster.reads(args.seconds)?;
    others.linearizable_reads_per_sec = linearizable;
    others.lease_reads_per_sec = lease;
    for _ in 0..args.rounds {
        others.switchovers.push(cluster.switchover()?);
    }
    for _ in 0..args.rounds {
        others.failovers.push(cluster.failover()?);
    }
    others.loaded_rss_kib = rss_kib(cluster.nodes.pid(cluster.leader));
    cluster.nodes.stop_all();
    if args.restart_entries > 0 {
        others.restart = Some(restart(
            &temp.path().join("restart"),
            args.restart_entries,
            args.json,
        )?);
    }
    print_others(&mut others, args.json);
    Ok(ExitCode::SUCCESS)
}

fn validate(args: &ClusterBenchArgs) -> anyhow::Result<()> {
    if args.clients.is_empty() || args.clients.iter().any(|&c| c == 0 || c > 4096) {
        bail!("--clients: each count must be within 1..=4096");
    }
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be within (0, 3600]");
    }
    if args.rounds > 1000 {
        bail!("--rounds must be at most 1000");
    }
    if args.restart_entries > 100_000_000 {
        bail!("--restart-entries must be at most 100000000");
    }
    load::validate_writes(args.writes)
}

/// The columns `print_result` prints after the client count.
pub(super) const RESULT_HEADING: &str =
    "     writes/s    p50 ms    p99 ms   p999 ms    max ms  CPU µs/write";

pub(super) fn print_result(result: &LoadResult, json: bool) {
    if json {
        println!("{}", result.json());
    } else {
        let mut notes = String::new();
        if result.refused > 0 {
            notes.push_str(&format!(
                "  ({} writes refused or failed, retried; first: {})",
                result.refused,
                result.first_error.as_deref().unwrap_or("refused")
            ));
        }
        if let Some(target) = result.cut_short() {
            notes.push_str(&format!(
                "  (stopped after {:.0} s with {} of the {target} writes)",
                result.elapsed.as_secs_f64(),
                result.writes()
            ));
        }
        if let Some((window, first, last)) = result.ends {
            notes.push_str(&format!(
                "  (first {window} writes {first:.0}/s, last {window} {last:.0}/s: {:.2}×)",
                last / first
            ));
        }
        let cpu = result
            .cpu_us_per_write
            .map_or("?".to_string(), |us| format!("{us:.0}"));
        println!(
            "{:>8} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {cpu:>13}{notes}",
            result.clients,
            result.writes_per_sec,
            result.percentile_ms(0.50),
            result.percentile_ms(0.99),
            result.percentile_ms(0.999),
            result.max_ms(),
        );
    }
}

fn print_others(o: &mut Others, json: bool) {
    let (failover_median, failover_max) = median_max(&mut o.failovers);
    let (switch_median, switch_max) = median_max(&mut o.switchovers);
    let mib = |kib: Option<u64>| kib.map(|k| round3(k as f64 / 1024.0));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "linearizable_reads_per_sec": o.linearizable_reads_per_sec.round(),
                "lease_reads_per_sec": o.lease_reads_per_sec.round(),
                "failover_rounds": o.failovers.len(),
                "failover_median_ms": round3(failover_median),
                "failover_max_ms": round3(failover_max),
                "switchover_rounds": o.switchovers.len(),
                "switchover_pause_median_ms": round3(switch_median),
                "switchover_pause_max_ms": round3(switch_max),
                "restart_entries": o.restart.as_ref().map(|r| r.entries),
                "restart_ms": o.restart.as_ref().map(|r| round3(r.serving.as_secs_f64() * 1e3)),
                "restart_writable_ms": o.restart.as_ref().map(|r| round3(r.writable.as_secs_f64() * 1e3)),
                "restart_verified_ms": o.restart.as_ref().map(|r| round3(r.serving_verified.as_secs_f64() * 1e3)),
                // Without redb's page check: a start after a clean stop (`restart_ms`).
                "restart_unverified_ms": o.restart.as_ref().map(|r| round3(r.serving.as_secs_f64() * 1e3)),
                "idle_rss_mib": mib(o.idle_rss_kib),
                "loaded_rss_mib": mib(o.loaded_rss_kib),
            })
        );
        return;
    }
    println!(
        "reads/s with 64 clients: linearizable {:.0}, lease {:.0}",
        o.linearizable_reads_per_sec, o.lease_reads_per_sec
    );
    println!(
        "kill -9 failover (leader killed → first successful write), {} rounds: median {failover_median:.0} ms, max {failover_max:.0} ms",
        o.failovers.len()
    );
    println!(
        "switchover pause (switchover asked → first successful write on the new leader), {} rounds: median {switch_median:.1} ms, max {switch_max:.1} ms",
        o.switchovers.len()
    );
    if let Some(r) = &o.restart {
        println!(
            "restart with {} log entries ({} MiB file) after a clean stop: serving after {:.0} ms, writable after {:.0} ms; after a crash (every page checked on open, verify_on_open: always) serving after {:.0} ms",
            r.entries,
            r.file_bytes >> 20,
            r.serving.as_secs_f64() * 1e3,
            r.writable.as_secs_f64() * 1e3,
            r.serving_verified.as_secs_f64() * 1e3
        );
    }
    let show =
        |kib: Option<u64>| kib.map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "RSS: idle (largest of the three nodes) {} MiB; leader after the runs {} MiB",
        show(o.idle_rss_kib),
        show(o.loaded_rss_kib)
    );
}

/// (median, max) in milliseconds; NaN when empty.
fn median_max(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    (
        samples.get(samples.len() / 2).map_or(f64::NAN, ms),
        samples.last().map_or(f64::NAN, ms),
    )
}

/// A running three-node cluster and who leads it.
pub(super) struct BenchCluster {
    pub nodes: Nodes,
    pub leader: u64,
}

impl BenchCluster {
    pub fn start(dir: &Path) -> anyhow::Result<BenchCluster> {
        demo::init_cluster(dir)?;
        let mut nodes = Nodes::new(dir.to_path_buf());
        for id in 1..=demo::NODES {
            nodes.start(id)?;
        }
        let leader = demo::wait_writable(&nodes, None, Duration::from_secs(30))?;
        Ok(BenchCluster { nodes, leader })
    }

    /// The largest RSS of the three nodes after two quiet seconds.
    fn idle_rss(&self) -> anyhow::Result<Option<u64>> {
        std::thread::sleep(Duration::from_secs(2));
        Ok((1..=demo::NODES)
            .filter_map(|id| rss_kib(self.nodes.pid(id)))
            .max())
    }

    /// The three nodes' pids; empty unless all three run.
    pub fn pids(&self) -> Vec<u32> {
        (1..=demo::NODES)
            .map(|id| self.nodes.pid(id))
            .collect::<Option<Vec<u32>>>()
            .unwrap_or_default()
    }

    /// A write run on the leader; the CPU per write is the three nodes'.
    pub fn writes(&self, clients: usize, length: RunLength, prefix: &str) -> LoadResult {
        let socket = self.nodes.socket(self.leader);
        let open =
            || -> anyhow::Result<Box<dyn Writer>> { Ok(Box::new(RegentWriter::connect(&socket)?)) };
        load::closed_loop(open, clients, length, prefix, &self.pids())
    }

    /// Linearizable and lease reads/s with 64 clients on the leader.
    fn reads(&self, seconds: f64) -> anyhow::Result<(f64, f64)> {
        let socket = self.nodes.socket(self.leader);
        if load::unix(&socket)?.call("PUT", "/v1/kv/bench-read", &[b'r'; 256])? != 200 {
            bail!("the key for the read runs could not be written");
        }
        Ok((
            read_load(&socket, 64, seconds, "linearizable"),
            read_load(&socket, 64, seconds, "lease"),
        ))
    }

    /// Switchover asked of the leader → first successful write on the new leader.
    fn switchover(&mut self) -> anyhow::Result<Duration> {
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let answer = regent_client::request(
            &self.nodes.socket(self.leader),
            "POST",
            "/v1/admin/switchover",
            b"",
            Duration::from_secs(15),
        )?;
        if answer.status != 200 {
            bail!("switchover: {}", answer.error_text());
        }
        let to = answer.json()?["to"]
            .as_u64()
            .context("switchover answered without a target")?;
        let mut conn = load::unix(&self.nodes.socket(to))?;
        let deadline = started + Duration::from_secs(15);
        while conn.call("PUT", "/v1/kv/bench-switchover", b"x")? != 200 {
            if Instant::now() > deadline {
                bail!("node {to} took over but accepted no write within 15 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let pause = started.elapsed();
        self.leader = to;
        Ok(pause)
    }

    /// kill -9 of the leader → first successful write on another node; then the killed node
    /// is restarted and followed the new leader before the next round.
    fn failover(&mut self) -> anyhow::Result<Duration> {
        let killed = Instant::now();
        let old = self.leader;
        self.nodes.kill(old);
        let next = demo::wait_writable(&self.nodes, Some(old), Duration::from_secs(30))?;
        let mut conn = load::unix(&self.nodes.socket(next))?;
        while conn.call("PUT", "/v1/kv/bench-failover", b"x")? != 200 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let took = killed.elapsed();
        self.leader = next;
        self.nodes.start(old)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let follows = fetch_status(&self.nodes.socket(old))
                .map(|s| s["leader_id"].as_u64() == Some(next))
                .unwrap_or(false);
            if follows {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {old} did not rejoin within 30 s after its restart");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the links settle (the restarted node's heartbeats, leader stickiness).
        std::thread::sleep(Duration::from_millis(500));
        Ok(took)
    }
}

fn read_load(socket: &Path, clients: usize, seconds: f64, consistency: &str) -> f64 {
    let stop = AtomicBool::new(false);
    let path = format!("/v1/kv/bench-read?consistency={consistency}");
    let (stop_ref, path_ref) = (&stop, &path);
    let mut elapsed = Duration::ZERO;
    let total: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || {
                    let Ok(mut conn) = load::unix(socket) else {
                        return 0;
                    };
                    let mut done = 0u64;
                    while !stop_ref.load(Ordering::Relaxed) {
                        match conn.call("GET", path_ref, b"") {
                            Ok(200) => done += 1,
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    done
                })
            })
            .collect();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop_ref.store(true, Ordering::Relaxed);
        elapsed = started.elapsed();
        threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
    });
    total as f64 / elapsed.as_secs_f64()
}

/// Kills the child when dropped.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ChildGuard {
    /// SIGTERM, then a bounded wait, then SIGKILL.
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: kill(2) with a pid we spawned and have not waited for yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_node(config: &Path, log: &Path) -> anyhow::Result<ChildGuard> {
    let log = std::fs::File::create(log)?;
    let mut command = Command::new(std::env::current_exe()?);
    let child = regent_client::local::die_with_parent(&mut command)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("REGENT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting regent run")?;
    Ok(ChildGuard(Some(child)))
}

/// Restart time of a node whose log holds `entries` entries: a one-node cluster is started
/// once (bootstrap, election), stopped, given `entries` committed and applied 256-byte puts
/// written straight into its redb file in batches (as its own disk thread would have written
/// them), then started again and timed. Log compaction is set above `entries`, so the whole log
/// is still there when it starts.
fn restart(dir: &Path, entries: u64, json: bool) -> anyhow::Result<Restart> {
    if !json {
        println!("preparing a node with {entries} log entries ...");
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let out = Command::new(std::env::current_exe()?)
        .args(["admin", "cluster", "init", "--dir"])
        .arg(dir)
        .args(["--cluster", "restart", "--node"])
        .arg(format!("1=127.0.0.1:{port}"))
        .output()
        .context("running regent admin cluster init")?;
    if !out.status.success() {
        bail!(
            "regent admin cluster init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config_path = dir.join("node1/regent.yaml");
    keep_whole_log(&config_path, entries)?;
    let config = DaemonConfig::load(&config_path)?;
    let log = dir.join("node1/regent.log");

    let mut node = spawn_node(&config_path, &log)?;
    wait_socket(
        &config.socket,
        true,
        Instant::now() + Duration::from_secs(30),
    )?;
    node.stop();

    let file_bytes = fill_log(&config, entries)?;

    let started = Instant::now();
    let mut node = spawn_node(&config_path, &log)?;
    let deadline = started + Duration::from_secs(120);
    wait_socket(&config.socket, false, deadline)?;
    let serving = started.elapsed();
    wait_socket(&config.socket, true, deadline)?;
    let writable = started.elapsed();
    node.stop();

    // Again with redb's check of every page on open, as after a crash (`storage.verify_on_open:
    // always`), to show what that check costs.
    set_verify_on_open(&config_path, "always")?;
    let started = Instant::now();
    let mut node = spawn_node(&config_path, &log)?;
    wait_socket(&config.socket, false, started + Duration::from_secs(120))?;
    let serving_verified = started.elapsed();
    node.stop();
    Ok(Restart {
        entries,
        file_bytes,
        serving,
        writable,
        serving_verified,
    })
}

/// Raises the node's compaction thresholds above what the restart test writes.
fn keep_whole_log(config_path: &Path, entries: u64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config_path)?;
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let map = yaml
        .as_mapping_mut()
        .context("the generated regent.yaml is not a mapping")?;
    let raft = map
        .entry("raft".into())
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    let raft = raft
        .as_mapping_mut()
        .context("raft: in the generated regent.yaml is not a mapping")?;
    raft.insert(
        "compaction_entries_max".into(),
        (entries.saturating_mul(2) + 1000).into(),
    );
    raft.insert("compaction_bytes_max".into(), (1u64 << 40).into());
    std::fs::write(config_path, serde_yaml::to_string(&yaml)?)?;
    Ok(())
}

/// Sets `storage.verify_on_open` in the node's configuration.
fn set_verify_on_open(config_path: &Path, verify: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config_path)?;
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let storage = yaml
        .as_mapping_mut()
        .context("the generated regent.yaml is not a mapping")?
        .entry("storage".into())
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    storage
        .as_mapping_mut()
        .context("storage: in the generated regent.yaml is not a mapping")?
        .insert("verify_on_open".into(), verify.into());
    std::fs::write(config_path, serde_yaml::to_string(&yaml)?)?;
    Ok(())
}

/// Appends `entries` committed and applied puts to the stopped node's log; returns the file's
/// size.
fn fill_log(config: &DaemonConfig, entries: u64) -> anyhow::Result<u64> {
    const BATCH: u64 = 5_000;
    let identity = Identity {
        cluster_id: config.cluster.clone(),
        node_id: config.node_id,
    };
    let (mut storage, _) = RedbStorage::open(&config.data_dir, &identity, config.storage_options())
        .context("opening the restart node's storage")?;
    let hard = storage.state().hard_state;
    let mut written = 0u64;
    while written < entries {
        let (applied, last) = (storage.state().applied, storage.state().last_index.0);
        // What the node had not applied yet (its state machine persists lazily) is applied
        // first, so that the batch's committed entries start right after the applied index.
        let unapplied = storage.entries(applied.next(), LogIndex(last + 1), usize::MAX)?;
        let n = BATCH.min(entries - written);
        let batch_entries: Vec<Entry> = (1..=n)
            .map(|k| {
                let key = format!("restart/{:012}", last + k).into_bytes();
                Entry {
                    term: hard.term,
                    index: LogIndex(last + k),
                    payload: EntryPayload::Normal(
                        Proposal::new(KvCommand::Put {
                            key,
                            value: vec![b'v'; load::VALUE_BYTES],
                        })
                        .encode(),
                    ),
                }
            })
            .collect();
        let batch = Batch {
            hard_state: Some(HardState {
                commit: LogIndex(last + n),
                ..hard
            }),
            truncate_from: None,
            committed: unapplied.into_iter().chain(batch_entries.clone()).collect(),
            entries: batch_entries,
        };
        storage.write_batch(&batch)?;
        written += n;
    }
    let path: PathBuf = storage.path().to_path_buf();
    // Closed as a node that stops cleanly closes it.
    storage.close()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Waits until the socket answers `/v1/status` (and, with `writable`, says writable).
fn wait_socket(socket: &Path, writable: bool, deadline: Instant) -> anyhow::Result<()> {
    loop {
        if let Ok(s) = fetch_status(socket) {
            if !writable || s["writable"].as_bool() == Some(true) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer{} in time",
                socket.display(),
                if writable { " writable" } else { "" }
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(super) fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

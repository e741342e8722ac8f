//! `regent bench peers`: the write workload of `regent bench cluster` — closed-loop clients,
//! 256-byte values, unique keys — run in turn against regent, etcd and ZooKeeper, three nodes
//! each, all on this machine's loopback at the same time, and printed side by side with ratios.
//! `bench/peers.sh` installs Debian's `etcd-server` and `zookeeper` first when missing.
//!
//! Fairness: one harness (`cli/load.rs`: the same threads, keys, clock and percentiles) and one
//! client language (Rust, in this binary) for all three. Each client writes to its system's
//! leader (as regent's host does), over what that system offers its clients: regent's HTTP/JSON
//! on its Unix socket; etcd's v3 JSON gateway over HTTP/1.1 on TCP (`POST /v3/kv/put`, base64
//! keys and values: etcd's own gateway, so no gRPC client library is needed and etcd still pays
//! only its JSON translation); ZooKeeper's binary protocol on TCP (connect, then `create` of a
//! new znode per write: the few messages needed are written here from the protocol's record
//! definitions, rather than pulling a client crate with its own threads and event loop into the
//! measurement). Each system is warmed up first (uncounted); then their runs alternate for each
//! client count, in an order that turns every count, so that load from other processes on the
//! machine falls on all three alike. regent runs with mutual TLS between nodes, etcd and
//! ZooKeeper in plaintext (their defaults); every system fsyncs each write before answering.
//!
//! Each run reports, per system, writes/s, p50/p99/p999 and max latency, and the CPU time
//! (user + system, `/proc/<pid>/stat`) of that system's three server processes per
//! acknowledged write. A run lasts `--seconds`, or `--writes N` acknowledged writes.
//!
//! Invariant: every process started here is killed when the command ends, however it ends, and
//! their directories are removed.

use crate::cluster::{print_result, BenchCluster, RESULT_HEADING};
use crate::load::{self, round3, LoadResult, RunLength, Writer};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use regent_client::Conn;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

#[derive(Args, Debug)]
pub struct PeersBenchArgs {
    /// Client counts to run, comma-separated.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Seconds per client count and system.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Acknowledged writes per client count and system, instead of `--seconds`: a long run
    /// crosses log compactions (regent's every 100,000 entries by default).
    #[arg(long, value_name = "N", conflicts_with = "seconds")]
    pub writes: Option<u64>,
    /// The etcd binary (Debian's etcd-server).
    #[arg(long, default_value = "etcd")]
    pub etcd: PathBuf,
    /// The java binary that runs ZooKeeper (Debian's zookeeper package).
    #[arg(long, default_value = "java")]
    pub java: PathBuf,
    /// One JSON object a line (`system`, `clients`, `writes_per_sec`, `p50_ms`, `p99_ms`,
    /// `p999_ms`, `max_ms`, `writes`, `seconds`, `cpu_us_per_write`; with `--writes`,
    /// `window_writes`, `first_window_writes_per_sec`, `last_window_writes_per_sec`) instead
    /// of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PeersBenchArgs) -> anyhow::Result<ExitCode> {
    if args.clients.is_empty() || args.clients.iter().any(|&c| c == 0 || c > 4096) {
        bail!("--clients: each count must be within 1..=4096");
    }
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be within (0, 3600]");
    }
    load::validate_writes(args.writes)?;
    let length = RunLength::from_args(args.seconds, args.writes);
    which(&args.etcd).with_context(|| {
        format!(
            "{} not found: install Debian's etcd-server (bench/peers.sh does)",
            args.etcd.display()
        )
    })?;
    if !Path::new(ZOOKEEPER_JAR).exists() {
        bail!("{ZOOKEEPER_JAR} not found: install Debian's zookeeper (bench/peers.sh does)");
    }
    let temp = tempfile::Builder::new().prefix("regent-peers-").tempdir()?;
    if !args.json {
        println!("regent bench peers: regent, etcd and ZooKeeper, 3 nodes each on loopback, {}-byte values, unique keys, {}",
            load::VALUE_BYTES, length.describe());
        println!(
            "starting the three clusters in {} ...",
            temp.path().display()
        );
        println!("{:>10}{:>8}{RESULT_HEADING}", "system", "clients");
    }
    let regent = BenchCluster::start(&temp.path().join("regent"))?;
    let etcd = Etcd::start(&args.etcd, &temp.path().join("etcd"))?;
    let zk = ZooKeeper::start(&args.java, &temp.path().join("zookeeper"))?;
    if !args.json {
        println!(
            "etcd: {}; ZooKeeper: {}",
            version(&args.etcd, "--version"),
            zk.version()
        );
    }
    // A warm-up of each system first (ZooKeeper's JIT, every system's caches and connections),
    // not counted.
    let warmup = RunLength::Seconds(1.0);
    regent.writes(16, warmup, "warmup");
    etcd.writes(16, warmup, "warmup");
    zk.writes(16, warmup, "warmup");
    let mut rows = Vec::new();
    for (round, &clients) in args.clients.iter().enumerate() {
        let prefix = format!("peers-{round}");
        // The order turns each round, so that no system always runs right after another.
        let (mut r, mut e, mut z) = (None, None, None);
        for turn in 0..3 {
            match (round + turn) % 3 {
                0 => r = Some(regent.writes(clients, length, &prefix)),
                1 => e = Some(etcd.writes(clients, length, &prefix)),
                _ => z = Some(zk.writes(clients, length, &prefix)),
            }
        }
        let (r, e, z) = (
            r.expect("regent ran"),
            e.expect("etcd ran"),
            z.expect("ZooKeeper ran"),
        );
        if args.json {
            for (system, result) in [("regent", &r), ("etcd", &e), ("zookeeper", &z)] {
                let mut line = result.json();
                line["system"] = system.into();
                println!("{line}");
            }
        } else {
            for (system, result) in [("regent", &r), ("etcd", &e), ("ZooKeeper", &z)] {
                print!("{system:>10}");
                print_result(result, false);
            }
        }
        rows.push((r, e, z));
    }
    if !args.json {
        print_table(&rows);
    }
    drop(zk);
    drop(etcd);
    drop(regent);
    Ok(ExitCode::SUCCESS)
}

/// The side-by-side table: per client count each system's writes/s and p99, then regent's
/// ratios against the better peer (more writes/s) at that count.
fn print_table(rows: &[(LoadResult, LoadResult, LoadResult)]) {
    println!();
    println!("| clients | regent w/s | etcd w/s | ZooKeeper w/s | regent p50 / p99 ms | etcd p50 / p99 ms | ZooKeeper p50 / p99 ms | w/s vs better peer | p99 vs better peer |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (r, e, z) in rows {
        let best = if e.writes_per_sec >= z.writes_per_sec {
            e
        } else {
            z
        };
        let lat =
            |x: &LoadResult| format!("{:.2} / {:.2}", x.percentile_ms(0.5), x.percentile_ms(0.99));
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.2}× ({}) | {:.2}× |",
            r.clients,
            r.writes_per_sec,
            e.writes_per_sec,
            z.writes_per_sec,
            lat(r),
            lat(e),
            lat(z),
            r.writes_per_sec / best.writes_per_sec,
            if std::ptr::eq(best, e) {
                "etcd"
            } else {
                "ZooKeeper"
            },
            round3(r.percentile_ms(0.99) / best.percentile_ms(0.99)),
        );
    }
    // The largest latency and the servers' CPU per write (three processes per system).
    println!();
    println!("| clients | regent max ms | etcd max ms | ZooKeeper max ms | regent CPU µs/write | etcd CPU µs/write | ZooKeeper CPU µs/write |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let cpu = |x: &LoadResult| {
        x.cpu_us_per_write
            .map_or("?".to_string(), |us| format!("{us:.0}"))
    };
    for (r, e, z) in rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.clients,
            r.max_ms(),
            e.max_ms(),
            z.max_ms(),
            cpu(r),
            cpu(e),
            cpu(z),
        );
    }
}

fn which(binary: &Path) -> anyhow::Result<()> {
    let out = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match out {
        Ok(_) => Ok(()),
        Err(err) => bail!("{}: {err}", binary.display()),
    }
}

fn version(binary: &Path, flag: &str) -> String {
    Command::new(binary)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// A free TCP port on loopback (bound and released; the benchmark's own processes take it
/// right after).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Child processes killed (SIGKILL) when dropped.
struct Procs(Vec<Child>);

impl Procs {
    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(command: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    regent_client::local::die_with_parent(command)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {command:?}"))
}

// ----- etcd -----

struct Etcd {
    procs: Procs,
    /// The leader's client address.
    leader: String,
}

impl Etcd {
    fn start(binary: &Path, dir: &Path) -> anyhow::Result<Etcd> {
        std::fs::create_dir_all(dir)?;
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect();
        let mut procs = Procs(Vec::new());
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("e{}", i + 1);
            let mut command = Command::new(binary);
            command
                .arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(dir.join(&name))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=regent-bench");
            procs
                .0
                .push(spawn(&mut command, &dir.join(format!("{name}.log")))?);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for (client, _) in &ports {
                let address = format!("127.0.0.1:{client}");
                if Etcd::is_leader(&address).unwrap_or(false) {
                    return Ok(Etcd {
                        procs,
                        leader: address,
                    });
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd elected no leader within 60 s; see the logs in {}",
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the member at `address` leads (`/v3/maintenance/status`: its member id is the
    /// leader's).
    fn is_leader(address: &str) -> anyhow::Result<bool> {
        let mut conn = load::tcp(address)?;
        if conn.call("POST", "/v3/maintenance/status", b"{}")? != 200 {
            return Ok(false);
        }
        let status: serde_json::Value = serde_json::from_slice(conn.body())?;
        let member = &status["header"]["member_id"];
        Ok(!member.is_null() && *member == status["leader"])
    }

    fn writes(&self, clients: usize, length: RunLength, prefix: &str) -> LoadResult {
        let open = || -> anyhow::Result<Box<dyn Writer>> {
            Ok(Box::new(EtcdWriter {
                conn: load::tcp(&self.leader)?,
                body: String::new(),
            }))
        };
        load::closed_loop(open, clients, length, prefix, &self.procs.pids())
    }
}

/// etcd: `POST /v3/kv/put` on its JSON gateway.
struct EtcdWriter {
    conn: Conn<TcpStream>,
    /// The request body, rebuilt in place for each write.
    body: String,
}

impl Writer for EtcdWriter {
    fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        let body = &mut self.body;
        body.clear();
        body.push_str("{\"key\":\"");
        STANDARD.encode_string(key.as_bytes(), body);
        body.push_str("\",\"value\":\"");
        STANDARD.encode_string(value, body);
        body.push_str("\"}");
        Ok(self.conn.call("POST", "/v3/kv/put", body.as_bytes())? == 200)
    }
}

// ----- ZooKeeper -----

struct ZooKeeper {
    /// The three `java` processes (each the server itself, no wrapper script).
    procs: Procs,
    /// The leader's client address.
    leader: String,
}

impl ZooKeeper {
    fn start(java: &Path, dir: &Path) -> anyhow::Result<ZooKeeper> {
        std::fs::create_dir_all(dir)?;
        let ports: Vec<[u16; 3]> = (0..3)
            .map(|_| Ok([free_port()?, free_port()?, free_port()?]))
            .collect::<anyhow::Result<_>>()?;
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, [_, quorum, election])| {
                format!("server.{}=127.0.0.1:{quorum}:{election}\n", i + 1)
            })
            .collect();
        let mut procs = Procs(Vec::new());
        for (i, [client, _, _]) in ports.iter().enumerate() {
            let id = i + 1;
            let data = dir.join(format!("z{id}"));
            std::fs::create_dir_all(&data)?;
            std::fs::write(data.join("myid"), format!("{id}\n"))?;
            // ZooKeeper's defaults, except: no per-address connection cap (256 clients come
            // from 127.0.0.1), no admin web server (a fixed port), `srvr` allowed (to find the
            // leader).
            let config = format!(
                "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client}\n\
                 clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=srvr\n{servers}",
                data.display()
            );
            let config_path = dir.join(format!("z{id}.cfg"));
            std::fs::write(&config_path, config)?;
            let mut command = Command::new(java);
            command
                .arg("-Xmx1g")
                .arg("-cp")
                .arg(ZOOKEEPER_JAR)
                .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                .arg(&config_path);
            procs
                .0
                .push(spawn(&mut command, &dir.join(format!("z{id}.log")))?);
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            for [client, _, _] in &ports {
                let address = format!("127.0.0.1:{client}");
                if four_letters(&address, "srvr")
                    .map(|s| s.contains("Mode: leader"))
                    .unwrap_or(false)
                {
                    // The followers must be in sync before writes are timed.
                    std::thread::sleep(Duration::from_secs(1));
                    return Ok(ZooKeeper {
                        procs,
                        leader: address,
                    });
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "ZooKeeper elected no leader within 90 s; see the logs in {}",
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn version(&self) -> String {
        four_letters(&self.leader, "srvr")
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    }

    fn writes(&self, clients: usize, length: RunLength, prefix: &str) -> LoadResult {
        let open = || -> anyhow::Result<Box<dyn Writer>> {
            Ok(Box::new(ZkWriter::connect(&self.leader)?))
        };
        load::closed_loop(open, clients, length, prefix, &self.procs.pids())
    }
}

/// One of ZooKeeper's four-letter commands; returns the answer.
fn four_letters(address: &str, command: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(command.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// A ZooKeeper session on one TCP connection: the connect handshake, then one `create` per
/// write (opcode 1, persistent, open ACL), each a length-prefixed jute record answered in
/// order.
struct ZkWriter {
    stream: TcpStream,
    xid: i32,
    frame: Vec<u8>,
}

const ZK_OP_CREATE: i32 = 1;
const ZK_OP_CLOSE: i32 = -11;
/// ZooKeeper's `Perms.ALL`.
const ZK_PERMS_ALL: i32 = 31;

impl ZkWriter {
    fn connect(address: &str) -> anyhow::Result<ZkWriter> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        let mut writer = ZkWriter {
            stream,
            xid: 0,
            frame: Vec::with_capacity(512),
        };
        // ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId, passwd, readOnly.
        let mut request = Vec::new();
        put_i32(&mut request, 0);
        request.extend_from_slice(&0i64.to_be_bytes());
        put_i32(&mut request, 30_000);
        request.extend_from_slice(&0i64.to_be_bytes());
        put_bytes(&mut request, &[0; 16]);
        request.push(0);
        writer.send(&request)?;
        // ConnectResponse: protocolVersion, timeOut, sessionId, passwd[, readOnly].
        writer.receive()?;
        if writer.frame.len() < 16 {
            bail!(
                "ZooKeeper refused the session (a {}-byte answer)",
                writer.frame.len()
            );
        }
        let timeout = i32::from_be_bytes(writer.frame[4..8].try_into().expect("4 bytes"));
        if timeout <= 0 {
            bail!("ZooKeeper refused the session (timeout {timeout})");
        }
        Ok(writer)
    }

    fn send(&mut self, record: &[u8]) -> anyhow::Result<()> {
        let mut framed = Vec::with_capacity(record.len() + 4);
        put_i32(&mut framed, i32::try_from(record.len())?);
        framed.extend_from_slice(record);
        self.stream.write_all(&framed)?;
        Ok(())
    }

    fn receive(&mut self) -> anyhow::Result<()> {
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length)?;
        let length = i32::from_be_bytes(length);
        if !(0..=1 << 20).contains(&length) {
            bail!("ZooKeeper sent a frame of {length} bytes");
        }
        self.frame.resize(length as usize, 0);
        self.stream.read_exact(&mut self.frame)?;
        Ok(())
    }
}

impl Writer for ZkWriter {
    fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        self.xid += 1;
        let mut request = Vec::with_capacity(64 + key.len() + value.len());
        // RequestHeader, then CreateRequest: path, data, acl (world:anyone, all), flags.
        put_i32(&mut request, self.xid);
        put_i32(&mut request, ZK_OP_CREATE);
        put_bytes(&mut request, format!("/{key}").as_bytes());
        put_bytes(&mut request, value);
        put_i32(&mut request, 1);
        put_i32(&mut request, ZK_PERMS_ALL);
        put_bytes(&mut request, b"world");
        put_bytes(&mut request, b"anyone");
        put_i32(&mut request, 0);
        self.send(&request)?;
        // Skip notifications (xid -1) and pings (xid -2) until our answer.
        loop {
            self.receive()?;
            if self.frame.len() < 16 {
                bail!("ZooKeeper sent a short reply");
            }
            let xid = i32::from_be_bytes(self.frame[0..4].try_into().expect("4 bytes"));
            if xid < 0 {
                continue;
            }
            if xid != self.xid {
                bail!("ZooKeeper answered xid {xid}, expected {}", self.xid);
            }
            let err = i32::from_be_bytes(self.frame[12..16].try_into().expect("4 bytes"));
            return Ok(err == 0);
        }
    }
}

impl Drop for ZkWriter {
    fn drop(&mut self) {
        // closeSession, so that the server drops the session now rather than at its timeout.
        let mut request = Vec::new();
        put_i32(&mut request, self.xid + 1);
        put_i32(&mut request, ZK_OP_CLOSE);
        let _ = self.send(&request);
    }
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A jute buffer or string: its length, then its bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_i32(out, i32::try_from(bytes.len()).expect("small records"));
    out.extend_from_slice(bytes);
}

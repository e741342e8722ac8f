//! Real `regent run` processes on loopback, made with `regent admin cluster init` in a temp dir,
//! and the host protocol's client (`regent_client`) fitted to the tests: answers with headers
//! in a map, and streams read line by line. Everything started here is killed when the
//! `Cluster` is dropped, also when a test fails.

use regent_client::http::{self, UnixConn};
use regent_client::Conn;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_regent");

/// An HTTP answer: status code, headers (lower-case names), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request on a Unix socket (a new connection each time; `Connection: close`).
pub fn http(socket: &Path, method: &str, path: &str, body: &[u8]) -> std::io::Result<Answer> {
    let mut conn = Conn::unix(socket, Some(Duration::from_secs(15)))?;
    conn.send_closing(method, path, body)
        .map_err(std::io::Error::other)?;
    let answer = regent_client::Answer::read(&mut conn).map_err(std::io::Error::other)?;
    Ok(Answer {
        status: answer.status,
        headers: answer.headers.into_iter().collect(),
        body: answer.body,
    })
}

/// A streaming answer (a watch, a journal tail) on a connection of its own, read line by line.
pub struct Feed {
    conn: UnixConn,
    pending: Vec<u8>,
}

impl Feed {
    /// `GET path` on `socket` and the answer's head; with `timeout`, each read is bounded by
    /// it (a timed-out read is an error that `next_line` can be called again after).
    pub fn open(socket: &Path, path: &str, timeout: Option<Duration>) -> std::io::Result<Feed> {
        let mut conn = Conn::unix(socket, timeout)?;
        conn.send("GET", path, b"").map_err(std::io::Error::other)?;
        conn.read_head().map_err(std::io::Error::other)?;
        Ok(Feed {
            conn,
            pending: Vec::new(),
        })
    }

    /// The answer's status line, e.g. `HTTP/1.1 200 OK`.
    pub fn status_line(&self) -> &str {
        self.conn.status_line()
    }

    /// The body's next line (without its line end); `None` once the stream has ended, also
    /// when the daemon closed it between chunks (a killed or stopped node).
    pub fn next_line(&mut self) -> Result<Option<String>, http::Error> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..=end);
                return Ok(Some(line));
            }
            match self.conn.read_body_part(&mut self.pending) {
                Ok(0) | Err(http::Error::Unterminated) => return Ok(None),
                Ok(_) => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// `--node ID=127.0.0.1:PORT` for nodes 1..=n, each on a free loopback port.
fn loopback_nodes(n: u64) -> Vec<String> {
    (1..=n)
        .flat_map(|id| ["--node".into(), format!("{id}=127.0.0.1:{}", free_port())])
        .collect()
}

/// A free UDP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

pub struct Node {
    pub id: u64,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    runs: u32,
}

impl Node {
    /// Whether the process is running (reaping it if it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("run{}.log", self.runs))
    }

    /// Everything this node logged in all its runs.
    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|r| {
                std::fs::read_to_string(self.dir.join(format!("run{r}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub struct Cluster {
    /// Removed (with every file of the cluster) when the cluster is dropped.
    _root: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

/// Extra YAML appended to every node's configuration (small timeouts and thresholds for tests).
pub const TEST_SETTINGS: &str = "raft:\n  compaction_entries_max: 200\n";

impl Cluster {
    /// `regent admin cluster init` with `n` nodes on free loopback ports, plus `extra` YAML.
    pub fn init(n: u64, cluster: &str, extra: &str) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster");
        let mut args: Vec<String> = vec![
            "admin".into(),
            "cluster".into(),
            "init".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--cluster".into(),
            cluster.into(),
        ];
        args.extend(loopback_nodes(n));
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "cluster init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster::from_dir(root, n, extra)
    }

    /// `regent restore --from BACKUP` into a new cluster of `n` nodes on free loopback ports,
    /// plus `extra` YAML, as `init` sets one up. Returns the cluster and restore's output.
    pub fn restore(backup: &Path, n: u64, cluster: &str, extra: &str) -> (Cluster, String) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cluster");
        let mut args: Vec<String> = vec![
            "restore".into(),
            "--from".into(),
            backup.display().to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--cluster".into(),
            cluster.into(),
        ];
        args.extend(loopback_nodes(n));
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "restore failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        (Cluster::from_dir(root, n, extra), stdout)
    }

    /// The nodes `cluster init` (or `restore`) wrote into `root/cluster`, with `extra` YAML.
    fn from_dir(root: tempfile::TempDir, n: u64, extra: &str) -> Cluster {
        let dir = root.path().join("cluster");
        let nodes = (1..=n)
            .map(|id| {
                let node_dir = dir.join(format!("node{id}"));
                let config = node_dir.join("regent.yaml");
                let mut yaml = std::fs::read_to_string(&config).unwrap();
                yaml.push('\n');
                yaml.push_str(extra);
                std::fs::write(&config, yaml).unwrap();
                Node {
                    id,
                    socket: node_dir.join("regent.sock"),
                    dir: node_dir,
                    config,
                    child: None,
                    runs: 0,
                }
            })
            .collect();
        Cluster { _root: root, nodes }
    }

    /// Routes every node's traffic to its peers through a fault-injecting relay (call before
    /// starting the nodes): each configuration keeps its own address and names the relay's
    /// fronts for its peers.
    pub fn route_through_relay(&mut self) -> regent_chaos::Relay {
        let configs: Vec<serde_yaml::Value> = self
            .nodes
            .iter()
            .map(|n| serde_yaml::from_str(&std::fs::read_to_string(&n.config).unwrap()).unwrap())
            .collect();
        let real: BTreeMap<u64, std::net::SocketAddr> = configs[0]["members"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                let id = m["id"].as_u64().unwrap();
                (id, m["address"].as_str().unwrap().parse().unwrap())
            })
            .collect();
        let relay = regent_chaos::Relay::start(&real);
        for (node, mut config) in self.nodes.iter().zip(configs) {
            for member in config["members"].as_sequence_mut().unwrap() {
                let id = member["id"].as_u64().unwrap();
                if id != node.id {
                    member["address"] = relay.fronts[&id].to_string().into();
                }
            }
            std::fs::write(&node.config, serde_yaml::to_string(&config).unwrap()).unwrap();
        }
        relay
    }

    /// Sets up node `id` as a new member joining the running cluster: `regent admin cluster
    /// init --join ID` with the existing CA, the members of node 1's configuration and a free
    /// port. Returns its address; start it with `start(id)`. Ids must follow on.
    pub fn add_joining_node(&mut self, id: u64, extra: &str) -> std::net::SocketAddr {
        assert_eq!(id as usize, self.nodes.len() + 1, "node ids follow on");
        let dir = self._root.path().join("cluster");
        let first: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.nodes[0].config).unwrap()).unwrap();
        let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut args: Vec<String> = vec![
            "admin".into(),
            "cluster".into(),
            "init".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--cluster".into(),
            first["cluster"].as_str().unwrap().into(),
            "--join".into(),
            id.to_string(),
            "--node".into(),
            format!("{id}={address}"),
        ];
        for m in first["members"].as_sequence().unwrap() {
            args.push("--node".into());
            args.push(format!(
                "{}={}",
                m["id"].as_u64().unwrap(),
                m["address"].as_str().unwrap()
            ));
        }
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "cluster init --join failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let node_dir = dir.join(format!("node{id}"));
        let config = node_dir.join("regent.yaml");
        let mut yaml = std::fs::read_to_string(&config).unwrap();
        assert!(yaml.contains("join: true"), "{yaml}");
        yaml.push('\n');
        yaml.push_str(extra);
        std::fs::write(&config, yaml).unwrap();
        self.nodes.push(Node {
            id,
            socket: node_dir.join("regent.sock"),
            dir: node_dir,
            config,
            child: None,
            runs: 0,
        });
        address
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn start(&mut self, id: u64) {
        self.start_with_env(id, &[]);
    }

    /// Starts node `id` with these environment variables added (a preloaded library, say).
    pub fn start_with_env(&mut self, id: u64, env: &[(&str, String)]) {
        let node = self.node(id);
        assert!(!node.is_running(), "n{id} is already running");
        node.runs += 1;
        let log = std::fs::File::create(node.log_path()).unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&node.config)
            .env("REGENT_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            // A host-health command may name files relative to its node's directory.
            .current_dir(&node.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    pub fn start_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.start(id);
        }
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the exit code.
    pub fn stop(&mut self, id: u64) -> Option<i32> {
        let mut child = self.node(id).child.take()?;
        sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("n{id} did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes[(id - 1) as usize].child.as_ref().map(|c| c.id())
    }

    pub fn status(&self, id: u64) -> Option<Value> {
        let node = &self.nodes[(id - 1) as usize];
        let answer = http(&node.socket, "GET", "/v1/status", b"").ok()?;
        (answer.status == 200).then(|| answer.json())
    }

    /// Waits until exactly one running node is writable; returns it and how long it took.
    pub fn wait_writable_leader(&mut self, timeout: Duration) -> (u64, Duration) {
        let started = Instant::now();
        loop {
            let writable: Vec<u64> = (1..=self.nodes.len() as u64)
                .filter(|&id| self.nodes[(id - 1) as usize].child.is_some())
                .filter(|&id| {
                    self.status(id)
                        .is_some_and(|s| s["writable"].as_bool() == Some(true))
                })
                .collect();
            if writable.len() == 1 {
                return (writable[0], started.elapsed());
            }
            assert!(
                started.elapsed() < timeout,
                "no single writable leader within {timeout:?} (writable: {writable:?}); logs:\n{}",
                self.all_logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a running node other than `except` is writable; returns it.
    pub fn wait_writable_other_than(&self, except: u64, timeout: Duration) -> u64 {
        let started = Instant::now();
        loop {
            let found = (1..=self.nodes.len() as u64)
                .filter(|&id| id != except)
                .find(|&id| self.status(id).is_some_and(|s| s["writable"] == true));
            if let Some(id) = found {
                return id;
            }
            assert!(
                started.elapsed() < timeout,
                "no node but n{except} became writable within {timeout:?}:\n{}",
                self.all_logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn put(&self, id: u64, key: &str, value: &[u8]) -> std::io::Result<Answer> {
        let socket = &self.nodes[(id - 1) as usize].socket;
        http(socket, "PUT", &format!("/v1/kv/{key}"), value)
    }

    pub fn get(&self, id: u64, key: &str, consistency: &str) -> std::io::Result<Answer> {
        let socket = &self.nodes[(id - 1) as usize].socket;
        http(
            socket,
            "GET",
            &format!("/v1/kv/{key}?consistency={consistency}"),
            b"",
        )
    }

    /// Writes through whichever node leads, following "not the leader" answers and retrying
    /// until `timeout`. Returns the revision.
    pub fn put_anywhere(&mut self, key: &str, value: &[u8], timeout: Duration) -> u64 {
        let started = Instant::now();
        let mut target = 1u64;
        loop {
            if self.nodes[(target - 1) as usize].child.is_some() {
                if let Ok(answer) = self.put(target, key, value) {
                    if answer.status == 200 {
                        return answer.json()["revision"].as_u64().unwrap();
                    }
                    if let Some(leader) = answer.json()["leader_id"].as_u64() {
                        if leader != target {
                            target = leader;
                            continue;
                        }
                    }
                }
            }
            assert!(
                started.elapsed() < timeout,
                "write of {key} not accepted within {timeout:?}"
            );
            target = target % self.nodes.len() as u64 + 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn all_logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- n{} ---\n{}", n.id, tail(&n.logs(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// SIGTERM through the `kill` command (no unsafe code in the tests).
fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// A client that writes unique keys `w1, w2, ...` in a loop, following "not the leader"
/// answers, trying the next node when one knows no leader, and retrying "busy" ones, until
/// stopped.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How many writes were acknowledged so far.
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: std::thread::JoinHandle<(Vec<u64>, usize)>,
}

impl Writer {
    pub fn start(c: &Cluster) -> Writer {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let sockets: Vec<PathBuf> = c.nodes.iter().map(|n| n.socket.clone()).collect();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let acked_count = std::sync::Arc::new(AtomicUsize::new(0));
        let count = acked_count.clone();
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut failed = 0;
            let mut target = 0usize;
            let mut i = 0u64;
            while !flag.load(Ordering::Relaxed) {
                i += 1;
                let started = Instant::now();
                loop {
                    let value = format!("{i}");
                    match http(
                        &sockets[target],
                        "PUT",
                        &format!("/v1/kv/w{i}"),
                        value.as_bytes(),
                    ) {
                        Ok(a) if a.status == 200 => {
                            acked.push(i);
                            count.store(acked.len(), Ordering::Relaxed);
                            break;
                        }
                        Ok(a) => match a.json()["leader_id"].as_u64() {
                            Some(l) if (l as usize) <= sockets.len() => target = (l - 1) as usize,
                            // No leader known here (an election, or a node removed from the
                            // cluster, which no leader tells any more): ask the next node.
                            _ => {
                                std::thread::sleep(Duration::from_millis(2));
                                target = (target + 1) % sockets.len();
                            }
                        },
                        Err(_) => target = (target + 1) % sockets.len(),
                    }
                    if started.elapsed() > Duration::from_secs(10) {
                        failed += 1;
                        break;
                    }
                }
            }
            (acked, failed)
        });
        Writer {
            stop,
            acked: acked_count,
            thread,
        }
    }

    /// Waits until at least `count` writes were acknowledged in all (not a rate: a busy
    /// machine writes slower, and the test only needs writes in flight).
    pub fn wait_acked(&self, count: usize, timeout: Duration) {
        let started = Instant::now();
        loop {
            let acked = self.acked.load(std::sync::atomic::Ordering::Relaxed);
            if acked >= count {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "only {acked} writes acknowledged within {timeout:?}, waiting for {count}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the writer; returns the acknowledged writes and how many gave up.
    pub fn stop(self) -> (Vec<u64>, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Every acknowledged write `w{i}` reads back (linearizably) on node `id`.
pub fn assert_all_readable(c: &Cluster, id: u64, acked: &[u64]) {
    for i in acked {
        let got = c.get(id, &format!("w{i}"), "linearizable").unwrap();
        assert_eq!(
            got.body,
            format!("{i}").as_bytes(),
            "acknowledged write w{i} lost"
        );
    }
}

/// Runs `regent ARGS --socket SOCKET`; returns success, stdout and stderr.
pub fn regent_at(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The voters in node `id`'s status.
pub fn voters(c: &Cluster, id: u64) -> Vec<u64> {
    c.status(id)
        .map(|s| {
            s["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "voter")
                .map(|m| m["id"].as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until `ok` holds for node `id`'s status; panics with the logs after `timeout`.
pub fn wait_status(
    c: &Cluster,
    id: u64,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) {
    let started = Instant::now();
    loop {
        if c.status(id).is_some_and(|s| ok(&s)) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "n{id}: {what} not seen within {timeout:?} (status: {:?}):\n{}",
            c.status(id),
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

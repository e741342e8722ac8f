//! `regent demo`: with nothing set up, a three-node cluster of real `regent run` processes on
//! loopback (fresh CA and certificates in a temporary directory), then the story: who leads,
//! a write and a read, kill -9 of the leader, the new leader and how long it took.
//!
//! Invariant: every process the demo starts is stopped when it ends, whichever way it ends.

use super::client::{self, encode_key};
use super::host::{fetch_status, status_table};
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const NODES: u64 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run the story and exit 0 (no waiting for Ctrl-C).
    #[arg(long)]
    pub once: bool,
    /// Keep the cluster's directory here (it must not exist yet) instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// The demo's processes: killed when dropped.
pub(super) struct Nodes {
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl Nodes {
    pub(super) fn new(dir: PathBuf) -> Nodes {
        Nodes {
            dir,
            children: (0..NODES).map(|_| None).collect(),
        }
    }

    pub(super) fn pid(&self, id: u64) -> Option<u32> {
        self.children[(id - 1) as usize].as_ref().map(Child::id)
    }

    pub(super) fn socket(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}/regent.sock"))
    }

    pub(super) fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let node_dir = self.dir.join(format!("node{id}"));
        let log = std::fs::File::create(node_dir.join("regent.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .arg("run")
            .arg("--config")
            .arg(node_dir.join("regent.yaml"))
            .env("REGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting regent run")?;
        self.children[(id - 1) as usize] = Some(child);
        Ok(())
    }

    pub(super) fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to each, then a bounded wait.
    pub(super) fn stop_all(&mut self) {
        for child in self.children.iter_mut().flatten() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for slot in &mut self.children {
            if let Some(mut child) = slot.take() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for id in 1..=NODES {
            self.kill(id);
        }
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir = match &args.keep {
        Some(dir) => {
            if dir.exists() {
                bail!(
                    "--keep {}: it exists already; name a new directory",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)?;
            dir.canonicalize()?
        }
        None => {
            temp = tempfile::Builder::new().prefix("regent-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let cluster = dir.join("cluster");
    println!("regent demo: a three-node cluster in {}", cluster.display());
    init_cluster(&cluster)?;
    let mut nodes = Nodes::new(cluster.clone());
    for id in 1..=NODES {
        nodes.start(id)?;
    }
    let started = Instant::now();
    let leader = wait_writable(&nodes, None, TIMEOUT)?;
    println!(
        "\n1. Node {leader} was elected leader after {} ms; it holds the lease, so only its host may write.\n",
        started.elapsed().as_millis()
    );
    print!("{}", status_table(&fetch_status(&nodes.socket(leader))?));

    let revision = put(
        &nodes.socket(leader),
        "greeting",
        b"hello from the active master",
    )?;
    let follower = (1..=NODES).find(|&id| id != leader).expect("three nodes");
    let read = get(&nodes.socket(follower), "greeting")?;
    println!(
        "\n2. PUT greeting on node {leader} (revision {revision}), committed on a quorum; GET on node {follower} (linearizable): {:?}",
        String::from_utf8_lossy(&read)
    );

    println!("\n3. kill -9 of the leader, node {leader} ...");
    let killed_at = Instant::now();
    nodes.kill(leader);
    let new_leader = wait_writable(&nodes, Some(leader), TIMEOUT)?;
    let elected = killed_at.elapsed();
    let revision = put(
        &nodes.socket(new_leader),
        "greeting",
        b"hello after the failover",
    )?;
    let first_write = killed_at.elapsed();
    println!(
        "   node {new_leader} leads: writable {} ms after the kill, first write accepted after {} ms (revision {revision}).",
        elected.as_millis(),
        first_write.as_millis()
    );
    let before = get(&nodes.socket(new_leader), "greeting")?;
    println!(
        "   every acknowledged write is still there: greeting = {:?}",
        String::from_utf8_lossy(&before)
    );
    nodes.start(leader)?;
    println!("   node {leader} restarted; it rejoins as a follower and catches up.\n");
    std::thread::sleep(Duration::from_millis(500));
    print!(
        "{}",
        status_table(&fetch_status(&nodes.socket(new_leader))?)
    );

    if args.once {
        nodes.stop_all();
        println!("\ndemo: done (failover {} ms).", first_write.as_millis());
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nThe cluster stays up until Ctrl-C. From another terminal:");
    for id in 1..=NODES {
        println!(
            "  curl --unix-socket {} http://regent/v1/status",
            nodes.socket(id).display()
        );
    }
    println!(
        "  regent status --socket {}\n  regent kv put --socket {} key value",
        nodes.socket(new_leader).display(),
        nodes.socket(new_leader).display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nstopping the demo cluster ...");
    nodes.stop_all();
    if let Some(dir) = &args.keep {
        println!("kept {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `regent admin cluster init` on three free loopback ports.
pub(super) fn init_cluster(dir: &Path) -> anyhow::Result<()> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["admin", "cluster", "init", "--dir"]).arg(dir);
    command.args(["--cluster", "demo"]);
    for id in 1..=NODES {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        command.arg("--node").arg(format!("{id}=127.0.0.1:{port}"));
    }
    let out = command
        .output()
        .context("running regent admin cluster init")?;
    if !out.status.success() {
        bail!(
            "regent admin cluster init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Waits for one node other than `except` to be writable.
pub(super) fn wait_writable(
    nodes: &Nodes,
    except: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        for id in (1..=NODES).filter(|&id| Some(id) != except) {
            if let Ok(s) = fetch_status(&nodes.socket(id)) {
                if s["writable"].as_bool() == Some(true) {
                    return Ok(id);
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no writable leader within {} s; see the logs in {}",
                timeout.as_secs(),
                nodes.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn put(socket: &Path, key: &str, value: &[u8]) -> anyhow::Result<u64> {
    let path = format!("/v1/kv/{}", encode_key(key.as_bytes()));
    let answer = client::request(socket, "PUT", &path, value, TIMEOUT)?;
    if answer.status != 200 {
        bail!("PUT {key}: {}", answer.error_text());
    }
    Ok(answer.json()?["revision"].as_u64().unwrap_or(0))
}

/// A linearizable read; a follower that has not heard from the new leader yet answers 503,
/// so that is retried for a while.
fn get(socket: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let path = format!("/v1/kv/{}", encode_key(key.as_bytes()));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = client::request(socket, "GET", &path, b"", TIMEOUT)?;
        match answer.status {
            200 => return Ok(answer.body),
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => bail!("GET {key}: {}", answer.error_text()),
        }
    }
}

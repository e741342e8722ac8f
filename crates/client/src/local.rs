//! A local cluster of real `regent run` processes on loopback, started from the running
//! `regent` binary (`std::env::current_exe`): what `regent demo` and `regent bench cluster` run.
//!
//! Invariant: every process started here is killed when its `Nodes` is dropped.

use crate::{fetch_status, ClientError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Has the child started by `command` killed when this process dies, however it dies (a
/// `regent demo | head -1` ends by SIGPIPE, which runs no destructor).
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) is async-signal-safe and touches only the child's own state.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// How many nodes a local cluster has.
pub const NODES: u64 = 3;

/// The cluster's processes: killed when dropped.
pub struct Nodes {
    pub dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl Nodes {
    pub fn new(dir: PathBuf) -> Nodes {
        Nodes {
            dir,
            children: (0..NODES).map(|_| None).collect(),
        }
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children[(id - 1) as usize].as_ref().map(Child::id)
    }

    pub fn socket(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}/regent.sock"))
    }

    pub fn start(&mut self, id: u64) -> Result<(), ClientError> {
        let node_dir = self.dir.join(format!("node{id}"));
        let log =
            std::fs::File::create(node_dir.join("regent.log")).map_err(ClientError::NodeLog)?;
        let mut command = Command::new(std::env::current_exe().map_err(ClientError::CurrentExe)?);
        let child = die_with_parent(&mut command)
            .arg("run")
            .arg("--config")
            .arg(node_dir.join("regent.yaml"))
            .env("REGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(ClientError::NodeLog)?)
            .stderr(log)
            .spawn()
            .map_err(|source| ClientError::NodeSpawn { id, source })?;
        self.children[(id - 1) as usize] = Some(child);
        Ok(())
    }

    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to each, then a bounded wait.
    pub fn stop_all(&mut self) {
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

/// `regent admin cluster init` on three free loopback ports.
pub fn init_cluster(dir: &Path) -> Result<(), ClientError> {
    let mut command = Command::new(std::env::current_exe().map_err(ClientError::CurrentExe)?);
    command.args(["admin", "cluster", "init", "--dir"]).arg(dir);
    command.args(["--cluster", "demo"]);
    for id in 1..=NODES {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .map_err(ClientError::FreePort)?
            .port();
        command.arg("--node").arg(format!("{id}=127.0.0.1:{port}"));
    }
    let out = command
        .output()
        .map_err(|source| ClientError::ClusterInitSpawn { source })?;
    if !out.status.success() {
        return Err(ClientError::ClusterInit {
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Waits for one node other than `except` to be writable.
pub fn wait_writable(
    nodes: &Nodes,
    except: Option<u64>,
    timeout: Duration,
) -> Result<u64, ClientError> {
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
            return Err(ClientError::NoLeader {
                timeout,
                dir: nodes.dir.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

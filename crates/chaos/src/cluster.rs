//! The chaos cluster's processes: `regent admin cluster init` for the files, one `regent run`
//! per node (inside its namespace), kill -9, SIGSTOP/SIGCONT, restarts, and one node's data
//! directory on a small tmpfs for the full-disk fault.
//!
//! Invariant: every process started here is killed (SIGCONT first, so none stays stopped) and
//! the tmpfs is unmounted when the `Cluster` is dropped, whichever way the run ends.

use super::net::Net;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The tmpfs of the full-disk node.
pub const TMPFS_BYTES: u64 = 48 << 20;

pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub n: u64,
    pub net: Net,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    runs: Vec<u32>,
    /// The node whose data directory is a tmpfs, and the mount point.
    pub tmpfs: Option<(u64, PathBuf)>,
    /// Processes found exited without being killed here (restarted, like systemd would).
    pub unexpected_exits: Vec<(u64, String)>,
}

impl Cluster {
    /// Makes the cluster's files (certificates and configurations) in `dir` for `net`.
    pub fn init(
        dir: &Path,
        bin: &Path,
        n: u64,
        mut net: Net,
        timing_yaml: &str,
    ) -> anyhow::Result<Cluster> {
        let mut command = std::process::Command::new(bin);
        command.args(["admin", "cluster", "init", "--dir"]).arg(dir);
        command.args(["--cluster", "chaos"]);
        for id in 1..=n {
            command
                .arg("--node")
                .arg(format!("{id}={}", net.listen_address(id)));
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
        net.start();
        for id in 1..=n {
            let config = dir.join(format!("node{id}/regent.yaml"));
            let mut yaml: serde_yaml::Value =
                serde_yaml::from_str(&std::fs::read_to_string(&config)?)?;
            for member in yaml["members"].as_sequence_mut().context("members")? {
                let peer = member["id"].as_u64().context("member id")?;
                if peer != id {
                    member["address"] = net.peer_address(id, peer).to_string().into();
                }
            }
            let mut text = serde_yaml::to_string(&yaml)?;
            text.push_str(timing_yaml);
            std::fs::write(&config, text)?;
        }
        Ok(Cluster {
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            n,
            net,
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n as usize],
            runs: vec![0; n as usize],
            tmpfs: None,
            unexpected_exits: Vec::new(),
        })
    }

    /// Gives node `id` the election role `role` (`nofailover`, `witness`): in its own
    /// `election:` section, and declared in the `members` list of every node's file.
    pub fn set_role(&self, id: u64, role: &str) -> anyhow::Result<()> {
        for node in 1..=self.n {
            let config = self.config(node);
            let mut yaml: serde_yaml::Value =
                serde_yaml::from_str(&std::fs::read_to_string(&config)?)?;
            for member in yaml["members"].as_sequence_mut().context("members")? {
                if member["id"].as_u64() == Some(id) {
                    member["election"] = serde_yaml::from_str(&format!("{{role: {role}}}"))?;
                }
            }
            if node == id {
                yaml["election"] = serde_yaml::from_str(&format!("{{role: {role}}}"))?;
            }
            std::fs::write(&config, serde_yaml::to_string(&yaml)?)?;
        }
        Ok(())
    }

    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    pub fn socket(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("regent.sock")
    }

    pub fn config(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("regent.yaml")
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("data")
    }

    /// Mounts a tmpfs of [`TMPFS_BYTES`] on node `id`'s data directory (before its first start).
    pub fn mount_tmpfs(&mut self, id: u64) -> anyhow::Result<()> {
        let data = self.data_dir(id);
        std::fs::create_dir_all(&data)?;
        let size = format!("size={TMPFS_BYTES}");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(&data)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "mount tmpfs on {}: {}",
                data.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        self.tmpfs = Some((id, data));
        Ok(())
    }

    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let i = (id - 1) as usize;
        if self.children[i].is_some() {
            bail!("n{id} is already running");
        }
        self.runs[i] += 1;
        let log =
            std::fs::File::create(self.node_dir(id).join(format!("run{}.log", self.runs[i])))?;
        let mut command = self.net.command(id, &self.bin);
        command
            .arg("run")
            .arg("--config")
            .arg(self.config(id))
            .env("REGENT_LOG", "info")
            .current_dir(self.node_dir(id))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill -9 the node if
        // the thread that started it (the campaign's main thread) dies, so no node outlives an
        // interrupted campaign.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.children[i] = Some(command.spawn().context("starting regent run")?);
        self.paused[i] = false;
        Ok(())
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.children[(id - 1) as usize].is_some()
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.paused[(id - 1) as usize]
    }

    /// kill -9 (no-op if not running).
    pub fn kill(&mut self, id: u64) {
        let i = (id - 1) as usize;
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused[i] = false;
    }

    fn signal(&mut self, id: u64, signal: libc::c_int) {
        if let Some(child) = &self.children[(id - 1) as usize] {
            // SAFETY: kill(2) on a child we spawned and have not waited for (its pid is ours).
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
    }

    /// SIGSTOP; returns the CLOCK_MONOTONIC time read once the process was seen stopped (so
    /// nothing it did is later than that).
    pub fn pause(&mut self, id: u64) -> u64 {
        self.signal(id, libc::SIGSTOP);
        self.paused[(id - 1) as usize] = true;
        if let Some(child) = &self.children[(id - 1) as usize] {
            let stat = format!("/proc/{}/stat", child.id());
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                let text = std::fs::read_to_string(&stat).unwrap_or_default();
                // The state follows the ")" that ends the command name.
                let state = text
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                if matches!(state, Some('T') | Some('t') | None) {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        regent_daemon::clock::now()
    }

    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        self.paused[(id - 1) as usize] = false;
    }

    /// Restarts every node found exited (noting it), as a service manager would.
    pub fn reap_and_restart(&mut self) -> anyhow::Result<()> {
        for id in 1..=self.n {
            let i = (id - 1) as usize;
            let exited = match &mut self.children[i] {
                Some(child) => child.try_wait()?.map(|s| s.to_string()),
                None => None,
            };
            if let Some(status) = exited {
                self.children[i] = None;
                self.unexpected_exits.push((id, status));
                self.start(id)?;
            }
        }
        Ok(())
    }

    /// Waits until node `id` answers on its socket.
    pub fn wait_socket(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if regent_client::request(
                &self.socket(id),
                "GET",
                "/v1/status",
                b"",
                Duration::from_secs(1),
            )
            .is_ok_and(|a| a.status == 200)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Everything node `id` logged, all runs.
    pub fn logs(&self, id: u64) -> String {
        (1..=self.runs[(id - 1) as usize])
            .map(|r| {
                std::fs::read_to_string(self.node_dir(id).join(format!("run{r}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills everything.
    pub fn kill_all(&mut self) {
        for id in 1..=self.n {
            self.resume(id);
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if let Some((_, data)) = self.tmpfs.take() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&data)
                .output();
        }
    }
}

/// Fills the file system holding `dir` with a file `chaos-filler` until it is full; returns
/// its path.
pub fn fill_disk(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = dir.join("chaos-filler");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0xa5u8; 1 << 20];
    loop {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    let small = vec![0u8; 4096];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
    Ok(path)
}

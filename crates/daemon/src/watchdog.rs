//! The machine watchdog (`watchdog:` in the configuration): while this node is writable, a Linux
//! watchdog device (`/dev/watchdog`; the `softdog` module where no hardware one exists) is kept
//! armed with a timeout shorter than what is left of the lease after a renewal, and fed only
//! when the lease is renewed. A machine whose regent or kernel stalls is then reset before
//! another node can become writable (Patroni's watchdog).
//!
//! Invariants: the device is armed only while this node is writable; it is fed only on a lease
//! renewal; it is disarmed with the magic close (`V`) on demote and at stop; the timeout is at
//! most the lease minus `safety_margin_ms`, in whole seconds (the device's unit), and a
//! configuration whose lease leaves less than a second is refused by `check-config`.

use crate::api::status::NodeStatus;
use crate::clock;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

/// When to use the watchdog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogMode {
    /// Never.
    #[default]
    Off,
    /// When the device works; without one the node runs as with `off` (and says so).
    Automatic,
    /// A node without a working device does not campaign.
    Required,
}

/// The `watchdog:` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    #[serde(default)]
    pub mode: WatchdogMode,
    #[serde(default = "default_device")]
    pub device: PathBuf,
    /// How much sooner than the lease's end the machine must be reset.
    #[serde(default = "default_margin_ms")]
    pub safety_margin_ms: u64,
}

impl Default for WatchdogConfig {
    fn default() -> WatchdogConfig {
        WatchdogConfig {
            mode: WatchdogMode::Off,
            device: default_device(),
            safety_margin_ms: default_margin_ms(),
        }
    }
}

fn default_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}

fn default_margin_ms() -> u64 {
    500
}

impl WatchdogConfig {
    /// The device's timeout in whole seconds for a lease of `lease_ms`: the lease minus the
    /// margin, rounded down. None when that is under a second.
    pub fn timeout_s(&self, lease_ms: u64) -> Option<u64> {
        let seconds = lease_ms.saturating_sub(self.safety_margin_ms) / 1000;
        (seconds >= 1).then_some(seconds)
    }

    /// With the watchdog on, the lease must leave a timeout of at least a second. Returns the
    /// field and the rule.
    pub fn check(&self, lease_ms: u64) -> Result<(), (String, String)> {
        if self.mode == WatchdogMode::Off {
            return Ok(());
        }
        if self.timeout_s(lease_ms).is_none() {
            return Err((
                "watchdog.mode".into(),
                format!(
                    "a watchdog's timeout is whole seconds and must end before the lease: the \
                     lease ({lease_ms} ms, from timing.election_timeout_min_ms) minus \
                     watchdog.safety_margin_ms ({} ms) is under 1 s; raise \
                     timing.election_timeout_min_ms",
                    self.safety_margin_ms
                ),
            ));
        }
        Ok(())
    }
}

/// An open, armed device.
struct Armed {
    file: File,
    last_deadline: Option<u64>,
}

impl Armed {
    /// Opens and arms the device with `timeout_s` (the ioctl only on a character device: a
    /// test may use a FIFO that records what is written).
    fn open(device: &Path, timeout_s: u64) -> std::io::Result<Armed> {
        let file = std::fs::OpenOptions::new().write(true).open(device)?;
        use std::os::unix::fs::FileTypeExt;
        if file.metadata()?.file_type().is_char_device() {
            let mut seconds = timeout_s as libc::c_int;
            // SAFETY: WDIOC_SETTIMEOUT on an open watchdog fd with a pointer to a c_int.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT, &mut seconds) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mut armed = Armed {
            file,
            last_deadline: None,
        };
        armed.feed()?;
        Ok(armed)
    }

    fn feed(&mut self) -> std::io::Result<()> {
        self.file.write_all(b"1")
    }

    /// The magic close: a driver without `nowayout` disarms.
    fn disarm(mut self) -> std::io::Result<()> {
        self.file.write_all(b"V")
    }
}

/// Checks that the device can be armed and disarmed (at start, for `required`).
pub fn probe(config: &WatchdogConfig, lease_ms: u64) -> Result<(), String> {
    let timeout = config
        .timeout_s(lease_ms)
        .ok_or_else(|| "the lease leaves no whole second".to_string())?;
    Armed::open(&config.device, timeout)
        .and_then(Armed::disarm)
        .map_err(|e| format!("{}: {e}", config.device.display()))
}

/// Follows the published status until it ends: armed while writable, fed on each renewal,
/// disarmed on demote and when the driver is gone. Blocking file I/O on a device is quick; it
/// runs on tokio's blocking pool.
pub async fn run(config: WatchdogConfig, lease_ms: u64, mut status: watch::Receiver<NodeStatus>) {
    let Some(timeout_s) = config.timeout_s(lease_ms) else {
        return;
    };
    let mut armed: Option<Armed> = None;
    loop {
        let s = status.borrow_and_update().clone();
        let now = clock::now();
        let writable = s.writable_at(now);
        // The device is touched only to arm, feed (a renewal) or disarm: most status changes
        // (a commit, a follower's turn) need nothing, and no trip to the blocking pool.
        let deadline = s.lease_deadline_ns;
        let touch = match &armed {
            None => writable,
            Some(a) => !writable || deadline > a.last_deadline,
        };
        if touch {
            armed = tokio::task::spawn_blocking({
                let device = config.device.clone();
                move || step(armed, writable, deadline, &device, timeout_s)
            })
            .await
            .unwrap_or(None);
        }
        // Wake when the status changes, or when the lease lapses unrenewed (then disarm: the
        // node is no longer writable).
        let lapse = s.lease_deadline_ns.filter(|_| armed.is_some());
        let sleep = async {
            match lapse {
                Some(at) => tokio::time::sleep(clock::until(at, clock::now())).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = status.changed() => if changed.is_err() { break },
            _ = sleep => {}
        }
    }
    if let Some(armed) = armed {
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(err) = armed.disarm() {
                tracing::error!(error = %err, "watchdog: the magic close failed at stop");
            } else {
                tracing::info!("watchdog disarmed at stop");
            }
        })
        .await;
    }
}

fn step(
    armed: Option<Armed>,
    writable: bool,
    deadline: Option<u64>,
    device: &Path,
    timeout_s: u64,
) -> Option<Armed> {
    match (armed, writable) {
        (None, false) => None,
        (None, true) => match Armed::open(device, timeout_s) {
            Ok(mut armed) => {
                armed.last_deadline = deadline;
                tracing::info!(device = %device.display(), timeout_s, "watchdog armed: this node is writable");
                Some(armed)
            }
            Err(err) => {
                tracing::error!(device = %device.display(), error = %err, "watchdog: cannot arm the device");
                None
            }
        },
        (Some(armed), false) => {
            match armed.disarm() {
                Ok(()) => tracing::info!("watchdog disarmed: this node is no longer writable"),
                Err(err) => tracing::error!(error = %err, "watchdog: the magic close failed"),
            }
            None
        }
        (Some(mut armed), true) => {
            // Fed only when the lease was renewed.
            if deadline > armed.last_deadline {
                armed.last_deadline = deadline;
                if let Err(err) = armed.feed() {
                    tracing::error!(error = %err, "watchdog: feeding failed");
                }
            }
            Some(armed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_whole_seconds_inside_the_lease() {
        let config = WatchdogConfig {
            mode: WatchdogMode::Required,
            ..Default::default()
        };
        assert_eq!(config.timeout_s(1900), Some(1));
        assert_eq!(config.timeout_s(4750), Some(4));
        assert_eq!(config.timeout_s(475), None);
        let (field, reason) = config.check(475).unwrap_err();
        assert_eq!(field, "watchdog.mode");
        assert!(reason.contains("475 ms"), "{reason}");
        assert!(WatchdogConfig::default().check(475).is_ok());
    }

    #[test]
    fn armed_on_promote_fed_on_renewal_only_disarmed_on_demote() {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("dog");
        std::fs::write(&device, b"").unwrap();
        let armed = step(None, true, Some(10), &device, 1).expect("armed");
        let armed = step(Some(armed), true, Some(10), &device, 1).unwrap();
        let armed = step(Some(armed), true, Some(20), &device, 1).unwrap();
        assert!(step(Some(armed), false, Some(20), &device, 1).is_none());
        // Opened with a write, fed once on the renewal (not on the repeat), then the close.
        assert_eq!(std::fs::read(&device).unwrap(), b"11V");
        assert!(step(None, false, None, &device, 1).is_none());
    }
}

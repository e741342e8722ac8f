//! sd_notify: the few lines of systemd's readiness protocol. A datagram of `KEY=VALUE` lines to
//! the socket named by `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`).
//! Without `$NOTIFY_SOCKET` every call does nothing.
//!
//! What regent says: `READY=1` once it has recovered and bound its QUIC port and its socket;
//! `STATUS=` with role, term and leader on every change; `WATCHDOG=1` from the driver loop
//! itself at half `$WATCHDOG_USEC` (so a stuck loop is restarted); `RELOADING=1` then
//! `READY=1` around a reload; `STOPPING=1` when it begins to stop.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let name = name.to_string_lossy().into_owned();
            let addr = if let Some(abstract_name) = name.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&name)
            };
            match (UnixDatagram::unbound(), addr) {
                (Ok(socket), Ok(addr)) => Some((socket, addr)),
                (Err(err), _) | (_, Err(err)) => {
                    tracing::warn!(socket = %name, error = %err, "NOTIFY_SOCKET unusable; not notifying systemd");
                    None
                }
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us)
            .map(|usec| Duration::from_micros(usec / 2));
        Notifier { target, watchdog }
    }

    /// Sends one notification (several lines may be joined with `\n`). Best effort: systemd
    /// not listening is not an error of ours.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(err) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!(error = %err, "sd_notify failed");
            }
        }
    }

    /// How often to send `WATCHDOG=1` (half the watchdog period), when systemd asks for it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }
}

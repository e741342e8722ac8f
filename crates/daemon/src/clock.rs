//! The daemon's clock: CLOCK_MONOTONIC in nanoseconds, the time every input of the core carries.
//!
//! Invariant: readings never go back. Using the kernel's CLOCK_MONOTONIC itself (rather than an
//! `Instant` relative to start) means a lease deadline published to the host is a value the host
//! can compare with its own `clock_gettime(CLOCK_MONOTONIC)` without asking again.

use regent_raft::Nanos;
use std::time::Duration;

/// The current CLOCK_MONOTONIC reading, in nanoseconds.
pub fn now() -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec that lives across the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_MONOTONIC is always available on Linux");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How long from `now` until `deadline` (zero if it passed).
pub fn until(deadline: Nanos, now: Nanos) -> Duration {
    Duration::from_nanos(deadline.saturating_sub(now))
}

/// Milliseconds since the Unix epoch, for the session clock carried in proposals.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_back() {
        let mut last = now();
        for _ in 0..1000 {
            let t = now();
            assert!(t >= last);
            last = t;
        }
    }
}

//! CLOCK_MONOTONIC in nanoseconds: the clock of regent's `deadline_monotonic_ns` and of its
//! watch events' `monotonic_ns` (`std::time::Instant` reads it too, but cannot say its value).

/// Now on CLOCK_MONOTONIC, in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes the timespec we own; CLOCK_MONOTONIC always exists on
    // Linux, so it cannot fail.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

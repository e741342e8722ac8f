//! Reconnect backoff: doubling, capped, with jitter so that nodes that lost each other at the
//! same instant do not redial in lockstep.
//!
//! Invariant: every delay lies in `[min/2, max]`; after `reset` the next delay is at most `min`.

use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The ceiling of the next delay: `min` after a reset, doubled per failure, capped at `max`.
    ceiling: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        assert!(!min.is_zero() && min <= max);
        Backoff {
            min,
            max,
            ceiling: min,
            // xorshift needs a non-zero state.
            rng: seed | 1,
        }
    }

    /// The next delay: uniform in `[ceiling/2, ceiling]` ("equal jitter"), then the ceiling
    /// doubles up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        let half = ceiling / 2;
        let span = (ceiling - half).as_micros() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.next_u64() % (span + 1)
        };
        let delay = half + Duration::from_micros(jitter);
        self.ceiling = (ceiling * 2).min(self.max);
        assert!(delay >= self.min / 2 && delay <= self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*: plenty for jitter, and seeded so tests can reproduce it.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_jittered_and_cap() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max, 42);
        let d: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= min);
        assert!(d[1] >= Duration::from_millis(100) && d[1] <= Duration::from_millis(200));
        for late in &d[4..] {
            assert!(
                *late >= Duration::from_millis(500) && *late <= max,
                "{late:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }

    #[test]
    fn two_seeds_do_not_move_in_lockstep() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        let mut a = Backoff::new(min, max, 1);
        let mut b = Backoff::new(min, max, 2);
        let same = (0..10).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 3);
    }
}

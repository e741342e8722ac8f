//! Time: the one timeline of a run (an event queue in simulated nanoseconds) and each node's
//! drifting local clock.
//!
//! Invariant: events come out in (time, scheduling order): two events due at the same instant
//! run in the order they were scheduled, so a run is a pure function of its seed.

use regent_raft::{Message, Nanos, SplitMix64};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

pub const MS: u64 = 1_000_000;

/// Everything that can happen at an instant of a run.
#[derive(Clone, Debug)]
pub enum Event {
    Tick(usize),
    Deliver(Message),
    WriteDone {
        node: usize,
        incarnation: u64,
    },
    /// A layer of node's state machine reaches its disk.
    StateWritten {
        node: usize,
        incarnation: u64,
        flush: regent_storage::StateFlush,
    },
    Restart(usize),
    /// The node's host answers the promotion it was asked for `term` (fencing, `pre_promote`).
    PromotionDone {
        node: usize,
        incarnation: u64,
        term: regent_raft::Term,
        ok: bool,
    },
    /// The node's host answers the demotion asked ahead of a hand-over in `term`.
    DemoteDone {
        node: usize,
        incarnation: u64,
        term: regent_raft::Term,
    },
    Fault,
    /// The operator's next membership action.
    Reconfigure,
    /// A fault right behind a change that entered a joint configuration, if its leader is
    /// still in the same incarnation.
    JointFault {
        node: usize,
        incarnation: u64,
    },
    ClientStart(usize),
    ClientTimeout {
        client: usize,
        op: usize,
    },
    Heal,
    /// Chunk `k` of snapshot stream `id` reaches its receiver.
    SnapshotChunk {
        id: u64,
        k: usize,
    },
    /// The receiver's acknowledgement of chunk `k` reaches the sender.
    SnapshotAck {
        id: u64,
        k: usize,
    },
    /// The hosts' next fenced write and journal report.
    Hosts,
    /// A follower's journal report, forwarded, reaches the leader it was sent to.
    HostReport {
        from: usize,
        to: usize,
        applied: Option<u64>,
        checkpoint: Option<u64>,
    },
}

/// The event queue and the current simulated time.
#[derive(Default)]
pub struct Time {
    now: Nanos,
    /// Events scheduled so far; the next one gets this number plus one.
    seq: u64,
    queue: BinaryHeap<Reverse<(Nanos, u64)>>,
    /// seq → event, for every (time, seq) in `queue`.
    events: BTreeMap<u64, Event>,
}

impl Time {
    /// Simulated nanoseconds since the run began (real time, no drift).
    pub fn now(&self) -> Nanos {
        self.now
    }

    pub fn schedule(&mut self, after: Nanos, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// The next event and when it is due; time does not move until [`Time::advance_to`].
    pub fn pop(&mut self) -> Option<(Nanos, Event)> {
        let Reverse((at, seq)) = self.queue.pop()?;
        let event = self.events.remove(&seq).expect("scheduled event");
        Some((at, event))
    }

    pub fn advance_to(&mut self, at: Nanos) {
        assert!(at >= self.now, "time goes forward only");
        self.now = at;
    }
}

/// A node's monotonic clock: an offset and a rate that differs from real time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset: Nanos,
    rate_ppm: i64,
}

impl Clock {
    /// Each clock runs within ±drift/2 of real time, so any two differ by at most the
    /// configured bound. Extremes are where lease bugs show, so they are drawn as often as the
    /// middle.
    pub fn draw(rng: &mut SplitMix64, drift_max_ppm: i64) -> Clock {
        let rate_ppm = [-2, -1, 0, 1, 2][rng.below(5) as usize] * drift_max_ppm / 4;
        Clock {
            offset: rng.below(1_000 * MS) + 1,
            rate_ppm,
        }
    }

    /// What this clock reads at real simulated time `now`.
    pub fn local(&self, now: Nanos) -> Nanos {
        let skew = now as i128 * self.rate_ppm as i128 / 1_000_000;
        (self.offset as i128 + now as i128 + skew) as Nanos
    }
}

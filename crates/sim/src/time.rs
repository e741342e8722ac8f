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
    /// Node's clock goes outside the bound now (its `Clock` was drawn so): the network is
    /// mended and no fault comes until the drift can have been detected.
    ClockChange(usize),
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
    /// The operator's next maintenance action (pause, resume, drain, ...).
    Maintenance,
    /// A clock stamp reaches node `to`.
    ClockStamp {
        from: usize,
        to: usize,
        stamp: regent_replica::ClockStamp,
    },
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

/// A node's monotonic clock: an offset and a rate that differs from real time, and up to
/// two instants (real time) at which the rate changes; the reading never jumps.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset: Nanos,
    rate_ppm: i64,
    /// (from, rate): from real time `from` on, the clock runs at `rate`; in time order, unused
    /// slots at `Nanos::MAX`.
    changes: [(Nanos, i64); 2],
}

/// A clock fault of one run: a node whose clock runs outside the drift bound, from the start
/// or from an instant of the safety phase on, until the heal puts it back within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockFault {
    pub node: usize,
    /// Real time from which the rate is off (0: from the start).
    pub from: Nanos,
    pub rate_ppm: i64,
}

impl ClockFault {
    /// Draws a run's clock fault, if any, from its own generator (so the other draws of a seed
    /// stay what they were): a third of the runs of three nodes or more have none, a third a
    /// clock off from the start, a third a clock that goes off during the safety phase. Off
    /// means 15% to 40% from real time, so that two clocks are 25% to 50% apart (the bound is
    /// `drift_max_ppm`).
    pub fn draw(
        seed: u64,
        nodes: usize,
        safety_ns: Nanos,
        drift_max_ppm: i64,
    ) -> Option<ClockFault> {
        let mut rng = SplitMix64::new(seed ^ 0xC10C_D81F_7000_0001);
        if nodes < 3 {
            return None;
        }
        let kind = rng.below(3);
        let node = rng.below(nodes as u64) as usize;
        let magnitude = [3, 5, 8][rng.below(3) as usize] * drift_max_ppm / 4;
        let rate_ppm = if rng.below(2) == 0 {
            magnitude
        } else {
            -magnitude
        };
        let from = rng.below(safety_ns.max(1));
        match kind {
            0 => None,
            1 => Some(ClockFault {
                node,
                from: 0,
                rate_ppm,
            }),
            _ => Some(ClockFault {
                node,
                from,
                rate_ppm,
            }),
        }
    }
}

impl Clock {
    /// Each clock runs within ±drift/8 of real time, so any two differ by at most a quarter
    /// of the configured bound: well within the clock check's threshold (half the bound), with
    /// room for the estimate's error over the simulated network's jitter. (Clocks past the
    /// threshold and the bound are [`ClockFault`]s.) Extremes are drawn as often as the
    /// middle.
    pub fn draw(rng: &mut SplitMix64, drift_max_ppm: i64) -> Clock {
        let rate_ppm = [-2, -1, 0, 1, 2][rng.below(5) as usize] * drift_max_ppm / 16;
        Clock {
            offset: rng.below(1_000 * MS) + 1,
            rate_ppm,
            changes: [(Nanos::MAX, 0); 2],
        }
    }

    /// The clock's rate at the start, in ppm off real time.
    pub fn rate_ppm(&self) -> i64 {
        self.rate_ppm
    }

    /// From real time `from` on, the clock runs at `rate_ppm` (0: from the start). Changes are
    /// made in time order, at most two.
    pub fn change_rate(&mut self, from: Nanos, rate_ppm: i64) {
        assert!(rate_ppm > -1_000_000, "a clock runs forward");
        if from == 0 {
            self.rate_ppm = rate_ppm;
            return;
        }
        let slot = self
            .changes
            .iter()
            .position(|&(at, _)| at == Nanos::MAX)
            .expect("at most two rate changes");
        assert!(slot == 0 || self.changes[slot - 1].0 <= from);
        self.changes[slot] = (from, rate_ppm);
    }

    /// What this clock reads at real simulated time `now`.
    pub fn local(&self, now: Nanos) -> Nanos {
        let (mut skew, mut since, mut rate) = (0i128, 0, self.rate_ppm);
        for (at, next) in self.changes {
            if now <= at {
                break;
            }
            skew += (at - since) as i128 * rate as i128;
            (since, rate) = (at, next);
        }
        skew += (now - since) as i128 * rate as i128;
        (self.offset as i128 + now as i128 + skew / 1_000_000) as Nanos
    }
}

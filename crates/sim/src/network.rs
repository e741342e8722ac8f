//! The packet simulator: directed links that can be cut (partitions full, one-way and partial),
//! and, until the heal, message loss, duplication, delay (hence reordering) and long holds.
//!
//! Invariant: after the heal nothing is lost, duplicated or held, and no link is cut, so every
//! message arrives within the delay bound drawn for the seed.

use super::env::Env;
use super::time::{Event, MS};
use regent_raft::{Message, MessageBody, SplitMix64};
use std::collections::BTreeSet;

/// The network's fault rates, drawn per seed.
#[derive(Clone, Debug)]
pub struct NetworkFaults {
    loss_ppm: u64,
    dup_ppm: u64,
    delay_min_ns: u64,
    delay_max_ns: u64,
    /// Messages held far longer than an election timeout (a stuck queue, a retransmission
    /// after a long stall): what makes stale vote requests and hand-overs arrive late.
    long_delay_ppm: u64,
}

impl NetworkFaults {
    pub fn draw(rng: &mut SplitMix64, delay_min_ns: u64) -> NetworkFaults {
        NetworkFaults {
            loss_ppm: [0, 10_000, 50_000, 150_000][rng.below(4) as usize],
            dup_ppm: [0, 10_000, 50_000][rng.below(3) as usize],
            delay_min_ns,
            delay_max_ns: delay_min_ns + [1, 5, 20, 60][rng.below(4) as usize] * MS,
            long_delay_ppm: [0, 2_000, 10_000][rng.below(3) as usize],
        }
    }
}

pub struct Network {
    faults: NetworkFaults,
    /// Directed links that drop everything: (from, to) as node positions.
    blocked: BTreeSet<(usize, usize)>,
    healed: bool,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Network {
        Network {
            faults,
            blocked: BTreeSet::new(),
            healed: false,
        }
    }

    /// Sends a Raft message from node position `from` to `to`: dropped on a cut link or by
    /// chance, else delivered once or twice, each copy after its own delay.
    pub fn send(&mut self, env: &mut Env, from: usize, to: usize, m: Message) {
        if self.blocked.contains(&(from, to)) || self.lost(&mut env.rng) {
            return;
        }
        let copies = if !self.healed && env.rng.chance_ppm(self.faults.dup_ppm) {
            2
        } else {
            1
        };
        // Rare control messages are held back more often: a late vote request or hand-over is
        // where stickiness and lease bugs hide.
        let rare = m.body.is_timeout_now() || matches!(m.body, MessageBody::RequestVote { .. });
        for _ in 0..copies {
            let mut delay = self.delay(&mut env.rng);
            let long_ppm = self.faults.long_delay_ppm * if rare { 20 } else { 1 };
            if !self.healed && env.rng.chance_ppm(long_ppm) {
                delay += 100 * MS + env.rng.below(900 * MS);
            }
            env.schedule(delay, Event::Deliver(m.clone()));
        }
    }

    /// Sends a snapshot chunk or acknowledgement (`event`); false if it was lost, which ends
    /// the stream (the leader asks again after its snapshot timeout).
    pub fn ship(&mut self, env: &mut Env, from: usize, to: usize, event: Event) -> bool {
        if self.blocked.contains(&(from, to)) || self.lost(&mut env.rng) {
            return false;
        }
        let delay = self.delay(&mut env.rng);
        env.schedule(delay, event);
        true
    }

    fn lost(&self, rng: &mut SplitMix64) -> bool {
        !self.healed && rng.chance_ppm(self.faults.loss_ppm)
    }

    fn delay(&self, rng: &mut SplitMix64) -> u64 {
        let spread = self.faults.delay_max_ns - self.faults.delay_min_ns;
        self.faults.delay_min_ns + rng.below(spread.max(1))
    }

    /// A full partition of `n` nodes into two sides drawn at random; returns the sides.
    pub fn partition(&mut self, rng: &mut SplitMix64, n: usize) -> Vec<bool> {
        self.blocked.clear();
        let side: Vec<bool> = (0..n).map(|_| rng.below(2) == 0).collect();
        for a in 0..n {
            for b in 0..n {
                if side[a] != side[b] {
                    self.blocked.insert((a, b));
                }
            }
        }
        side
    }

    /// Cuts the link from `a` to `b` only.
    pub fn cut_one_way(&mut self, a: usize, b: usize) {
        self.blocked.insert((a, b));
    }

    /// Cuts `leader` from a random half of the other nodes, both ways.
    pub fn cut_partly(&mut self, rng: &mut SplitMix64, leader: usize, n: usize) {
        for f in 0..n {
            if f != leader && rng.below(2) == 0 {
                self.blocked.insert((leader, f));
                self.blocked.insert((f, leader));
            }
        }
    }

    /// Mends every link (faults go on).
    pub fn reconnect(&mut self) {
        self.blocked.clear();
    }

    /// Mends every link, and from now on nothing is lost, duplicated or held.
    pub fn heal(&mut self) {
        self.healed = true;
        self.blocked.clear();
    }
}

//! The fault schedule: when the next fault comes, which one it is, and how long a crashed node
//! stays down.
//!
//! Invariant: faults come only before the heal; each is one draw among fixed weights.

use super::time::MS;
use regent_raft::{Nanos, SplitMix64};

/// A fault (or an operator's action, which the schedule places at random points too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A full partition into two random sides.
    Partition,
    /// One directed link cut between two random nodes.
    OneWayCut,
    /// The leader cut from some followers, both ways.
    CutLeaderPartly,
    /// Every link mended.
    Reconnect,
    /// The leader or a random node crashes and stays down for a while.
    Crash,
    /// A random node crashes and restarts at once.
    Reboot,
    HandOver,
    ChangeMembership,
    /// SIGTERM: the leader (or a random node) is asked to stop; a leader hands leadership over
    /// first, then the node stops and comes back later.
    Stop,
}

pub struct Nemesis {
    /// Mean time between faults.
    every_ns: Nanos,
}

impl Nemesis {
    pub fn new(every_ns: Nanos) -> Nemesis {
        Nemesis { every_ns }
    }

    /// The time until the next fault.
    pub fn next_delay(&self, rng: &mut SplitMix64) -> Nanos {
        self.every_ns / 2 + rng.below(self.every_ns)
    }

    pub fn next_fault(&self, rng: &mut SplitMix64) -> Fault {
        match rng.below(11) {
            0 => Fault::Partition,
            1 => Fault::OneWayCut,
            2 => Fault::CutLeaderPartly,
            3 | 4 => Fault::Reconnect,
            5 | 6 => Fault::Crash,
            7 => Fault::Reboot,
            8 => Fault::HandOver,
            9 => Fault::ChangeMembership,
            _ => Fault::Stop,
        }
    }

    /// How long a crashed node stays down.
    pub fn downtime(&self, rng: &mut SplitMix64) -> Nanos {
        10 * MS + rng.below(self.every_ns.min(1000 * MS))
    }
}

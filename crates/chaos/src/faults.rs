//! The faults and their schedule: from a seed, every fault kind once alone (in a seeded
//! order), then random episodes of one fault or of a process fault mixed with a network fault.

use regent_raft::SplitMix64;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the leader; restarted at the heal.
    KillLeader,
    /// kill -9 of a follower; restarted at the heal.
    KillFollower,
    /// SIGSTOP of the leader; SIGCONT at the heal (it wakes believing it leads).
    PauseLeader,
    /// The leader cut off from every peer, both ways.
    PartitionLeader,
    /// Nothing the leader sends arrives (it still receives).
    OneWayFromLeader,
    /// Nothing sent to the leader arrives (it still sends).
    OneWayToLeader,
    /// The leader cut off from one follower only (the others see both).
    PartialPartition,
    /// Loss, delay and reordering on every node.
    Netem,
    /// kill -9 of every node, then all restarted.
    RestartAll,
    /// The tmpfs node's disk fills up; freed at the heal.
    DiskFull,
    /// `regent admin rotate-certs --reload` on every node.
    RotateCerts,
    /// `regent switchover` on the leader.
    Switchover,
    /// `regent pause` (maintenance mode) through the leader; `regent resume` at the heal.
    MaintenancePause,
}

pub const ALL: [Fault; 13] = [
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::PauseLeader,
    Fault::PartitionLeader,
    Fault::OneWayFromLeader,
    Fault::OneWayToLeader,
    Fault::PartialPartition,
    Fault::Netem,
    Fault::RestartAll,
    Fault::DiskFull,
    Fault::RotateCerts,
    Fault::Switchover,
    Fault::MaintenancePause,
];

const PROCESS: [Fault; 6] = [
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::PauseLeader,
    Fault::RotateCerts,
    Fault::Switchover,
    Fault::MaintenancePause,
];

const NETWORK: [Fault; 5] = [
    Fault::PartitionLeader,
    Fault::OneWayFromLeader,
    Fault::OneWayToLeader,
    Fault::PartialPartition,
    Fault::Netem,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillFollower => "kill-follower",
            Fault::PauseLeader => "pause-leader",
            Fault::PartitionLeader => "partition-leader",
            Fault::OneWayFromLeader => "one-way-from-leader",
            Fault::OneWayToLeader => "one-way-to-leader",
            Fault::PartialPartition => "partial-partition",
            Fault::Netem => "netem",
            Fault::RestartAll => "restart-all",
            Fault::DiskFull => "disk-full",
            Fault::RotateCerts => "rotate-certs",
            Fault::Switchover => "switchover",
            Fault::MaintenancePause => "maintenance-pause",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One episode: its faults, how long they are held, how long the cluster rests after.
#[derive(Clone, Debug)]
pub struct Episode {
    pub faults: Vec<Fault>,
    pub hold_ms: u64,
    pub rest_ms: u64,
    /// Loss %, delay ms, jitter ms, reorder % for a netem fault.
    pub netem: (f64, u64, u64, f64),
}

/// The schedule's next episode: the `i`-th of the run.
pub fn episode(rng: &mut SplitMix64, i: usize, order: &[Fault]) -> Episode {
    let faults = if i < order.len() {
        vec![order[i]]
    } else if rng.below(100) < 40 {
        vec![
            PROCESS[rng.below(PROCESS.len() as u64) as usize],
            NETWORK[rng.below(NETWORK.len() as u64) as usize],
        ]
    } else {
        vec![ALL[rng.below(ALL.len() as u64) as usize]]
    };
    Episode {
        faults,
        hold_ms: 1500 + rng.below(2500),
        rest_ms: 1000 + rng.below(1000),
        netem: (
            (1 + rng.below(10)) as f64,
            5 + rng.below(40),
            rng.below(20),
            (rng.below(30)) as f64,
        ),
    }
}

/// Every fault kind once, in a seeded order.
pub fn alone_order(rng: &mut SplitMix64) -> Vec<Fault> {
    let mut order = ALL.to_vec();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

//! One simulated node: its replica while it is up, its disk, its clock, and its incarnation.
//!
//! Invariant: a replica is only ever built from what its disk holds durably; every start and
//! every crash begins a new incarnation, so events addressed to an earlier one are ignored.

use super::storage::SimDisk;
use super::time::Clock;
use regent_raft::{Config, LogIndex, Membership, Nanos, NodeId, RaftNode, Role, SplitMix64};
use regent_replica::{Abandoned, ClockCheck, Replica};

/// The clock check's threshold, in millionths of the drift bound: the daemon's default.
pub const CLOCK_ALARM_PPM: u64 = 500_000;
/// The failover history's `keep` in the simulator: small, so that runs with many leaders
/// prune it.
pub const HISTORY_KEEP: u32 = 8;
use regent_storage::{JournalState, LogStorage, StateReader};

pub struct SimNode {
    pub id: NodeId,
    /// The replica (core and its glue), or `None` while the node is down.
    pub replica: Option<Replica>,
    pub incarnation: u64,
    pub clock: Clock,
    pub disk: SimDisk,
}

impl SimNode {
    pub fn new(id: NodeId, clock: Clock) -> SimNode {
        SimNode {
            id,
            replica: None,
            incarnation: 0,
            clock,
            disk: SimDisk::new(id),
        }
    }

    /// The node's local monotonic clock, or `None` when it is down.
    pub fn local_now(&self, now: Nanos) -> Option<Nanos> {
        self.replica.as_ref()?;
        Some(self.clock.local(now))
    }

    /// The node's consensus core, or `None` when it is down.
    pub fn core(&self) -> Option<&RaftNode> {
        self.replica.as_ref().map(Replica::core)
    }

    /// The state machine as this node applied it: the replica's (in memory, over what the
    /// disk holds) while the node is up, what the disk holds while it is down.
    pub fn applied_state(&self) -> &dyn StateReader {
        match &self.replica {
            Some(replica) => replica.state(),
            None => &self.disk.store,
        }
    }

    /// The last entry applied here (see [`SimNode::applied_state`]).
    pub fn applied_index(&self) -> LogIndex {
        match &self.replica {
            Some(replica) => replica.state().applied(),
            None => self.disk.store.state().applied,
        }
    }

    /// The host's journal as applied here (see [`SimNode::applied_state`]).
    pub fn applied_journal(&self) -> &JournalState {
        match &self.replica {
            Some(replica) => replica.state().journal(),
            None => &self.disk.store.state().journal,
        }
    }

    /// The replica of a node known to be up.
    pub fn live(&mut self) -> &mut Replica {
        self.replica.as_mut().expect("live")
    }

    pub fn is_leader(&self) -> bool {
        self.core()
            .is_some_and(|c| c.status(0).role == Role::Leader)
    }

    /// (Re)starts the node: the disk reopens with exactly what is durable and the replica is
    /// rebuilt from it.
    pub fn start(&mut self, now: Nanos, seed: u64, config: Config, bootstrap: Membership) {
        self.disk.reopen();
        self.incarnation += 1;
        let local = self.clock.local(now);
        let rng = Box::new(SplitMix64::new(seed));
        let mut check = ClockCheck::for_config(&config, CLOCK_ALARM_PPM);
        // The simulated network's jitter (up to 60 ms) is far larger against its 150 ms
        // election timeout than a LAN's against the daemon's: stamps three times per heartbeat
        // interval give each slice of the window enough samples for its least-delayed one.
        check.stamp_interval_ns /= 3;
        let mut replica = Replica::new(config, &self.disk.store, bootstrap, rng, local)
            .expect("the simulated disk and config are valid");
        replica.set_clock_check(check);
        replica.set_history_keep(HISTORY_KEEP);
        self.replica = Some(replica);
    }

    /// Crashes the node: the write in progress is lost, and so are the requests its clients
    /// were waiting on. `None` if it was down already.
    pub fn crash(&mut self) -> Option<(bool, Abandoned)> {
        let replica = self.replica.take()?;
        let lost_write = self.disk.crash();
        self.incarnation += 1;
        Some((lost_write, replica.abandon()))
    }
}

/// The position of the node that believes it leads, if any (the first one).
pub fn leader_of(nodes: &[SimNode]) -> Option<usize> {
    nodes.iter().position(SimNode::is_leader)
}

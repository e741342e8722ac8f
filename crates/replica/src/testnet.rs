//! The unit tests' network: three replicas in one thread, on a synchronous, lossless network
//! with synchronous disks (`MemStorage`). A node may be cut off (`down`: it neither sends nor
//! receives, nor is ticked) and its disk stalled (`stalled`: its batches wait until taken).
//! The maintenance, roles and history tests share it.

use crate::{Action, MaintenanceChange, Persist, Replica};
use regent_raft::{Config, Membership, Message, Nanos, NodeId, Role, SplitMix64};
use regent_storage::{Identity, LogStorage, MemStorage, StorageOptions};
use std::collections::VecDeque;

pub(crate) const MS: Nanos = 1_000_000;

pub(crate) struct Net {
    pub(crate) nodes: Vec<(Replica, MemStorage)>,
    pub(crate) down: Vec<bool>,
    /// A stalled disk: the node's batches wait here until the test takes them.
    pub(crate) stalled: Vec<Option<Vec<Persist>>>,
    pub(crate) wire: VecDeque<Message>,
    pub(crate) stamps: VecDeque<(NodeId, NodeId, crate::ClockStamp)>,
    pub(crate) now: Nanos,
    /// Proposals and hand-overs answered, with the node that answered.
    pub(crate) answered: Vec<(usize, Action)>,
}

impl Net {
    /// Election timeouts of 100–200 ms, heartbeats every 10 ms, a disk stall noticed after
    /// 300 ms.
    pub(crate) fn new() -> Net {
        let voters = Membership::new([NodeId(1), NodeId(2), NodeId(3)]);
        let nodes = (1..=3u64)
            .map(|id| {
                let identity = Identity {
                    cluster_id: "replica-test".into(),
                    node_id: NodeId(id),
                };
                let disk = MemStorage::new(identity, StorageOptions::default())
                    .unwrap()
                    .0;
                let mut config = Config::new(NodeId(id));
                config.election_timeout_min_ms = 100;
                config.heartbeat_interval_ms = 10;
                config.persist_stall_max_ms = 300;
                let rng = Box::new(SplitMix64::new(id * 7919));
                let r = Replica::new(config, &disk, voters.clone(), rng, MS).unwrap();
                (r, disk)
            })
            .collect();
        Net {
            nodes,
            down: vec![false; 3],
            stalled: vec![None, None, None],
            wire: VecDeque::new(),
            stamps: VecDeque::new(),
            now: MS,
            answered: Vec::new(),
        }
    }

    pub(crate) fn r(&self, id: u64) -> &Replica {
        &self.nodes[(id - 1) as usize].0
    }

    pub(crate) fn r_mut(&mut self, id: u64) -> &mut Replica {
        &mut self.nodes[(id - 1) as usize].0
    }

    /// Carries out every action until nothing moves. A message whose sender or receiver is
    /// down is lost.
    pub(crate) fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if self.down[i] {
                    continue;
                }
                loop {
                    let mut out = Vec::new();
                    self.nodes[i].0.poll(&mut out);
                    if out.is_empty() {
                        break;
                    }
                    moved = true;
                    self.carry_out(i, out);
                }
            }
            while let Some(m) = self.wire.pop_front() {
                let to = (m.to.0 - 1) as usize;
                if !self.down[to] && !self.down[(m.from.0 - 1) as usize] {
                    moved = true;
                    let now = self.now;
                    let _ = self.nodes[to].0.step(m, now);
                }
            }
            while let Some((from, to, stamp)) = self.stamps.pop_front() {
                let t = (to.0 - 1) as usize;
                if !self.down[t] {
                    let now = self.now;
                    self.nodes[t].0.clock_stamp(from, stamp, now);
                }
            }
            if !moved {
                return;
            }
        }
    }

    pub(crate) fn carry_out(&mut self, i: usize, actions: Vec<Action>) {
        let from = NodeId(i as u64 + 1);
        for action in actions {
            match action {
                Action::Send(m) => self.wire.push_back(m),
                Action::ClockStamp { to, stamp } => self.stamps.push_back((from, to, stamp)),
                Action::Persist(p) if self.stalled[i].is_some() => {
                    self.stalled[i].as_mut().unwrap().push(p);
                }
                Action::Persist(p) => {
                    let (r, disk) = &mut self.nodes[i];
                    disk.write_batch(&p.batch).unwrap();
                    let mut more: Vec<Action> = p.then_send.into_iter().map(Action::Send).collect();
                    r.persisted(p.number, &mut more);
                    self.carry_out(i, more);
                }
                Action::PersistState(flush) => {
                    let (r, disk) = &mut self.nodes[i];
                    disk.write_state(&flush).unwrap();
                    let mut more = Vec::new();
                    r.state_persisted(flush.applied(), &mut more);
                    self.carry_out(i, more);
                }
                Action::Compact(index) => {
                    let (r, disk) = &mut self.nodes[i];
                    disk.compact_log(index).unwrap();
                    r.compacted(index);
                }
                a @ (Action::Proposal { .. } | Action::Handover { .. }) => {
                    self.answered.push((i, a))
                }
                _ => {}
            }
        }
    }

    /// Runs `ms` milliseconds in 5 ms steps; the wall clock is the monotonic one.
    pub(crate) fn run_ms(&mut self, ms: u64) {
        for _ in 0..ms / 5 {
            self.now += 5 * MS;
            let now = self.now;
            for i in 0..self.nodes.len() {
                if !self.down[i] {
                    self.nodes[i].0.set_wall_clock(now, now / MS);
                    self.nodes[i].0.tick(now);
                }
            }
            self.pump();
        }
    }

    pub(crate) fn leader(&self) -> Option<u64> {
        (1..=3).find(|&id| {
            !self.down[(id - 1) as usize] && self.r(id).core().status(self.now).role == Role::Leader
        })
    }

    /// Runs until a live node leads and is writable by the core (its lease, its no-op).
    pub(crate) fn until_leader(&mut self) -> u64 {
        for _ in 0..400 {
            self.run_ms(5);
            if let Some(l) = self.leader() {
                if self.r(l).core().status(self.now).writable {
                    return l;
                }
            }
        }
        panic!("no leader within 2 s");
    }

    /// The history record of the term node `id` is in now, as applied there.
    pub(crate) fn record_of_current_term(&self, id: u64) -> crate::HistoryRecord {
        let term = self.r(id).core().status(self.now).term;
        self.r(id)
            .history(100)
            .unwrap()
            .into_iter()
            .find(|r| r.term == term)
            .unwrap_or_else(|| panic!("no history record on n{id} for its term {term:?}"))
    }

    /// Asks node `id` (leading) for a maintenance change, then runs 50 ms.
    pub(crate) fn change(&mut self, id: u64, change: MaintenanceChange) {
        let (now, wall) = (self.now, self.now / MS);
        self.r_mut(id)
            .propose_maintenance(99, change, now, wall)
            .unwrap();
        self.run_ms(50);
    }
}

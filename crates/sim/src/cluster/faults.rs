//! Faults carried out on the cluster: partitions and cuts on the packet simulator, crashes and
//! restarts of nodes, the operator's actions on the leader, and the heal.
//!
//! Invariant: a node restarts only from what its disk made durable; after the heal every node
//! is up and no fault comes.

use super::Cluster;
use crate::nemesis::Fault;
use crate::node::leader_of;
use crate::operator::Asked;
use crate::time::{Event, MS};
use regent_raft::{Membership, RaftRng};
use regent_storage::LogStorage;

impl Cluster {
    pub(super) fn inject(&mut self, fault: Fault) {
        let n = self.nodes.len();
        let leader = leader_of(&self.nodes);
        let env = &mut self.env;
        match fault {
            Fault::ChangeMembership => {
                if let Some(l) = leader {
                    self.change_membership(l);
                }
            }
            Fault::HandOver => {
                if let Some(l) = leader {
                    self.operator.hand_over(env, &mut self.nodes, l);
                    self.drive(l);
                }
            }
            Fault::Partition => {
                let side = self.network.partition(&mut env.rng, n);
                env.note(format!("partition {side:?}"));
            }
            Fault::OneWayCut => {
                let (a, b) = (env.rng.below(n as u64), env.rng.below(n as u64));
                if a != b {
                    self.network.cut_one_way(a as usize, b as usize);
                    env.note(format!("one-way cut n{} -> n{}", a + 1, b + 1));
                }
            }
            Fault::CutLeaderPartly => {
                if let Some(l) = leader {
                    self.network.cut_partly(&mut env.rng, l, n);
                    env.note(format!("leader n{} cut from some followers", l + 1));
                }
            }
            Fault::Reconnect => {
                self.network.reconnect();
                env.note("heal network".to_string());
            }
            Fault::Crash => {
                let victim = if env.rng.below(2) == 0 {
                    leader.unwrap_or(0)
                } else {
                    env.rng.below(n as u64) as usize
                };
                self.crash(victim);
                let down = self.nemesis.downtime(&mut self.env.rng);
                self.env.schedule(down, Event::Restart(victim));
            }
            Fault::Stop => {
                let victim = match leader {
                    Some(l) if env.rng.below(4) > 0 => l,
                    _ => env.rng.below(n as u64) as usize,
                };
                self.stop(victim);
            }
            Fault::Reboot => {
                let victim = env.rng.below(n as u64) as usize;
                if self.nodes[victim].replica.is_some() {
                    self.crash(victim);
                    self.env.schedule(MS, Event::Restart(victim));
                }
            }
        }
    }

    /// SIGTERM on node `i`: the replica decides (a leader hands leadership over first); the
    /// node stops once no hand-over is in progress and no batch is being written, as the
    /// daemon's driver does.
    pub(super) fn stop(&mut self, i: usize) {
        let Some(now) = self.nodes[i].local_now(self.env.now()) else {
            return;
        };
        if self.nodes[i].live().is_stopping() {
            return;
        }
        let plan = self.nodes[i].live().begin_stop(now);
        self.env.note(format!("SIGTERM n{}: {plan:?}", i + 1));
        self.drive(i);
    }

    /// A node asked to stop stops once its hand-over is over and its disk idle: down for a
    /// while, then restarted.
    pub(super) fn maybe_finish_stop(&mut self, i: usize) {
        let Some(replica) = self.nodes[i].replica.as_ref() else {
            return;
        };
        if !replica.is_stopping() || replica.handing_over() || replica.is_persisting() {
            return;
        }
        self.env.note(format!("n{} stops", i + 1));
        self.crash(i);
        let down = self.nemesis.downtime(&mut self.env.rng);
        self.env.schedule(down, Event::Restart(i));
    }

    pub(super) fn crash(&mut self, i: usize) {
        // Entries applied in memory but not in storage: the restart applies them again.
        let node = &self.nodes[i];
        if let Some(replica) = &node.replica {
            if replica.state().applied() > node.disk.store.state().applied {
                self.unpersisted_crashes += 1;
            }
        }
        let Some((lost_write, abandoned)) = self.nodes[i].crash() else {
            return;
        };
        let lost = if lost_write {
            "a write"
        } else {
            "nothing durable"
        };
        self.env.note(format!("crash n{} (losing {lost})", i + 1));
        self.workload.abandoned(&mut self.env, abandoned);
    }

    pub(super) fn start_node(&mut self, i: usize) {
        let seed = self.env.rng.next_u64();
        let mut config = self.limits.config(self.nodes[i].id);
        if let Some(lag_max) = self.cfg.promote_lag_max {
            config.promote_lag_max = lag_max;
        }
        let bootstrap = self.bootstrap_membership();
        let node = &mut self.nodes[i];
        node.start(self.env.time.now(), seed, config, bootstrap);
        if let (Some(gate), Some(replica)) = (self.promotion_gate, node.replica.as_mut()) {
            replica.set_promotion_gate(true, gate.backoff_ns);
        }
        if let (Some(roles), Some(replica)) = (&self.roles, node.replica.as_mut()) {
            roles.apply(i, replica);
        }
        let commit = node.core().expect("started").status(0).commit_index;
        self.watches[i].restarted(commit, node.disk.store.state().applied);
    }

    /// Every node of the simulated cluster, all voters: the configuration it starts with.
    pub(super) fn bootstrap_membership(&self) -> Membership {
        self.layout.bootstrap()
    }

    /// The operator asks the leader at `l` for a membership change; one that entered a joint
    /// configuration may be followed closely by a fault on that leader.
    pub(super) fn change_membership(&mut self, l: usize) {
        let asked = self
            .operator
            .change_membership(&mut self.env, &mut self.nodes, l);
        if asked == Asked::Nothing {
            return;
        }
        self.drive(l);
        let pct = self.operator.style.joint_fault_pct;
        if asked == (Asked::Accepted { joint: true }) && self.env.rng.below(100) < pct {
            let incarnation = self.nodes[l].incarnation;
            let after = self.env.rng.below(3 * MS);
            self.env.schedule(
                after,
                Event::JointFault {
                    node: l,
                    incarnation,
                },
            );
        }
    }

    /// The operator's next action of its own, if it has a cadence.
    pub(super) fn schedule_reconfigure(&mut self) {
        if let Some(every) = self.operator.style.every_ns {
            let next = every / 2 + self.env.rng.below(every);
            self.env.schedule(next, Event::Reconfigure);
        }
    }

    /// A fault right behind a joint change: its leader crashes (and comes back later) or is
    /// cut from some of the others, while the joint configuration is not yet committed.
    pub(super) fn joint_fault(&mut self, l: usize, incarnation: u64) {
        if self.heal_at.is_some() || self.nodes[l].incarnation != incarnation {
            return;
        }
        if self.env.rng.below(2) == 0 {
            self.crash(l);
            let down = self.nemesis.downtime(&mut self.env.rng);
            self.env.schedule(down, Event::Restart(l));
        } else {
            let n = self.nodes.len();
            self.network.cut_partly(&mut self.env.rng, l, n);
            self.env.note(format!(
                "n{} cut from some others during a joint change",
                l + 1
            ));
        }
    }

    /// A new leader at `l`: now and then the operator asks it for a change at once, before
    /// its own term's entry commits.
    pub(super) fn eager_change(&mut self, l: usize) {
        let pct = self.operator.style.eager_pct;
        if self.heal_at.is_none() && pct > 0 && self.env.rng.below(100) < pct {
            self.change_membership(l);
        }
    }

    pub(super) fn heal(&mut self) {
        let now = self.env.now();
        self.heal_at = Some(now);
        self.network.heal();
        self.env
            .note("heal: network whole, every node up, no more faults".to_string());
        // A stop still waiting for its hand-over ends now (the node goes down and comes back
        // below): after the heal no node goes down.
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .replica
                .as_ref()
                .is_some_and(|r| r.is_stopping())
            {
                self.env.note(format!("n{} stops at the heal", i + 1));
                self.crash(i);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none() {
                self.start_node(i);
            }
        }
        self.workload.heal(now);
    }
}

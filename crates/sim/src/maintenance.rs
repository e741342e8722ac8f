//! The operator's maintenance, in a third of the seeds (drawn from the seed alone, on a random
//! stream of its own, so the other seeds run exactly as before): random pauses (most with a
//! TTL of a fraction of a second to a few seconds, some until resumed), resumes, forced
//! switchovers while paused, and drains and undrains of random nodes, each asked of the node
//! that believes it leads, as an administrator's would be.
//!
//! What is checked: the safety checks of every step hold with maintenance too (the pause only
//! takes writability away), and while paused a writable node is the pause's holder.
//!
//! Invariant: at most one node is drained at a time by this operator (the replica itself
//! refuses to drain the last eligible voter).

use super::checker::{Finding, ViolationKind};
use super::node::SimNode;
use super::time::MS;
use regent_raft::{Nanos, NodeId, SplitMix64};
use regent_replica::{MaintenanceChange, Token};

/// Tokens of the operator's maintenance proposals (nobody waits for their answers).
pub const MAINTENANCE: Token = 1 << 58;

pub struct Maintenance {
    rng: SplitMix64,
    next_token: Token,
    /// Pauses, drains and forced switchovers the leaders accepted (`pauses=`, `drains=`,
    /// `forced=`).
    pub pauses: u64,
    pub drains: u64,
    pub forced: u64,
}

impl Maintenance {
    /// Maintenance in a third of the seeds.
    pub fn draw(seed: u64) -> Option<Maintenance> {
        let mut rng = SplitMix64::new(seed ^ 0x9A05_E0FF_D7A1_0000);
        (rng.below(3) == 0).then_some(Maintenance {
            rng,
            next_token: 0,
            pauses: 0,
            drains: 0,
            forced: 0,
        })
    }

    /// The time until the next action.
    pub fn next_delay(&mut self) -> Nanos {
        50 * MS + self.rng.below(500 * MS)
    }

    /// One action asked of the leader at position `l`. Returns whether anything was asked.
    pub fn act(
        &mut self,
        nodes: &mut [SimNode],
        l: usize,
        real_now: Nanos,
        note: &mut Vec<String>,
    ) -> bool {
        let now = nodes[l].local_now(real_now).expect("the leader is up");
        let wall = now / MS;
        let replica = nodes[l].live();
        let voters: Vec<NodeId> = replica.core().membership().voters.iter().copied().collect();
        let drained = replica.drained().iter().next().copied();
        self.next_token += 1;
        let token = MAINTENANCE | self.next_token;
        let change = match self.rng.below(10) {
            0..=2 => {
                let ttl_ms = match self.rng.below(4) {
                    0 => None,
                    _ => Some(100 + self.rng.below(3000)),
                };
                MaintenanceChange::Pause {
                    ttl_ms,
                    reason: format!("sim {}", self.next_token),
                }
            }
            3 | 4 => MaintenanceChange::Resume,
            5 if replica.paused() && !voters.is_empty() => {
                let to = voters[self.rng.below(voters.len() as u64) as usize];
                let forced = replica.force_switchover(token, Some(to), now, wall);
                note.push(format!("n{} forced switchover to {to}: {forced:?}", l + 1));
                self.forced += u64::from(forced.is_ok());
                return forced.is_ok();
            }
            6 | 7 => match drained {
                Some(d) => MaintenanceChange::Undrain(d),
                None if !voters.is_empty() => {
                    MaintenanceChange::Drain(voters[self.rng.below(voters.len() as u64) as usize])
                }
                None => return false,
            },
            8 => match drained {
                Some(d) => MaintenanceChange::Undrain(d),
                None => return false,
            },
            _ => return false,
        };
        let asked = format!("{change:?}");
        let result = replica.propose_maintenance(token, change.clone(), now, wall);
        note.push(format!("n{} maintenance {asked}: {result:?}", l + 1));
        if result.is_ok() {
            match change {
                MaintenanceChange::Pause { .. } => self.pauses += 1,
                MaintenanceChange::Drain(_) => self.drains += 1,
                _ => {}
            }
        }
        result.is_ok()
    }
}

/// While paused, a node writable by the replica's rule is the pause's holder.
pub fn check(node: &SimNode, now: Nanos) -> Result<(), Finding> {
    let (Some(replica), Some(local)) = (node.replica.as_ref(), node.local_now(now)) else {
        return Ok(());
    };
    match replica.pause() {
        Some(p) if p.holder != node.id && replica.writable(local) => Err(Finding::new(
            ViolationKind::LeaseSafety,
            format!(
                "{} is writable while paused with holder {}",
                node.id, p.holder
            ),
        )),
        _ => Ok(()),
    }
}

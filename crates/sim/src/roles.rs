//! Who may lead, in a quarter of the seeds (drawn from the seed alone, on a random stream of
//! its own, so the other seeds run exactly as before): each node is a candidate, a
//! `nofailover` node or a witness, with a priority of 1 to 4, and in half of those seeds every
//! node prefers the higher priority (`prefer_priority`, with a hold-down of 0.3 to 2 s). At
//! least one node is a candidate.
//!
//! What is checked: every safety check holds with roles too (they only hold campaigns and take
//! writability away), a node whose role may not lead is never writable, and after the heal a
//! writable leader comes within the liveness bound (a candidate is always among the voters:
//! the replicas refuse a membership change that would leave none).

use super::checker::{Finding, ViolationKind};
use super::node::SimNode;
use super::time::MS;
use regent_raft::{Nanos, SplitMix64};
use regent_replica::{Candidacy, ElectionRole, ElectionSettings, Replica};

pub struct Roles {
    settings: Vec<ElectionSettings>,
}

impl Roles {
    /// Roles for the `n` nodes of a quarter of the seeds.
    pub fn draw(seed: u64, n: usize) -> Option<Roles> {
        let mut rng = SplitMix64::new(seed ^ 0x201E_5EED_0000_0001);
        if rng.below(4) != 0 {
            return None;
        }
        let prefer_priority = rng.below(2) == 0;
        let hold_down_ns = 300 * MS + rng.below(1700 * MS);
        let mut settings: Vec<ElectionSettings> = (0..n)
            .map(|_| {
                let role = match rng.below(6) {
                    0 | 1 => ElectionRole::NoFailover,
                    2 => ElectionRole::Witness,
                    _ => ElectionRole::Candidate,
                };
                ElectionSettings {
                    own: Candidacy {
                        role,
                        priority: 1 + rng.below(4) as u32,
                    },
                    prefer_priority,
                    hold_down_ns,
                }
            })
            .collect();
        if !settings.iter().any(|s| s.own.role.may_lead()) {
            let i = rng.below(n as u64) as usize;
            settings[i].own.role = ElectionRole::Candidate;
        }
        Some(Roles { settings })
    }

    /// Gives node `i` (just started) its settings.
    pub fn apply(&self, i: usize, replica: &mut Replica) {
        let now = replica.latest_input_time();
        replica.set_election(self.settings[i], now);
    }

    /// One line for the trace.
    pub fn describe(&self) -> String {
        let nodes: Vec<String> = self
            .settings
            .iter()
            .enumerate()
            .map(|(i, s)| format!("n{}={}/{}", i + 1, s.own.role, s.own.priority))
            .collect();
        let prefer = self.settings.first().is_some_and(|s| s.prefer_priority);
        format!("roles: {} prefer_priority={prefer}", nodes.join(" "))
    }
}

/// A node whose role may not lead is never writable.
pub fn check(node: &SimNode, now: Nanos) -> Result<(), Finding> {
    let (Some(replica), Some(local)) = (node.replica.as_ref(), node.local_now(now)) else {
        return Ok(());
    };
    let role = replica.election_settings().own.role;
    if !role.may_lead() && replica.writable(local) {
        return Err(Finding::new(
            ViolationKind::LeaseSafety,
            format!("{} is writable, but its election role is {role}", node.id),
        ));
    }
    Ok(())
}

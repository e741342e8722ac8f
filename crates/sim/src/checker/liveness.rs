//! Liveness after healing: a writable leader within the bound, then a settled cluster — the
//! clients done and every member of the configuration in force caught up with the commit
//! index.

use super::super::node::SimNode;
use super::{Finding, ViolationKind};
use regent_raft::{LogIndex, NodeId};
use std::collections::BTreeSet;

/// Whether every member of the configuration in force on the leader has applied the highest
/// commit index any node knows (the clients being done is the caller's half).
pub fn caught_up(nodes: &[SimNode]) -> bool {
    let max = nodes
        .iter()
        .map(|n| n.core().map_or(LogIndex(0), |c| c.status(0).commit_index))
        .max()
        .unwrap_or_default();
    let members = final_members(nodes);
    !members.is_empty()
        && nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .all(|n| n.applied_index() == max)
}

/// The members of the configuration in force on the leader (nodes outside it may lag
/// forever, as they should).
pub fn final_members(nodes: &[SimNode]) -> BTreeSet<NodeId> {
    nodes
        .iter()
        .find(|n| n.is_leader())
        .and_then(SimNode::core)
        .map(|c| c.membership().members())
        .unwrap_or_default()
}

/// No node was writable within `liveness_ms_max` after healing.
pub fn no_leader(liveness_ms_max: u64) -> Finding {
    let detail = format!("no writable leader within {liveness_ms_max} ms after healing");
    Finding::new(ViolationKind::NoLeaderAfterHeal, detail)
}

/// The cluster did not settle within `settle_ms_max` after healing.
pub fn not_settled(nodes: &[SimNode], settle_ms_max: u64) -> Finding {
    let applied: Vec<LogIndex> = nodes.iter().map(SimNode::applied_index).collect();
    let detail = format!(
        "cluster did not settle within {settle_ms_max} ms after healing (applied {applied:?})"
    );
    Finding::new(ViolationKind::NotSettled, detail)
}

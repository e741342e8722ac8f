//! Lease safety, checked at every step: never two writable nodes, and while a node is writable
//! a quorum of its configuration would refuse a vote to anyone else.

use super::super::node::SimNode;
use super::quorum::is_quorum;
use super::{Finding, ViolationKind};
use regent_raft::{Nanos, NodeId, Term};
use std::collections::BTreeSet;

/// What the lease check saw at one instant.
#[derive(Default)]
pub struct LeaseCheck {
    /// Some node was writable.
    pub writable: bool,
    pub findings: Vec<Finding>,
}

/// Checks the lease across the cluster at real time `now`.
pub fn check(nodes: &[SimNode], now: Nanos) -> LeaseCheck {
    let mut writable = Vec::new();
    for node in nodes {
        let (Some(core), Some(local)) = (node.core(), node.local_now(now)) else {
            continue;
        };
        let status = core.status(local);
        if status.writable {
            writable.push((status.id, status.term));
        }
    }
    let mut seen = LeaseCheck {
        writable: !writable.is_empty(),
        findings: Vec::new(),
    };
    if writable.len() > 1 {
        let detail = format!("several nodes writable at once: {writable:?}");
        seen.findings
            .push(Finding::new(ViolationKind::LeaseSafety, detail));
    }
    if let Some(&(leader, term)) = writable.first() {
        if let Err(f) = quorum_would_refuse(nodes, now, leader, term) {
            seen.findings.push(f);
        }
    }
    seen
}

/// What the lease rests on, checked directly: while `leader` is writable in `term`, a quorum of
/// voters would refuse a vote to anyone else — a plain campaign, or a hand-over campaign
/// carrying any round the leader may still have in flight (a down node cannot vote either).
fn quorum_would_refuse(
    nodes: &[SimNode],
    now: Nanos,
    leader: NodeId,
    term: Term,
) -> Result<(), Finding> {
    let l = (leader.0 - 1) as usize;
    let leader_core = nodes[l].core().expect("live");
    let floor = leader_core.lease_round_floor();
    let other = NodeId(if leader.0 == 1 { 2 } else { 1 });
    let refusing: BTreeSet<NodeId> = nodes
        .iter()
        .filter(|n| match (n.core(), n.local_now(now)) {
            (Some(core), Some(local)) => {
                core.would_refuse_vote_request(local, other, term.next(), None)
                    && core.would_refuse_vote_request(local, other, term.next(), Some(floor))
            }
            _ => true,
        })
        .map(|n| n.id)
        .collect();
    let membership = leader_core.membership();
    if is_quorum(membership, |id| refusing.contains(&id)) {
        return Ok(());
    }
    let detail = format!(
        "{leader} is writable in {term} but only {refusing:?} would refuse a vote in {membership:?}"
    );
    Err(Finding::new(ViolationKind::LeaseSafety, detail))
}

//! Quorums as the simulator counts them, written here rather than borrowed from the core under
//! test: a majority of the voters, and in a joint configuration a majority of the outgoing
//! voters too; learners never count. A leader's commits and elections are checked against
//! what the nodes' disks durably hold.

use super::super::node::SimNode;
use super::{Finding, ViolationKind};
use regent_raft::{LogIndex, Membership, NodeId, Term};
use regent_storage::LogStorage;

/// Whether the nodes for which `yes(id)` holds form a quorum of `m`.
pub fn is_quorum(m: &Membership, yes: impl Fn(NodeId) -> bool) -> bool {
    let majority = |voters: &std::collections::BTreeSet<NodeId>| {
        voters.is_empty() || voters.iter().filter(|&&id| yes(id)).count() > voters.len() / 2
    };
    majority(&m.voters) && majority(&m.voters_outgoing)
}

/// A leader advanced its commit index to `index` (of `term`) under `membership`: a quorum of
/// its voters must hold that entry durably (a compacted entry is held: it was applied).
pub fn check_commit(
    nodes: &[SimNode],
    leader: NodeId,
    membership: &Membership,
    index: LogIndex,
    term: Term,
) -> Result<(), Finding> {
    let holds = |id: NodeId| {
        let store = &nodes[(id.0 - 1) as usize].disk.store;
        index <= store.state().snapshot.last_included_index || store.term(index).ok() == Some(term)
    };
    if is_quorum(membership, holds) {
        return Ok(());
    }
    let holders: Vec<NodeId> = membership
        .members()
        .into_iter()
        .filter(|&id| holds(id))
        .collect();
    let detail = format!(
        "{leader} committed {index} ({term}) but only {holders:?} hold it durably in {membership:?}"
    );
    Err(Finding::new(ViolationKind::CommitQuorum, detail))
}

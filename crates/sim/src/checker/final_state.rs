//! What must hold once the cluster settled: every acknowledged write applied on every member at
//! the index it was acknowledged at, identical state machines on every member, every write
//! applied at most once, and a linearizable client history.

use super::super::node::SimNode;
use super::super::workload::{value_of, Workload};
use super::linearizability::{self, Verdict};
use super::{Finding, ViolationKind};
use regent_raft::{EntryPayload, LogIndex, NodeId, Term};
use regent_storage::{ChangeKind, Command, LogStorage, MemStorage, Proposal, StorageError};
use std::collections::BTreeSet;

/// Search steps allowed per key to the linearizability checker.
const LINEARIZABILITY_STEPS_MAX: u64 = 2_000_000;

/// Checks the settled cluster's `members` and the workload's history.
pub fn check(
    nodes: &[SimNode],
    members: &BTreeSet<NodeId>,
    workload: &Workload,
) -> Result<(), Finding> {
    let members: Vec<&SimNode> = nodes.iter().filter(|n| members.contains(&n.id)).collect();
    acknowledged_writes_kept(&members, workload.acked_writes())?;
    same_state_machines(&members)?;
    for n in &members {
        applied_at_most_once(n)?;
    }
    linearizable(workload)
}

/// Every acknowledged write is applied everywhere, at the index it was acknowledged at.
fn acknowledged_writes_kept(
    members: &[&SimNode],
    acked: &[(LogIndex, Term)],
) -> Result<(), Finding> {
    for &(index, term) in acked {
        for n in members {
            let state = n.disk.store.state();
            // Below a snapshot the entry is gone; the digests compare the state.
            let compacted = index <= state.snapshot.last_included_index;
            let holds = n.disk.store.term(index).ok();
            if n.applied_index() < index || (!compacted && holds != Some(term)) {
                let detail = format!("acknowledged write at {index} ({term}) missing on {}", n.id);
                return Err(Finding::new(ViolationKind::AcknowledgedWriteLost, detail));
            }
        }
    }
    Ok(())
}

/// Every member applied the same log, so their state machines are identical, however they got
/// there (entries, snapshots, or both).
fn same_state_machines(members: &[&SimNode]) -> Result<(), Finding> {
    let digests: Vec<(NodeId, _)> = members
        .iter()
        .map(|n| (n.id, n.applied_state().digest().expect("the digest reads")))
        .collect();
    let Some((first, d0)) = digests.first() else {
        return Ok(());
    };
    match digests.iter().find(|(_, d)| d != d0) {
        Some((other, _)) => {
            let detail = format!("after settling: {first} and {other}");
            Err(Finding::new(ViolationKind::StateMachinesDiffer, detail))
        }
        None => Ok(()),
    }
}

/// Exactly once: every write (a unique value) changed the node's state machine at most once,
/// however many times it was retried.
fn applied_at_most_once(n: &SimNode) -> Result<(), Finding> {
    let store = n.applied_state();
    // A snapshot install starts the feed over at the snapshot's revision.
    let page = match store.changes_after(0, usize::MAX) {
        Err(StorageError::ChangesCompacted { floor, .. }) => store.changes_after(floor, usize::MAX),
        other => other,
    }
    .expect("the change feed reads");
    let mut seen = BTreeSet::new();
    for change in page.changes {
        // regent's own records (the operator's maintenance) are not client writes.
        if change.key.starts_with(b"\0regent/") {
            continue;
        }
        let ChangeKind::Put { value, .. } = change.kind else {
            continue;
        };
        if seen.insert(value.clone()) {
            continue;
        }
        let detail = format!(
            "{} applied the write of {} twice (revision {}): entries {:?}",
            n.id,
            value_of(&value),
            change.revision,
            entries_putting(&n.disk.store, &value)
        );
        return Err(Finding::new(ViolationKind::ExactlyOnce, detail));
    }
    Ok(())
}

/// The log entries that put `value`, with their sessions: what explains a double write.
fn entries_putting(store: &MemStorage, value: &[u8]) -> Vec<String> {
    let last = store.state().last_index;
    let entries = store
        .entries(LogIndex(1), last.next(), usize::MAX)
        .unwrap_or_default();
    let mut found = Vec::new();
    for e in entries {
        let EntryPayload::Normal(data) = &e.payload else {
            continue;
        };
        let Ok(p) = Proposal::decode(data) else {
            continue;
        };
        if matches!(&p.command, Command::Put { value: v, .. } if v == value) {
            found.push(format!("{} {} {:?}", e.index, e.term, p.session));
        }
    }
    found
}

fn linearizable(workload: &Workload) -> Result<(), Finding> {
    match linearizability::check(&workload.history_to_check(), LINEARIZABILITY_STEPS_MAX) {
        Verdict::Linearizable | Verdict::Inconclusive { .. } => Ok(()),
        Verdict::Violation { key, explanation } => Err(Finding::new(
            ViolationKind::Linearizability,
            format!("key {key}: {explanation}"),
        )),
    }
}

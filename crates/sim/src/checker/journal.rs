//! The host's journal, tailed on every node as the daemon's `GET /v1/journal` does: after each
//! input a node handled, the operations its state machine added since the last look must be
//! the ones every other node saw at those indexes (same term, same bytes), without gaps; once
//! settled, every acknowledged append is in the journal exactly once, at the index it was
//! acknowledged with.
//!
//! Invariant: `order` holds what the first node to apply an index saw there; every later look,
//! on any node, is compared with it. A node whose next index was truncated (by retention)
//! resumes at the first retained index: the truncated range cannot be compared, and the
//! digests cover the rest.

use super::{Finding, ViolationKind};
use crate::node::SimNode;
use regent_raft::NodeId;
use regent_storage::StorageError;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct JournalTails {
    /// Index → (term, operation), as first seen.
    order: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The next index each node's tail reads.
    next: BTreeMap<NodeId, u64>,
}

impl JournalTails {
    /// Reads what node `id`'s journal added since the last look and compares it.
    pub fn observe(&mut self, node: &SimNode) -> Result<(), Finding> {
        let (id, store) = (node.id, node.applied_state());
        let next = self.next.entry(id).or_insert(1);
        let journal = node.applied_journal();
        if journal.last < *next {
            return Ok(());
        }
        let page = match store.journal_page(*next, usize::MAX, usize::MAX) {
            Ok(page) => page,
            Err(StorageError::JournalCompacted { first, .. }) => {
                *next = first;
                store
                    .journal_page(first, usize::MAX, usize::MAX)
                    .expect("the first retained index reads")
            }
            Err(err) => panic!("the simulated journal reads: {err}"),
        };
        for op in page.ops {
            assert_eq!(op.index, *next, "journal pages are dense");
            *next += 1;
            match self.order.get(&op.index) {
                None => {
                    self.order.insert(op.index, (op.term, op.op));
                }
                Some((term, bytes)) if (*term, bytes) == (op.term, &op.op) => {}
                Some((term, bytes)) => {
                    let detail = format!(
                        "{id}'s journal holds {:?} (term {}) at {} where another node held {:?} (term {term})",
                        op.op, op.term, op.index, bytes
                    );
                    return Err(Finding::new(ViolationKind::JournalOrder, detail));
                }
            }
        }
        Ok(())
    }

    /// Every acknowledged append (its operation and index) is in the journal at that index, and
    /// no operation is in it twice.
    pub fn check_final(&self, acked: &[(Vec<u8>, u64)]) -> Result<(), Finding> {
        let mut at: BTreeMap<&[u8], u64> = BTreeMap::new();
        for (index, (_, op)) in &self.order {
            if let Some(first) = at.insert(op, *index) {
                let detail = format!("the journal holds {op:?} at {first} and at {index}");
                return Err(Finding::new(ViolationKind::ExactlyOnce, detail));
            }
        }
        for (op, index) in acked {
            if at.get(op.as_slice()) != Some(index) {
                let detail = format!(
                    "acknowledged append {op:?} at journal index {index}; the journal has it at {:?}",
                    at.get(op.as_slice())
                );
                return Err(Finding::new(ViolationKind::AcknowledgedWriteLost, detail));
            }
        }
        Ok(())
    }
}

//! The apply of committed entries, in memory, and the persisting of the state machine behind
//! it: an entry is applied as soon as it is committed and durable here (on the leader, the
//! moment a quorum's acknowledgement commits it), its proposal answered from that apply, and the
//! state machine's dirty records are handed to storage later in large layers
//! ([`Action::PersistState`]), which also sets how far the log may be compacted.
//!
//! Invariants: entries apply in log order, each exactly once per incarnation, and only once
//! durable in this node's log (so the persisted state never runs ahead of the durable log); at
//! most one layer is on its way to storage; the log is compacted only through what the state
//! machine persisted; nothing is applied while a snapshot chunk waits for or is on the disk
//! (the install replaces the state underneath, and checks staleness against what storage
//! holds, which must then be everything applied).

use crate::{Action, Replica};
use regent_raft::{Entry, Nanos};
use regent_storage::StateFlush;

/// A layer is handed out to be persisted at most this long after its first record was applied
/// (etcd commits its backend every 100 ms).
pub const FLUSH_INTERVAL_NS: Nanos = 100_000_000;

/// ... or as soon as it holds this many records, which bounds the memory it takes.
pub const FLUSH_RECORDS_MAX: usize = 16_384;

/// A log compaction drops at most this many entries in one storage transaction; a larger one is
/// done in steps, with the batches that arrive meanwhile written between them (dropping 100,000
/// entries at once held the disk thread, and every write behind it, for a third of a second).
pub const COMPACT_STEP_ENTRIES: u64 = 10_000;

impl Replica {
    /// Applies the committed entries the core hands out outside the `Ready` cycle (durable
    /// here already), unless a snapshot install is under way.
    pub(crate) fn apply_committed(&mut self, out: &mut Vec<Action>) {
        if self.chunk_on_disk() || self.chunks_queued() > 0 {
            return;
        }
        let entries = self.core.take_applicable();
        self.apply_entries(entries, out);
    }

    /// Applies `entries` (committed, durable, in order) and answers the proposals waiting for
    /// them.
    pub(crate) fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut Vec<Action>) {
        if entries.is_empty() {
            return;
        }
        let reserved_before = self.state.reserved_writes();
        match self.state.apply(&entries) {
            Ok(results) => {
                for (entry, applied) in entries.iter().zip(results) {
                    debug_assert_eq!(entry.index, applied.index);
                    self.answer(entry.index, entry.term, applied.result, out);
                }
                self.unflushed_since.get_or_insert(self.now);
                let records_written = self.state.reserved_writes() != reserved_before;
                self.maintenance_applied(&entries, records_written);
                if records_written {
                    self.reload_roles();
                    self.reload_versions();
                }
                out.push(Action::Applied(entries));
            }
            Err(err) => {
                tracing::error!(node = %self.id, error = %err, "the state machine could not be read");
                out.push(Action::Fatal(err));
            }
        }
    }

    /// When the layer being filled is due to be handed out, if it holds anything.
    pub(crate) fn flush_deadline(&self) -> Option<Nanos> {
        if self.state.is_flushing() {
            return None;
        }
        self.unflushed_since.map(|t| t + FLUSH_INTERVAL_NS)
    }

    /// Hands the layer being filled to storage when it is due: old enough, large enough, or
    /// needed before a compaction or a snapshot install. One layer at a time.
    pub(crate) fn maybe_flush(&mut self, out: &mut Vec<Action>) {
        if self.state.is_flushing() || self.chunk_on_disk() {
            return;
        }
        let records = self.state.unfrozen_records();
        if records == 0 {
            self.unflushed_since = None;
            return;
        }
        let old = self
            .unflushed_since
            .is_some_and(|t| self.now >= t + FLUSH_INTERVAL_NS);
        let compaction_waits = (self.compacting.is_none() && self.core.snapshot_due().is_some())
            || self.compact_after_flush;
        let install_waits = self.chunks_queued() > 0;
        if !(old || records >= FLUSH_RECORDS_MAX || compaction_waits || install_waits) {
            return;
        }
        if let Some(flush) = self.state.take_flush() {
            self.unflushed_since = None;
            out.push(Action::PersistState(flush));
        }
    }

    /// The layer of the last [`Action::PersistState`] is written: storage holds the state
    /// machine as of `applied`. Appends a compaction when one is due.
    pub fn state_persisted(&mut self, applied: regent_raft::LogIndex, out: &mut Vec<Action>) {
        self.state.flushed(applied);
        if self.compact_after_flush {
            let index = self.compacting.expect("an operator's compaction waits");
            if self.state.persisted() >= index {
                self.compact_after_flush = false;
                out.push(Action::Compact(index));
            }
            return;
        }
        self.maybe_compact(out);
    }

    /// Whether a layer of the state machine is on its way to storage.
    pub fn is_persisting_state(&self) -> bool {
        self.state.is_flushing()
    }

    /// A clean stop: everything applied and not yet handed out, as one layer to write
    /// durably, so that a restart need not apply the log again. `None` while a layer is on
    /// its way (wait for it first) or when nothing is left.
    pub fn final_state_layer(&mut self) -> Option<StateFlush> {
        if self.state.is_flushing() {
            return None;
        }
        let mut flush = self.state.take_flush()?;
        flush.durable = true;
        self.unflushed_since = None;
        Some(flush)
    }

    /// The compaction policy: when the core says enough was applied since the last snapshot,
    /// the log is compacted through what the state machine persisted (the state that replaces
    /// the compacted prefix), in steps of at most `COMPACT_STEP_ENTRIES` entries.
    pub(crate) fn maybe_compact(&mut self, out: &mut Vec<Action>) {
        if self.compacting.is_some() {
            return;
        }
        // The storage log's prefix, which may end below the core's (see `storage_snapshot`).
        let snapshot = self.storage_snapshot;
        if self.compact_goal.is_none() && self.core.snapshot_due().is_some() {
            let goal = self.state.persisted().min(self.core.persisted_index());
            // Below the snapshot: a layer is on its way (maybe_flush sends one when none is).
            self.compact_goal = (goal > snapshot).then_some(goal);
        }
        let Some(goal) = self.compact_goal else {
            return;
        };
        if goal <= snapshot {
            self.compact_goal = None; // An install or an operator's compaction went past it.
            return;
        }
        let through = goal.min(regent_raft::LogIndex(snapshot.0 + COMPACT_STEP_ENTRIES));
        if through == goal {
            self.compact_goal = None;
        }
        self.compacting = Some(through);
        out.push(Action::Compact(through));
    }

    /// Rebuilds the state machine's view after storage replaced the state underneath (a
    /// snapshot installed).
    pub(crate) fn state_replaced(&mut self, out: &mut Vec<Action>) {
        self.unflushed_since = None;
        if let Err(err) = self.state.reset() {
            tracing::error!(node = %self.id, error = %err, "the installed state could not be read");
            out.push(Action::Fatal(err));
            return;
        }
        self.reload_maintenance();
        self.reload_roles();
        self.reload_versions();
    }
}

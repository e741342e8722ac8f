//! The state machine as a replica runs it: committed entries are applied in memory, into an
//! overlay of dirty records above what the backend last persisted (its base), and answered from
//! there at once; the overlay is frozen and written to the backend later, in large batches
//! (`LogStorage::write_state`), off the commit path. etcd applies to bbolt and commits every
//! 100 ms; ZooKeeper answers from its in-memory tree: this is the same idea with a bounded
//! memory, since only what was applied and not yet persisted is held here.
//!
//! Invariant: reading through the layers (the active one, the frozen ones newest first, then
//! the base) answers exactly what a backend holding the applied state would, so the answers do
//! not depend on when layers were persisted; a layer is dropped only after the backend holds
//! it, and the backend's applied index never passes an entry its own log does not hold
//! durably (the caller applies only persisted entries, see `RaftNode::take_applicable`).
//! After a crash the backend holds the last persisted layer, and the log after it is applied
//! again, with the same results.

use super::overlay::{Layered, Overlay};
use super::{Applied, ChangePage, JournalPage, KeyValue, SessionRecord, StateDigest, StateReader};
use crate::error::StorageError;
use crate::store::StateRead;
use crate::{LogState, StorageOptions};
use regent_raft::{Entry, LogIndex};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where a state machine reads what its backend persisted: the backend's state half, shared
/// with the thread that writes it.
#[derive(Clone)]
pub struct StateBase {
    kind: BaseKind,
}

#[derive(Clone)]
enum BaseKind {
    Redb {
        db: crate::redb::SharedDb,
        path: PathBuf,
    },
    Mem(Arc<Mutex<crate::mem::MemState>>),
}

impl StateBase {
    pub(crate) fn redb(db: crate::redb::SharedDb, path: PathBuf) -> StateBase {
        StateBase {
            kind: BaseKind::Redb { db, path },
        }
    }

    pub(crate) fn mem(state: Arc<Mutex<crate::mem::MemState>>) -> StateBase {
        StateBase {
            kind: BaseKind::Mem(state),
        }
    }

    /// Runs `read` over one consistent view of the persisted state half.
    fn read<T>(
        &self,
        read: impl FnOnce(&mut dyn StateRead) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match &self.kind {
            BaseKind::Redb { db, path } => crate::redb::read_shared(db, path, read),
            BaseKind::Mem(state) => crate::mem::read_shared(state, read),
        }
    }
}

/// One frozen layer of the state machine on its way to the backend
/// (`LogStorage::write_state`).
#[derive(Clone)]
pub struct StateFlush {
    pub(crate) layer: Arc<Overlay>,
    /// The applied index the layer was built on: the backend must hold exactly that.
    pub from: LogIndex,
    /// Write it durably (the last layer before a clean stop); otherwise the next durable
    /// write makes it durable.
    pub durable: bool,
    /// The state machine's summary once the layer is written (its state half: applied index
    /// and term, revision, journal, membership).
    pub(crate) to: Box<LogState>,
}

impl StateFlush {
    /// The applied index the backend holds once this layer is written.
    pub fn applied(&self) -> LogIndex {
        self.to.applied
    }

    /// How many records the layer writes.
    pub fn records(&self) -> usize {
        self.layer.records()
    }
}

impl fmt::Debug for StateFlush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateFlush")
            .field("from", &self.from)
            .field("to", &self.to.applied)
            .field("records", &self.layer.records())
            .finish()
    }
}

/// The applied state machine: the layers not yet persisted over the backend's base.
pub struct StateMachine {
    base: StateBase,
    options: StorageOptions,
    /// The summary of the state machine as of the last applied entry (its state half; the log
    /// half's fields are those of the backend when the machine was built, and unused).
    state: LogState,
    /// Where new applies go.
    active: Arc<Overlay>,
    /// The applied index `active` was started at.
    active_from: LogIndex,
    /// Frozen layers handed out to be persisted and not yet reported persisted, oldest first,
    /// with the applied index each brings the backend to.
    frozen: Vec<Arc<Overlay>>,
    frozen_to: Vec<LogIndex>,
    /// The applied index the backend holds, as far as this machine knows.
    persisted: LogIndex,
    /// An apply failed midway: the layers may hold half of it, so nothing more is applied.
    failed: bool,
    /// Puts and removes of regent's own records (keys under [`crate::RESERVED_PREFIX`])
    /// applied by this machine.
    reserved_writes: u64,
}

impl StateMachine {
    /// A machine with nothing unpersisted, over a backend whose state is summarised by
    /// `state`.
    pub(crate) fn new(base: StateBase, state: LogState, options: StorageOptions) -> StateMachine {
        StateMachine {
            base,
            options,
            active: Arc::default(),
            active_from: state.applied,
            frozen: Vec::new(),
            frozen_to: Vec::new(),
            persisted: state.applied,
            state,
            failed: false,
            reserved_writes: 0,
        }
    }

    /// Applies committed entries, in order, the first at `applied() + 1`; returns one result
    /// per entry. An error (the base could not be read) leaves the machine unusable: the
    /// caller must stop and restart from what is durable.
    pub fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Applied>, StorageError> {
        if self.failed {
            return Err(StorageError::InvalidRequest(
                "the state machine failed an earlier apply; restart from the durable state".into(),
            ));
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let StateMachine {
            base,
            options,
            state,
            active,
            frozen,
            ..
        } = self;
        let top = Arc::make_mut(active);
        let result = base.read(|read| {
            let mut view = Layered::new(top, frozen, read);
            let applied = super::apply(&mut view, state, entries, options);
            applied.map(|(applied, next)| (applied, next, view.reserved_writes()))
        });
        match result {
            Ok((applied, next, reserved)) => {
                self.state = next;
                self.reserved_writes += reserved;
                Ok(applied)
            }
            Err(err) => {
                self.failed = true;
                Err(err)
            }
        }
    }

    /// The last applied entry.
    pub fn applied(&self) -> LogIndex {
        self.state.applied
    }

    /// The KV store's revision.
    pub fn revision(&self) -> u64 {
        self.state.revision
    }

    /// The host's journal as of the last applied entry.
    pub fn journal(&self) -> &super::JournalState {
        &self.state.journal
    }

    /// How many puts and removes of regent's own records (keys under
    /// [`crate::RESERVED_PREFIX`]) this machine applied since it was built: a caller that keeps
    /// a view of those records reads them back only when this moved.
    pub fn reserved_writes(&self) -> u64 {
        self.reserved_writes
    }

    /// The applied index the backend holds (the last layer reported persisted).
    pub fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// Records applied and not yet handed out to be persisted.
    pub fn unfrozen_records(&self) -> usize {
        self.active.records()
    }

    /// Whether layers were handed out and not yet reported persisted.
    pub fn is_flushing(&self) -> bool {
        !self.frozen.is_empty()
    }

    /// Freezes what was applied since the last freeze and hands it out to be persisted;
    /// `None` when nothing was. Reads keep seeing the layer until [`flushed`](Self::flushed).
    pub fn take_flush(&mut self) -> Option<StateFlush> {
        if self.active.is_empty() {
            return None;
        }
        let layer = std::mem::take(&mut self.active);
        let flush = StateFlush {
            layer: Arc::clone(&layer),
            from: self.active_from,
            durable: false,
            to: Box::new(self.state.clone()),
        };
        self.frozen.push(layer);
        self.frozen_to.push(self.state.applied);
        self.active_from = self.state.applied;
        Some(flush)
    }

    /// The oldest frozen layer, which brought the backend to `applied`, is persisted.
    pub fn flushed(&mut self, applied: LogIndex) {
        assert!(
            self.frozen_to.first() == Some(&applied),
            "persisted a layer other than the oldest one handed out"
        );
        self.frozen.remove(0);
        self.frozen_to.remove(0);
        self.persisted = applied;
    }

    /// The backend's state was replaced underneath (a snapshot installed, or it was reopened):
    /// every layer is dropped and the summary read again from the base. Call it only with no
    /// layer on its way to the backend.
    pub fn reset(&mut self) -> Result<(), StorageError> {
        assert!(
            self.frozen.is_empty(),
            "reset while a layer is being persisted"
        );
        let (sm, membership, journal) = self
            .base
            .read(|r| Ok((r.sm_meta()?, r.membership()?, r.journal_state()?)))?;
        self.active = Arc::default();
        self.state.applied = sm.applied;
        self.state.applied_term = sm.applied_term;
        self.state.revision = sm.revision;
        self.state.membership = membership.membership;
        self.state.membership_index = membership.index;
        self.state.journal = journal;
        self.active_from = sm.applied;
        self.persisted = sm.applied;
        self.failed = false;
        Ok(())
    }

    /// Runs `read` over the applied state: the layers, then the base.
    fn read<T>(
        &self,
        read: impl FnOnce(&mut dyn StateRead) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut below = self.frozen.clone();
        below.push(Arc::clone(&self.active));
        let mut top = Overlay::default();
        self.base
            .read(|base| read(&mut Layered::new(&mut top, &below, base)))
    }
}

impl StateReader for StateMachine {
    fn kv_get(&self, key: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        self.read(|r| super::kv_get(r, key))
    }

    fn kv_range(&self, prefix: &[u8], limit: u32) -> Result<(Vec<KeyValue>, bool), StorageError> {
        self.read(|r| super::kv_range(r, prefix, limit))
    }

    fn changes_after(&self, revision: u64, limit: usize) -> Result<ChangePage, StorageError> {
        self.read(|r| super::changes_after(r, revision, limit))
    }

    fn journal_page(
        &self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<JournalPage, StorageError> {
        self.read(|r| super::journal_page(r, from, limit, bytes_max))
    }

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, StorageError> {
        self.read(|r| r.session(client_id))
    }

    fn digest(&self) -> Result<StateDigest, StorageError> {
        self.read(super::digest)
    }
}

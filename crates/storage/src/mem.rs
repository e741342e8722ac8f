//! `MemStorage`: the storage of a simulated node, in memory, with exactly the guarantees redb
//! gives: a write happens entirely or not at all, and a write that returned `Ok` survives a
//! simulated crash (the simulator keeps the `MemStorage` and calls `reload`).
//!
//! Invariant: every mutation inside a write goes through `MemTxn`, which logs how to undo it; a
//! write that fails at any point (a refused request, an injected fault) is rolled back in full
//! before the error is returned.

use super::engine;
use super::error::StorageError;
use super::recovery;
use super::snapshot::{self, ChunkStream, RecordCursor, SnapshotHeader, SnapshotSource};
use super::state::{
    self, Change, JournalRecord, JournalState, KvRecord, MembershipRecord, SessionRecord, SmMeta,
    StateReader,
};
use super::store::{
    decode_row, encode_row, kv_range_start, KvPage, LogRead, LogWrite, RecordVisitor, StateRead,
    StateWrite, StorePath,
};
use super::{
    Applied, Batch, ChangePage, Identity, InstallProgress, JournalPage, KeyValue, LogState,
    LogStorage, Recovered, SnapshotMeta, StateBase, StateDigest, StateFlush, StateMachine,
    StorageOptions, MEMORY_PATH,
};
use regent_raft::{Entry, EntryPayload, HardState, LogIndex, Membership, Term};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// A fault for the next write (batch, compaction or install swap), injected by the simulator
/// or a test. Each models a redb outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemFault {
    /// The write fails and nothing of it happened (an I/O error before the commit).
    FailBeforeCommit,
    /// The write happened but reports a failure (a commit error after the data reached the
    /// disk): the caller cannot tell, and must reload.
    FailAfterCommit,
    /// The write fails at its n-th primitive change (0-based) and is rolled back.
    FailAtOp(u64),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct MemState {
    hard_state: HardState,
    membership: MembershipRecord,
    snapshot: SnapshotMeta,
    sm: SmMeta,
    log: BTreeMap<u64, Entry>,
    kv: BTreeMap<Vec<u8>, KvRecord>,
    sessions: BTreeMap<u64, SessionRecord>,
    changes: BTreeMap<(u64, u32), Change>,
    journal_state: JournalState,
    journal: BTreeMap<u64, JournalRecord>,
}

pub struct MemStorage {
    identity: Identity,
    options: StorageOptions,
    /// Shared with the state machine's base (`StateBase`), which reads the state half.
    state: Arc<Mutex<MemState>>,
    /// The summary of `state`, as of the last successful write.
    cached: LogState,
    install: Option<MemInstall>,
    fault: Option<MemFault>,
    /// Set by a failed write, as redb refuses writes after a failed commit until reopened.
    reload_required: bool,
    /// The state as of the last durable write, kept while later writes were not durable
    /// (`batch_must_sync` false): `reload`, the simulator's crash, goes back to it, as redb
    /// rolls a crashed file back to its last durable commit.
    durable: Option<MemState>,
}

struct MemInstall {
    receiver: snapshot::Receiver,
    kv: BTreeMap<Vec<u8>, KvRecord>,
    sessions: BTreeMap<u64, SessionRecord>,
    journal: BTreeMap<u64, JournalRecord>,
}

impl MemStorage {
    /// A fresh, empty store for `identity`.
    pub fn new(
        identity: Identity,
        options: StorageOptions,
    ) -> Result<(MemStorage, Recovered), StorageError> {
        options.validate()?;
        let mut storage = MemStorage {
            identity,
            options,
            state: Arc::default(),
            cached: LogState::default(),
            install: None,
            fault: None,
            reload_required: false,
            durable: None,
        };
        let recovered = storage.reload()?;
        Ok((storage, recovered))
    }

    /// Makes the next write fail as `fault` says.
    pub fn inject(&mut self, fault: MemFault) {
        self.fault = Some(fault);
    }

    /// Runs `body` as one atomic write, honouring an injected fault.
    fn write<T>(
        &mut self,
        body: impl FnOnce(&mut MemTxn<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if self.reload_required {
            return Err(StorageError::ReloadRequired {
                path: MEMORY_PATH.into(),
            });
        }
        let fault = self.fault.take();
        let mut guard = lock(&self.state);
        let mut txn = MemTxn {
            state: &mut guard,
            undo: Vec::new(),
            ops: 0,
            fail_at_op: match fault {
                Some(MemFault::FailAtOp(n)) => Some(n),
                _ => None,
            },
        };
        let result = body(&mut txn);
        let result = match (result, fault) {
            (Ok(_), Some(MemFault::FailBeforeCommit)) => Err(StorageError::Injected {
                what: "write failed before its commit",
            }),
            (Ok(_), Some(MemFault::FailAfterCommit)) => {
                self.reload_required = true;
                return Err(StorageError::Injected {
                    what: "commit failed after the data was written",
                });
            }
            (result, _) => result,
        };
        match result {
            Ok(value) => Ok(value),
            Err(err) => {
                txn.rollback();
                if err.requires_reload() {
                    self.reload_required = true;
                }
                Err(err)
            }
        }
    }

    fn read(&self) -> MemLocked<'_> {
        MemLocked {
            state: lock(&self.state),
        }
    }

    /// The state half's base for a state machine over this store.
    pub(crate) fn shared(&self) -> Arc<Mutex<MemState>> {
        Arc::clone(&self.state)
    }
}

/// The lock of the shared state; a panic while it was held (a test's) leaves it usable.
fn lock(state: &Mutex<MemState>) -> MutexGuard<'_, MemState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `read` over the state half of a shared memory store.
pub(crate) fn read_shared<T>(
    state: &Mutex<MemState>,
    read: impl FnOnce(&mut dyn StateRead) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    read(&mut MemLocked { state: lock(state) })
}

impl LogStorage for MemStorage {
    fn state(&self) -> &LogState {
        &self.cached
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<Vec<Applied>, StorageError> {
        let cached = self.cached.clone();
        let options = self.options.clone();
        let sync = super::batch_must_sync(&cached, batch);
        let before = (!sync && self.durable.is_none()).then(|| lock(&self.state).clone());
        let (applied, next) = self.write(|txn| {
            engine::validate(txn, &cached, batch, &options)?;
            let next = engine::write_log(txn, &cached, batch)?;
            state::apply(txn, &next, &batch.committed, &options)
        })?;
        if sync {
            self.durable = None;
        } else if self.durable.is_none() {
            self.durable = before;
        }
        self.cached = next;
        Ok(applied)
    }

    fn reload(&mut self) -> Result<Recovered, StorageError> {
        self.install = None;
        if let Some(durable) = self.durable.take() {
            *lock(&self.state) = durable;
        }
        let recovered = recovery::recover(&mut self.read(), &self.identity)?;
        self.cached = recovered.state.clone();
        self.reload_required = false;
        Ok(recovered)
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        engine::entries(&mut self.read(), &self.cached, lo, hi, bytes_max)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        engine::term(&mut self.read(), &self.cached, index)
    }

    fn compact_log(&mut self, through: LogIndex) -> Result<(), StorageError> {
        let cached = self.cached.clone();
        self.cached = self.write(|txn| engine::compact_log(txn, &cached, through))?;
        self.durable = None;
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn SnapshotSource>, StorageError> {
        let state = lock(&self.state);
        let sm = &state.sm;
        let header = SnapshotHeader {
            meta: SnapshotMeta {
                last_included_index: sm.applied,
                last_included_term: sm.applied_term,
                membership: state.membership.membership.clone(),
            },
            revision: sm.revision,
            log_time_ms: sm.log_time_ms,
            sweep_bucket: sm.sweep_bucket,
            session_count: sm.session_count,
            journal: state.journal_state.clone(),
        };
        // A copy is this store's consistent view: writes after this call do not show.
        let cursor = MemCursor {
            kv: state
                .kv
                .iter()
                .map(|(k, r)| (k.clone(), r.encode()))
                .collect(),
            sessions: state
                .sessions
                .iter()
                .map(|(id, s)| (*id, encode_row(s)))
                .collect(),
            journal: state
                .journal
                .iter()
                .map(|(index, r)| (*index, r.encode()))
                .collect(),
        };
        Ok(Box::new(ChunkStream::new(
            header,
            cursor,
            self.options.snapshot_chunk_bytes,
        )))
    }

    fn install_chunk(&mut self, chunk: &[u8]) -> Result<InstallProgress, StorageError> {
        let next_seq = self.install.as_ref().map(|i| i.receiver.next_seq);
        let placed = snapshot::place_chunk(chunk, next_seq);
        let frame = match placed {
            Err(err) => {
                self.install = None;
                return Err(err);
            }
            Ok(snapshot::Placed::Next(frame)) => frame,
            Ok(snapshot::Placed::Start(receiver)) => {
                self.install = None;
                engine::check_install(&mut self.read(), &self.cached, &receiver.header.meta)?;
                self.install = Some(MemInstall {
                    receiver: *receiver,
                    kv: BTreeMap::new(),
                    sessions: BTreeMap::new(),
                    journal: BTreeMap::new(),
                });
                return Ok(InstallProgress::Continue { chunks: 1 });
            }
        };
        let mut install = self
            .install
            .take()
            .expect("place_chunk found an install in progress");
        match install.receiver.step(&frame)? {
            snapshot::Step::Kv(records) => {
                for (key, value) in records {
                    let record = KvRecord::decode(value).expect("checked by the receiver");
                    install.kv.insert(key.to_vec(), record);
                }
            }
            snapshot::Step::Sessions(records) => {
                for (id, value) in records {
                    let record = decode_row(value).expect("checked by the receiver");
                    install.sessions.insert(id, record);
                }
            }
            snapshot::Step::Journal(records) => {
                for (index, value) in records {
                    let record = JournalRecord::decode(value).expect("checked by the receiver");
                    install.journal.insert(index, record);
                }
            }
            snapshot::Step::End => {
                let cached = self.cached.clone();
                let header = install.receiver.header.clone();
                let MemInstall {
                    kv,
                    sessions,
                    journal,
                    ..
                } = install;
                let next = self.write(|txn| {
                    let next = engine::finish_install(txn, &cached, &header)?;
                    txn.swap_tables(kv, sessions, journal);
                    Ok(next)
                })?;
                self.cached = next.clone();
                self.durable = None;
                return Ok(InstallProgress::Installed(Box::new(next)));
            }
        }
        let chunks = install.receiver.next_seq;
        self.install = Some(install);
        Ok(InstallProgress::Continue { chunks })
    }

    fn install_abort(&mut self) {
        self.install = None;
    }

    fn state_machine(&self) -> StateMachine {
        let base = StateBase::mem(self.shared());
        StateMachine::new(base, self.cached.clone(), self.options.clone())
    }

    fn write_state(&mut self, flush: &StateFlush) -> Result<(), StorageError> {
        let cached = self.cached.clone();
        // Not durable: a crash goes back to the last durable write, as redb's does.
        let before = self.durable.is_none().then(|| lock(&self.state).clone());
        let next = self.write(|txn| engine::write_state(txn, &cached, flush))?;
        if flush.durable {
            self.durable = None;
        } else if self.durable.is_none() {
            self.durable = before;
        }
        self.cached = next;
        Ok(())
    }
}

impl StateReader for MemStorage {
    fn kv_get(&self, key: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        state::kv_get(&mut self.read(), key)
    }

    fn kv_range(&self, prefix: &[u8], limit: u32) -> Result<(Vec<KeyValue>, bool), StorageError> {
        state::kv_range(&mut self.read(), prefix, limit)
    }

    fn changes_after(&self, revision: u64, limit: usize) -> Result<ChangePage, StorageError> {
        state::changes_after(&mut self.read(), revision, limit)
    }

    fn journal_page(
        &self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<JournalPage, StorageError> {
        state::journal_page(&mut self.read(), from, limit, bytes_max)
    }

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, StorageError> {
        self.read().session(client_id)
    }

    fn digest(&self) -> Result<StateDigest, StorageError> {
        state::digest(&mut self.read())
    }
}

struct MemCursor {
    kv: Vec<(Vec<u8>, Vec<u8>)>,
    sessions: Vec<(u64, Vec<u8>)>,
    journal: Vec<(u64, Vec<u8>)>,
}

impl RecordCursor for MemCursor {
    fn kv_records(
        &mut self,
        after: Option<&[u8]>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<Vec<u8>>), StorageError> {
        let start = after.map_or(0, |a| self.kv.partition_point(|(k, _)| k.as_slice() <= a));
        let mut count = 0;
        let mut last = None;
        for (key, value) in &self.kv[start..] {
            if out.len() >= bytes_target {
                break;
            }
            snapshot::push_record(out, key, value);
            count += 1;
            last = Some(key.clone());
        }
        Ok((count, last))
    }

    fn session_records(
        &mut self,
        after: Option<u64>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<u64>), StorageError> {
        let start = after.map_or(0, |a| self.sessions.partition_point(|(id, _)| *id <= a));
        let mut count = 0;
        let mut last = None;
        for (id, value) in &self.sessions[start..] {
            if out.len() >= bytes_target {
                break;
            }
            snapshot::push_record(out, &id.to_be_bytes(), value);
            count += 1;
            last = Some(*id);
        }
        Ok((count, last))
    }

    fn journal_records(
        &mut self,
        after: Option<u64>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<u64>), StorageError> {
        let start = after.map_or(0, |a| self.journal.partition_point(|(i, _)| *i <= a));
        let mut count = 0;
        let mut last = None;
        for (index, value) in &self.journal[start..] {
            if out.len() >= bytes_target {
                break;
            }
            snapshot::push_record(out, &index.to_be_bytes(), value);
            count += 1;
            last = Some(*index);
        }
        Ok((count, last))
    }
}

/// Reads of a `MemState` (outside or inside a write).
struct MemRead<'a>(&'a MemState);

impl StorePath for MemRead<'_> {
    fn path(&self) -> &Path {
        Path::new(MEMORY_PATH)
    }
}

impl LogRead for MemRead<'_> {
    fn hard_state(&mut self) -> Result<HardState, StorageError> {
        Ok(self.0.hard_state)
    }

    fn snapshot_meta(&mut self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.0.snapshot.clone())
    }

    fn log_bounds(&mut self) -> Result<Option<(LogIndex, LogIndex)>, StorageError> {
        let first = self.0.log.keys().next();
        let last = self.0.log.keys().next_back();
        Ok(first.zip(last).map(|(f, l)| (LogIndex(*f), LogIndex(*l))))
    }

    fn log_term(&mut self, index: LogIndex) -> Result<Option<Term>, StorageError> {
        Ok(self.0.log.get(&index.0).map(|e| e.term))
    }

    fn log_len(&mut self) -> Result<u64, StorageError> {
        Ok(self.0.log.len() as u64)
    }

    fn log_entries(
        &mut self,
        lo: LogIndex,
        hi: LogIndex,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in self.0.log.range(lo.0..hi.0).map(|(_, e)| e) {
            if !out.is_empty() && bytes + entry.size_bytes() > bytes_max {
                break;
            }
            bytes += entry.size_bytes();
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn log_scan_terms(
        &mut self,
        visit: &mut dyn FnMut(LogIndex, Term) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for (index, entry) in &self.0.log {
            assert_eq!(*index, entry.index.0, "entries are keyed by their index");
            visit(entry.index, entry.term)?;
        }
        Ok(())
    }
}

impl StateRead for MemRead<'_> {
    fn membership(&mut self) -> Result<MembershipRecord, StorageError> {
        Ok(self.0.membership.clone())
    }

    fn sm_meta(&mut self) -> Result<SmMeta, StorageError> {
        Ok(self.0.sm.clone())
    }

    fn kv_get(&mut self, key: &[u8]) -> Result<Option<KvRecord>, StorageError> {
        Ok(self.0.kv.get(key).cloned())
    }

    fn kv_range(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<KvPage, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let range = self
            .0
            .kv
            .range::<[u8], _>((kv_range_start(prefix, after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        for (key, record) in range {
            if out.len() >= limit || bytes > bytes_max {
                return Ok((out, true));
            }
            bytes += key.len() + record.value.len();
            out.push((key.clone(), record.clone()));
        }
        Ok((out, false))
    }

    fn kv_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        for (key, record) in &self.0.kv {
            visit(key, &record.encode())?;
        }
        Ok(())
    }

    fn session(&mut self, client_id: u64) -> Result<Option<SessionRecord>, StorageError> {
        Ok(self.0.sessions.get(&client_id).cloned())
    }

    fn session_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        for (id, record) in &self.0.sessions {
            visit(&id.to_be_bytes(), &encode_row(record))?;
        }
        Ok(())
    }

    fn changes_after(
        &mut self,
        revision: u64,
        limit: usize,
    ) -> Result<(Vec<Change>, bool), StorageError> {
        let Some(from) = revision.checked_add(1) else {
            return Ok((Vec::new(), false));
        };
        let mut range = self.0.changes.range((from, 0)..);
        let out: Vec<Change> = range.by_ref().take(limit).map(|(_, c)| c.clone()).collect();
        Ok((out, range.next().is_some()))
    }

    fn journal_state(&mut self) -> Result<JournalState, StorageError> {
        Ok(self.0.journal_state.clone())
    }

    fn journal_range(
        &mut self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<(u64, JournalRecord)>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (index, record) in self.0.journal.range(from..) {
            if out.len() >= limit || (!out.is_empty() && bytes + record.op.len() > bytes_max) {
                break;
            }
            bytes += record.op.len();
            out.push((*index, record.clone()));
        }
        Ok(out)
    }

    fn journal_bounds(&mut self) -> Result<Option<(u64, u64)>, StorageError> {
        let first = self.0.journal.keys().next();
        let last = self.0.journal.keys().next_back();
        Ok(first.zip(last).map(|(f, l)| (*f, *l)))
    }

    fn journal_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        for (index, record) in &self.0.journal {
            visit(&index.to_be_bytes(), &record.encode())?;
        }
        Ok(())
    }
}

/// A read of the shared state, holding its lock.
struct MemLocked<'a> {
    state: MutexGuard<'a, MemState>,
}

impl StorePath for MemLocked<'_> {
    fn path(&self) -> &Path {
        Path::new(MEMORY_PATH)
    }
}

/// One write in progress, with the undo log that rolls it back.
struct MemTxn<'a> {
    state: &'a mut MemState,
    undo: Vec<Undo>,
    ops: u64,
    fail_at_op: Option<u64>,
}

enum Undo {
    HardState(HardState),
    Membership(MembershipRecord),
    Snapshot(SnapshotMeta),
    Sm(SmMeta),
    Log(u64, Option<Entry>),
    Kv(Vec<u8>, Option<KvRecord>),
    Session(u64, Option<SessionRecord>),
    Change((u64, u32), Option<Change>),
    JournalState(JournalState),
    Journal(u64, Option<JournalRecord>),
    Tables(
        BTreeMap<Vec<u8>, KvRecord>,
        BTreeMap<u64, SessionRecord>,
        BTreeMap<u64, JournalRecord>,
    ),
}

impl MemTxn<'_> {
    /// Counts a primitive change, failing at the injected one.
    fn op(&mut self) -> Result<(), StorageError> {
        let n = self.ops;
        self.ops += 1;
        if self.fail_at_op == Some(n) {
            return Err(StorageError::Injected {
                what: "write failed midway",
            });
        }
        Ok(())
    }

    fn rollback(&mut self) {
        let state = &mut *self.state;
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::HardState(v) => state.hard_state = v,
                Undo::Membership(v) => state.membership = v,
                Undo::Snapshot(v) => state.snapshot = v,
                Undo::Sm(v) => state.sm = v,
                Undo::Log(k, v) => restore(&mut state.log, k, v),
                Undo::Kv(k, v) => restore(&mut state.kv, k, v),
                Undo::Session(k, v) => restore(&mut state.sessions, k, v),
                Undo::Change(k, v) => restore(&mut state.changes, k, v),
                Undo::JournalState(v) => state.journal_state = v,
                Undo::Journal(k, v) => restore(&mut state.journal, k, v),
                Undo::Tables(kv, sessions, journal) => {
                    state.kv = kv;
                    state.sessions = sessions;
                    state.journal = journal;
                }
            }
        }
    }

    fn swap_tables(
        &mut self,
        kv: BTreeMap<Vec<u8>, KvRecord>,
        sessions: BTreeMap<u64, SessionRecord>,
        journal: BTreeMap<u64, JournalRecord>,
    ) {
        let old_kv = std::mem::replace(&mut self.state.kv, kv);
        let old_sessions = std::mem::replace(&mut self.state.sessions, sessions);
        let old_journal = std::mem::replace(&mut self.state.journal, journal);
        self.undo
            .push(Undo::Tables(old_kv, old_sessions, old_journal));
    }
}

fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
    match value {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
}

macro_rules! delegate_reads {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, StorageError> {
            MemRead(&*self.state).$name($($arg),*)
        })*
    };
}

impl StorePath for MemTxn<'_> {
    fn path(&self) -> &Path {
        Path::new(MEMORY_PATH)
    }
}

/// The reads of both halves, answered from the state behind `self.state`.
macro_rules! delegate_store_reads {
    ($t:ty) => {
impl LogRead for $t {
    delegate_reads! {
        hard_state() -> HardState;
        snapshot_meta() -> SnapshotMeta;
        log_bounds() -> Option<(LogIndex, LogIndex)>;
        log_term(index: LogIndex) -> Option<Term>;
        log_len() -> u64;
        log_entries(lo: LogIndex, hi: LogIndex, bytes_max: usize) -> Vec<Entry>;
        log_scan_terms(visit: &mut dyn FnMut(LogIndex, Term) -> Result<(), StorageError>) -> ();
    }
}

impl StateRead for $t {
    delegate_reads! {
        membership() -> MembershipRecord;
        sm_meta() -> SmMeta;
        kv_get(key: &[u8]) -> Option<KvRecord>;
        kv_range(prefix: &[u8], after: Option<&[u8]>, limit: usize, bytes_max: usize) -> KvPage;
        kv_scan(visit: &mut RecordVisitor<'_>) -> ();
        session(client_id: u64) -> Option<SessionRecord>;
        session_scan(visit: &mut RecordVisitor<'_>) -> ();
        changes_after(revision: u64, limit: usize) -> (Vec<Change>, bool);
        journal_state() -> JournalState;
        journal_range(from: u64, limit: usize, bytes_max: usize) -> Vec<(u64, JournalRecord)>;
        journal_bounds() -> Option<(u64, u64)>;
        journal_scan(visit: &mut RecordVisitor<'_>) -> ();
    }
}
    };
}

delegate_store_reads!(MemTxn<'_>);
delegate_store_reads!(MemLocked<'_>);

impl LogWrite for MemTxn<'_> {
    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.op()?;
        let old = std::mem::replace(&mut self.state.hard_state, *hard_state);
        self.undo.push(Undo::HardState(old));
        Ok(())
    }

    fn set_snapshot_meta(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.op()?;
        let old = std::mem::replace(&mut self.state.snapshot, meta.clone());
        self.undo.push(Undo::Snapshot(old));
        Ok(())
    }

    fn log_append(&mut self, entry: &Entry) -> Result<(), StorageError> {
        self.op()?;
        let old = self.state.log.insert(entry.index.0, entry.clone());
        self.undo.push(Undo::Log(entry.index.0, old));
        Ok(())
    }

    fn log_remove_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.op()?;
        let removed = self.state.log.split_off(&from.0);
        for (index, entry) in removed {
            self.undo.push(Undo::Log(index, Some(entry)));
        }
        Ok(())
    }

    fn log_remove_through(
        &mut self,
        through: LogIndex,
    ) -> Result<Option<(LogIndex, Membership)>, StorageError> {
        self.op()?;
        let kept = self.state.log.split_off(&(through.0 + 1));
        let removed = std::mem::replace(&mut self.state.log, kept);
        let mut config = None;
        for (index, entry) in removed {
            if let EntryPayload::Config(m) = &entry.payload {
                config = Some((entry.index, m.clone()));
            }
            self.undo.push(Undo::Log(index, Some(entry)));
        }
        Ok(config)
    }
}

impl StateWrite for MemTxn<'_> {
    fn set_membership(&mut self, record: &MembershipRecord) -> Result<(), StorageError> {
        self.op()?;
        let old = std::mem::replace(&mut self.state.membership, record.clone());
        self.undo.push(Undo::Membership(old));
        Ok(())
    }

    fn set_sm_meta(&mut self, meta: &SmMeta) -> Result<(), StorageError> {
        self.op()?;
        let old = std::mem::replace(&mut self.state.sm, meta.clone());
        self.undo.push(Undo::Sm(old));
        Ok(())
    }

    fn kv_put(&mut self, key: &[u8], record: &KvRecord) -> Result<(), StorageError> {
        self.op()?;
        let old = self.state.kv.insert(key.to_vec(), record.clone());
        self.undo.push(Undo::Kv(key.to_vec(), old));
        Ok(())
    }

    fn kv_remove(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.op()?;
        let old = self.state.kv.remove(key);
        self.undo.push(Undo::Kv(key.to_vec(), old));
        Ok(())
    }

    fn session_put(&mut self, client_id: u64, record: &SessionRecord) -> Result<(), StorageError> {
        self.op()?;
        let old = self.state.sessions.insert(client_id, record.clone());
        self.undo.push(Undo::Session(client_id, old));
        Ok(())
    }

    fn session_remove(&mut self, client_id: u64) -> Result<(), StorageError> {
        self.op()?;
        let old = self.state.sessions.remove(&client_id);
        self.undo.push(Undo::Session(client_id, old));
        Ok(())
    }

    fn change_put(&mut self, change: &Change) -> Result<(), StorageError> {
        self.op()?;
        let key = (change.revision, change.sub);
        let old = self.state.changes.insert(key, change.clone());
        self.undo.push(Undo::Change(key, old));
        Ok(())
    }

    fn changes_remove_through(&mut self, revision: u64) -> Result<(), StorageError> {
        self.op()?;
        let kept = match revision.checked_add(1) {
            Some(from) => self.state.changes.split_off(&(from, 0)),
            None => BTreeMap::new(),
        };
        let removed = std::mem::replace(&mut self.state.changes, kept);
        for (key, change) in removed {
            self.undo.push(Undo::Change(key, Some(change)));
        }
        Ok(())
    }

    fn set_journal_state(&mut self, state: &JournalState) -> Result<(), StorageError> {
        self.op()?;
        let old = std::mem::replace(&mut self.state.journal_state, state.clone());
        self.undo.push(Undo::JournalState(old));
        Ok(())
    }

    fn journal_put(&mut self, index: u64, record: &JournalRecord) -> Result<(), StorageError> {
        self.op()?;
        let old = self.state.journal.insert(index, record.clone());
        self.undo.push(Undo::Journal(index, old));
        Ok(())
    }

    fn journal_remove_through(&mut self, index: u64) -> Result<(), StorageError> {
        self.op()?;
        let kept = match index.checked_add(1) {
            Some(from) => self.state.journal.split_off(&from),
            None => BTreeMap::new(),
        };
        let removed = std::mem::replace(&mut self.state.journal, kept);
        for (index, record) in removed {
            self.undo.push(Undo::Journal(index, Some(record)));
        }
        Ok(())
    }
}

/// A bare state half, for tests of code written on the primitives (the state machine's
/// overlay): each `write` is a transaction of its own, never rolled back.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemTables(MemState);

#[cfg(test)]
impl MemTables {
    pub(crate) fn read(&self) -> Box<dyn StateRead + '_> {
        Box::new(MemRead(&self.0))
    }

    pub(crate) fn write(&mut self) -> Box<dyn StateWrite + '_> {
        Box::new(MemTxn {
            state: &mut self.0,
            undo: Vec::new(),
            ops: 0,
            fail_at_op: None,
        })
    }
}

//! `RedbStorage`: one redb database per node (`<data dir>/regent.redb`) holding the log, the
//! hard state, the membership, the snapshot prefix, the KV state machine, the sessions, the
//! change feed and the identity of the node that owns it.
//!
//! Invariant: every change is one redb write transaction; a batch (and every other write that a
//! caller is told about) commits with `Durability::Immediate` before it returns. After any write
//! error the handle refuses writes until `reload` has reopened the file, because redb itself
//! refuses them after a failed commit and the commit's outcome is then unknown.

use super::engine;
use super::error::StorageError;
use super::recovery;
use super::snapshot::{self, ChunkStream, RecordCursor, SnapshotHeader, SnapshotSource};
use super::state::{
    self, Change, JournalRecord, JournalState, KvRecord, MembershipRecord, SessionRecord, SmMeta,
    StateReader,
};
use super::store::{
    decode_entry, decode_row, encode_entry, encode_row, entry_config, entry_term, kv_range_start,
    KvPage, LogRead, LogWrite, RecordVisitor, StateRead, StateWrite, StorePath,
};
use super::{
    Applied, ApplyMode, Batch, ChangePage, Identity, InstallProgress, JournalPage, KeyValue,
    LogState, LogStorage, Recovered, SnapshotMeta, StateBase, StateDigest, StateFlush,
    StateMachine, StorageOptions, VerifyOnOpen,
};
use redb::{
    Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableError, Value, WriteTransaction,
};
use regent_raft::{Entry, HardState, LogIndex, Membership, NodeId, Term};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The database file inside a node's data directory.
pub const DB_FILE_NAME: &str = "regent.redb";
/// Beside the database while it is closed cleanly (`RedbStorage::close`); removed on open,
/// before anything is written. Its absence makes `VerifyOnOpen::Auto` check every page.
pub const CLEAN_MARKER_NAME: &str = "regent.redb.clean";
/// The layout of the tables below. A file of another version is refused, never converted.
pub const STORAGE_FORMAT_VERSION: u32 = 2;
/// Where a new database is built before it is renamed into place, so that a crash during
/// creation never leaves a half-made `regent.redb`.
const CREATING_FILE_NAME: &str = "regent.redb.creating";
const MAGIC: &[u8] = b"regent storage";

type Bytes = &'static [u8];
/// Identity: "magic", "format_version", "cluster_id", "node_id".
const META: TableDefinition<'static, &str, Bytes> = TableDefinition::new("regent_meta");
const LOG: TableDefinition<'static, u64, Bytes> = TableDefinition::new("log");
const HARD_STATE: TableDefinition<'static, (), Bytes> = TableDefinition::new("hard_state");
const MEMBERSHIP: TableDefinition<'static, (), Bytes> = TableDefinition::new("membership");
const SNAPSHOT: TableDefinition<'static, (), Bytes> = TableDefinition::new("snapshot_meta");
const SM_META: TableDefinition<'static, (), Bytes> = TableDefinition::new("sm_meta");
const KV: TableDefinition<'static, Bytes, Bytes> = TableDefinition::new("kv");
const SESSIONS: TableDefinition<'static, u64, Bytes> = TableDefinition::new("sessions");
const CHANGES: TableDefinition<'static, (u64, u32), Bytes> = TableDefinition::new("changes");
/// A snapshot being received is written into these, then renamed over `kv` and `sessions`.
const KV_STAGING: TableDefinition<'static, Bytes, Bytes> = TableDefinition::new("kv_staging");
const SESSIONS_STAGING: TableDefinition<'static, u64, Bytes> =
    TableDefinition::new("sessions_staging");
/// The host's journal: index → `JournalRecord::encode`, and its summary row.
const JOURNAL: TableDefinition<'static, u64, Bytes> = TableDefinition::new("journal");
const JOURNAL_STATE: TableDefinition<'static, (), Bytes> = TableDefinition::new("journal_state");
const JOURNAL_STAGING: TableDefinition<'static, u64, Bytes> =
    TableDefinition::new("journal_staging");

/// `open` on a field of the store.
macro_rules! table {
    ($self:ident . $field:ident, $def:expr) => {
        open(&mut $self.$field, &$self.src, $def, $self.path)?
    };
}

/// The database handle a storage and its state machine's base share.
pub(crate) type SharedDb = Arc<Mutex<Option<Database>>>;

pub struct RedbStorage {
    path: PathBuf,
    identity: Identity,
    options: StorageOptions,
    /// `None` after a failed write until `reload` reopens the file. Shared with the state
    /// machine's base (`StateBase`), which begins read transactions on the driver's thread;
    /// the lock is held only to begin a transaction (redb's transactions do not borrow the
    /// database), to compact the file, and to close or reopen it.
    db: SharedDb,
    /// The summary of the durable state, as of the last successful write.
    cached: LogState,
    install: Option<snapshot::Receiver>,
    /// The file was closed cleanly before this open: the first open may skip the page check
    /// (`VerifyOnOpen::Auto`); a later reload (after a failed write) never does.
    closed_cleanly: bool,
}

impl RedbStorage {
    /// Opens (creating on first use) the database in `dir` for `identity`, checks it and
    /// returns what it holds.
    pub fn open(
        dir: &Path,
        identity: &Identity,
        options: StorageOptions,
    ) -> Result<(RedbStorage, Recovered), StorageError> {
        options.validate()?;
        identity.validate()?;
        let path = dir.join(DB_FILE_NAME);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(dir, identity)?,
            Err(err) => {
                return Err(StorageError::Open {
                    path,
                    reason: err.to_string(),
                })
            }
        }
        let closed_cleanly = take_clean_marker(dir)?;
        let mut storage = RedbStorage {
            path,
            identity: identity.clone(),
            options,
            db: Arc::default(),
            cached: LogState::default(),
            install: None,
            closed_cleanly,
        };
        let recovered = storage.reload()?;
        Ok((storage, recovered))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the database and leaves the marker that says so, for the next open to skip the
    /// page check (`VerifyOnOpen::Auto`). A store whose last write failed is closed already
    /// and leaves no marker: the next open checks every page. redb's commits are durable
    /// before this, and the marker is written and synced after the database is closed.
    pub fn close(self) -> Result<(), StorageError> {
        let Some(db) = lock(&self.db).take() else {
            return Ok(());
        };
        drop(db);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let marker = dir.join(CLEAN_MARKER_NAME);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&marker)?;
            std::io::Write::write_all(
                &mut file,
                b"regent.redb was closed cleanly; removed when it is opened\n",
            )?;
            file.sync_all()?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| StorageError::Open {
            path: marker,
            reason: format!("cannot write the clean-close marker: {e}"),
        })
    }

    /// The node and cluster this database belongs to.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The file's size and how much of it redb has no use for.
    pub fn file_usage(&self) -> Result<(u64, u64), StorageError> {
        let len = std::fs::metadata(&self.path)
            .map_err(|e| StorageError::redb(&self.path, "stat", e))?
            .len();
        let txn = self.begin_write()?;
        let stats = txn
            .stats()
            .map_err(|e| StorageError::redb(&self.path, "stats", e))?;
        txn.abort()
            .map_err(|e| StorageError::redb(&self.path, "abort", e))?;
        let used = stats.allocated_pages() * stats.page_size() as u64;
        Ok((len, len.saturating_sub(used)))
    }

    /// Compacts the file now, whatever share of it is free (an operator's `regent compact`).
    /// Slow: call it off the commit path. A snapshot being streamed holds a read transaction,
    /// which redb's compaction cannot run past: `busy` says so, and nothing changed.
    pub fn compact_file(&mut self) -> Result<FileCompaction, StorageError> {
        let (before, free_before) = self.file_usage()?;
        let path = self.path.clone();
        let mut guard = lock(&self.db);
        let Some(db) = guard.as_mut() else {
            return Err(StorageError::ReloadRequired { path });
        };
        let mut busy = false;
        // redb compacts a step at a time; a bound keeps a pathological file from looping.
        for _ in 0..64 {
            match db.compact() {
                Ok(true) => {}
                Ok(false) => break,
                Err(redb::CompactionError::TransactionInProgress) => {
                    busy = true;
                    break;
                }
                Err(err) => {
                    *guard = None;
                    return Err(StorageError::redb(&path, "compact the file", err));
                }
            }
        }
        drop(guard);
        let (after, free_after) = self.file_usage()?;
        Ok(FileCompaction {
            bytes_before: before,
            bytes_after: after,
            free_bytes_before: free_before,
            free_bytes_after: free_after,
            busy,
        })
    }

    fn begin_write(&self) -> Result<WriteTransaction, StorageError> {
        match lock(&self.db).as_ref() {
            Some(db) => db
                .begin_write()
                .map_err(|e| StorageError::redb(&self.path, "begin write", e)),
            None => Err(StorageError::ReloadRequired {
                path: self.path.clone(),
            }),
        }
    }

    fn read_txn(&self) -> Result<RedbStore<'_, ReadTransaction>, StorageError> {
        Ok(RedbStore::new(
            begin_read(&self.db, &self.path)?,
            &self.path,
        ))
    }

    /// The handle the state machine's base reads through.
    pub(crate) fn shared(&self) -> SharedDb {
        Arc::clone(&self.db)
    }

    /// Runs `body` in one write transaction committed with `durability`. Any failure aborts
    /// it; a failure that may have touched the file also closes the database until `reload`.
    fn write_txn<T>(
        &mut self,
        durability: Durability,
        body: impl FnOnce(&WriteTransaction, &Path) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let path = self.path.clone();
        let result = (|| {
            let mut txn = self.begin_write()?;
            txn.set_durability(durability)
                .map_err(|e| StorageError::redb(&path, "set durability", e))?;
            match body(&txn, &path) {
                Ok(value) => {
                    txn.commit()
                        .map_err(|e| StorageError::redb(&path, "commit", e))?;
                    Ok(value)
                }
                Err(err) => {
                    // The error to report is the body's; an abort failure adds nothing to it.
                    let _ = txn.abort();
                    Err(err)
                }
            }
        })();
        if let Err(err) = &result {
            if err.requires_reload() {
                self.install = None;
                *lock(&self.db) = None;
            }
        }
        result
    }
}

/// The lock of the shared handle; a panic while it was held leaves it usable.
fn lock(db: &Mutex<Option<Database>>) -> MutexGuard<'_, Option<Database>> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn begin_read(db: &Mutex<Option<Database>>, path: &Path) -> Result<ReadTransaction, StorageError> {
    match lock(db).as_ref() {
        Some(db) => db
            .begin_read()
            .map_err(|e| StorageError::redb(path, "begin read", e)),
        None => Err(StorageError::ReloadRequired {
            path: path.to_path_buf(),
        }),
    }
}

/// Runs `read` over the state half of a shared database, in one read transaction.
pub(crate) fn read_shared<T>(
    db: &Mutex<Option<Database>>,
    path: &Path,
    read: impl FnOnce(&mut dyn StateRead) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    read(&mut RedbStore::new(begin_read(db, path)?, path))
}

/// Builds a new database aside, then renames it into place.
fn create(dir: &Path, identity: &Identity) -> Result<(), StorageError> {
    let path = dir.join(DB_FILE_NAME);
    let creating = dir.join(CREATING_FILE_NAME);
    let io = |op: &'static str| {
        move |e: std::io::Error| match read_only(dir, &e) {
            Some(err) => err,
            None => StorageError::redb(&path_of(dir), op, e),
        }
    };
    std::fs::create_dir_all(dir).map_err(io("create the data directory"))?;
    // A leftover from a crash during an earlier creation: it never held any data.
    match std::fs::remove_file(&creating) {
        Ok(()) => {
            tracing::warn!(path = %creating.display(), "removed an unfinished database creation")
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io("remove an unfinished creation")(err)),
    }
    {
        let db = Database::create(&creating).map_err(|e| {
            match &e {
                redb::DatabaseError::Storage(redb::StorageError::Io(io)) => read_only(dir, io),
                _ => None,
            }
            .unwrap_or_else(|| StorageError::redb(&creating, "create the database", e))
        })?;
        let txn = db
            .begin_write()
            .map_err(|e| StorageError::redb(&creating, "begin write", e))?;
        let fail = |e: redb::Error| StorageError::redb(&creating, "initialise the tables", e);
        {
            let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
            let version = STORAGE_FORMAT_VERSION.to_le_bytes();
            let node = identity.node_id.0.to_le_bytes();
            for (key, value) in [
                ("magic", MAGIC),
                ("format_version", &version[..]),
                ("cluster_id", identity.cluster_id.as_bytes()),
                ("node_id", &node[..]),
            ] {
                meta.insert(key, value).map_err(|e| fail(e.into()))?;
            }
            let mut store = RedbStore::new(&txn, &creating);
            store.set_hard_state(&HardState::default())?;
            store.set_membership(&MembershipRecord::default())?;
            store.set_snapshot_meta(&SnapshotMeta::default())?;
            store.set_sm_meta(&SmMeta::default())?;
            store.set_journal_state(&JournalState::default())?;
            // Every table exists from the start, so that a missing one means damage.
            table!(store.log, LOG);
            table!(store.kv, KV);
            table!(store.sessions, SESSIONS);
            table!(store.changes, CHANGES);
            table!(store.journal, JOURNAL);
        }
        txn.commit()
            .map_err(|e| StorageError::redb(&creating, "commit the new database", e))?;
    }
    std::fs::rename(&creating, &path).map_err(io("rename the new database into place"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the data directory"))?;
    Ok(())
}

fn path_of(dir: &Path) -> PathBuf {
    dir.join(DB_FILE_NAME)
}

/// The error for a write refused because `dir` is on a read-only file system, naming the
/// directory rather than the step that happened to write first.
fn read_only(dir: &Path, err: &std::io::Error) -> Option<StorageError> {
    (err.raw_os_error() == Some(libc::EROFS)).then(|| StorageError::ReadOnly {
        dir: dir.to_path_buf(),
    })
}

/// Removes the clean-close marker from `dir`, before the database is opened for writing (a
/// crash after this open must not find it); whether it was there.
fn take_clean_marker(dir: &Path) -> Result<bool, StorageError> {
    let marker = dir.join(CLEAN_MARKER_NAME);
    match std::fs::remove_file(&marker) {
        Ok(()) => {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| marker_error(&marker, e))?;
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) if err.raw_os_error() == Some(libc::EROFS) => Err(StorageError::ReadOnly {
            dir: dir.to_path_buf(),
        }),
        Err(err) => Err(marker_error(&marker, err)),
    }
}

fn marker_error(marker: &Path, err: std::io::Error) -> StorageError {
    StorageError::Open {
        path: marker.to_path_buf(),
        reason: format!("cannot remove the clean-close marker: {err}"),
    }
}

/// Opens the file with redb, turning its errors into ones that say what the file is.
fn open_db(path: &Path, options: &StorageOptions, verify: bool) -> Result<Database, StorageError> {
    let result = Database::builder()
        .set_cache_size(options.cache_bytes)
        // With the check on, redb verifies every page on open and rolls a crashed file back to
        // its last durable commit (the normal recovery of a crashed node); without it, redb
        // does the latter only after an unclean shutdown.
        .set_check_integrity_on_open(verify)
        .open(path);
    result.map_err(|err| {
        let reason = err.to_string();
        match err {
            redb::DatabaseError::DatabaseAlreadyOpen => StorageError::Open {
                path: path.to_path_buf(),
                reason: "it is already open in another process (is another regent using this data directory?)".into(),
            },
            redb::DatabaseError::UpgradeRequired(version) => StorageError::Foreign {
                path: path.to_path_buf(),
                reason: format!("a redb file of format {version}, which this build cannot read"),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.raw_os_error() == Some(libc::EROFS) =>
            {
                StorageError::ReadOnly {
                    dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                }
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                StorageError::Foreign {
                    path: path.to_path_buf(),
                    reason: format!("not a redb database file ({io})"),
                }
            }
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(problem)) => {
                StorageError::Damaged {
                    path: path.to_path_buf(),
                    problem: format!("redb reports corruption: {problem}"),
                }
            }
            other => StorageError::redb(path, "open", other),
        }
        .or_reason(reason)
    })
}

trait OrReason {
    fn or_reason(self, reason: String) -> StorageError;
}

impl OrReason for StorageError {
    /// Keeps redb's own words when the mapping above found nothing better.
    fn or_reason(self, reason: String) -> StorageError {
        match self {
            StorageError::Io { path, .. } => StorageError::Open { path, reason },
            other => other,
        }
    }
}

/// Refuses a file that is not this node's regent database.
fn check_identity(db: &Database, path: &Path, identity: &Identity) -> Result<(), StorageError> {
    let foreign = |reason: String| StorageError::Foreign {
        path: path.to_path_buf(),
        reason,
    };
    let txn = db
        .begin_read()
        .map_err(|e| StorageError::redb(path, "begin read", e))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(foreign(
                "it has no regent_meta table (a redb database of another program?)".into(),
            ))
        }
        Err(TableError::TableTypeMismatch { .. }) => {
            return Err(foreign("its regent_meta table has the wrong types".into()))
        }
        Err(err) => return Err(StorageError::redb(path, "open the meta table", err)),
    };
    let field = |name: &str| -> Result<Vec<u8>, StorageError> {
        match meta.get(name) {
            Ok(Some(value)) => Ok(value.value().to_vec()),
            Ok(None) => Err(foreign(format!("its identity has no {name}"))),
            Err(err) => Err(StorageError::redb(path, "read the identity", err)),
        }
    };
    if field("magic")? != MAGIC {
        return Err(foreign("its regent_meta table has the wrong magic".into()));
    }
    let version = field("format_version")?;
    let version = u32::from_le_bytes(
        version
            .as_slice()
            .try_into()
            .map_err(|_| foreign("its format version is malformed".into()))?,
    );
    if version != STORAGE_FORMAT_VERSION {
        return Err(StorageError::FormatVersion {
            path: path.to_path_buf(),
            found: version,
            supported: STORAGE_FORMAT_VERSION,
        });
    }
    let cluster_id = String::from_utf8(field("cluster_id")?)
        .map_err(|_| foreign("its cluster id is not UTF-8".into()))?;
    let node_id = field("node_id")?;
    let node_id = NodeId(u64::from_le_bytes(
        node_id
            .as_slice()
            .try_into()
            .map_err(|_| foreign("its node id is malformed".into()))?,
    ));
    let found = Identity {
        cluster_id,
        node_id,
    };
    if &found != identity {
        return Err(StorageError::WrongIdentity {
            path: path.to_path_buf(),
            found: found.to_string(),
            expected: identity.to_string(),
        });
    }
    Ok(())
}

impl LogStorage for RedbStorage {
    fn state(&self) -> &LogState {
        &self.cached
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<Vec<Applied>, StorageError> {
        let cached = self.cached.clone();
        let options = self.options.clone();
        let durability = if super::batch_must_sync(&cached, batch) {
            Durability::Immediate
        } else {
            Durability::None
        };
        match options.apply_mode {
            ApplyMode::WithLog => {
                let (applied, next) = self.write_txn(durability, |txn, path| {
                    let mut store = RedbStore::new(txn, path);
                    engine::validate(&mut store, &cached, batch, &options)?;
                    let next = engine::write_log(&mut store, &cached, batch)?;
                    state::apply(&mut store, &next, &batch.committed, &options)
                })?;
                self.cached = next;
                Ok(applied)
            }
            ApplyMode::Deferred => {
                let next = self.write_txn(durability, |txn, path| {
                    let mut store = RedbStore::new(txn, path);
                    engine::validate(&mut store, &cached, batch, &options)?;
                    engine::write_log(&mut store, &cached, batch)
                })?;
                self.cached = next.clone();
                if batch.committed.is_empty() {
                    return Ok(Vec::new());
                }
                // Made durable by the next durable commit; lost by a crash before it, and then
                // redone from the log, which still holds these entries.
                let (applied, next) = self.write_txn(Durability::None, |txn, path| {
                    state::apply(
                        &mut RedbStore::new(txn, path),
                        &next,
                        &batch.committed,
                        &options,
                    )
                })?;
                self.cached = next;
                Ok(applied)
            }
        }
    }

    fn reload(&mut self) -> Result<Recovered, StorageError> {
        self.install = None;
        // Close first: redb holds a lock on the file and must repair after a failed commit.
        *lock(&self.db) = None;
        let verify = match self.options.verify_on_open {
            VerifyOnOpen::Always => true,
            VerifyOnOpen::Never => false,
            VerifyOnOpen::Auto => !std::mem::take(&mut self.closed_cleanly),
        };
        if verify {
            tracing::info!(path = %self.path.display(), "checking every page of the database (it was not closed cleanly, or storage.verify_on_open says always)");
        }
        let db = open_db(&self.path, &self.options, verify)?;
        check_identity(&db, &self.path, &self.identity)?;
        *lock(&self.db) = Some(db);
        let recovered = {
            let mut store = self.read_txn()?;
            recovery::recover(&mut store, &self.identity)
        };
        match recovered {
            Ok(recovered) => {
                self.cached = recovered.state.clone();
                Ok(recovered)
            }
            Err(err) => {
                *lock(&self.db) = None;
                Err(err)
            }
        }
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        engine::entries(&mut self.read_txn()?, &self.cached, lo, hi, bytes_max)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        // Index 0 and the snapshot's index need no read transaction (nor an open database).
        if let Some(term) = engine::term_without_log(&self.cached, index) {
            return Ok(term);
        }
        engine::term(&mut self.read_txn()?, &self.cached, index)
    }

    fn compact_log(&mut self, through: LogIndex) -> Result<(), StorageError> {
        let cached = self.cached.clone();
        self.cached = self.write_txn(Durability::Immediate, |txn, path| {
            engine::compact_log(&mut RedbStore::new(txn, path), &cached, through)
        })?;
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn SnapshotSource>, StorageError> {
        let mut store = self.read_txn()?;
        let sm = store.sm_meta()?;
        let membership = store.membership()?;
        let header = SnapshotHeader {
            meta: SnapshotMeta {
                last_included_index: sm.applied,
                last_included_term: sm.applied_term,
                membership: membership.membership,
            },
            revision: sm.revision,
            log_time_ms: sm.log_time_ms,
            sweep_bucket: sm.sweep_bucket,
            session_count: sm.session_count,
            journal: store.journal_state()?,
        };
        let path = self.path.clone();
        let open_err =
            |e: TableError| StorageError::redb(&path, "open a table for the snapshot", e);
        // The read transaction pins this version of the database while the chunks are read.
        let cursor = RedbCursor {
            kv: store.src.open_table(KV).map_err(open_err)?,
            sessions: store.src.open_table(SESSIONS).map_err(open_err)?,
            journal: store.src.open_table(JOURNAL).map_err(open_err)?,
            path: self.path.clone(),
        };
        Ok(Box::new(ChunkStream::new(
            header,
            cursor,
            self.options.snapshot_chunk_bytes,
        )))
    }

    fn install_chunk(&mut self, chunk: &[u8]) -> Result<InstallProgress, StorageError> {
        let next_seq = self.install.as_ref().map(|r| r.next_seq);
        let placed = snapshot::place_chunk(chunk, next_seq);
        let frame = match placed {
            Err(err) => {
                self.install = None;
                return Err(err);
            }
            Ok(snapshot::Placed::Next(frame)) => frame,
            Ok(snapshot::Placed::Start(receiver)) => {
                self.install = None;
                engine::check_install(&mut self.read_txn()?, &self.cached, &receiver.header.meta)?;
                // Staging tables left by an install that never finished are dropped here, and
                // only here: they never were part of the state.
                self.write_txn(Durability::None, |txn, path| {
                    let fail =
                        |e: TableError| StorageError::redb(path, "reset the staging tables", e);
                    txn.delete_table(KV_STAGING).map_err(fail)?;
                    txn.delete_table(SESSIONS_STAGING).map_err(fail)?;
                    txn.delete_table(JOURNAL_STAGING).map_err(fail)?;
                    txn.open_table(KV_STAGING).map_err(fail)?;
                    txn.open_table(SESSIONS_STAGING).map_err(fail)?;
                    txn.open_table(JOURNAL_STAGING).map_err(fail)?;
                    Ok(())
                })?;
                self.install = Some(*receiver);
                return Ok(InstallProgress::Continue { chunks: 1 });
            }
        };
        let mut receiver = self
            .install
            .take()
            .expect("place_chunk found an install in progress");
        match receiver.step(&frame)? {
            snapshot::Step::Kv(records) => {
                // Staged without an fsync: the final swap's durable commit makes them durable.
                self.write_txn(Durability::None, |txn, path| {
                    let fail =
                        |e: redb::Error| StorageError::redb(path, "stage snapshot records", e);
                    let mut table = txn.open_table(KV_STAGING).map_err(|e| fail(e.into()))?;
                    for (key, value) in records {
                        table.insert(key, value).map_err(|e| fail(e.into()))?;
                    }
                    Ok(())
                })?;
            }
            snapshot::Step::Sessions(records) => {
                self.write_txn(Durability::None, |txn, path| {
                    let fail =
                        |e: redb::Error| StorageError::redb(path, "stage snapshot sessions", e);
                    let mut table = txn
                        .open_table(SESSIONS_STAGING)
                        .map_err(|e| fail(e.into()))?;
                    for (id, value) in records {
                        table.insert(id, value).map_err(|e| fail(e.into()))?;
                    }
                    Ok(())
                })?;
            }
            snapshot::Step::Journal(records) => {
                self.write_txn(Durability::None, |txn, path| {
                    let fail =
                        |e: redb::Error| StorageError::redb(path, "stage snapshot journal", e);
                    let mut table = txn
                        .open_table(JOURNAL_STAGING)
                        .map_err(|e| fail(e.into()))?;
                    for (index, value) in records {
                        table.insert(index, value).map_err(|e| fail(e.into()))?;
                    }
                    Ok(())
                })?;
            }
            snapshot::Step::End => {
                let cached = self.cached.clone();
                let header = receiver.header.clone();
                let next = self.write_txn(Durability::Immediate, |txn, path| {
                    let next =
                        engine::finish_install(&mut RedbStore::new(txn, path), &cached, &header)?;
                    let fail = |e: TableError| StorageError::redb(path, "swap in the snapshot", e);
                    txn.delete_table(KV).map_err(fail)?;
                    txn.rename_table(KV_STAGING, KV).map_err(fail)?;
                    txn.delete_table(SESSIONS).map_err(fail)?;
                    txn.rename_table(SESSIONS_STAGING, SESSIONS).map_err(fail)?;
                    txn.delete_table(JOURNAL).map_err(fail)?;
                    txn.rename_table(JOURNAL_STAGING, JOURNAL).map_err(fail)?;
                    Ok(next)
                })?;
                self.cached = next.clone();
                return Ok(InstallProgress::Installed(Box::new(next)));
            }
        }
        let chunks = receiver.next_seq;
        self.install = Some(receiver);
        Ok(InstallProgress::Continue { chunks })
    }

    fn install_abort(&mut self) {
        self.install = None;
    }

    fn state_machine(&self) -> StateMachine {
        let base = StateBase::redb(self.shared(), self.path.clone());
        StateMachine::new(base, self.cached.clone(), self.options.clone())
    }

    fn write_state(&mut self, flush: &StateFlush) -> Result<(), StorageError> {
        let cached = self.cached.clone();
        let durability = if flush.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.cached = self.write_txn(durability, |txn, path| {
            engine::write_state(&mut RedbStore::new(txn, path), &cached, flush)
        })?;
        Ok(())
    }

    fn maybe_compact_file(&mut self) -> Result<bool, StorageError> {
        let (len, free) = self.file_usage()?;
        let enough = free >= self.options.compact_free_bytes_min
            && free.saturating_mul(100)
                >= self.options.compact_free_percent_min.saturating_mul(len);
        if !enough {
            return Ok(false);
        }
        let path = self.path.clone();
        let mut guard = lock(&self.db);
        let Some(db) = guard.as_mut() else {
            return Err(StorageError::ReloadRequired { path });
        };
        // redb compacts a step at a time; a bound keeps a pathological file from looping.
        let mut compacted = false;
        for _ in 0..64 {
            match db.compact() {
                Ok(true) => compacted = true,
                Ok(false) => break,
                // A snapshot being streamed holds a read transaction: try again later.
                Err(redb::CompactionError::TransactionInProgress) => break,
                Err(err) => {
                    *guard = None;
                    return Err(StorageError::redb(&path, "compact the file", err));
                }
            }
        }
        Ok(compacted)
    }
}

impl StateReader for RedbStorage {
    fn kv_get(&self, key: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        state::kv_get(&mut self.read_txn()?, key)
    }

    fn kv_range(&self, prefix: &[u8], limit: u32) -> Result<(Vec<KeyValue>, bool), StorageError> {
        state::kv_range(&mut self.read_txn()?, prefix, limit)
    }

    fn changes_after(&self, revision: u64, limit: usize) -> Result<ChangePage, StorageError> {
        state::changes_after(&mut self.read_txn()?, revision, limit)
    }

    fn journal_page(
        &self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<JournalPage, StorageError> {
        state::journal_page(&mut self.read_txn()?, from, limit, bytes_max)
    }

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, StorageError> {
        self.read_txn()?.session(client_id)
    }

    fn digest(&self) -> Result<StateDigest, StorageError> {
        state::digest(&mut self.read_txn()?)
    }
}

/// What `RedbStorage::compact_file` did: the file's length and free bytes before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileCompaction {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub free_bytes_before: u64,
    pub free_bytes_after: u64,
    /// A read transaction (a snapshot being streamed) kept redb from compacting.
    pub busy: bool,
}

/// Opening tables, for a read transaction or a write transaction.
trait Source {
    type Table<K: Key + 'static, V: Value + 'static>: ReadableTable<K, V>;
    fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        definition: TableDefinition<'static, K, V>,
    ) -> Result<Self::Table<K, V>, TableError>;
}

impl Source for ReadTransaction {
    type Table<K: Key + 'static, V: Value + 'static> = redb::ReadOnlyTable<K, V>;
    fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        definition: TableDefinition<'static, K, V>,
    ) -> Result<Self::Table<K, V>, TableError> {
        ReadTransaction::open_table(self, definition)
    }
}

impl<'t> Source for &'t WriteTransaction {
    type Table<K: Key + 'static, V: Value + 'static> = redb::Table<'t, K, V>;
    fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        definition: TableDefinition<'static, K, V>,
    ) -> Result<Self::Table<K, V>, TableError> {
        WriteTransaction::open_table(self, definition)
    }
}

/// The tables of one transaction, each opened on first use.
struct RedbStore<'p, S: Source> {
    src: S,
    path: &'p Path,
    log: Option<S::Table<u64, Bytes>>,
    hard_state: Option<S::Table<(), Bytes>>,
    membership: Option<S::Table<(), Bytes>>,
    snapshot: Option<S::Table<(), Bytes>>,
    sm: Option<S::Table<(), Bytes>>,
    kv: Option<S::Table<Bytes, Bytes>>,
    sessions: Option<S::Table<u64, Bytes>>,
    changes: Option<S::Table<(u64, u32), Bytes>>,
    journal: Option<S::Table<u64, Bytes>>,
    journal_state: Option<S::Table<(), Bytes>>,
}

impl<'p, S: Source> RedbStore<'p, S> {
    fn new(src: S, path: &'p Path) -> Self {
        RedbStore {
            src,
            path,
            log: None,
            hard_state: None,
            membership: None,
            snapshot: None,
            sm: None,
            kv: None,
            sessions: None,
            changes: None,
            journal: None,
            journal_state: None,
        }
    }
}

fn open<'s, S: Source, K: Key + 'static, V: Value + 'static>(
    slot: &'s mut Option<S::Table<K, V>>,
    src: &S,
    definition: TableDefinition<'static, K, V>,
    path: &Path,
) -> Result<&'s mut S::Table<K, V>, StorageError> {
    if slot.is_none() {
        let table = src.open_table(definition).map_err(|err| match err {
            TableError::TableDoesNotExist(name) => {
                StorageError::damaged(path, format!("the {name} table is missing"))
            }
            err => StorageError::redb(path, "open a table", err),
        })?;
        *slot = Some(table);
    }
    Ok(slot.as_mut().expect("opened above"))
}

fn read_row<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<(), Bytes>,
    path: &Path,
    what: &str,
) -> Result<T, StorageError> {
    let guard = table
        .get(())
        .map_err(|e| StorageError::redb(path, "read a row", e))?
        .ok_or_else(|| StorageError::damaged(path, format!("the {what} row is missing")))?;
    decode_row(guard.value()).map_err(|e| StorageError::damaged(path, format!("{what}: {e}")))
}

fn read_err(path: &Path) -> impl Fn(redb::StorageError) -> StorageError + '_ {
    move |e| StorageError::redb(path, "read", e)
}

impl<S: Source> StorePath for RedbStore<'_, S> {
    fn path(&self) -> &Path {
        self.path
    }
}

impl<S: Source> LogRead for RedbStore<'_, S> {
    fn hard_state(&mut self) -> Result<HardState, StorageError> {
        read_row(table!(self.hard_state, HARD_STATE), self.path, "hard state")
    }

    fn snapshot_meta(&mut self) -> Result<SnapshotMeta, StorageError> {
        read_row(
            table!(self.snapshot, SNAPSHOT),
            self.path,
            "snapshot metadata",
        )
    }

    fn log_bounds(&mut self) -> Result<Option<(LogIndex, LogIndex)>, StorageError> {
        let path = self.path;
        let log = table!(self.log, LOG);
        let first = log.first().map_err(read_err(path))?.map(|(k, _)| k.value());
        let last = log.last().map_err(read_err(path))?.map(|(k, _)| k.value());
        Ok(first.zip(last).map(|(f, l)| (LogIndex(f), LogIndex(l))))
    }

    fn log_term(&mut self, index: LogIndex) -> Result<Option<Term>, StorageError> {
        let path = self.path;
        let log = table!(self.log, LOG);
        match log.get(index.0).map_err(read_err(path))? {
            None => Ok(None),
            Some(value) => entry_term(value.value())
                .map(Some)
                .map_err(|e| StorageError::damaged(path, format!("log entry {index}: {e}"))),
        }
    }

    fn log_len(&mut self) -> Result<u64, StorageError> {
        let path = self.path;
        redb::ReadableTableMetadata::len(table!(self.log, LOG)).map_err(read_err(path))
    }

    fn log_entries(
        &mut self,
        lo: LogIndex,
        hi: LogIndex,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let path = self.path;
        let log = table!(self.log, LOG);
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in log.range(lo.0..hi.0).map_err(read_err(path))? {
            let (key, value) = item.map_err(read_err(path))?;
            let entry = decode_entry(LogIndex(key.value()), value.value())
                .map_err(|e| StorageError::damaged(path, e))?;
            if !out.is_empty() && bytes + entry.size_bytes() > bytes_max {
                break;
            }
            bytes += entry.size_bytes();
            out.push(entry);
        }
        Ok(out)
    }

    fn log_scan_terms(
        &mut self,
        visit: &mut dyn FnMut(LogIndex, Term) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let path = self.path;
        let log = table!(self.log, LOG);
        for item in log.range::<u64>(..).map_err(read_err(path))? {
            let (key, value) = item.map_err(read_err(path))?;
            let index = LogIndex(key.value());
            let term = entry_term(value.value())
                .map_err(|e| StorageError::damaged(path, format!("log entry {index}: {e}")))?;
            visit(index, term)?;
        }
        Ok(())
    }
}

impl<S: Source> StateRead for RedbStore<'_, S> {
    fn membership(&mut self) -> Result<MembershipRecord, StorageError> {
        read_row(table!(self.membership, MEMBERSHIP), self.path, "membership")
    }

    fn sm_meta(&mut self) -> Result<SmMeta, StorageError> {
        read_row(
            table!(self.sm, SM_META),
            self.path,
            "state-machine metadata",
        )
    }

    fn kv_get(&mut self, key: &[u8]) -> Result<Option<KvRecord>, StorageError> {
        let path = self.path;
        let kv = table!(self.kv, KV);
        match kv.get(key).map_err(read_err(path))? {
            None => Ok(None),
            Some(value) => KvRecord::decode(value.value())
                .map(Some)
                .map_err(|e| StorageError::damaged(path, e)),
        }
    }

    fn kv_range(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<KvPage, StorageError> {
        let path = self.path;
        let kv = table!(self.kv, KV);
        let mut out = Vec::new();
        let mut bytes = 0;
        let range = kv
            .range::<&[u8]>((kv_range_start(prefix, after), Bound::Unbounded))
            .map_err(read_err(path))?;
        for item in range {
            let (key, value) = item.map_err(read_err(path))?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if out.len() >= limit || bytes > bytes_max {
                return Ok((out, true));
            }
            let record =
                KvRecord::decode(value.value()).map_err(|e| StorageError::damaged(path, e))?;
            bytes += key.len() + record.value.len();
            out.push((key.to_vec(), record));
        }
        Ok((out, false))
    }

    fn kv_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let path = self.path;
        let kv = table!(self.kv, KV);
        for item in kv.range::<&[u8]>(..).map_err(read_err(path))? {
            let (key, value) = item.map_err(read_err(path))?;
            visit(key.value(), value.value())?;
        }
        Ok(())
    }

    fn session(&mut self, client_id: u64) -> Result<Option<SessionRecord>, StorageError> {
        let path = self.path;
        let sessions = table!(self.sessions, SESSIONS);
        match sessions.get(client_id).map_err(read_err(path))? {
            None => Ok(None),
            Some(value) => decode_row(value.value())
                .map(Some)
                .map_err(|e| StorageError::damaged(path, format!("session {client_id}: {e}"))),
        }
    }

    fn session_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let path = self.path;
        let sessions = table!(self.sessions, SESSIONS);
        for item in sessions.range::<u64>(..).map_err(read_err(path))? {
            let (key, value) = item.map_err(read_err(path))?;
            visit(&key.value().to_be_bytes(), value.value())?;
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
        let path = self.path;
        let changes = table!(self.changes, CHANGES);
        let mut out = Vec::new();
        for item in changes.range((from, 0u32)..).map_err(read_err(path))? {
            let (_, value) = item.map_err(read_err(path))?;
            if out.len() >= limit {
                return Ok((out, true));
            }
            let change: Change = decode_row(value.value())
                .map_err(|e| StorageError::damaged(path, format!("change: {e}")))?;
            out.push(change);
        }
        Ok((out, false))
    }

    fn journal_state(&mut self) -> Result<JournalState, StorageError> {
        read_row(
            table!(self.journal_state, JOURNAL_STATE),
            self.path,
            "journal state",
        )
    }

    fn journal_range(
        &mut self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<(u64, JournalRecord)>, StorageError> {
        let path = self.path;
        let journal = table!(self.journal, JOURNAL);
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in journal.range(from..).map_err(read_err(path))? {
            let (key, value) = item.map_err(read_err(path))?;
            let record = JournalRecord::decode(value.value()).map_err(|e| {
                StorageError::damaged(path, format!("journal operation {}: {e}", key.value()))
            })?;
            if out.len() >= limit || (!out.is_empty() && bytes + record.op.len() > bytes_max) {
                break;
            }
            bytes += record.op.len();
            out.push((key.value(), record));
        }
        Ok(out)
    }

    fn journal_bounds(&mut self) -> Result<Option<(u64, u64)>, StorageError> {
        let path = self.path;
        let journal = table!(self.journal, JOURNAL);
        let first = journal
            .first()
            .map_err(read_err(path))?
            .map(|(k, _)| k.value());
        let last = journal
            .last()
            .map_err(read_err(path))?
            .map(|(k, _)| k.value());
        Ok(first.zip(last))
    }

    fn journal_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let path = self.path;
        let journal = table!(self.journal, JOURNAL);
        for item in journal.range::<u64>(..).map_err(read_err(path))? {
            let (key, value) = item.map_err(read_err(path))?;
            visit(&key.value().to_be_bytes(), value.value())?;
        }
        Ok(())
    }
}

fn write_err(path: &Path) -> impl Fn(redb::StorageError) -> StorageError + '_ {
    move |e| StorageError::redb(path, "write", e)
}

/// Writes the single row of a one-row table (hard state, membership, snapshot meta, state
/// machine meta).
macro_rules! set_row {
    ($self:ident . $field:ident, $def:expr, $value:expr) => {{
        let path = $self.path;
        let bytes = encode_row($value);
        table!($self.$field, $def)
            .insert((), bytes.as_slice())
            .map_err(write_err(path))?;
        Ok(())
    }};
}

impl LogWrite for RedbStore<'_, &WriteTransaction> {
    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        set_row!(self.hard_state, HARD_STATE, hard_state)
    }

    fn set_snapshot_meta(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        set_row!(self.snapshot, SNAPSHOT, meta)
    }

    fn log_append(&mut self, entry: &Entry) -> Result<(), StorageError> {
        let path = self.path;
        let bytes = encode_entry(entry);
        let old = table!(self.log, LOG)
            .insert(entry.index.0, bytes.as_slice())
            .map_err(write_err(path))?;
        assert!(
            old.is_none(),
            "appends never overwrite: truncation comes first"
        );
        Ok(())
    }

    fn log_remove_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        let path = self.path;
        table!(self.log, LOG)
            .retain_in(from.0.., |_, _| false)
            .map_err(write_err(path))
    }

    fn log_remove_through(
        &mut self,
        through: LogIndex,
    ) -> Result<Option<(LogIndex, Membership)>, StorageError> {
        let path = self.path;
        let mut config = None;
        let mut problem = None;
        table!(self.log, LOG)
            .retain_in(..=through.0, |index, bytes| {
                // The predicate must not panic (it would poison the transaction): errors are
                // carried out of it.
                match entry_config(LogIndex(index), bytes) {
                    Ok(Some(m)) => config = Some((LogIndex(index), m)),
                    Ok(None) => {}
                    Err(e) => problem = Some(e),
                }
                false
            })
            .map_err(write_err(path))?;
        if let Some(problem) = problem {
            return Err(StorageError::damaged(path, problem));
        }
        Ok(config)
    }
}

impl StateWrite for RedbStore<'_, &WriteTransaction> {
    fn set_membership(&mut self, record: &MembershipRecord) -> Result<(), StorageError> {
        set_row!(self.membership, MEMBERSHIP, record)
    }

    fn set_sm_meta(&mut self, meta: &SmMeta) -> Result<(), StorageError> {
        set_row!(self.sm, SM_META, meta)
    }

    fn kv_put(&mut self, key: &[u8], record: &KvRecord) -> Result<(), StorageError> {
        let path = self.path;
        let bytes = record.encode();
        table!(self.kv, KV)
            .insert(key, bytes.as_slice())
            .map_err(write_err(path))?;
        Ok(())
    }

    fn kv_remove(&mut self, key: &[u8]) -> Result<(), StorageError> {
        let path = self.path;
        table!(self.kv, KV).remove(key).map_err(write_err(path))?;
        Ok(())
    }

    fn session_put(&mut self, client_id: u64, record: &SessionRecord) -> Result<(), StorageError> {
        let path = self.path;
        let bytes = encode_row(record);
        table!(self.sessions, SESSIONS)
            .insert(client_id, bytes.as_slice())
            .map_err(write_err(path))?;
        Ok(())
    }

    fn session_remove(&mut self, client_id: u64) -> Result<(), StorageError> {
        let path = self.path;
        table!(self.sessions, SESSIONS)
            .remove(client_id)
            .map_err(write_err(path))?;
        Ok(())
    }

    fn change_put(&mut self, change: &Change) -> Result<(), StorageError> {
        let path = self.path;
        let bytes = encode_row(change);
        table!(self.changes, CHANGES)
            .insert((change.revision, change.sub), bytes.as_slice())
            .map_err(write_err(path))?;
        Ok(())
    }

    fn changes_remove_through(&mut self, revision: u64) -> Result<(), StorageError> {
        let path = self.path;
        table!(self.changes, CHANGES)
            .retain_in(..=(revision, u32::MAX), |_, _| false)
            .map_err(write_err(path))
    }

    fn set_journal_state(&mut self, state: &JournalState) -> Result<(), StorageError> {
        set_row!(self.journal_state, JOURNAL_STATE, state)
    }

    fn journal_put(&mut self, index: u64, record: &JournalRecord) -> Result<(), StorageError> {
        let path = self.path;
        let bytes = record.encode();
        let old = table!(self.journal, JOURNAL)
            .insert(index, bytes.as_slice())
            .map_err(write_err(path))?;
        assert!(old.is_none(), "journal indexes are never reused");
        Ok(())
    }

    fn journal_remove_through(&mut self, index: u64) -> Result<(), StorageError> {
        let path = self.path;
        table!(self.journal, JOURNAL)
            .retain_in(..=index, |_, _| false)
            .map_err(write_err(path))
    }
}

/// The snapshot's view: tables of one read transaction, which they keep alive.
struct RedbCursor {
    kv: redb::ReadOnlyTable<Bytes, Bytes>,
    sessions: redb::ReadOnlyTable<u64, Bytes>,
    journal: redb::ReadOnlyTable<u64, Bytes>,
    path: PathBuf,
}

impl RecordCursor for RedbCursor {
    fn kv_records(
        &mut self,
        after: Option<&[u8]>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<Vec<u8>>), StorageError> {
        let path = &self.path;
        let range = match after {
            None => self.kv.range::<&[u8]>(..),
            Some(after) => self
                .kv
                .range::<&[u8]>((Bound::Excluded(after), Bound::Unbounded)),
        }
        .map_err(read_err(path))?;
        let mut count = 0;
        // Where the last key sits in `out`, to copy it once at the end instead of per record.
        let mut last = None;
        for item in range {
            if out.len() >= bytes_target {
                break;
            }
            let (key, value) = item.map_err(read_err(path))?;
            let key_at = out.len() + 4;
            snapshot::push_record(out, key.value(), value.value());
            last = Some((key_at, key.value().len()));
            count += 1;
        }
        Ok((count, last.map(|(at, len)| out[at..at + len].to_vec())))
    }

    fn session_records(
        &mut self,
        after: Option<u64>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<u64>), StorageError> {
        let path = &self.path;
        let range = match after {
            None => self.sessions.range::<u64>(..),
            Some(after) => self
                .sessions
                .range::<u64>((Bound::Excluded(after), Bound::Unbounded)),
        }
        .map_err(read_err(path))?;
        let mut count = 0;
        let mut last = None;
        for item in range {
            if out.len() >= bytes_target {
                break;
            }
            let (key, value) = item.map_err(read_err(path))?;
            snapshot::push_record(out, &key.value().to_be_bytes(), value.value());
            last = Some(key.value());
            count += 1;
        }
        Ok((count, last))
    }

    fn journal_records(
        &mut self,
        after: Option<u64>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<u64>), StorageError> {
        let path = &self.path;
        let range = match after {
            None => self.journal.range::<u64>(..),
            Some(after) => self
                .journal
                .range::<u64>((Bound::Excluded(after), Bound::Unbounded)),
        }
        .map_err(read_err(path))?;
        let mut count = 0;
        let mut last = None;
        for item in range {
            if out.len() >= bytes_target {
                break;
            }
            let (key, value) = item.map_err(read_err(path))?;
            snapshot::push_record(out, &key.value().to_be_bytes(), value.value());
            last = Some(key.value());
            count += 1;
        }
        Ok((count, last))
    }
}

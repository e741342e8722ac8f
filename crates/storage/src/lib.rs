//! The storage layer: the Raft log, the hard state and the snapshot prefix (the log half), and
//! the replicated state machine (`state`: KV, sessions, the host's journal, the applied
//! membership), persisted in one redb database per node (`RedbStorage`) or modelled in memory
//! for the simulator (`MemStorage`). Both implement `LogStorage` and `StateReader` through the
//! same code: the log engine (`engine`, `recovery`, `snapshot`) and the state machine
//! (`state`), each on its half of the primitives a backend provides (`store`).
//!
//! Invariant kept by every implementation: a `write_batch` either happens entirely or not at
//! all, and once it returns `Ok` it survives a crash. After every write the recovered state
//! satisfies `snapshot index < first index`, a contiguous log with non-decreasing terms, and
//! `snapshot index <= applied <= commit <= last index`.
//!
//! # How a caller writes a Ready
//!
//! 1. A `Ready` carries its write as one [`Batch`] (defined by the core, re-exported here).
//! 2. `storage.write_batch(&ready.batch)`: one transaction, one durable commit. Proposals that
//!    arrive meanwhile wait for the next batch (group commit).
//! 3. Only then send the messages that must follow persistence (vote grants, append acks), and
//!    answer clients with the returned `Applied` results.
//! 4. On an error for which `StorageError::requires_reload` holds, the outcome of the batch is
//!    unknown: call `reload()` and restart the core from the `Recovered` state.

pub mod backup;
mod engine;
mod error;
mod mem;
mod recovery;
mod redb;
mod snapshot;
mod state;
mod store;

pub use backup::{
    BackupHeader, BackupReader, BackupSummary, BackupWriter, Restored, BACKUP_FORMAT_VERSION,
};
pub use error::{StorageError, MEMORY_PATH};
pub use mem::{MemFault, MemStorage};
pub use redb::{
    FileCompaction, RedbStorage, CLEAN_MARKER_NAME, DB_FILE_NAME, STORAGE_FORMAT_VERSION,
};
pub use snapshot::{SnapshotSource, SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_FORMAT_VERSION};
pub use state::JournalRetention;
pub use state::{Applied, ApplyResult, ChangePage, StateDigest, StateReader};
pub use state::{Change, ChangeKind};
pub use state::{
    Command, CommandError, Compare, CompareOp, CompareTarget, KeyValue, Op, Outcome, Proposal,
    Response, SessionSeq, Txn, COMMAND_BYTES_MAX, COMMAND_FORMAT_VERSION, JOURNAL_BATCH_OPS_MAX,
    JOURNAL_OP_BYTES_MAX, KEY_BYTES_MAX, RANGE_BYTES_MAX, RANGE_LIMIT_MAX, TXN_COMPARES_MAX,
    TXN_OPS_MAX, VALUE_BYTES_MAX,
};
pub use state::{JournalMember, JournalOp, JournalPage, JournalState};
pub use state::{
    SessionRecord, SESSIONS_MAX, SESSION_RESULTS_MAX, SESSION_SWEEP_INTERVAL_MS,
    SESSION_TTL_MAX_MS, SESSION_TTL_MIN_MS,
};
pub use state::{StateBase, StateFlush, StateMachine};

pub use regent_raft::Batch;

/// Whether `batch` must be made durable before it is acknowledged: it appends or truncates
/// entries, or changes the term or the vote. A batch that only moves the commit index and
/// applies committed entries need not be (etcd's `MustSync`): the commit index is volatile in
/// Raft (a restarted node learns it again; `HardState::commit` is kept only to apply sooner),
/// and the entries it applies are already durable in this log and on a quorum, so an apply
/// lost in a crash is redone from the log with the same results. Such a batch is committed
/// without an fsync, and the next durable commit makes it durable with everything before it.
pub fn batch_must_sync(state: &LogState, batch: &Batch) -> bool {
    !batch.entries.is_empty()
        || batch.truncate_from.is_some()
        || batch
            .hard_state
            .as_ref()
            .is_some_and(|h| h.term != state.hard_state.term || h.vote != state.hard_state.vote)
}

use regent_raft::{Entry, HardState, LogIndex, Membership, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The prefix of regent's own records in the key space (member addresses, maintenance flags,
/// election roles, failover history): clients may not write under it, and the state machine
/// counts the writes that do ([`StateMachine::reserved_writes`]).
pub const RESERVED_PREFIX: &[u8] = b"\0regent/";

/// Which node of which cluster a data directory belongs to. Written when the database is
/// created; every later open must present the same identity.
/// The longest cluster name: one DNS label, so it can sit in a DNS SAN.
pub const CLUSTER_NAME_BYTES_MAX: usize = 63;

/// What is wrong with a cluster name, if anything. A cluster name is one lowercase DNS label:
/// `[a-z0-9-]`, 1 to 63 bytes, no leading or trailing hyphen. It appears in URIs and DNS
/// names (certificates) and names a data directory's cluster, so nothing else is allowed.
pub fn cluster_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > CLUSTER_NAME_BYTES_MAX {
        return Some("must be 1 to 63 bytes long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("may hold only a-z, 0-9 and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("may not start or end with '-'");
    }
    None
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: NodeId,
}

impl Identity {
    /// Checks the identity before any file is touched. A cluster id follows the one rule for
    /// cluster names, [`cluster_name_problem`] (one lowercase DNS label, the rule the PKI
    /// applies too), so that a data directory can only belong to a cluster a certificate can
    /// name; the node id is not 0.
    pub fn validate(&self) -> Result<(), StorageError> {
        if let Some(reason) = cluster_name_problem(&self.cluster_id) {
            return Err(StorageError::InvalidRequest(format!(
                "cluster id: invalid cluster name: {:?}: {reason}",
                self.cluster_id
            )));
        }
        if self.node_id == NodeId(0) {
            return Err(StorageError::InvalidRequest(
                "node id 0 is not valid".into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} of cluster {:?}", self.node_id, self.cluster_id)
    }
}

/// Settings of one storage handle. They need not agree between nodes: nothing here changes
/// what the state machine answers.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// The change feed keeps the changes of at most this many most recent revisions.
    pub changes_retained_max: u64,
    /// A batch may append at most this many entries.
    pub batch_entries_max: usize,
    /// Snapshot chunks are cut once their body reaches this many bytes.
    pub snapshot_chunk_bytes: usize,
    /// Where committed entries are applied (redb only; `MemStorage` always applies with the log).
    pub apply_mode: ApplyMode,
    /// When redb verifies every page checksum on open (redb only).
    pub verify_on_open: VerifyOnOpen,
    /// redb's page cache.
    pub cache_bytes: usize,
    /// `maybe_compact_file` compacts once the file has at least this many free bytes ...
    pub compact_free_bytes_min: u64,
    /// ... and they are at least this share (in percent) of the file.
    pub compact_free_percent_min: u64,
}

/// When redb reads every page of the file and checks its checksum on open: seconds for a file of
/// a GiB, so a node with a long log would serve late after every restart. redb itself repairs a
/// file after an unclean shutdown whatever this says (it then verifies the checksums of the
/// last commit's pages); what the full check adds is finding a page damaged outside redb (a
/// bad disk, a stray write) at open, with an error, rather than on first use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyOnOpen {
    /// On every open.
    Always,
    /// Unless the file was closed cleanly the last time (`RedbStorage::close` left its marker
    /// beside it): after a crash, a kill, a power loss, or for a file copied in.
    #[default]
    Auto,
    /// Never.
    Never,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            changes_retained_max: 100_000,
            batch_entries_max: 10_000,
            snapshot_chunk_bytes: 1 << 20,
            apply_mode: ApplyMode::WithLog,
            verify_on_open: VerifyOnOpen::Auto,
            cache_bytes: 128 << 20,
            compact_free_bytes_min: 64 << 20,
            compact_free_percent_min: 50,
        }
    }
}

impl StorageOptions {
    /// Checks every limit, naming the field and the rule it breaks.
    pub fn validate(&self) -> Result<(), StorageError> {
        let fail = |msg: String| Err(StorageError::InvalidRequest(msg));
        if self.changes_retained_max == 0 {
            return fail("changes_retained_max must be at least 1".into());
        }
        if self.batch_entries_max == 0 || self.batch_entries_max > 1_000_000 {
            return fail("batch_entries_max must be within 1..=1000000".into());
        }
        if self.snapshot_chunk_bytes < 4096
            || self.snapshot_chunk_bytes > SNAPSHOT_CHUNK_BYTES_MAX / 2
        {
            return fail(format!(
                "snapshot_chunk_bytes must be within 4096..={}",
                SNAPSHOT_CHUNK_BYTES_MAX / 2
            ));
        }
        if self.compact_free_percent_min > 100 {
            return fail("compact_free_percent_min must be within 0..=100".into());
        }
        Ok(())
    }
}

/// Where the state-machine writes of a batch go. See `docs/storage.md` for the measurements
/// behind the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// In the batch's one durable transaction: applied is always durable.
    WithLog,
    /// In a second, non-durable transaction after the durable log write: a crash may lose the
    /// last batch's apply, which recovery redoes from the log (`Recovered::entries`).
    Deferred,
}

/// What precedes the first log entry: the state machine at `last_included_index` replaces it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_included_index: LogIndex,
    pub last_included_term: Term,
    /// The membership in force at `last_included_index`.
    pub membership: Membership,
}

/// A summary of the durable state, kept current after every successful write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    pub hard_state: HardState,
    /// The compacted prefix (index 0 when nothing was compacted).
    pub snapshot: SnapshotMeta,
    /// `snapshot.last_included_index + 1`, also when the log is empty.
    pub first_index: LogIndex,
    /// The last index in the log, or the snapshot's index when the log is empty.
    pub last_index: LogIndex,
    pub last_term: Term,
    /// The last entry applied to the state machine, and its term.
    pub applied: LogIndex,
    pub applied_term: Term,
    /// The membership of the last applied `Config` entry (or of the snapshot), and its index.
    pub membership: Membership,
    pub membership_index: LogIndex,
    /// The KV store's revision: the number of applied writes.
    pub revision: u64,
    /// The host's journal as of `applied`.
    pub journal: JournalState,
}

/// What `open` and `reload` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub identity: Identity,
    pub state: LogState,
    /// The entries after `applied`, up to the last index: the core re-applies the committed
    /// ones and scans them for a `Config` newer than `state.membership`.
    pub entries: Vec<Entry>,
}

impl Recovered {
    /// The membership in force for the core: the last `Config` in the log, applied or not.
    pub fn latest_membership(&self) -> (&Membership, LogIndex) {
        self.entries
            .iter()
            .rev()
            .find_map(|entry| match &entry.payload {
                regent_raft::EntryPayload::Config(m) => Some((m, entry.index)),
                _ => None,
            })
            .unwrap_or((&self.state.membership, self.state.membership_index))
    }
}

/// How far a snapshot install has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallProgress {
    /// More chunks are expected; this many were accepted so far.
    Continue { chunks: u32 },
    /// The snapshot is swapped in and durable; the log prefix it covers is gone.
    Installed(Box<LogState>),
}

/// The storage of one Raft node: the log, the hard state, the snapshot prefix, snapshots out
/// and in, and log and file compaction. The daemon uses `RedbStorage`, the simulator
/// `MemStorage`; `tests/storage_conformance.rs` runs the same suite on both.
///
/// The local queries of the state machine are the other trait, [`StateReader`], and it is a
/// supertrait: `write_batch` applies the committed entries to the state machine held in the
/// same store (and `snapshot` streams it), so a `LogStorage` always has one to query. Code that
/// holds a `&dyn LogStorage` or a type parameter `S: LogStorage` (`impl LogStorage`) therefore
/// calls `kv_get`, `digest` and the rest with no second bound and no import, and may pass the
/// store on as a `&dyn StateReader`; code that names a concrete store (or an associated type)
/// imports `StateReader` to call them. Code that only queries asks for `StateReader` alone.
pub trait LogStorage: StateReader {
    /// The durable state after the last successful write.
    fn state(&self) -> &LogState;

    /// Persists one Ready: hard state, truncation, appends, and the application of committed
    /// entries, atomically and durably. Returns one `Applied` per committed entry.
    fn write_batch(&mut self, batch: &Batch) -> Result<Vec<Applied>, StorageError>;

    /// Re-reads what is durable, as a restart would (reopening the file for redb).
    fn reload(&mut self) -> Result<Recovered, StorageError>;

    /// Entries in `lo..hi`, stopping early (but after at least one) once their sizes pass
    /// `bytes_max`.
    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`; also answers for index 0 and the snapshot's index.
    fn term(&self, index: LogIndex) -> Result<Term, StorageError>;

    /// Drops the log up to and including `through` (at most the applied index), recording it
    /// as the snapshot prefix.
    fn compact_log(&mut self, through: LogIndex) -> Result<(), StorageError>;

    /// A consistent snapshot of the state machine at the applied index, streamed as
    /// checksummed chunks; writes may go on while it is read.
    fn snapshot(&self) -> Result<Box<dyn SnapshotSource>, StorageError>;

    /// Feeds one chunk of a snapshot from a peer. A chunk with sequence 0 starts a new install
    /// (abandoning any other); the last chunk swaps the snapshot in atomically and durably.
    fn install_chunk(&mut self, chunk: &[u8]) -> Result<InstallProgress, StorageError>;

    /// Abandons an install in progress, if any.
    fn install_abort(&mut self);

    /// The state machine over what this store persisted, for a replica that applies committed
    /// entries in memory ([`StateMachine`]) and hands its layers back to
    /// [`write_state`](Self::write_state).
    fn state_machine(&self) -> StateMachine;

    /// Writes a frozen layer of the state machine, built on exactly the applied index the store
    /// holds. Not durable by itself: the next durable write (a batch that must sync, a
    /// compaction, an install) makes it durable with everything before it, and a crash before
    /// then goes back to the previous layer, after which the log is applied again.
    fn write_state(&mut self, flush: &StateFlush) -> Result<(), StorageError>;

    /// Compacts the file when much of it is free (redb never shrinks on its own). Slow: call it
    /// off the commit path. Returns whether it compacted.
    fn maybe_compact_file(&mut self) -> Result<bool, StorageError> {
        Ok(false)
    }
}

#[cfg(test)]
mod must_sync_tests {
    use super::*;
    use regent_raft::{Entry, EntryPayload, NodeId};

    fn put(index: u64, key: &str) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Normal(
                Proposal::new(Command::Put {
                    key: key.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                })
                .encode(),
            ),
        }
    }

    fn hard(commit: u64) -> Option<HardState> {
        Some(HardState {
            term: Term(1),
            vote: Some(NodeId(1)),
            commit: LogIndex(commit),
        })
    }

    fn store() -> MemStorage {
        let identity = Identity {
            cluster_id: "t".into(),
            node_id: NodeId(1),
        };
        MemStorage::new(identity, StorageOptions::default())
            .unwrap()
            .0
    }

    fn append(s: &mut MemStorage, entries: Vec<Entry>, commit: u64, committed: Vec<Entry>) {
        let batch = Batch {
            hard_state: hard(commit),
            truncate_from: None,
            entries,
            committed,
        };
        s.write_batch(&batch).unwrap();
    }

    #[test]
    fn only_entries_truncations_terms_and_votes_need_an_fsync() {
        let s = store();
        let state = s.state().clone();
        let commit_only = Batch {
            hard_state: Some(HardState {
                commit: LogIndex(0),
                ..state.hard_state
            }),
            truncate_from: None,
            entries: Vec::new(),
            committed: Vec::new(),
        };
        assert!(!batch_must_sync(&state, &commit_only));
        let nothing = Batch {
            hard_state: None,
            ..commit_only.clone()
        };
        assert!(!batch_must_sync(&state, &nothing));
        let new_term = Batch {
            hard_state: hard(0),
            ..commit_only.clone()
        };
        assert!(batch_must_sync(&state, &new_term), "term and vote change");
        let entries = Batch {
            hard_state: None,
            entries: vec![put(1, "a")],
            ..commit_only.clone()
        };
        assert!(batch_must_sync(&state, &entries));
        let truncation = Batch {
            hard_state: None,
            truncate_from: Some(LogIndex(1)),
            ..commit_only
        };
        assert!(batch_must_sync(&state, &truncation));
    }

    /// A crash loses an apply that was not made durable; the log keeps the entries, and
    /// applying them again gives the same results. A later durable batch keeps everything.
    #[test]
    fn a_crash_loses_only_the_commit_only_batch_and_it_applies_again_the_same() {
        let mut s = store();
        append(&mut s, vec![put(1, "a"), put(2, "b")], 0, Vec::new());
        let apply = Batch {
            hard_state: hard(2),
            truncate_from: None,
            entries: Vec::new(),
            committed: vec![put(1, "a"), put(2, "b")],
        };
        assert!(!batch_must_sync(s.state(), &apply));
        let first = s.write_batch(&apply).unwrap();
        assert_eq!(s.state().applied, LogIndex(2));
        assert!(s.kv_get(b"b").unwrap().is_some());

        let recovered = s.reload().unwrap();
        assert_eq!(
            recovered.state.applied,
            LogIndex(0),
            "the apply was not durable"
        );
        assert_eq!(recovered.state.hard_state.commit, LogIndex(0));
        assert_eq!(recovered.state.last_index, LogIndex(2), "the entries were");
        assert!(s.kv_get(b"b").unwrap().is_none());

        let again = s.write_batch(&apply).unwrap();
        assert_eq!(first, again, "the same results the second time");
        append(&mut s, vec![put(3, "c")], 2, Vec::new());
        let recovered = s.reload().unwrap();
        assert_eq!(
            recovered.state.applied,
            LogIndex(2),
            "made durable by the next batch"
        );
        assert_eq!(recovered.state.last_index, LogIndex(3));
        assert_eq!(s.kv_get(b"b").unwrap().unwrap().value, b"v");
    }
}

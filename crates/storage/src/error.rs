//! The storage layer's one error enum: every failure a caller can see, each naming the file or
//! the input it concerns. Invariant: no storage function panics on bad input from a file, a peer
//! or a caller; a panic in this layer is a bug (a broken internal invariant).

use regent_raft::LogIndex;
use std::path::PathBuf;

/// The path reported for an in-memory store, where there is no file to name.
pub const MEMORY_PATH: &str = "<memory>";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb could not open the file at all: locked by another process, unreadable, a damaged
    /// header.
    #[error("{path}: cannot open the database: {reason}")]
    Open { path: PathBuf, reason: String },

    /// The data directory is on a read-only file system: regent must write there.
    #[error(
        "{dir}: the data directory is on a read-only file system; regent writes its log there (remount it read-write or choose another directory)"
    )]
    ReadOnly { dir: PathBuf },

    /// The file is not a regent database (another program's file, or another program's redb
    /// database).
    #[error("{path}: not a regent database: {reason}")]
    Foreign { path: PathBuf, reason: String },

    /// The file is a regent database of another node or another cluster.
    #[error("{path}: this data directory belongs to {found}, but this node is {expected}")]
    WrongIdentity {
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// The file was written by a newer (or older, unsupported) storage format.
    #[error(
        "{path}: storage format version {found} is not supported (this build reads version {supported})"
    )]
    FormatVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The file opened, but what it holds breaks an invariant (or does not decode). Nothing
    /// was changed: the operator must look at it.
    #[error("{path}: damaged: {problem}")]
    Damaged { path: PathBuf, problem: String },

    /// The disk is full. Data committed before is intact; the handle must be reloaded
    /// (`LogStorage::reload`) and the write retried once space is freed.
    #[error(
        "{path}: the disk is full: {op} failed (data committed before is intact; free space, reload, retry)"
    )]
    NoSpace { path: PathBuf, op: &'static str },

    /// Any other failure of redb or of the file system. The message holds redb's error, which
    /// is therefore not also returned as the `source` (a printed chain would repeat it).
    #[error("{path}: {op} failed: {error}")]
    Io {
        path: PathBuf,
        op: &'static str,
        error: Box<redb::Error>,
    },

    /// A previous write failed after it may have reached the disk: the handle refuses writes
    /// until `LogStorage::reload` has re-read what is durable.
    #[error("{path}: a previous write failed; reload the storage before writing again")]
    ReloadRequired { path: PathBuf },

    /// The batch breaks the contract of `Batch` (a bug of the caller). Nothing was written.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),

    /// A request that the current state cannot satisfy (compacting past applied, ...).
    /// Nothing was written.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The entry was dropped by log compaction; a snapshot covers it.
    #[error("log index {index} is compacted (the log starts after {snapshot_index})")]
    Compacted {
        index: LogIndex,
        snapshot_index: LogIndex,
    },

    /// The entry is not (yet) in the log.
    #[error("log index {index} is beyond the last index {last}")]
    Unavailable { index: LogIndex, last: LogIndex },

    /// The change feed no longer holds the changes asked for.
    #[error(
        "change feed: changes after revision {requested} were compacted (the feed starts after revision {floor})"
    )]
    ChangesCompacted { requested: u64, floor: u64 },

    /// The journal no longer holds `requested`: it was truncated (every host checkpointed past
    /// it, or a retention bound dropped it). Recover by copying a checkpoint from a peer host
    /// and tailing from its index.
    #[error("journal: index {requested} is gone; the first retained index is {first}")]
    JournalCompacted { requested: u64, first: u64 },

    /// A snapshot chunk failed its checks (checksum, order, size, content). The install in
    /// progress is abandoned; nothing of it was swapped in.
    #[error("snapshot chunk {seq}: {reason}")]
    SnapshotChunk { seq: u32, reason: String },

    /// A snapshot as a whole cannot be installed (stale, conflicting with committed entries).
    #[error("snapshot: {0}")]
    Snapshot(String),

    /// A backup file failed its checks (magic, version, a checksum, truncation, content).
    /// `offset` is where the record at fault starts.
    #[error("backup file, at byte {offset}: {reason}")]
    Backup { offset: u64, reason: String },

    /// A fault injected on purpose into the in-memory store (simulator and tests).
    #[error("{MEMORY_PATH}: injected fault: {what}")]
    Injected { what: &'static str },
}

impl StorageError {
    /// Wraps a redb error, recognising a full disk.
    pub(crate) fn redb(
        path: &std::path::Path,
        op: &'static str,
        err: impl Into<redb::Error>,
    ) -> Self {
        let err: redb::Error = err.into();
        if is_no_space(&err) {
            return StorageError::NoSpace {
                path: path.to_path_buf(),
                op,
            };
        }
        if let redb::Error::Corrupted(problem) = &err {
            return StorageError::Damaged {
                path: path.to_path_buf(),
                problem: format!("{op}: redb reports corruption: {problem}"),
            };
        }
        StorageError::Io {
            path: path.to_path_buf(),
            op,
            error: Box::new(err),
        }
    }

    pub(crate) fn damaged(path: &std::path::Path, problem: impl Into<String>) -> Self {
        StorageError::Damaged {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    /// Whether this error means the handle may have lost track of what is durable, so that it
    /// must be reloaded before the next write.
    pub fn requires_reload(&self) -> bool {
        matches!(
            self,
            StorageError::NoSpace { .. }
                | StorageError::Io { .. }
                | StorageError::Damaged { .. }
                | StorageError::ReloadRequired { .. }
                | StorageError::Injected { .. }
        )
    }
}

fn is_no_space(err: &redb::Error) -> bool {
    match err {
        redb::Error::Io(io) => {
            io.raw_os_error() == Some(libc::ENOSPC)
                || io.raw_os_error() == Some(libc::EDQUOT)
                || io.kind() == std::io::ErrorKind::StorageFull
        }
        _ => false,
    }
}

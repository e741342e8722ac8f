//! What the API asks of the driver, and how the driver answers: requests carry a oneshot for
//! their answer.

use crate::config::ConfigError;
use regent_raft::{
    ConfChangeError, LogIndex, NodeId, ProposeError, ReadError, Term, TransferError,
};
use regent_replica::{MaintenanceChange, MaintenanceRefusal, ReadMode};
use regent_storage::{
    ApplyResult, ChangePage, CommandError, KeyValue, Proposal, Response, StorageError,
};
use regent_transport::TransportError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Why a request was not carried out. Each variant is one JSON error `code` of the API
/// (`routes::request_error`), and its `Display` is the `message` the API returns.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("this node is not the leader")]
    NotLeader {
        leader: Option<NodeId>,
        address: Option<SocketAddr>,
    },
    #[error("busy: {0}; retry later")]
    Busy(BusyReason),
    #[error("the write lost its place in the log to another leader's entry; its outcome is not applied there, retry")]
    Superseded,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Command(CommandError),
    #[error("membership change refused: {0}")]
    Members(MembersRefusal),
    #[error("reload refused, the old files stay in force: {0}")]
    Reload(ReloadRefusal),
    #[error("leadership transfer refused: {0}")]
    Transfer(TransferFailure),
    #[error("fenced: this node does not lead term {expected} (its term is {current})")]
    TermMismatch { expected: u64, current: u64 },
    #[error("storage: {0}")]
    Storage(StorageFailure),
    #[error("{0}")]
    Maintenance(MaintenanceRefusal),
    /// The request needs a newer cluster version (`regent_replica::versions`).
    #[error("{0}")]
    Version(regent_replica::VersionRefusal),
}

/// Why a request could not be taken now; the caller may retry it.
#[derive(Debug, thiserror::Error)]
pub enum BusyReason {
    /// The driver did not answer in time: the request may still be carried out.
    #[error("no answer within {} s; the outcome is unknown", .waited.as_secs())]
    NoAnswer { waited: Duration },
    /// The core refused a proposal (backpressure, or a hand-over in progress).
    #[error("{0}")]
    Propose(ProposeError),
    /// The core refused a read (backpressure, or a hand-over in progress).
    #[error("{0}")]
    Read(ReadError),
}

/// Why a membership change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembersRefusal {
    /// The core refused the change (a joint configuration in progress, an unknown node, a
    /// learner not caught up under the one promotion rule, ...).
    #[error("{0}")]
    Core(ConfChangeError),
}

/// Why a reload was refused (the old configuration and certificate stay in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefusal {
    /// The configuration file does not load.
    #[error("{0}")]
    Config(ConfigError),
    /// The file is another node's, or another cluster's.
    #[error(
        "{} is for node {file_node} of cluster {file_cluster:?}, but this is node {node} of cluster {cluster:?}",
        .path.display()
    )]
    OtherNode {
        path: PathBuf,
        file_node: NodeId,
        file_cluster: String,
        node: NodeId,
        cluster: String,
    },
    /// The certificate, key or CA bundle does not load.
    #[error("{0}")]
    Identity(TransportError),
}

/// Why a leadership hand-over did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransferFailure {
    /// The core refused to start it (no caught-up voter, a target that is not a voter, ...).
    #[error("{0}")]
    Refused(TransferError),
    /// The target did not take over before the hand-over's deadline.
    #[error(
        "{target} did not take over within {waited_ms} ms (leader now: {:?})",
        .leader.map(|l| l.0)
    )]
    NotTakenOver {
        target: NodeId,
        waited_ms: u64,
        leader: Option<NodeId>,
    },
}

/// A storage failure behind a request.
#[derive(Debug, thiserror::Error)]
pub enum StorageFailure {
    /// The log compaction an operator's snapshot waited for failed. Every snapshot waiting for
    /// that compaction is answered with the same error, hence the `Arc`.
    #[error("the log compaction through {index} failed: {error}")]
    Compaction {
        index: LogIndex,
        error: Arc<StorageError>,
    },
    /// Compacting the database file (`regent compact`) failed.
    #[error("compacting the database file: {0}")]
    FileCompaction(StorageError),
    /// A read of the state machine failed.
    #[error("{0}")]
    Read(StorageError),
    /// A proposal was applied as something other than a command (the log is not what the
    /// driver proposed).
    #[error("a proposal applied as {0:?}")]
    UnexpectedApply(ApplyResult),
}

/// An answered write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteAnswer {
    pub index: LogIndex,
    pub term: Term,
    pub response: Response,
}

/// A request from the API to the driver.
pub enum Request {
    /// Replicate a proposal (a command, with its session and fencing term if any) through the
    /// log; answered once it is applied here. The driver sets the proposal's time.
    Propose {
        proposal: Proposal,
        reply: oneshot::Sender<Result<WriteAnswer, RequestError>>,
    },
    /// Hand leadership to `target` (or the most caught-up voter); answered once this node
    /// sees the target lead, or with an error when the hand-over is abandoned.
    Transfer {
        target: Option<NodeId>,
        /// Allowed while paused: the target becomes the pause's holder (`--force`).
        force: bool,
        reply: oneshot::Sender<Result<HandoverAnswer, RequestError>>,
    },
    /// An operator's pause, resume, drain or undrain: replicated through the log; answered
    /// once applied here.
    Maintenance {
        change: MaintenanceChange,
        reply: oneshot::Sender<Result<WriteAnswer, RequestError>>,
    },
    /// Change the membership (`None`: abort a joint configuration). Answered with the index
    /// of the configuration entry once the leader appended it.
    Members {
        change: Option<regent_raft::ConfChange>,
        reply: oneshot::Sender<Result<LogIndex, RequestError>>,
    },
    /// Reload the certificate, key and CA bundle (SIGHUP does the same). Answered with the new
    /// certificate's serial and expiry, or why the files were refused (the old ones stay).
    Reload {
        reply: Option<oneshot::Sender<Result<String, RequestError>>>,
    },
    /// Take a snapshot now: compact the log through the applied index (the state machine at
    /// that index is the snapshot); with `file`, then compact the database file too. Answered
    /// once done.
    Snapshot {
        file: bool,
        reply: oneshot::Sender<Result<SnapshotAnswer, RequestError>>,
    },
    /// Open a consistent snapshot of the state machine as the storage holds it, for a backup
    /// (`GET /v1/admin/backup`, the `backup:` schedule). Answered at once by the disk thread;
    /// the snapshot is read afterwards, off the driver and the disk thread.
    Backup {
        reply: oneshot::Sender<Result<BackupSource, RequestError>>,
    },
    /// The hooks carried out the promotion the replica asked for `term` (fencing,
    /// `pre_promote`): `Ok` makes the node writable, an error hands leadership away.
    Promoted {
        term: Term,
        result: Result<(), String>,
    },
    /// The hooks demoted the host (`on_demote`) ahead of a hand-over in `term`.
    Demoted { term: Term },
    /// Read the state machine: after confirming leadership (`Some(Index)`, `Some(Lease)`), or
    /// this node's applied state as it is (`None`: may be stale on a follower).
    Read {
        query: ReadQuery,
        mode: Option<ReadMode>,
        reply: oneshot::Sender<Result<ReadAnswer, RequestError>>,
    },
    /// The failover history as applied here (any node answers): the newest `limit` records.
    History {
        limit: usize,
        reply: oneshot::Sender<Result<HistoryAnswer, RequestError>>,
    },
}

/// The failover history as this node applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryAnswer {
    /// Oldest first.
    pub records: Vec<regent_replica::HistoryRecord>,
    /// The applied index the records reflect.
    pub applied_index: LogIndex,
}

/// An open snapshot for a backup, and the identity of the store it was taken from.
pub struct BackupSource {
    pub identity: regent_storage::Identity,
    pub source: Box<dyn regent_storage::SnapshotSource>,
}

/// What `regent snapshot` / `regent compact` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotAnswer {
    /// The snapshot's index before and after (equal when nothing was applied since).
    pub previous_index: LogIndex,
    pub index: LogIndex,
    /// The database file's bytes and free bytes before and after, when it was compacted.
    pub file: Option<regent_storage::FileCompaction>,
}

/// The outcome of a leadership hand-over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverAnswer {
    pub from: NodeId,
    pub to: NodeId,
    /// From the moment this leader stopped taking writes until it saw the target lead.
    pub pause_ms: u64,
}

/// What a read asks of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadQuery {
    Get {
        key: Vec<u8>,
    },
    /// Keys starting with `prefix`, in order, at most `limit`.
    Range {
        prefix: Vec<u8>,
        limit: u32,
    },
    /// The change feed after `revision`, at most `limit` changes.
    Changes {
        revision: u64,
        limit: usize,
    },
    /// The journal from index `from`, at most `limit` operations.
    Journal {
        from: u64,
        limit: usize,
    },
    /// A digest of the whole state machine as applied here (a full scan: for checks, not for
    /// the hot path).
    Digest,
}

/// The answer to a `ReadQuery`.
#[derive(Debug)]
pub enum ReadAnswer {
    Get(Option<KeyValue>),
    Range { kvs: Vec<KeyValue>, more: bool },
    Changes(Result<ChangePage, StorageError>),
    Journal(Result<regent_storage::JournalPage, StorageError>),
    Digest(regent_storage::StateDigest),
}

//! What the API asks of the driver, and how the driver answers: requests carry a oneshot for
//! their answer.

use regent_raft::{LogIndex, NodeId, Term};
use regent_replica::ReadMode;
use regent_storage::{ChangePage, CommandError, KeyValue, Proposal, Response};
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// Why a request was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("this node is not the leader")]
    NotLeader {
        leader: Option<NodeId>,
        address: Option<SocketAddr>,
    },
    #[error("busy: {0}; retry later")]
    Busy(String),
    #[error("the write lost its place in the log to another leader's entry; its outcome is not applied there, retry")]
    Superseded,
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Command(CommandError),
    #[error("membership change refused: {0}")]
    Members(String),
    #[error("reload refused, the old files stay in force: {0}")]
    Reload(String),
    #[error("leadership transfer refused: {0}")]
    Transfer(String),
    #[error("fenced: this node does not lead term {expected} (its term is {current})")]
    TermMismatch { expected: u64, current: u64 },
    #[error("storage: {0}")]
    Storage(String),
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
        reply: oneshot::Sender<Result<HandoverAnswer, RequestError>>,
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
    /// Read the state machine: after confirming leadership (`Some(Index)`, `Some(Lease)`), or
    /// this node's applied state as it is (`None`: may be stale on a follower).
    Read {
        query: ReadQuery,
        mode: Option<ReadMode>,
        reply: oneshot::Sender<Result<ReadAnswer, RequestError>>,
    },
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
    Changes(Result<ChangePage, regent_storage::StorageError>),
    Journal(Result<regent_storage::JournalPage, regent_storage::StorageError>),
    Digest(regent_storage::StateDigest),
}

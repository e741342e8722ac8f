//! What the API asks of the driver, and how the driver answers: requests carry a oneshot for
//! their answer.

use crate::raft::{LogIndex, NodeId, Term};
use crate::replica::ReadMode;
use crate::storage::{Command, CommandError, KeyValue, Response};
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
    #[error("the command was refused: {0}")]
    Command(CommandError),
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
    /// Replicate a command through the log; answered once it is applied here.
    Propose {
        command: Command,
        reply: oneshot::Sender<Result<WriteAnswer, RequestError>>,
    },
    /// Read one key: after confirming leadership (`Some(Index)`, `Some(Lease)`), or from this
    /// node's applied state as it is (`None`: may be stale on a follower).
    Get {
        key: Vec<u8>,
        mode: Option<ReadMode>,
        reply: oneshot::Sender<Result<Option<KeyValue>, RequestError>>,
    },
}

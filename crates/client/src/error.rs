//! The client's one error: what failed (which socket, which step, which process), with the
//! cause kept as its `source` so that a caller printing the chain (`{:#}` in anyhow) shows it
//! after the step, as `connecting to …: No such file or directory (os error 2)`.

use crate::http;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong talking to a daemon, or running a local cluster of them.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `request` could not connect to the daemon's socket.
    #[error(
        "connecting to {} (is regent running? --socket or $REGENT_SOCKET name another socket)",
        .socket.display()
    )]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `stream` could not connect to the daemon's socket.
    #[error("connecting to {}", .socket.display())]
    ConnectStream {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `request` could not write its request.
    #[error("sending the request to {}", .socket.display())]
    Send {
        socket: PathBuf,
        #[source]
        source: http::Error,
    },
    /// `request` could not read the answer.
    #[error("reading the answer from {}", .socket.display())]
    Receive {
        socket: PathBuf,
        #[source]
        source: http::Error,
    },
    /// An exchange on a stream failed in the HTTP codec.
    #[error(transparent)]
    Http(#[from] http::Error),
    /// The daemon refused to open a stream: the path and the answer's error text.
    #[error("{path}: {message}")]
    StreamRefused {
        path: String,
        status: u16,
        message: String,
    },
    /// `GET /v1/status` answered other than 200: the answer's error text.
    #[error("status: {message}")]
    StatusRefused { status: u16, message: String },
    /// An answer's body that should be JSON is not.
    #[error("the daemon answered {status} with a body that is not JSON: {body:?}")]
    NotJson {
        status: u16,
        /// The body, lossily as UTF-8.
        body: String,
        #[source]
        source: serde_json::Error,
    },
    /// The running binary's path (`std::env::current_exe`), to start a local cluster with.
    #[error(transparent)]
    CurrentExe(io::Error),
    /// A free loopback port for a local cluster's node.
    #[error(transparent)]
    FreePort(io::Error),
    /// `regent admin cluster init` could not be run.
    #[error("running regent admin cluster init")]
    ClusterInitSpawn {
        #[source]
        source: io::Error,
    },
    /// `regent admin cluster init` ran and failed: its standard error.
    #[error("regent admin cluster init failed: {stderr}")]
    ClusterInit { stderr: String },
    /// A local node's log file could not be created (or its handle duplicated).
    #[error(transparent)]
    NodeLog(io::Error),
    /// A local node's `regent run` could not be started.
    #[error("starting regent run")]
    NodeSpawn {
        id: u64,
        #[source]
        source: io::Error,
    },
    /// No node of a local cluster became a writable leader in time.
    #[error(
        "no writable leader within {} s; see the logs in {}",
        .timeout.as_secs(),
        .dir.display()
    )]
    NoLeader { timeout: Duration, dir: PathBuf },
}

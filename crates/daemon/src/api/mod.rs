//! The host API: HTTP/1.1 with JSON over the Unix socket named in the configuration, so that
//! `curl --unix-socket PATH http://regent/v1/status` works. It never touches the replica: it
//! reads the status the driver publishes and sends requests to the driver.
//!
//! Invariants: a live socket is never taken over (a stale file left by a crash is detected by
//! trying to connect, then replaced); the socket has its mode before anyone can connect (it is
//! bound under a temporary name, given its mode, then renamed into place); every request is
//! bounded (header bytes, body bytes, time to send the headers, connections at once), and bad
//! input gets a 4xx with a JSON error, never a panic or a stall of the driver.

mod backup;
pub mod body;
pub mod forward;
mod history;
pub mod journal;
mod maintenance;
pub mod members;
pub mod metrics;
mod request;
pub mod routes;
pub mod status;
mod streams;
mod txn;

pub use request::{
    BackupSource, BusyReason, HandoverAnswer, HistoryAnswer, MembersRefusal, ReadAnswer, ReadQuery,
    ReloadRefusal, Request, RequestError, SnapshotAnswer, StorageFailure, TransferFailure,
    WriteAnswer,
};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use status::NodeStatus;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch, Semaphore};

/// The API's base64 (RFC 4648, standard alphabet): written with padding; read with or without
/// it, as clients differ.
pub const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Bytes of request line and headers accepted.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a write or read waits for the cluster before answering that its outcome is unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's limits and identity, from the configuration.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    pub socket: PathBuf,
    pub socket_mode: u32,
    /// The group that owns the socket, if not the daemon's own.
    pub socket_gid: Option<u32>,
    pub request_bytes_max: usize,
    pub connections_max: usize,
}

/// The API's settings that a reload (SIGHUP, `POST /v1/admin/reload`) may change while it
/// serves; the driver publishes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveOptions {
    /// The leadership watch warns this long before an unrenewed lease lapses.
    pub lease_warning_ms: u64,
    /// Who may call what changes the cluster (root always may).
    pub admin_uids: Vec<u32>,
    pub admin_gids: Vec<u32>,
    /// The journal's retention bounds, put in the journal commands this node proposes.
    pub journal_retention: regent_storage::JournalRetention,
}

/// What every handler needs.
pub struct ApiContext {
    pub requests: mpsc::Sender<Request>,
    pub metrics: Arc<metrics::Metrics>,
    pub status: watch::Receiver<NodeStatus>,
    pub options: ApiOptions,
    pub live: watch::Receiver<LiveOptions>,
    /// The peer links, for relaying `forward=true` requests to the leader (none in tests that
    /// run the API alone).
    pub transport: Option<regent_transport::TransportHandle<crate::wire::PeerMessage>>,
    /// The hooks' last runs and counters, and the fence methods for `regent fence`.
    pub hooks: Option<crate::hooks::HooksView>,
}

/// Why the API's socket could not be set up. Each names the socket; a message that holds an
/// I/O error does not also return it as its `source`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("socket {path}: another process is listening on it (a running regent?); refusing to take it over")]
    SocketInUse { path: PathBuf },
    #[error("socket {path}: exists and is not a socket; remove it or choose another path")]
    NotASocket { path: PathBuf },
    #[error("socket {path}: removing the stale file: {error}")]
    RemoveStale {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Binding under the temporary name the socket has until its mode is set.
    #[error("socket {path}: bind {staging}: {error}")]
    Bind {
        path: PathBuf,
        staging: PathBuf,
        error: std::io::Error,
    },
    /// Handing the bound socket to tokio.
    #[error("socket {path}: {error}")]
    Listen {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("socket {path}: setting its mode and moving it into place: {error}")]
    Place {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Binds the socket: replaces a stale file, refuses a live one, sets the mode before the socket
/// appears under its name.
pub fn bind(options: &ApiOptions) -> Result<UnixListener, ApiError> {
    let path = &options.socket;
    let listen_failed = |error: std::io::Error| ApiError::Listen {
        path: path.clone(),
        error,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(ApiError::NotASocket { path: path.clone() });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ApiError::SocketInUse { path: path.clone() });
        }
        tracing::info!(path = %path.display(), "replacing a stale socket file");
        std::fs::remove_file(path).map_err(|error| ApiError::RemoveStale {
            path: path.clone(),
            error,
        })?;
    }
    let staging = staging_path(path);
    let _ = std::fs::remove_file(&staging);
    let listener = {
        let std_listener =
            std::os::unix::net::UnixListener::bind(&staging).map_err(|error| ApiError::Bind {
                path: path.clone(),
                staging: staging.clone(),
                error,
            })?;
        std_listener.set_nonblocking(true).map_err(listen_failed)?;
        UnixListener::from_std(std_listener).map_err(listen_failed)?
    };
    let set_mode = std::fs::set_permissions(
        &staging,
        std::fs::Permissions::from_mode(options.socket_mode),
    );
    let set_group = || match options.socket_gid {
        None => Ok(()),
        Some(gid) => std::os::unix::fs::chown(&staging, None, Some(gid)),
    };
    let placed = set_mode
        .and_then(|()| set_group())
        .and_then(|()| std::fs::rename(&staging, path));
    if let Err(error) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(ApiError::Place {
            path: path.clone(),
            error,
        });
    }
    Ok(listener)
}

fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Serves connections until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    context: Arc<ApiContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(context.options.connections_max));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "accepting on the socket failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the limit: close at once rather than queue without bound.
            drop(stream);
            continue;
        };
        let context = context.clone();
        let caller = match stream.peer_cred() {
            Ok(cred) => routes::Caller {
                uid: Some(cred.uid()),
                gid: Some(cred.gid()),
                remote: false,
                forwarded_by: None,
            },
            Err(_) => routes::Caller {
                uid: None,
                gid: None,
                remote: false,
                forwarded_by: None,
            },
        };
        tokio::spawn(serve_connection(stream, context, caller, slot));
    }
}

/// Serves the read-only checks and metrics on TCP (for a load balancer on another machine),
/// until `shutdown` turns true.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    context: Arc<ApiContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(context.options.connections_max));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let caller = routes::Caller {
            uid: None,
            gid: None,
            remote: true,
            forwarded_by: None,
        };
        tokio::spawn(serve_connection(stream, context.clone(), caller, slot));
    }
}

async fn serve_connection<S>(
    stream: S,
    context: Arc<ApiContext>,
    caller: routes::Caller,
    slot: tokio::sync::OwnedSemaphorePermit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let context = context.clone();
        async move {
            let request = request.map(http_body_util::Either::Left);
            Ok::<_, std::convert::Infallible>(routes::handle(&context, caller, request).await)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(HEADER_BYTES_MAX.max(8192))
        .serve_connection(TokioIo::new(stream), service);
    if let Err(err) = connection.await {
        tracing::debug!(error = %err, "connection ended with an error");
    }
    drop(slot);
}

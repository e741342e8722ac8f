//! `GET /v1/admin/backup`: a consistent image of the state machine as a backup file
//! (`regent_storage::backup`), streamed as it is read. Any node serves it from what its own
//! storage holds, which includes everything the node had applied when asked; a follower is
//! the better choice, as the read then costs the leader nothing.
//!
//! Invariant: the answer's head (200 and the image's index and term) is sent only once the
//! snapshot is open; a failure after that ends the stream without the trailer, which every
//! reader of the file refuses as truncated.

use super::body::Body;
use super::routes::{request_error, version_refusal, HttpResponse};
use super::ApiContext;
use bytes::Bytes;
use hyper::StatusCode;

/// Answers the backup file as `application/octet-stream`, with its index and term in
/// `x-regent-backup-index` and `x-regent-backup-term`.
pub async fn backup(context: &ApiContext) -> HttpResponse {
    // Backup files came with version 3 (docs/operations.md, "Rolling upgrade").
    let allowed = super::routes::version_gate(context, regent_replica::VERSION_OPERATIONS).await;
    if let Err(refusal) = allowed {
        return version_refusal(&refusal);
    }
    let opened = match crate::backup::open_caught_up(&context.requests, &context.status).await {
        Ok(opened) => opened,
        Err(err) => return request_error(err),
    };
    let meta = opened.source.meta().clone();
    let (tx, body) = Body::channel();
    tokio::task::spawn_blocking(move || {
        let sent =
            crate::backup::write(opened, |bytes| tx.blocking_send(Bytes::from(bytes)).is_ok());
        match sent {
            Ok(Some(summary)) => tracing::info!(
                index = summary.header.index.0,
                bytes = summary.bytes,
                "backup served"
            ),
            Ok(None) => tracing::info!("backup abandoned: the client went away"),
            Err(err) => {
                tracing::warn!(error = %err, "backup failed; the stream ends without its trailer")
            }
        }
    });
    hyper::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("x-regent-backup-index", meta.last_included_index.0)
        .header("x-regent-backup-term", meta.last_included_term.0)
        .body(body)
        .expect("a valid response")
}

//! `POST /v1/admin/snapshot` and `POST /v1/admin/compact`: an operator's snapshot now, and a
//! snapshot followed by the compaction of the database file.
//!
//! In regent the state machine is the snapshot: taking one compacts the log through the
//! applied index (followers further behind are sent the state machine). Both run on the disk
//! thread after the batch in flight, never inside a batch's transaction.

use super::routes::{ask, json_response, request_error, HttpResponse};
use super::{ApiContext, Request};
use hyper::StatusCode;
use serde_json::json;
use tokio::sync::oneshot;

/// Answers `{"previous_index", "index", "file": {...} | null}`.
pub async fn snapshot(context: &ApiContext, file: bool) -> HttpResponse {
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::Snapshot { file, reply }, answer).await {
        Ok(done) => {
            let file = done.file.map(|f| {
                json!({
                    "bytes_before": f.bytes_before,
                    "bytes_after": f.bytes_after,
                    "free_bytes_before": f.free_bytes_before,
                    "free_bytes_after": f.free_bytes_after,
                    "busy": f.busy,
                })
            });
            json_response(
                StatusCode::OK,
                &json!({
                    "previous_index": done.previous_index.0,
                    "index": done.index.0,
                    "file": file,
                }),
            )
        }
        Err(err) => request_error(err),
    }
}

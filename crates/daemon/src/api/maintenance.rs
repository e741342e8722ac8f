//! `POST /v1/admin/snapshot` and `POST /v1/admin/compact`: an operator's snapshot now, and a
//! snapshot followed by the compaction of the database file. And the maintenance records:
//! `pause`, `resume`, `drain`, `undrain` (decided in the replica's `maintenance`).
//!
//! In regent the state machine is the snapshot: taking one compacts the log through the
//! applied index (followers further behind are sent the state machine). Both run on the disk
//! thread after the batch in flight, never inside a batch's transaction.

use super::routes::{ask, error, json_response, query_param, request_error, HttpResponse};
use super::{ApiContext, Request};
use hyper::StatusCode;
use regent_raft::NodeId;
use regent_replica::{MaintenanceChange, PAUSE_TTL_MAX_MS};
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

/// `POST /v1/admin/pause?ttl_s=N&reason=TEXT`, `POST /v1/admin/resume`,
/// `POST /v1/admin/drain?node=ID`, `POST /v1/admin/undrain?node=ID`: replicated through the
/// log (on the leader; `forward=true` relays from a follower). Answered once applied here with
/// `{"index", "paused", "drained"}` as this node sees them then.
pub async fn change(context: &ApiContext, path: &str, query: &str) -> HttpResponse {
    let node = query_param(query, "node")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .map(NodeId);
    let no_node = || {
        error(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            "node=ID (a member's id) is required",
            None,
        )
    };
    let change = match path {
        "/v1/admin/pause" => {
            let ttl_ms = match query_param(query, "ttl_s").map(|t| t.parse::<u64>()) {
                None => None,
                Some(Ok(s)) if s > 0 && s <= PAUSE_TTL_MAX_MS / 1000 => Some(s * 1000),
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_parameter",
                        &format!(
                            "ttl_s must be a whole number of seconds within 1..={}",
                            PAUSE_TTL_MAX_MS / 1000
                        ),
                        None,
                    )
                }
            };
            let reason = query_param(query, "reason").unwrap_or_default();
            MaintenanceChange::Pause { ttl_ms, reason }
        }
        "/v1/admin/resume" => MaintenanceChange::Resume,
        "/v1/admin/drain" => match node {
            Some(n) => MaintenanceChange::Drain(n),
            None => return no_node(),
        },
        _ => match node {
            Some(n) => MaintenanceChange::Undrain(n),
            None => return no_node(),
        },
    };
    // Maintenance records are version 3: give a cluster version on its way (a leader that just
    // started) its moment; the replica refuses below it, after the leadership check.
    let _ = super::routes::version_gate(context, regent_replica::VERSION_OPERATIONS).await;
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::Maintenance { change, reply }, answer).await {
        Ok(written) => {
            // The answer leaves as the entry applies; the status that shows it is published
            // at the end of that turn of the driver.
            let mut status = context.status.clone();
            let published = status.wait_for(|s| s.applied_index >= written.index);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), published).await;
            let s = context.status.borrow().clone();
            json_response(
                StatusCode::OK,
                &json!({
                    "index": written.index.0,
                    "paused": s.pause.is_some(),
                    "drained": s.drained.iter().map(|d| d.0).collect::<Vec<u64>>(),
                }),
            )
        }
        Err(err) => request_error(err),
    }
}

//! The streaming endpoints: `GET /v1/leadership/watch` (the host's view of its own
//! leadership) and `GET /v1/watch` (the ordered change feed), as newline-delimited JSON.
//!
//! Invariant: a leadership watcher learns of a change as soon as the driver publishes it (it
//! waits on the status channel itself, no polling), and it judges the lease on its own clock:
//! when the published deadline passes unrenewed, the stream says the node is no longer
//! writable even if the driver has not published anything since.
// A handler's early exit is the HTTP answer itself: `Result<_, HttpResponse>` by design.
#![allow(clippy::result_large_err)]

use super::body::Body;
use super::routes::{
    bytes_json, error, json_response, query_param, read, request_error, status_json, HttpResponse,
};
use super::status::NodeStatus;
use super::{ApiContext, ReadAnswer, ReadQuery};
use crate::clock;
use bytes::Bytes;
use hyper::StatusCode;
use regent_raft::{NodeId, Role, Term};
use regent_storage::{ChangeKind, StorageError};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

/// Changes read per page of the feed.
const CHANGES_PAGE_MAX: usize = 10_000;

/// What a leadership event is about; a new event is sent when any of it changes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Leadership {
    role: Role,
    term: Term,
    leader: Option<NodeId>,
    writable: bool,
    /// Why not writable, when the clocks are why (`clock_drift`).
    reason: Option<&'static str>,
    host_healthy: bool,
    catch_up_index: Option<u64>,
}

pub fn leadership(context: &ApiContext) -> HttpResponse {
    let (tx, body) = Body::channel();
    let mut status = context.status.clone();
    let live = context.live.clone();
    tokio::spawn(async move {
        let mut last: Option<Leadership> = None;
        // The lease deadline already warned about (one warning per deadline).
        let mut warned: Option<u64> = None;
        loop {
            let s = status.borrow_and_update().clone();
            let now = clock::now();
            let current = Leadership {
                role: s.role,
                term: s.term,
                leader: s.leader_id,
                writable: s.writable_at(now),
                reason: s.reason_at(now),
                host_healthy: s.host_healthy,
                catch_up_index: s.catch_up_index,
            };
            if last != Some(current) {
                let kind = if last.is_none() { "state" } else { "change" };
                if !send(&tx, event(kind, &s, now)).await {
                    return;
                }
                last = Some(current);
            }
            // While writable: wake at the warning point and at the deadline itself. The warning
            // period is read each time: a reload may change it.
            let warning_ns = live.borrow().lease_warning_ms * 1_000_000;
            let wake = match s.lease_deadline_ns.filter(|_| current.writable) {
                Some(deadline) if warned != Some(deadline) => {
                    Some((deadline.saturating_sub(warning_ns), Some(deadline)))
                }
                Some(deadline) => Some((deadline, None)),
                None => None,
            };
            let sleep = async {
                match wake {
                    Some((at, _)) => tokio::time::sleep(clock::until(at, clock::now())).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
                _ = sleep => {
                    if let Some((_, Some(deadline))) = wake {
                        warned = Some(deadline);
                        let s = status.borrow().clone();
                        if s.lease_deadline_ns == Some(deadline)
                            && !send(&tx, event("lease_warning", &s, clock::now())).await
                        {
                            return;
                        }
                    }
                }
            }
        }
    });
    stream_response(body)
}

fn event(kind: &str, s: &NodeStatus, now: u64) -> Value {
    let mut v = status_json(s, now);
    v["event"] = json!(kind);
    v["monotonic_ns"] = json!(now);
    v
}

/// `GET /v1/watch?prefix=P&from_revision=R`: the changes of keys under P from revision R (or
/// from now), in order, then live. A compacted revision is refused with 410 and the oldest
/// revision still available.
pub async fn changes(context: &ApiContext, query: &str) -> HttpResponse {
    let prefix = query_param(query, "prefix")
        .unwrap_or_default()
        .into_bytes();
    let from = match query_param(query, "from_revision").map(|r| r.parse::<u64>()) {
        None => None,
        Some(Ok(r)) if r >= 1 => Some(r),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                "from_revision must be a positive integer",
                None,
            )
        }
    };
    let mut after = from.map_or(context.status.borrow().revision, |r| r - 1);
    // The first page is read before answering, so a compacted revision gets a proper 410.
    let first = match page(context, after).await {
        Ok(Ok(page)) => page,
        Ok(Err(StorageError::ChangesCompacted { floor, .. })) => {
            return error(
                StatusCode::GONE,
                "compacted",
                &format!(
                    "revision {} is compacted; the oldest available is {}",
                    after + 1,
                    floor + 1
                ),
                Some(json!({ "oldest_revision": floor + 1 })),
            )
        }
        Ok(Err(err)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                &err.to_string(),
                None,
            )
        }
        Err(response) => return response,
    };
    let (tx, body) = Body::channel();
    let mut status = context.status.clone();
    let requests = context.requests.clone();
    let options = context.options.clone();
    let live = context.live.clone();
    let metrics = context.metrics.clone();
    tokio::spawn(async move {
        let context = ApiContext {
            requests,
            metrics,
            status: status.clone(),
            options,
            live,
        };
        let mut changes = first;
        loop {
            for change in &changes.changes {
                after = change.revision;
                if change.key.starts_with(&prefix) && !send(&tx, change_json(change)).await {
                    return;
                }
            }
            if !changes.more {
                tokio::select! {
                    changed = status.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
            changes = match page(&context, after).await {
                Ok(Ok(page)) => page,
                Ok(Err(err)) => {
                    let _ = send(
                        &tx,
                        json!({ "error": "storage_error", "message": err.to_string() }),
                    )
                    .await;
                    return;
                }
                Err(_) => return,
            };
        }
    });
    stream_response(body)
}

async fn page(
    context: &ApiContext,
    after: u64,
) -> Result<Result<regent_storage::ChangePage, StorageError>, HttpResponse> {
    let query = ReadQuery::Changes {
        revision: after,
        limit: CHANGES_PAGE_MAX,
    };
    match read(context, query, None).await {
        Ok(ReadAnswer::Changes(result)) => Ok(result),
        Ok(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the driver answered another kind of read",
            None,
        )),
        Err(err) => Err(request_error(err)),
    }
}

fn change_json(change: &regent_storage::Change) -> Value {
    match &change.kind {
        ChangeKind::Put {
            value,
            create_revision,
            version,
        } => json!({
            "type": "put",
            "revision": change.revision,
            "key": bytes_json(&change.key),
            "value": bytes_json(value),
            "create_revision": create_revision,
            "version": version,
        }),
        ChangeKind::Delete => json!({
            "type": "delete",
            "revision": change.revision,
            "key": bytes_json(&change.key),
        }),
    }
}

/// Sends one NDJSON line; false once the client is gone.
pub(super) async fn send(tx: &mpsc::Sender<Bytes>, value: Value) -> bool {
    let mut line = serde_json::to_vec(&value).expect("JSON values serialize");
    line.push(b'\n');
    tokio::time::timeout(Duration::from_secs(30), tx.send(Bytes::from(line)))
        .await
        .is_ok_and(|sent| sent.is_ok())
}

pub(super) fn stream_response(body: Body) -> HttpResponse {
    let mut response = json_response(StatusCode::OK, &json!({}));
    *response.body_mut() = body;
    response.headers_mut().insert(
        "content-type",
        "application/x-ndjson"
            .parse()
            .expect("a valid header value"),
    );
    response
}

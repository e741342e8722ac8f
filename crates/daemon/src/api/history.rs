//! `GET /v1/history?limit=N`: the failover history (Patroni's `history`), answered from the
//! state machine as applied on this node (any node answers; `applied_index` says how far its
//! view goes). The records are written by the replica (`regent_replica::history`).

use super::routes::{ask, error, json_response, query_param, request_error, HttpResponse};
use super::{ApiContext, Request};
use hyper::StatusCode;
use regent_replica::HISTORY_KEEP_MAX;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Records answered when the request names no `limit`.
pub const HISTORY_LIMIT_DEFAULT: usize = 20;

/// Answers `{"node_id", "applied_index", "history": [{"term", "leader", "previous_leader",
/// "cause", "time_ms", "time"}, ...]}`: the newest `limit` records, oldest first.
pub async fn history(context: &ApiContext, query: &str) -> HttpResponse {
    let limit = match query_param(query, "limit").map(|l| l.parse::<usize>()) {
        None => HISTORY_LIMIT_DEFAULT,
        Some(Ok(limit)) if (1..=HISTORY_KEEP_MAX as usize).contains(&limit) => limit,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                &format!("limit must be a whole number within 1..={HISTORY_KEEP_MAX}"),
                None,
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::History { limit, reply }, answer).await {
        Ok(answer) => {
            let records: Vec<Value> = answer
                .records
                .iter()
                .map(|r| {
                    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.time_ms);
                    json!({
                        "term": r.term.0,
                        "leader": r.leader.0,
                        "previous_leader": r.previous_leader.map(|p| p.0),
                        "cause": r.cause.as_str(),
                        "time_ms": r.time_ms,
                        "time": crate::logging::rfc3339(at),
                    })
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({
                    "node_id": context.status.borrow().node_id.0,
                    "applied_index": answer.applied_index.0,
                    "history": records,
                }),
            )
        }
        Err(err) => request_error(err),
    }
}

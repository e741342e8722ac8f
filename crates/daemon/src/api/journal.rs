//! The host's operation journal on the socket: `POST /v1/journal` (append one operation, or a
//! batch), `GET /v1/journal?from=N` (the committed operations in order, backlog then live),
//! `GET /v1/journal/state`, `POST /v1/journal/applied` and `POST /v1/journal/checkpoint`.
//!
//! Invariants: an append is answered only once its entry is applied here (committed and
//! durable on a quorum), with the journal indexes it took; a tail sends each index once, in
//! order, without gaps, and ends (never skips) when the journal no longer holds the next index;
//! every bad input gets a 4xx JSON error naming what was wrong.
//!
//! Framings (see docs/api.md):
//! - a batch append body (`?batch=true` or `content-type: application/x-regent-journal-batch`)
//!   is a sequence of operations, each a 4-byte big-endian length then its bytes;
//! - the binary tail (the default) is a sequence of frames: index (8 bytes, big-endian), term
//!   (8), length (4), then the operation; `format=ndjson` sends one JSON object per line,
//!   `{"index": N, "term": T, "op": BASE64}`.
// A handler's early exit is the HTTP answer itself: `Result<_, HttpResponse>` by design.
#![allow(clippy::result_large_err)]

use super::body::Body;
use super::body::RequestBody;
use super::routes::{
    ask, error, json_response, query_param, read, read_body, request_error, HttpResponse,
    WriteOptions,
};
use super::{ApiContext, ReadAnswer, ReadQuery, Request, RequestError};
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use regent_storage::{
    Command, JournalPage, Proposal, Response as KvResponse, StorageError, JOURNAL_BATCH_OPS_MAX,
    JOURNAL_OP_BYTES_MAX,
};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Operations read per page of a tail.
const TAIL_PAGE_MAX: usize = 4096;
/// The content type that marks a batch append.
pub const BATCH_CONTENT_TYPE: &str = "application/x-regent-journal-batch";
/// Bytes before each operation of a binary tail frame: index, term, length.
pub const FRAME_HEADER_BYTES: usize = 20;

pub async fn handle(
    context: &ApiContext,
    path: &str,
    query: &str,
    request: hyper::Request<RequestBody>,
) -> HttpResponse {
    let method = request.method().clone();
    match (path, &method) {
        ("/v1/journal", &Method::POST) => append(context, query, request).await,
        ("/v1/journal", &Method::GET) => tail(context, query).await,
        ("/v1/journal/state", &Method::GET | &Method::HEAD) => state(context),
        ("/v1/journal/applied", &Method::POST) => report(context, request, false).await,
        ("/v1/journal/checkpoint", &Method::POST) => report(context, request, true).await,
        ("/v1/journal", _) => not_allowed("GET, POST"),
        ("/v1/journal/state", _) => not_allowed("GET, HEAD"),
        ("/v1/journal/applied" | "/v1/journal/checkpoint", _) => not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no endpoint {path}; see docs/api.md"),
            None,
        ),
    }
}

fn not_allowed(allowed: &str) -> HttpResponse {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("allowed: {allowed}"),
        None,
    );
    response
        .headers_mut()
        .insert("allow", allowed.parse().expect("a valid header value"));
    response
}

fn bad(code: &str, message: &str) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, code, message, None)
}

/// Why a batch append body does not frame. Operations are numbered from 0 (`at`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("operation {at}: the length needs 4 bytes, {remaining} remain")]
    TruncatedLength { at: usize, remaining: usize },
    #[error("operation {at}: length {len} is not within 1..={JOURNAL_OP_BYTES_MAX}")]
    BadLength { at: usize, len: usize },
    #[error("operation {at}: {len} bytes announced, {remaining} remain")]
    TruncatedOperation {
        at: usize,
        len: usize,
        remaining: usize,
    },
    #[error("more than {JOURNAL_BATCH_OPS_MAX} operations in one batch")]
    TooManyOperations,
    #[error("the batch holds no operation")]
    Empty,
}

/// Splits a batch body into its operations.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Vec<u8>>, BatchError> {
    let mut ops = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let at = ops.len();
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(BatchError::TruncatedLength {
                at,
                remaining: rest.len(),
            });
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > JOURNAL_OP_BYTES_MAX {
            return Err(BatchError::BadLength { at, len });
        }
        if tail.len() < len {
            return Err(BatchError::TruncatedOperation {
                at,
                len,
                remaining: tail.len(),
            });
        }
        ops.push(tail[..len].to_vec());
        rest = &tail[len..];
        if ops.len() > JOURNAL_BATCH_OPS_MAX {
            return Err(BatchError::TooManyOperations);
        }
    }
    if ops.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(ops)
}

/// Encodes operations as a batch body (the inverse of `parse_batch`).
pub fn encode_batch(ops: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        out.extend_from_slice(&(op.len() as u32).to_be_bytes());
        out.extend_from_slice(op);
    }
    out
}

/// An operation as the NDJSON tail carries it (standard base64 with padding).
pub fn op_base64(op: &[u8]) -> String {
    super::BASE64.encode(op)
}

fn is_true(value: Option<String>) -> Option<bool> {
    match value.as_deref() {
        None => None,
        Some("" | "1" | "true" | "yes") => Some(true),
        Some(_) => Some(false),
    }
}

/// `POST /v1/journal[?batch=true][&expected_term=T][&client_id=C&seq=S]`.
async fn append(
    context: &ApiContext,
    query: &str,
    request: hyper::Request<RequestBody>,
) -> HttpResponse {
    let options = match WriteOptions::parse(query) {
        Ok(options) => options,
        Err(response) => return response,
    };
    let batch_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(BATCH_CONTENT_TYPE));
    let batch = match query_param(query, "batch").as_deref() {
        None => batch_type,
        Some("1" | "true") => true,
        Some("0" | "false") => false,
        Some(other) => {
            return bad(
                "bad_parameter",
                &format!("batch={other:?}: expected true or false"),
            )
        }
    };
    let body = match read_body(context, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let ops = if batch {
        match parse_batch(&body) {
            Ok(ops) => ops,
            Err(reason) => return bad("bad_batch", &reason.to_string()),
        }
    } else {
        if body.is_empty() {
            return bad(
                "bad_operation",
                "the body is empty: an operation has at least one byte",
            );
        }
        if body.len() > JOURNAL_OP_BYTES_MAX {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("an operation has at most {JOURNAL_OP_BYTES_MAX} bytes"),
                None,
            );
        }
        vec![body]
    };
    let count = ops.len();
    let mut proposal = Proposal::new(Command::JournalAppend {
        ops,
        retention: context.live.borrow().journal_retention,
    });
    proposal.expected_term = options.expected_term;
    proposal.session = options.session;
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::Propose { proposal, reply }, answer).await {
        Ok(answer) => {
            // A retry answered from its session names the term its operations were stored
            // with; `log_index` is the entry that carried this request either way.
            let (first, last, term) = match answer.response {
                KvResponse::JournalAppended { first, last } => (first, last, answer.term.0),
                KvResponse::JournalRetried { first, last, term } => {
                    (first, last, term.unwrap_or(answer.term.0))
                }
                other => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "storage_error",
                        &format!("a journal append of {count} operations answered {other:?}"),
                        None,
                    )
                }
            };
            json_response(
                StatusCode::OK,
                &json!({
                    "index": last,
                    "term": term,
                    "first_index": first,
                    "last_index": last,
                    "count": last + 1 - first,
                    "log_index": answer.index.0,
                }),
            )
        }
        Err(err) => request_error(err),
    }
}

/// `POST /v1/journal/applied {"index": N}` and `POST /v1/journal/checkpoint {"index": N}`.
async fn report(
    context: &ApiContext,
    request: hyper::Request<RequestBody>,
    checkpoint: bool,
) -> HttpResponse {
    let body = match read_body(context, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let index = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("index").and_then(Value::as_u64) {
            Some(index) => index,
            None => {
                return bad(
                    "bad_json",
                    "the body must be {\"index\": N} with N a non-negative integer",
                )
            }
        },
        Err(err) => return bad("bad_json", &format!("the body is not JSON: {err}")),
    };
    let node = context.status.borrow().node_id.0;
    let command = Command::JournalReport {
        node,
        applied: (!checkpoint).then_some(index),
        checkpoint: checkpoint.then_some(index),
        retention: context.live.borrow().journal_retention,
    };
    let (reply, answer) = oneshot::channel();
    let proposal = Proposal::new(command);
    match ask(context, Request::Propose { proposal, reply }, answer).await {
        Ok(answer) => {
            let (first, last) = match answer.response {
                KvResponse::JournalReported { first, last } => (first, last),
                _ => (0, 0),
            };
            json_response(
                StatusCode::OK,
                &json!({
                    "index": index,
                    "replicated": true,
                    "first_index": first,
                    "last_index": last,
                }),
            )
        }
        // On a standby the driver recorded the report (the hand-over ack needs nothing else)
        // and forwarded it to the leader, which logs it in this node's name.
        Err(RequestError::NotLeader { .. }) => {
            let s = context.status.borrow().clone();
            if !checkpoint || index <= s.journal.last {
                json_response(
                    StatusCode::OK,
                    &json!({
                        "index": index,
                        "replicated": false,
                        "forwarded_to": s.leader_id.map(|l| l.0),
                        "first_index": s.journal.first,
                        "last_index": s.journal.last,
                    }),
                )
            } else {
                bad(
                    "command_refused",
                    &format!(
                        "journal report of index {index} is beyond the last journal index {}",
                        s.journal.last
                    ),
                )
            }
        }
        Err(err) => request_error(err),
    }
}

/// `GET /v1/journal/state`: this node's view of the journal.
fn state(context: &ApiContext) -> HttpResponse {
    let s = context.status.borrow().clone();
    let j = &s.journal;
    let mut ids: Vec<u64> = s.members.iter().map(|m| m.id.0).collect();
    ids.extend(j.members.iter().map(|m| m.node));
    ids.push(s.node_id.0);
    ids.sort_unstable();
    ids.dedup();
    let members: Vec<Value> = ids
        .iter()
        .map(|&id| {
            let reported = j.members.iter().find(|m| m.node == id);
            let mut applied = reported.map_or(0, |m| m.applied);
            if id == s.node_id.0 {
                applied = applied.max(s.host_applied_index);
            }
            json!({
                "node_id": id,
                "applied_index": applied,
                "checkpoint_index": reported.map_or(0, |m| m.checkpoint),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "node_id": s.node_id.0,
            "term": s.term.0,
            "first_index": j.first,
            "last_index": j.last,
            "last_term": j.last_term,
            "count": j.count(),
            "bytes": j.bytes,
            "catch_up_index": s.catch_up_index,
            "members": members,
        }),
    )
}

async fn page(
    context: &ApiContext,
    from: u64,
) -> Result<Result<JournalPage, StorageError>, HttpResponse> {
    let query = ReadQuery::Journal {
        from,
        limit: TAIL_PAGE_MAX,
    };
    match read(context, query, None).await {
        Ok(ReadAnswer::Journal(result)) => Ok(result),
        Ok(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the driver answered another kind of read",
            None,
        )),
        Err(err) => Err(request_error(err)),
    }
}

fn gone(requested: u64, first: u64) -> HttpResponse {
    error(
        StatusCode::GONE,
        "journal_compacted",
        &format!(
            "journal index {requested} is gone; the first retained index is {first}: copy a checkpoint from a peer host, then tail from its index + 1"
        ),
        Some(json!({ "first_index": first })),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Binary,
    Ndjson,
}

/// `GET /v1/journal?from=N[&format=ndjson][&follow=false]`.
async fn tail(context: &ApiContext, query: &str) -> HttpResponse {
    let mut next = match query_param(query, "from").map(|f| f.parse::<u64>()) {
        None => 1,
        Some(Ok(from)) if from >= 1 => from,
        Some(_) => {
            return bad(
                "bad_parameter",
                "from must be a journal index (an integer, at least 1)",
            )
        }
    };
    let format = match query_param(query, "format").as_deref() {
        None | Some("binary") => Format::Binary,
        Some("ndjson") => Format::Ndjson,
        Some(other) => {
            return bad(
                "bad_parameter",
                &format!("format={other:?}: expected binary or ndjson"),
            )
        }
    };
    let follow = is_true(query_param(query, "follow")).unwrap_or(true);
    // The first page is read before answering, so that a gone index gets a proper 410.
    let first = match page(context, next).await {
        Ok(Ok(page)) => page,
        Ok(Err(StorageError::JournalCompacted { requested, first })) => {
            return gone(requested, first)
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
    let inner = ApiContext {
        requests: context.requests.clone(),
        metrics: context.metrics.clone(),
        status: status.clone(),
        options: context.options.clone(),
        live: context.live.clone(),
        transport: None,
        hooks: None,
    };
    tokio::spawn(async move {
        let mut current = first;
        loop {
            if !current.ops.is_empty() {
                let mut chunk = Vec::new();
                for op in &current.ops {
                    assert_eq!(op.index, next, "a tail sends every index once, in order");
                    match format {
                        Format::Binary => {
                            chunk.extend_from_slice(&op.index.to_be_bytes());
                            chunk.extend_from_slice(&op.term.to_be_bytes());
                            chunk.extend_from_slice(&(op.op.len() as u32).to_be_bytes());
                            chunk.extend_from_slice(&op.op);
                        }
                        Format::Ndjson => {
                            let line = json!({
                                "index": op.index,
                                "term": op.term,
                                "op": op_base64(&op.op),
                            });
                            serde_json::to_writer(&mut chunk, &line).expect("JSON serializes");
                            chunk.push(b'\n');
                        }
                    }
                    next += 1;
                }
                if !send_bytes(&tx, chunk).await {
                    return;
                }
            }
            // Caught up: wait until the journal holds the next index (or lost it).
            while next > current.state.last {
                if !follow {
                    return;
                }
                let j = status.borrow_and_update().journal.clone();
                if j.last >= next || j.first > next {
                    break;
                }
                tokio::select! {
                    changed = status.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
                current.state = status.borrow().journal.clone();
            }
            current = match page(&inner, next).await {
                Ok(Ok(page)) => page,
                Ok(Err(StorageError::JournalCompacted { requested, first })) => {
                    if format == Format::Ndjson {
                        let line = json!({
                            "error": "journal_compacted",
                            "message": format!("journal index {requested} is gone; the first retained index is {first}"),
                            "first_index": first,
                        });
                        let _ = super::streams::send(&tx, line).await;
                    }
                    return;
                }
                Ok(Err(err)) => {
                    if format == Format::Ndjson {
                        let line = json!({ "error": "storage_error", "message": err.to_string() });
                        let _ = super::streams::send(&tx, line).await;
                    }
                    return;
                }
                Err(_) => return,
            };
        }
    });
    let mut response = super::streams::stream_response(body);
    if format == Format::Binary {
        response.headers_mut().insert(
            "content-type",
            "application/octet-stream"
                .parse()
                .expect("a valid header value"),
        );
    }
    response
}

/// Sends one chunk of the stream; false once the client is gone.
async fn send_bytes(tx: &mpsc::Sender<Bytes>, chunk: Vec<u8>) -> bool {
    tokio::time::timeout(Duration::from_secs(30), tx.send(Bytes::from(chunk)))
        .await
        .is_ok_and(|sent| sent.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_framing_round_trips_and_names_bad_input() {
        let ops = vec![b"mkdir /a".to_vec(), vec![0xff; 3]];
        assert_eq!(parse_batch(&encode_batch(&ops)), Ok(ops));
        let refusal = |body: &[u8]| parse_batch(body).unwrap_err().to_string();
        assert!(refusal(b"").contains("no operation"));
        assert!(refusal(&[0, 0, 0]).contains("4 bytes"));
        assert!(refusal(&[0, 0, 0, 0]).contains("length 0"));
        assert!(refusal(&[0, 0, 0, 5, 1, 2]).contains("5 bytes announced"));
    }
}

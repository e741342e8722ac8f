//! The endpoints: one function per path, errors as JSON with a stable code.
// A handler's early exit is the HTTP answer itself: `Result<_, HttpResponse>` by design.
#![allow(clippy::result_large_err)]

use super::body::RequestBody;
use super::forward;
use super::status::NodeStatus;
use super::{
    ApiContext, BusyReason, ReadAnswer, ReadQuery, Request, RequestError, WriteAnswer,
    REQUEST_TIMEOUT,
};
use crate::clock;
use base64::Engine;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, StatusCode};
use regent_raft::Role;
use regent_replica::ReadMode;
use regent_storage::{
    Command, KeyValue, Proposal, Response as KvResponse, SessionSeq, RANGE_LIMIT_MAX,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub type HttpResponse = hyper::Response<super::body::Body>;

/// The session lifetime when `POST /v1/session` names none.
pub const SESSION_TTL_DEFAULT_MS: u64 = 60_000;

/// Answers one request; every answer names the node whose handler produced it
/// (`x-regent-node`: the leader, for an answer relayed from there).
pub async fn handle(
    context: &ApiContext,
    caller: Caller,
    request: hyper::Request<RequestBody>,
) -> HttpResponse {
    let mut response = route(context, caller, request).await;
    if !response.headers().contains_key(forward::ANSWERED_BY_HEADER) {
        let node = context.status.borrow().node_id.0;
        response.headers_mut().insert(
            forward::ANSWERED_BY_HEADER,
            hyper::header::HeaderValue::from(node),
        );
    }
    response
}

async fn route(
    context: &ApiContext,
    caller: Caller,
    request: hyper::Request<RequestBody>,
) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let method = request.method().clone();
    let head_or_get = matches!(method, Method::GET | Method::HEAD);
    if caller.remote && !PUBLIC_PATHS.contains(&path.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "the TCP listener serves only /v1/leader, /v1/replica, /v1/health and /metrics",
            None,
        );
    }
    // `forward=true` on a follower: relayed to the leader (never again from there).
    if forward::forwardable(&method, &path) && caller.forwarded_by.is_none() {
        match forward::wanted(&query) {
            Err(response) => return response,
            Ok(false) => {}
            Ok(true) => {
                if forward::admin_path(&path) {
                    if let Err(denied) = admin_only(context, caller, "a forwarded cluster change") {
                        return denied;
                    }
                }
                let (role, leader) = {
                    let s = context.status.borrow();
                    (s.role, s.leader_id)
                };
                // Without a known leader the request runs here and says `not_leader`.
                if let (false, Some(leader)) = (role == Role::Leader, leader) {
                    return forward::relay(context, leader, request).await;
                }
            }
        }
    }
    match path.as_str() {
        "/v1/status" if head_or_get => {
            return match query_param(&query, "digest").as_deref() {
                None | Some("false") => status(context),
                Some("true") => status_with_digest(context).await,
                Some(_) => error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    "digest must be true or false",
                    None,
                ),
            }
        }
        "/metrics" if head_or_get => {
            let s = context.status.borrow().clone();
            let mut text = super::metrics::render(
                &context.metrics,
                &s,
                clock::now(),
                regent_transport::pki::identity::unix_now(),
            );
            if let Some(hooks) = &context.hooks {
                super::metrics::render_hooks(&mut text, hooks);
            }
            return hyper::Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(super::body::Body::full(text))
                .expect("a valid response");
        }
        "/v1/leader" if head_or_get => return check(context, Check::Leader),
        "/v1/replica" if head_or_get => return check(context, Check::Replica),
        "/v1/health" if head_or_get => return check(context, Check::Health),
        "/v1/leadership/watch" if method == Method::GET => {
            return super::streams::leadership(context)
        }
        "/v1/watch" if method == Method::GET => {
            return super::streams::changes(context, &query).await
        }
        "/v1/kv" if method == Method::GET => return kv_range(context, &query).await,
        "/v1/history" if method == Method::GET => {
            return super::history::history(context, &query).await
        }
        p if p.starts_with("/v1/journal") => {
            return super::journal::handle(context, &path, &query, request).await
        }
        "/v1/session" if method == Method::POST => return open_session(context, request).await,
        "/v1/txn" if method == Method::POST => return txn(context, &query, request).await,
        "/v1/admin/members" if method == Method::POST => {
            if let Err(denied) = admin_only(context, caller, "a membership change") {
                return denied;
            }
            return super::members::members(context, &query).await;
        }
        "/v1/admin/reload" if method == Method::POST => {
            if let Err(denied) = admin_only(context, caller, "reload") {
                return denied;
            }
            let (reply, answer) = oneshot::channel();
            let reload = Request::Reload { reply: Some(reply) };
            return match ask(context, reload, answer).await {
                Ok(text) => json_response(StatusCode::OK, &json!({ "reloaded": text })),
                Err(err) => request_error(err),
            };
        }
        "/v1/admin/snapshot" | "/v1/admin/compact" if method == Method::POST => {
            if let Err(denied) = admin_only(context, caller, "a snapshot or compaction") {
                return denied;
            }
            return super::maintenance::snapshot(context, path == "/v1/admin/compact").await;
        }
        "/v1/admin/backup" if method == Method::GET => {
            if let Err(denied) = admin_only(context, caller, "a backup") {
                return denied;
            }
            return super::backup::backup(context).await;
        }
        "/v1/admin/fence" if method == Method::POST => {
            if let Err(denied) = admin_only(context, caller, "fencing") {
                return denied;
            }
            return fence(context, &query).await;
        }
        "/v1/admin/switchover" if method == Method::POST => {
            if let Err(denied) = admin_only(context, caller, "switchover") {
                return denied;
            }
            return switchover(context, &query).await;
        }
        "/v1/admin/pause" | "/v1/admin/resume" | "/v1/admin/drain" | "/v1/admin/undrain"
            if method == Method::POST =>
        {
            if let Err(denied) = admin_only(context, caller, "maintenance") {
                return denied;
            }
            return super::maintenance::change(context, &path, &query).await;
        }
        "/v1/status" | "/v1/leader" | "/v1/replica" | "/v1/health" | "/metrics" => {
            return method_not_allowed("GET, HEAD")
        }
        "/v1/leadership/watch" | "/v1/watch" | "/v1/kv" | "/v1/history" | "/v1/admin/backup" => {
            return method_not_allowed("GET")
        }
        "/v1/session"
        | "/v1/txn"
        | "/v1/admin/switchover"
        | "/v1/admin/fence"
        | "/v1/admin/reload"
        | "/v1/admin/snapshot"
        | "/v1/admin/compact"
        | "/v1/admin/pause"
        | "/v1/admin/resume"
        | "/v1/admin/drain"
        | "/v1/admin/undrain"
        | "/v1/admin/members" => return method_not_allowed("POST"),
        _ => {}
    }
    if let Some(raw_key) = path.strip_prefix("/v1/kv/") {
        let key = match percent_decode(raw_key) {
            Some(key) if !key.is_empty() => key,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_key",
                    "the key is empty or badly percent-encoded",
                    None,
                )
            }
        };
        let write_options = || WriteOptions::parse(&query);
        return match method {
            Method::GET | Method::HEAD => kv_get(context, key, &query).await,
            Method::PUT => match (write_options(), read_body(context, request).await) {
                (Ok(options), Ok(value)) => {
                    write(context, options, Command::Put { key, value }).await
                }
                (Err(response), _) | (_, Err(response)) => response,
            },
            Method::DELETE => match write_options() {
                Ok(options) => write(context, options, Command::Delete { key }).await,
                Err(response) => response,
            },
            _ => method_not_allowed("GET, HEAD, PUT, DELETE"),
        };
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no endpoint {path}; see docs/api.md"),
        None,
    )
}

/// The optional parameters of every write: `expected_term` (fencing), `client_id` and `seq`
/// (exactly-once, in a session opened with `POST /v1/session`), `acked_below`.
pub(super) struct WriteOptions {
    pub(super) expected_term: Option<u64>,
    pub(super) session: Option<SessionSeq>,
}

impl WriteOptions {
    pub(super) fn parse(query: &str) -> Result<WriteOptions, HttpResponse> {
        let number = |name: &str| -> Result<Option<u64>, HttpResponse> {
            match query_param(query, name) {
                None => Ok(None),
                Some(text) => text.parse().map(Some).map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_parameter",
                        &format!("{name}={text:?} is not a non-negative integer"),
                        None,
                    )
                }),
            }
        };
        let expected_term = number("expected_term")?;
        let session = match (number("client_id")?, number("seq")?) {
            (None, None) => None,
            (Some(client_id), Some(seq)) => Some(SessionSeq {
                client_id,
                seq,
                acked_below: number("acked_below")?.unwrap_or(seq),
            }),
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    "client_id and seq go together",
                    None,
                ))
            }
        };
        Ok(WriteOptions {
            expected_term,
            session,
        })
    }
}

/// The load-balancer and script checks (Patroni's): 200 or 503 with the status as the body.
enum Check {
    /// This node is writable.
    Leader,
    /// A follower with a leader (it can serve reads that may be slightly stale).
    Replica,
    /// The node runs and is connected to a quorum (it knows a leader, or it leads writably).
    Health,
}

fn check(context: &ApiContext, which: Check) -> HttpResponse {
    let s = context.status.borrow().clone();
    let now = clock::now();
    let ok = match which {
        Check::Leader => s.writable_at(now),
        Check::Replica => s.role == Role::Follower && s.leader_id.is_some(),
        Check::Health => s.leader_id.is_some() && (s.role != Role::Leader || s.writable_at(now)),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &status_json(&s, now))
}

async fn open_session(context: &ApiContext, request: hyper::Request<RequestBody>) -> HttpResponse {
    let body = match read_body(context, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let ttl_ms = if body.iter().all(u8::is_ascii_whitespace) {
        SESSION_TTL_DEFAULT_MS
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => match &v["ttl_ms"] {
                Value::Null => SESSION_TTL_DEFAULT_MS,
                n => match n.as_u64() {
                    Some(ttl) => ttl,
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "bad_json",
                            "ttl_ms must be a non-negative integer",
                            None,
                        )
                    }
                },
            },
            Err(err) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    &format!("the body is not JSON: {err}"),
                    None,
                )
            }
        }
    };
    let proposal = Proposal::new(Command::RegisterSession { ttl_ms });
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::Propose { proposal, reply }, answer).await {
        Ok(WriteAnswer {
            response: KvResponse::SessionRegistered { client_id },
            ..
        }) => json_response(
            StatusCode::OK,
            &json!({ "client_id": client_id, "ttl_ms": ttl_ms }),
        ),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            &format!("unexpected answer {:?}", other.response),
            None,
        ),
        Err(err) => request_error(err),
    }
}

/// Parses `consistency=`: `linearizable` (default), `lease`, or `local`.
fn read_mode(query: &str) -> Result<Option<ReadMode>, HttpResponse> {
    match query_param(query, "consistency").as_deref() {
        None | Some("linearizable") => Ok(Some(ReadMode::Index)),
        Some("lease") => Ok(Some(ReadMode::Lease)),
        Some("local") => Ok(None),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_consistency",
            &format!("consistency={other}: expected linearizable, lease or local"),
            None,
        )),
    }
}

/// Runs a read through the driver.
pub(super) async fn read(
    context: &ApiContext,
    query: ReadQuery,
    mode: Option<ReadMode>,
) -> Result<ReadAnswer, RequestError> {
    let (reply, answer) = oneshot::channel();
    ask(context, Request::Read { query, mode, reply }, answer).await
}

async fn kv_range(context: &ApiContext, query: &str) -> HttpResponse {
    let mode = match read_mode(query) {
        Ok(mode) => mode,
        Err(response) => return response,
    };
    let prefix = match query_param_bytes(query, "prefix") {
        Ok(prefix) => prefix.unwrap_or_default(),
        Err(response) => return response,
    };
    let limit = match query_param(query, "limit").map(|l| l.parse::<u32>()) {
        None => 1000,
        Some(Ok(limit)) if (1..=RANGE_LIMIT_MAX).contains(&limit) => limit,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                &format!("limit must be within 1..={RANGE_LIMIT_MAX}"),
                None,
            )
        }
    };
    match read(context, ReadQuery::Range { prefix, limit }, mode).await {
        Ok(ReadAnswer::Range { kvs, more }) => {
            let kvs: Vec<Value> = kvs.iter().map(kv_json).collect();
            json_response(StatusCode::OK, &json!({ "kvs": kvs, "more": more }))
        }
        Ok(_) => unreachable_answer(),
        Err(err) => request_error(err),
    }
}

fn status(context: &ApiContext) -> HttpResponse {
    let s = context.status.borrow().clone();
    let mut body = status_json(&s, clock::now());
    if let Some(hooks) = &context.hooks {
        body["hooks"] = hooks_json(hooks);
    }
    json_response(StatusCode::OK, &body)
}

/// `POST /v1/admin/fence?node=ID`: runs the fence methods against a node now (`regent fence`);
/// a success also releases a promotion waiting for that node to be fenced.
async fn fence(context: &ApiContext, query: &str) -> HttpResponse {
    let Some(node) = query_param(query, "node").and_then(|n| n.parse::<u64>().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            "node=ID (a member's id) is required",
            None,
        );
    };
    let Some(hooks) = &context.hooks else {
        return error(
            StatusCode::CONFLICT,
            "fence_failed",
            "no fencing.methods are configured",
            None,
        );
    };
    let node = regent_raft::NodeId(node);
    let address = context
        .status
        .borrow()
        .members
        .iter()
        .find(|m| m.id == node)
        .and_then(|m| m.address);
    match hooks.fence_by_hand(node, address).await {
        Ok(method) => json_response(
            StatusCode::OK,
            &json!({ "fenced": node.0, "method": method }),
        ),
        Err(why) => error(
            StatusCode::CONFLICT,
            "fence_failed",
            &format!("no fence method succeeded against node {node}: {why}"),
            None,
        ),
    }
}

/// The last run of each hook that ran: `{name: {result, exit, duration_ms, at_unix_ms}}`.
fn hooks_json(hooks: &crate::hooks::HooksView) -> Value {
    let runs: serde_json::Map<String, Value> = hooks
        .last_runs()
        .into_iter()
        .map(|(name, run)| {
            (
                name.to_string(),
                json!({
                    "result": run.result.label(),
                    "exit": run.exit,
                    "duration_ms": run.duration_ms,
                    "at_unix_ms": run.at_unix_ms,
                }),
            )
        })
        .collect();
    Value::Object(runs)
}

/// `GET /v1/status?digest=true`: the status plus a digest of the state machine as applied
/// here (read on the disk thread; equal on nodes that applied the same index).
async fn status_with_digest(context: &ApiContext) -> HttpResponse {
    match read(context, ReadQuery::Digest, None).await {
        Ok(ReadAnswer::Digest(d)) => {
            let s = context.status.borrow().clone();
            let mut body = status_json(&s, clock::now());
            body["digest"] = digest_json(&d);
            json_response(StatusCode::OK, &body)
        }
        Ok(_) => unreachable_answer(),
        Err(err) => request_error(err),
    }
}

pub(super) fn status_json(s: &NodeStatus, now: u64) -> Value {
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id.0,
                "address": m.address.map(|a| a.to_string()),
                "role": if m.voter { "voter" } else { "learner" },
                "connected": if m.id == s.node_id { None } else { Some(s.links.get(&m.id).copied().unwrap_or(false)) },
                "match_index": m.match_index.map(|i| i.0),
                "lag": m.match_index.map(|i| s.last_index.0.saturating_sub(i.0)),
                "election": {
                    "role": m.election.role.as_str(),
                    "priority": m.election.priority,
                    "eligible": m.eligible,
                },
                "wire_version": if m.id == s.node_id { Some(s.version_max) } else { s.link_versions.get(&m.id).copied() },
            })
        })
        .collect();
    json!({
        "node_id": s.node_id.0,
        "role": s.role_name(),
        "term": s.term.0,
        "leader_id": s.leader_id.map(|l| l.0),
        "leader_address": s.leader_address.map(|a| a.to_string()),
        "commit_index": s.commit_index.0,
        "applied_index": s.applied_index.0,
        "last_index": s.last_index.0,
        "revision": s.revision,
        "writable": s.writable_at(now),
        "reason": s.reason_at(now),
        "lease_remaining_ms": s.lease_remaining_ms(now),
        "lease": {
            "valid": s.writable_at(now),
            "remaining_ms": s.lease_remaining_ms(now),
            "deadline_monotonic_ns": s.lease_deadline_ns,
        },
        "members": members,
        "promotion_pending": s.promotion_pending,
        "fence_pending": s.fence_pending,
        "clock": {
            "peers": s.clock.peers.iter().map(|p| json!({
                "id": p.id.0,
                "rate_ppm": p.rate_ppm,
                "samples": p.samples,
                "verdict": match p.verdict {
                    regent_replica::Verdict::Unknown => "unknown",
                    regent_replica::Verdict::Agrees => "agrees",
                    regent_replica::Verdict::Drifts => "drifts",
                },
            })).collect::<Vec<Value>>(),
            "healthy": s.clock.healthy,
            "vouched": s.clock.vouched,
            "threshold_ppm": s.clock.threshold_ppm,
        },
        "host_healthy": s.host_healthy,
        "paused": s.pause.is_some(),
        "pause": s.pause.as_ref().map(|p| json!({
            "reason": p.reason,
            "at_ms": p.at_ms,
            "until_ms": p.until_ms,
            "by": p.by.0,
            "holder": p.holder.0,
        })),
        "drained": s.drained.iter().map(|d| d.0).collect::<Vec<u64>>(),
        "election": {
            "role": s.election.own.role.as_str(),
            "priority": s.election.own.priority,
            "prefer_priority": s.election.prefer_priority,
            "hold_down_ms": s.election.hold_down_ns / 1_000_000,
            "ready": s.ready_to_lead,
        },
        "catch_up_index": s.catch_up_index,
        "journal": {
            "first_index": s.journal.first,
            "last_index": s.journal.last,
            "catch_up_index": s.catch_up_index,
            "host_applied_index": s.host_applied_index,
        },
        "cluster_version": s.cluster_version,
        "version": {
            "build": crate::versions::BUILD_VERSION,
            "wire": { "min": regent_replica::VERSION_MIN, "max": s.version_max },
            "cluster_version": s.cluster_version,
        },
        "certificate": {
            "not_after_unix": s.certificate_not_after_unix,
            "days_left": s.certificate_not_after_unix
                .map(|t| (t - regent_transport::pki::identity::unix_now()) / 86_400),
        },
    })
}

async fn kv_get(context: &ApiContext, key: Vec<u8>, query: &str) -> HttpResponse {
    let mode = match read_mode(query) {
        Ok(mode) => mode,
        Err(response) => return response,
    };
    match read(context, ReadQuery::Get { key }, mode).await {
        Ok(ReadAnswer::Get(Some(kv))) => value_response(&kv),
        Ok(ReadAnswer::Get(None)) => {
            error(StatusCode::NOT_FOUND, "key_not_found", "no such key", None)
        }
        Ok(_) => unreachable_answer(),
        Err(err) => request_error(err),
    }
}

async fn write(context: &ApiContext, options: WriteOptions, command: Command) -> HttpResponse {
    if let Some(key) = super::members::reserved_write(&command) {
        return super::members::reserved_refusal(key);
    }
    let mut proposal = Proposal::new(command);
    proposal.expected_term = options.expected_term;
    proposal.session = options.session;
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::Propose { proposal, reply }, answer).await {
        Ok(answer) => write_response(&answer),
        Err(err) => request_error(err),
    }
}

async fn txn(
    context: &ApiContext,
    query: &str,
    request: hyper::Request<RequestBody>,
) -> HttpResponse {
    let options = match WriteOptions::parse(query) {
        Ok(options) => options,
        Err(response) => return response,
    };
    let body = match read_body(context, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let json: Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                &format!("the body is not JSON: {err}"),
                None,
            )
        }
    };
    let parsed = match super::txn::parse(&json) {
        Ok(parsed) => parsed,
        Err(err) => return error(StatusCode::BAD_REQUEST, "bad_txn", &err.to_string(), None),
    };
    let command = Command::Txn(parsed);
    if let Some(key) = super::members::reserved_write(&command) {
        return super::members::reserved_refusal(key);
    }
    let mut proposal = Proposal::new(command);
    proposal.expected_term = options.expected_term;
    proposal.session = options.session;
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::Propose { proposal, reply }, answer).await {
        Ok(answer) => {
            let mut body = super::txn::response_json(&answer.response);
            body["index"] = json!(answer.index.0);
            body["term"] = json!(answer.term.0);
            json_response(StatusCode::OK, &body)
        }
        Err(err) => request_error(err),
    }
}

/// Who is calling, from the socket's peer credentials (SO_PEERCRED). A caller on the TCP
/// listener has none, and may reach only the read-only checks.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub remote: bool,
    /// A request a follower relayed (`forward=true`): the node that relayed it, which checked
    /// its own caller's permissions.
    pub forwarded_by: Option<regent_raft::NodeId>,
}

/// The paths the read-only TCP listener serves (for load balancers and Prometheus).
pub const PUBLIC_PATHS: [&str; 4] = ["/v1/leader", "/v1/replica", "/v1/health", "/metrics"];

/// Calls that change the cluster need root or a uid/gid listed in the configuration.
fn admin_only(context: &ApiContext, caller: Caller, what: &str) -> Result<(), HttpResponse> {
    let options = context.live.borrow().clone();
    let allowed = caller.forwarded_by.is_some()
        || caller.uid == Some(0)
        || caller.uid.is_some_and(|u| options.admin_uids.contains(&u))
        || caller.gid.is_some_and(|g| options.admin_gids.contains(&g));
    if allowed {
        return Ok(());
    }
    Err(error(
        StatusCode::FORBIDDEN,
        "forbidden",
        &format!(
            "{what} changes the cluster: uid {:?} gid {:?} is not root nor listed in admin_uids/admin_gids",
            caller.uid, caller.gid
        ),
        None,
    ))
}

async fn switchover(context: &ApiContext, query: &str) -> HttpResponse {
    let target = match query_param(query, "to").map(|t| t.parse::<u64>()) {
        None => None,
        Some(Ok(id)) if id > 0 => Some(regent_raft::NodeId(id)),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                "to must be a node id",
                None,
            )
        }
    };
    let force = match query_param(query, "force").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                "force must be true or false",
                None,
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    let transfer = Request::Transfer {
        target,
        force,
        reply,
    };
    match ask(context, transfer, answer).await {
        Ok(h) => json_response(
            StatusCode::OK,
            &json!({ "from": h.from.0, "to": h.to.0, "pause_ms": h.pause_ms }),
        ),
        Err(err) => request_error(err),
    }
}

fn unreachable_answer() -> HttpResponse {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the driver answered another kind of read",
        None,
    )
}

/// A key-value pair as JSON: text where the bytes are UTF-8, base64 otherwise, and which.
pub(super) fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": bytes_json(&kv.key),
        "value": bytes_json(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
    })
}

/// A state machine's digest as `GET /v1/status?digest=true` shows it (and `regent backup
/// verify` prints it).
pub fn digest_json(d: &regent_storage::StateDigest) -> Value {
    json!({
        "applied_index": d.applied.0,
        "revision": d.revision,
        "kv_count": d.kv_count,
        "kv_crc32c": d.kv_crc,
        "session_count": d.session_count,
        "session_crc32c": d.session_crc,
        "journal_count": d.journal_count,
        "journal_crc32c": d.journal_crc,
    })
}

/// Bytes as JSON: `{"text": ...}` when UTF-8, else `{"base64": ...}`.
pub(super) fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "text": text }),
        Err(_) => json!({ "base64": super::BASE64.encode(bytes) }),
    }
}

/// Sends a request to the driver and waits (bounded) for its answer.
pub(super) async fn ask<T>(
    context: &ApiContext,
    request: Request,
    answer: oneshot::Receiver<Result<T, RequestError>>,
) -> Result<T, RequestError> {
    ask_driver(&context.requests, request, answer).await
}

/// [`ask`] with only the driver's queue (the backup schedule has no API context).
pub(crate) async fn ask_driver<T>(
    requests: &tokio::sync::mpsc::Sender<Request>,
    request: Request,
    answer: oneshot::Receiver<Result<T, RequestError>>,
) -> Result<T, RequestError> {
    if requests.send(request).await.is_err() {
        return Err(RequestError::ShuttingDown);
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(RequestError::ShuttingDown),
        Err(_) => Err(RequestError::Busy(BusyReason::NoAnswer {
            waited: REQUEST_TIMEOUT,
        })),
    }
}

pub(super) async fn read_body(
    context: &ApiContext,
    request: hyper::Request<RequestBody>,
) -> Result<Vec<u8>, HttpResponse> {
    let max = context.options.request_bytes_max;
    match Limited::new(request.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the body is larger than request_bytes_max ({max} bytes)"),
            None,
        )),
        Err(err) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            &format!("reading the body: {err}"),
            None,
        )),
    }
}

fn write_response(answer: &WriteAnswer) -> HttpResponse {
    let revision = match &answer.response {
        KvResponse::Put { revision, .. } | KvResponse::Delete { revision, .. } => *revision,
        KvResponse::Txn { revision, .. } => *revision,
        _ => 0,
    };
    let deleted = match &answer.response {
        KvResponse::Delete { prev, .. } => Some(prev.is_some()),
        _ => None,
    };
    let mut body = json!({
        "revision": revision,
        "index": answer.index.0,
        "term": answer.term.0,
    });
    if let Some(deleted) = deleted {
        body["deleted"] = json!(deleted);
    }
    json_response(StatusCode::OK, &body)
}

fn value_response(kv: &KeyValue) -> HttpResponse {
    hyper::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("x-regent-revision", kv.mod_revision)
        .header("x-regent-create-revision", kv.create_revision)
        .header("x-regent-version", kv.version)
        .body(super::body::Body::full(kv.value.clone()))
        .expect("a valid response")
}

pub(super) fn request_error(err: RequestError) -> HttpResponse {
    let message = err.to_string();
    match err {
        RequestError::NotLeader { leader, address } => {
            let extra = json!({
                "leader_id": leader.map(|l| l.0),
                "leader_address": address.map(|a| a.to_string()),
            });
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_leader",
                &message,
                Some(extra),
            )
        }
        RequestError::Busy(_) => error(StatusCode::SERVICE_UNAVAILABLE, "busy", &message, None),
        RequestError::Superseded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "superseded",
            &message,
            None,
        ),
        RequestError::ShuttingDown => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            &message,
            None,
        ),
        RequestError::TermMismatch { expected, current } => error(
            StatusCode::CONFLICT,
            "term_mismatch",
            &message,
            Some(json!({ "expected_term": expected, "term": current })),
        ),
        RequestError::Command(_) => {
            error(StatusCode::BAD_REQUEST, "command_refused", &message, None)
        }
        RequestError::Members(_) => {
            error(StatusCode::CONFLICT, "membership_refused", &message, None)
        }
        RequestError::Reload(_) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_refused",
            &message,
            None,
        ),
        RequestError::Transfer(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "transfer_failed",
            &message,
            None,
        ),
        RequestError::Storage(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            &message,
            None,
        ),
        RequestError::Maintenance(regent_replica::MaintenanceRefusal::Version(refusal))
        | RequestError::Version(refusal) => version_refusal(&refusal),
        RequestError::Maintenance(refusal) => {
            use regent_replica::MaintenanceRefusal as M;
            let (status, code) = match refusal {
                M::Paused { .. } => (StatusCode::CONFLICT, "paused"),
                M::Drained { .. } => (StatusCode::CONFLICT, "drained"),
                M::NotCandidate { .. } => (StatusCode::CONFLICT, "not_a_candidate"),
                M::LastEligible { .. } => (StatusCode::CONFLICT, "last_eligible"),
                M::NotMember { .. } => (StatusCode::NOT_FOUND, "unknown_node"),
                _ => (StatusCode::BAD_REQUEST, "bad_parameter"),
            };
            error(status, code, &message, None)
        }
    }
}

/// The longest a request that needs a newer cluster version waits for it when every voter's
/// link already speaks it (the leader commits it within a round trip: a cluster just started or
/// just upgraded).
pub(super) const VERSION_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// `Ok` once the cluster version (as `NodeStatus::require_version` checks it) is at least
/// `needed`. Waits up to `VERSION_WAIT` when this node's links show every voter speaking it
/// (the record is on its way); refuses at once otherwise.
pub(super) async fn version_gate(
    context: &ApiContext,
    needed: u8,
) -> Result<(), regent_replica::VersionRefusal> {
    let mut status = context.status.clone();
    let deadline = tokio::time::Instant::now() + VERSION_WAIT;
    loop {
        let (allowed, coming) = {
            let s = status.borrow_and_update();
            (
                s.require_version(needed),
                s.voters_version.is_some_and(|v| v >= needed),
            )
        };
        let refusal = match allowed {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        };
        if !coming {
            return Err(refusal);
        }
        match tokio::time::timeout_at(deadline, status.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(refusal),
        }
    }
}

/// 409 `cluster_version_too_old`: the request needs a newer cluster version than the one
/// committed (a node of the cluster runs an older build). Names both versions.
pub(super) fn version_refusal(refusal: &regent_replica::VersionRefusal) -> HttpResponse {
    error(
        StatusCode::CONFLICT,
        "cluster_version_too_old",
        &refusal.to_string(),
        Some(json!({
            "needed_version": refusal.needed,
            "cluster_version": refusal.cluster,
        })),
    )
}

fn method_not_allowed(allowed: &str) -> HttpResponse {
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

/// `{"error": CODE, "message": TEXT, ...extra}`.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: Option<Value>,
) -> HttpResponse {
    let mut body = json!({ "error": code, "message": message });
    if let (Some(Value::Object(extra)), Value::Object(map)) = (extra, &mut body) {
        map.extend(extra);
    }
    json_response(status, &body)
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut text = serde_json::to_vec(body).expect("JSON values serialize");
    text.push(b'\n');
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(super::body::Body::full(text))
        .expect("a valid response")
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoded.
pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return None;
        }
        Some(String::from_utf8_lossy(&percent_decode(v)?).into_owned())
    })
}

/// A query parameter as raw bytes (percent-decoded); a bad escape is a 400.
fn query_param_bytes(query: &str, name: &str) -> Result<Option<Vec<u8>>, HttpResponse> {
    let Some(raw) = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    }) else {
        return Ok(None);
    };
    percent_decode(raw).map(Some).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            &format!("{name}: bad percent-encoding"),
            None,
        )
    })
}

/// Decodes `%XX` escapes; `None` on a malformed escape.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb").unwrap(), b"a/b");
        assert_eq!(percent_decode("%00%ff").unwrap(), vec![0, 255]);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(
            query_param("x=1&consistency=lease", "consistency").as_deref(),
            Some("lease")
        );
        assert_eq!(query_param("x=1", "consistency"), None);
    }

    #[test]
    fn base64_and_bytes_as_json() {
        assert_eq!(crate::api::BASE64.encode(b""), "");
        assert_eq!(crate::api::BASE64.encode(b"f"), "Zg==");
        assert_eq!(crate::api::BASE64.encode(b"fo"), "Zm8=");
        assert_eq!(crate::api::BASE64.encode(b"foo"), "Zm9v");
        assert_eq!(crate::api::BASE64.encode([0xff, 0xfe]), "//4=");
        assert_eq!(bytes_json(b"a")["text"], "a");
        assert_eq!(bytes_json(&[0xff])["base64"], "/w==");
    }
}

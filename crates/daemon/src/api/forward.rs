//! Forwarding: a write or an operator's change sent to a follower with `forward=true` is
//! relayed to the leader over the peer link (a call on the existing mTLS connection, no new
//! port), carried out there exactly as a local request, and its answer comes back unchanged.
//!
//! Versions: calls came with `regent/3`. A follower relays only over a `regent/3` link (else
//! 409 `cluster_version_too_old` at once, nothing sent); the leader refuses a relayed request
//! with the same 409 while its cluster version (`NodeStatus::log_version`, which counts a raise
//! it just appended) is below 3, so no relay is carried out while a voter runs version 2.
//!
//! Invariants:
//! - Only the endpoints of `forwardable` are relayed, and only on `forward=true`: a host's own
//!   writes are never forwarded (it writes only while its own node is writable).
//! - A forwarded request is never forwarded again: the leader carries it out or refuses it
//!   (`not_leader` when it no longer leads), so a request crosses at most one link.
//! - The leader checks fencing (`expected_term`) and sessions (`client_id`/`seq`) as for a
//!   local request: they travel in the query string, untouched.
//! - A relay that may have reached the leader and brought back no whole answer is reported as
//!   `outcome_unknown`, never retried here; one that surely did not leave this node is
//!   `leader_unreachable` (not carried out).
//! - Permission: the follower checks its own caller for the admin endpoints before relaying;
//!   the leader trusts the checks of the authenticated peer that relayed (a member can already
//!   propose anything through Raft).
// A handler's early exit is the HTTP answer itself: `Result<_, HttpResponse>` by design.
#![allow(clippy::result_large_err)]

use super::body::{Body, RequestBody};
use super::routes::{self, Caller, HttpResponse};
use super::{ApiContext, REQUEST_TIMEOUT};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use regent_raft::NodeId;
use regent_transport::{CallRequest, TransportError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How much longer than the leader's own request timeout a follower waits for a relayed
/// answer: the leader answers `busy` (outcome unknown) by `REQUEST_TIMEOUT` itself.
pub const FORWARD_MARGIN: Duration = Duration::from_secs(2);
/// The response header that names the node whose handler produced the answer.
pub const ANSWERED_BY_HEADER: &str = "x-regent-node";
/// The response header set on an answer relayed from the leader: the node that relayed it.
pub const FORWARDED_BY_HEADER: &str = "x-regent-forwarded-by";
/// Calls waiting for the API on the leader before new ones are refused.
pub const CALLS_QUEUE_MAX: usize = 1024;
/// The version byte in front of every forwarded request and answer.
const FORWARD_VERSION: u8 = 1;

/// A request relayed from a follower: what the leader needs to run it as a local one.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedRequest {
    pub method: String,
    /// The path and query string as the client sent them.
    pub target: String,
    pub body: Vec<u8>,
}

/// The leader's answer, returned to the client unchanged.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why forwarded bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ForwardDecodeError {
    #[error("empty")]
    Empty,
    #[error("forwarding version {0} (this build speaks {FORWARD_VERSION})")]
    Version(u8),
    #[error("{0}")]
    Postcard(#[from] postcard::Error),
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORWARD_VERSION];
    out.extend(postcard::to_allocvec(value).expect("forwarding types serialize"));
    out
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ForwardDecodeError> {
    match bytes.split_first() {
        None => Err(ForwardDecodeError::Empty),
        Some((&FORWARD_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&other, _)) => Err(ForwardDecodeError::Version(other)),
    }
}

/// The endpoints that may be forwarded: the writes and the operator's cluster changes.
pub fn forwardable(method: &Method, path: &str) -> bool {
    match (method, path) {
        (&Method::PUT | &Method::DELETE, p) => p.starts_with("/v1/kv/"),
        (&Method::POST, p) => matches!(
            p,
            "/v1/txn"
                | "/v1/journal"
                | "/v1/session"
                | "/v1/admin/members"
                | "/v1/admin/switchover"
                | "/v1/admin/pause"
                | "/v1/admin/resume"
                | "/v1/admin/drain"
                | "/v1/admin/undrain"
        ),
        _ => false,
    }
}

/// The endpoints that need an admin caller (checked on the follower before relaying).
pub fn admin_path(path: &str) -> bool {
    matches!(
        path,
        "/v1/admin/members"
            | "/v1/admin/switchover"
            | "/v1/admin/pause"
            | "/v1/admin/resume"
            | "/v1/admin/drain"
            | "/v1/admin/undrain"
    )
}

/// `forward=` of the query: absent or `false` is no, `true` is yes, anything else a 400.
pub fn wanted(query: &str) -> Result<bool, HttpResponse> {
    match routes::query_param(query, "forward").as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(routes::error(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            &format!("forward={other:?}: expected true or false"),
            None,
        )),
    }
}

/// Relays `request` to `leader` and returns its answer, or says why there is none.
pub async fn relay(
    context: &ApiContext,
    leader: NodeId,
    request: hyper::Request<RequestBody>,
) -> HttpResponse {
    let Some(transport) = &context.transport else {
        return routes::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leader_unreachable",
            "this node has no peer links to forward on",
            None,
        );
    };
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let body = match routes::read_body(context, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let this = context.status.borrow().node_id;
    let bytes = encode(&ForwardedRequest {
        method,
        target,
        body,
    });
    let leader_json = |extra: serde_json::Value| {
        let mut v = json!({ "leader_id": leader.0, "forwarded_by": this.0 });
        if let (serde_json::Value::Object(v), serde_json::Value::Object(extra)) = (&mut v, extra) {
            v.extend(extra);
        }
        v
    };
    match transport
        .call(leader, &bytes, REQUEST_TIMEOUT + FORWARD_MARGIN)
        .await
    {
        Ok(answer) => match decode::<ForwardedAnswer>(&answer) {
            Ok(answer) => answer_response(answer, this),
            Err(err) => routes::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                &format!(
                    "the leader (node {leader}) answered with bytes this node cannot read \
                     ({err}); the request may have been carried out"
                ),
                Some(leader_json(json!({ "outcome": "unknown" }))),
            ),
        },
        // The link to the leader speaks an older version than the committed one (a leader
        // restarted on the older build before the cluster version was lowered).
        Err(TransportError::WireVersion { needed, link, .. }) => {
            routes::version_refusal(&regent_replica::VersionRefusal {
                needed,
                cluster: link,
            })
        }
        Err(TransportError::Call {
            sent: true, reason, ..
        }) => routes::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            &format!(
                "forwarded to the leader (node {leader}): {reason}; the request may or may not \
                 have been carried out (retry it in its session with the same seq, or read \
                 before writing again)"
            ),
            Some(leader_json(json!({ "outcome": "unknown" }))),
        ),
        Err(err) => routes::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leader_unreachable",
            &format!(
                "could not forward to the leader (node {leader}): {err}; the request was not \
                 sent"
            ),
            Some(leader_json(json!({ "outcome": "not_sent" }))),
        ),
    }
}

fn answer_response(answer: ForwardedAnswer, this: NodeId) -> HttpResponse {
    let mut builder = hyper::Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (name, value) in &answer.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = builder.header(FORWARDED_BY_HEADER, this.0.to_string());
    match builder.body(Body::full(answer.body)) {
        Ok(response) => response,
        Err(err) => routes::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            &format!("the leader's answer has a bad header ({err}); the request may have been carried out"),
            None,
        ),
    }
}

/// Serves the calls that peers relay to this node, each in a task of its own, until the
/// channel closes.
pub async fn serve_calls(context: Arc<ApiContext>, mut calls: mpsc::Receiver<Box<CallRequest>>) {
    while let Some(call) = calls.recv().await {
        let context = context.clone();
        tokio::spawn(async move {
            let from = call.from();
            let answer = carry_out(&context, from, call.request()).await;
            if let Err(err) = call.reply(&encode(&answer)).await {
                tracing::debug!(peer = %from, error = %err, "a forwarded request's answer was not delivered");
            }
        });
    }
}

/// Runs a relayed request as a local one, in the name of the peer that relayed it.
async fn carry_out(context: &ApiContext, from: NodeId, bytes: &[u8]) -> ForwardedAnswer {
    let response = match decode::<ForwardedRequest>(bytes) {
        Err(err) => routes::error(
            StatusCode::BAD_REQUEST,
            "bad_forward",
            &format!("node {from} forwarded a request this node cannot read: {err}"),
            None,
        ),
        Ok(request) => match build(&request) {
            Err(response) => response,
            Ok(request) => {
                // Forwarding is a version-3 request: the leader, which commits the cluster
                // version (and knows of a raise it just appended), refuses it below 3.
                let allowed =
                    routes::version_gate(context, regent_replica::VERSION_OPERATIONS).await;
                match allowed {
                    Err(refusal) => routes::version_refusal(&refusal),
                    Ok(()) => {
                        let caller = Caller {
                            uid: None,
                            gid: None,
                            remote: false,
                            forwarded_by: Some(from),
                        };
                        routes::handle(context, caller, request).await
                    }
                }
            }
        },
    };
    let (parts, body) = response.into_parts();
    let body = match tokio::time::timeout(REQUEST_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes().to_vec(),
        Ok(Err(never)) => match never {},
        Err(_) => b"{\"error\":\"internal\",\"message\":\"the answer did not end\"}\n".to_vec(),
    };
    ForwardedAnswer {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect(),
        body,
    }
}

fn build(request: &ForwardedRequest) -> Result<hyper::Request<RequestBody>, HttpResponse> {
    let bad = |what: String| {
        routes::error(
            StatusCode::BAD_REQUEST,
            "bad_forward",
            &format!("a forwarded request: {what}"),
            None,
        )
    };
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| bad(format!("bad method {:?}", request.method)))?;
    let uri: hyper::Uri = request
        .target
        .parse()
        .map_err(|_| bad(format!("bad target {:?}", request.target)))?;
    if !forwardable(&method, uri.path()) {
        return Err(bad(format!("{method} {} is not forwardable", uri.path())));
    }
    hyper::Request::builder()
        .method(method)
        .uri(uri)
        .body(http_body_util::Either::Right(http_body_util::Full::new(
            Bytes::from(request.body.clone()),
        )))
        .map_err(|err| bad(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_bytes_round_trip_and_refuse_other_versions() {
        let request = ForwardedRequest {
            method: "PUT".into(),
            target: "/v1/kv/a?forward=true&client_id=3&seq=9".into(),
            body: b"hello".to_vec(),
        };
        let bytes = encode(&request);
        let back: ForwardedRequest = decode(&bytes).unwrap();
        assert_eq!(back.target, request.target);
        assert_eq!(back.body, request.body);
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(matches!(
            decode::<ForwardedRequest>(&other),
            Err(ForwardDecodeError::Version(9))
        ));
        assert!(matches!(
            decode::<ForwardedRequest>(&[]),
            Err(ForwardDecodeError::Empty)
        ));
        assert!(decode::<ForwardedRequest>(&[FORWARD_VERSION, 0xff, 0xff]).is_err());
    }

    #[test]
    fn only_writes_and_cluster_changes_are_forwardable() {
        assert!(forwardable(&Method::PUT, "/v1/kv/a"));
        assert!(forwardable(&Method::DELETE, "/v1/kv/a"));
        assert!(forwardable(&Method::POST, "/v1/txn"));
        assert!(forwardable(&Method::POST, "/v1/journal"));
        assert!(forwardable(&Method::POST, "/v1/admin/members"));
        assert!(forwardable(&Method::POST, "/v1/admin/switchover"));
        assert!(!forwardable(&Method::GET, "/v1/kv/a"));
        assert!(!forwardable(&Method::POST, "/v1/journal/applied"));
        assert!(!forwardable(&Method::POST, "/v1/admin/reload"));
        assert!(!forwardable(&Method::POST, "/v1/admin/snapshot"));
        assert!(!forwardable(&Method::GET, "/v1/leadership/watch"));
    }

    #[test]
    fn forward_parameter() {
        assert!(matches!(wanted(""), Ok(false)));
        assert!(matches!(wanted("forward=false"), Ok(false)));
        assert!(matches!(wanted("a=1&forward=true"), Ok(true)));
        assert!(matches!(wanted("forward=yes"), Err(r) if r.status() == 400));
    }
}

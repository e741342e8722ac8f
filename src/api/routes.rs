//! The endpoints: one function per path, errors as JSON with a stable code.

use super::{ApiContext, Request, RequestError, WriteAnswer, REQUEST_TIMEOUT};
use crate::clock;
use crate::replica::ReadMode;
use crate::storage::{Command, KeyValue, Response as KvResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub type HttpResponse = hyper::Response<Full<Bytes>>;

pub async fn handle(context: &ApiContext, request: hyper::Request<Incoming>) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let method = request.method().clone();
    if path == "/v1/status" {
        return match method {
            Method::GET | Method::HEAD => status(context),
            _ => method_not_allowed("GET"),
        };
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
        return match method {
            Method::GET => kv_get(context, key, &query).await,
            Method::PUT => match read_body(context, request).await {
                Ok(value) => write(context, Command::Put { key, value }).await,
                Err(response) => response,
            },
            Method::DELETE => write(context, Command::Delete { key }).await,
            _ => method_not_allowed("GET, PUT, DELETE"),
        };
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no endpoint {path}; see docs/api.md"),
        None,
    )
}

fn status(context: &ApiContext) -> HttpResponse {
    let s = context.status.borrow().clone();
    let now = clock::now();
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id.0,
                "address": m.address.map(|a| a.to_string()),
                "role": if m.voter { "voter" } else { "learner" },
            })
        })
        .collect();
    let body = json!({
        "node_id": s.node_id.0,
        "role": s.role_name(),
        "term": s.term.0,
        "leader_id": s.leader_id.map(|l| l.0),
        "leader_address": s.leader_address.map(|a| a.to_string()),
        "commit_index": s.commit_index.0,
        "applied_index": s.applied_index.0,
        "last_index": s.last_index.0,
        "writable": s.writable_at(now),
        "lease_remaining_ms": s.lease_remaining_ms(now),
        "lease": {
            "valid": s.writable_at(now),
            "remaining_ms": s.lease_remaining_ms(now),
            "deadline_monotonic_ns": s.lease_deadline_ns,
        },
        "members": members,
    });
    json_response(StatusCode::OK, &body)
}

async fn kv_get(context: &ApiContext, key: Vec<u8>, query: &str) -> HttpResponse {
    let mode = match query_param(query, "consistency").as_deref() {
        None | Some("linearizable") => Some(ReadMode::Index),
        Some("lease") => Some(ReadMode::Lease),
        Some("local") => None,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_consistency",
                &format!("consistency={other}: expected linearizable, lease or local"),
                None,
            )
        }
    };
    let (reply, answer) = oneshot::channel();
    let outcome = ask(context, Request::Get { key, mode, reply }, answer).await;
    match outcome {
        Ok(Some(kv)) => value_response(&kv),
        Ok(None) => error(StatusCode::NOT_FOUND, "key_not_found", "no such key", None),
        Err(err) => request_error(err),
    }
}

async fn write(context: &ApiContext, command: Command) -> HttpResponse {
    let (reply, answer) = oneshot::channel();
    match ask(context, Request::Propose { command, reply }, answer).await {
        Ok(answer) => write_response(&answer),
        Err(err) => request_error(err),
    }
}

/// Sends a request to the driver and waits (bounded) for its answer.
async fn ask<T>(
    context: &ApiContext,
    request: Request,
    answer: oneshot::Receiver<Result<T, RequestError>>,
) -> Result<T, RequestError> {
    if context.requests.send(request).await.is_err() {
        return Err(RequestError::ShuttingDown);
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(RequestError::ShuttingDown),
        Err(_) => Err(RequestError::Busy(format!(
            "no answer within {} s; the outcome is unknown",
            REQUEST_TIMEOUT.as_secs()
        ))),
    }
}

async fn read_body(
    context: &ApiContext,
    request: hyper::Request<Incoming>,
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
        .body(Full::new(Bytes::from(kv.value.clone())))
        .expect("a valid response")
}

fn request_error(err: RequestError) -> HttpResponse {
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
        RequestError::Command(_) => {
            error(StatusCode::BAD_REQUEST, "command_refused", &message, None)
        }
        RequestError::Storage(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            &message,
            None,
        ),
    }
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
fn error(status: StatusCode, code: &str, message: &str, extra: Option<Value>) -> HttpResponse {
    let mut body = json!({ "error": code, "message": message });
    if let (Some(Value::Object(extra)), Value::Object(map)) = (extra, &mut body) {
        map.extend(extra);
    }
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut text = serde_json::to_vec(body).expect("JSON values serialize");
    text.push(b'\n');
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .expect("a valid response")
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return None;
        }
        Some(String::from_utf8_lossy(&percent_decode(v)?).into_owned())
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
}

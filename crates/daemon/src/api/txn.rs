//! `POST /v1/txn`: etcd-style transactions in JSON — compares, then the success or the failure
//! operations, applied atomically at one revision.
//!
//! ```json
//! {"compare": [{"key": "a", "target": "value", "op": "equal", "value": "1"}],
//!  "success": [{"put": {"key": "a", "value": "2"}}, {"get": {"key": "b"}}],
//!  "failure": [{"range": {"prefix": "", "limit": 10}}]}
//! ```
//! Keys and values are a JSON string (UTF-8 text), `{"text": ...}` or `{"base64": ...}`.
//! Targets: `value`, `version`, `create_revision`, `mod_revision`, `exists`; ops: `equal`,
//! `not_equal`, `less`, `greater`.

use super::routes::{bytes_json, kv_json};
use base64::Engine;
use regent_storage::{Compare, CompareOp, CompareTarget, Op, Response, Txn, TXN_OPS_MAX};
use serde_json::{json, Value};

/// Why a transaction body was refused; `Display` names the field at fault, as a path into the
/// body (`success[1]: put.value: missing`).
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("unknown field {field:?} (compare, success, failure)")]
    UnknownField { field: String },
    #[error("{list} must be an array")]
    NotAnArray { list: &'static str },
    #[error("{list}: more than {TXN_OPS_MAX} items")]
    TooManyItems { list: &'static str },
    #[error("compare[{index}]: {error}")]
    Compare { index: usize, error: CompareError },
    /// An operation of `success` or `failure` (the `list`).
    #[error("{list}[{index}]: {error}")]
    Op {
        list: &'static str,
        index: usize,
        error: OpError,
    },
}

/// What is wrong with one compare.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("key: {0}")]
    Key(BytesError),
    #[error("op must be equal, not_equal, less or greater")]
    Op,
    #[error("target must be value, version, create_revision, mod_revision or exists")]
    Target,
    #[error("value: {0}")]
    Value(BytesError),
    #[error("value must be a non-negative integer for this target")]
    NotANumber,
    #[error("value must be true or false for exists")]
    NotABool,
}

/// What is wrong with one operation.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("an operation is an object such as {{\"put\": {{...}}}}")]
    NotAnObject,
    #[error("an operation has exactly one of put, delete, get, range")]
    NotOneKind,
    #[error("unknown operation {kind:?} (put, delete, get, range)")]
    UnknownKind { kind: String },
    /// The key of a `put`, `delete` or `get` (the `kind`).
    #[error("{kind}.key: {error}")]
    Key {
        kind: &'static str,
        error: BytesError,
    },
    #[error("put.value: {0}")]
    PutValue(BytesError),
    #[error("range.prefix: {0}")]
    RangePrefix(BytesError),
}

/// Why a JSON value is not bytes. The base64 decoder's error is in the message, so it is not
/// also the `source`.
#[derive(Debug, thiserror::Error)]
pub enum BytesError {
    #[error("missing")]
    Missing,
    #[error("not base64: {0}")]
    NotBase64(base64::DecodeError),
    #[error("expected {{\"text\": ...}} or {{\"base64\": ...}}")]
    BadObject,
    #[error("expected a string, {{\"text\": ...}} or {{\"base64\": ...}}")]
    WrongType,
}

/// Parses a transaction; the error says which field is wrong.
pub fn parse(body: &Value) -> Result<Txn, TxnError> {
    let list = |name: &'static str| -> Result<Vec<Value>, TxnError> {
        match &body[name] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) if items.len() <= TXN_OPS_MAX => Ok(items.clone()),
            Value::Array(_) => Err(TxnError::TooManyItems { list: name }),
            _ => Err(TxnError::NotAnArray { list: name }),
        }
    };
    if let Value::Object(map) = body {
        if let Some(unknown) = map
            .keys()
            .find(|k| !["compare", "success", "failure"].contains(&k.as_str()))
        {
            return Err(TxnError::UnknownField {
                field: unknown.clone(),
            });
        }
    } else {
        return Err(TxnError::NotAnObject);
    }
    let compares = list("compare")?
        .iter()
        .enumerate()
        .map(|(index, c)| compare(c).map_err(|error| TxnError::Compare { index, error }))
        .collect::<Result<_, _>>()?;
    let ops = |name: &'static str| -> Result<Vec<Op>, TxnError> {
        list(name)?
            .iter()
            .enumerate()
            .map(|(index, o)| {
                op(o).map_err(|error| TxnError::Op {
                    list: name,
                    index,
                    error,
                })
            })
            .collect()
    };
    Ok(Txn {
        compares,
        success: ops("success")?,
        failure: ops("failure")?,
    })
}

fn compare(c: &Value) -> Result<Compare, CompareError> {
    let key = bytes(&c["key"]).map_err(CompareError::Key)?;
    let op = match c["op"].as_str() {
        Some("equal") => CompareOp::Equal,
        Some("not_equal") => CompareOp::NotEqual,
        Some("less") => CompareOp::Less,
        Some("greater") => CompareOp::Greater,
        _ => return Err(CompareError::Op),
    };
    let number = || c["value"].as_u64().ok_or(CompareError::NotANumber);
    let target = match c["target"].as_str() {
        Some("value") => CompareTarget::Value(bytes(&c["value"]).map_err(CompareError::Value)?),
        Some("version") => CompareTarget::Version(number()?),
        Some("create_revision") => CompareTarget::CreateRevision(number()?),
        Some("mod_revision") => CompareTarget::ModRevision(number()?),
        Some("exists") => {
            CompareTarget::Exists(c["value"].as_bool().ok_or(CompareError::NotABool)?)
        }
        _ => return Err(CompareError::Target),
    };
    Ok(Compare { key, op, target })
}

fn op(o: &Value) -> Result<Op, OpError> {
    let Value::Object(map) = o else {
        return Err(OpError::NotAnObject);
    };
    if map.len() != 1 {
        return Err(OpError::NotOneKind);
    }
    let (kind, args) = map.iter().next().expect("one entry");
    let key =
        |kind: &'static str| bytes(&args["key"]).map_err(|error| OpError::Key { kind, error });
    match kind.as_str() {
        "put" => Ok(Op::Put {
            key: key("put")?,
            value: bytes(&args["value"]).map_err(OpError::PutValue)?,
        }),
        "delete" => Ok(Op::Delete {
            key: key("delete")?,
        }),
        "get" => Ok(Op::Get { key: key("get")? }),
        "range" => Ok(Op::Range {
            prefix: match &args["prefix"] {
                Value::Null => Vec::new(),
                p => bytes(p).map_err(OpError::RangePrefix)?,
            },
            limit: args["limit"]
                .as_u64()
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(1000),
        }),
        other => Err(OpError::UnknownKind {
            kind: other.to_string(),
        }),
    }
}

/// Bytes from JSON: a string (UTF-8 text), `{"text": ...}` or `{"base64": ...}`.
pub fn bytes(v: &Value) -> Result<Vec<u8>, BytesError> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Object(map) => match (map.get("text"), map.get("base64")) {
            (Some(Value::String(s)), None) => Ok(s.as_bytes().to_vec()),
            (None, Some(Value::String(b))) => {
                super::BASE64.decode(b).map_err(BytesError::NotBase64)
            }
            _ => Err(BytesError::BadObject),
        },
        Value::Null => Err(BytesError::Missing),
        _ => Err(BytesError::WrongType),
    }
}

/// The JSON answer of an applied transaction.
pub fn response_json(response: &Response) -> Value {
    match response {
        Response::Txn {
            succeeded,
            revision,
            responses,
        } => json!({
            "succeeded": succeeded,
            "revision": revision,
            "responses": responses.iter().map(response_json).collect::<Vec<_>>(),
        }),
        Response::Get { kv, .. } => json!({ "get": kv.as_ref().map(kv_json) }),
        Response::Range { kvs, more, .. } => json!({
            "range": { "kvs": kvs.iter().map(kv_json).collect::<Vec<_>>(), "more": more }
        }),
        Response::Put { revision, prev } => json!({
            "put": { "revision": revision, "prev": prev.as_ref().map(kv_json) }
        }),
        Response::Delete { revision, prev } => json!({
            "delete": { "revision": revision, "deleted": prev.is_some(),
                        "prev_key": prev.as_ref().map(|p| bytes_json(&p.key)) }
        }),
        Response::SessionRegistered { client_id } => json!({ "client_id": client_id }),
        Response::JournalAppended { first, last }
        | Response::JournalReported { first, last }
        | Response::JournalRetried { first, last, .. } => {
            json!({ "journal": { "first": first, "last": last } })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_transaction_and_names_bad_fields() {
        let body = json!({
            "compare": [{"key": "a", "target": "version", "op": "equal", "value": 0}],
            "success": [{"put": {"key": {"base64": "AP8="}, "value": "v"}}],
            "failure": [{"get": {"key": {"text": "a"}}}],
        });
        let txn = parse(&body).unwrap();
        assert_eq!(txn.compares[0].target, CompareTarget::Version(0));
        assert_eq!(
            txn.success[0],
            Op::Put {
                key: vec![0, 255],
                value: b"v".to_vec()
            }
        );
        let err = parse(&json!({"success": [{"put": {"key": "a"}}]})).unwrap_err();
        assert!(err.to_string().contains("success[0]: put.value"), "{err}");
        let err = parse(&json!({"compare": [{"key": "a", "op": "equal", "target": "colour"}]}))
            .unwrap_err();
        assert!(err.to_string().contains("compare[0]"), "{err}");
        assert!(parse(&json!({"other": []}))
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        assert!(parse(&json!([1])).is_err());
    }

    #[test]
    fn refusals_keep_their_wire_messages() {
        // These are the `message` of a 400 `bad_txn` (docs/api.md): the text is the API's.
        let refusal = |body: Value| parse(&body).unwrap_err().to_string();
        for (body, message) in [
            (json!([1]), "the body must be a JSON object"),
            (
                json!({"other": []}),
                "unknown field \"other\" (compare, success, failure)",
            ),
            (json!({"success": 1}), "success must be an array"),
            (
                json!({"compare": [{"op": "equal"}]}),
                "compare[0]: key: missing",
            ),
            (
                json!({"compare": [{"key": "a", "op": "same"}]}),
                "compare[0]: op must be equal, not_equal, less or greater",
            ),
            (
                json!({"compare": [{"key": "a", "op": "less", "target": "version"}]}),
                "compare[0]: value must be a non-negative integer for this target",
            ),
            (
                json!({"compare": [{"key": "a", "op": "less", "target": "exists"}]}),
                "compare[0]: value must be true or false for exists",
            ),
            (
                json!({"compare": [{"key": "a", "op": "less", "target": "value", "value": 1}]}),
                "compare[0]: value: expected a string, {\"text\": ...} or {\"base64\": ...}",
            ),
            (
                json!({"success": [{"get": {"key": "a"}}, 1]}),
                "success[1]: an operation is an object such as {\"put\": {...}}",
            ),
            (
                json!({"failure": [{"get": {"key": "a"}, "put": {}}]}),
                "failure[0]: an operation has exactly one of put, delete, get, range",
            ),
            (
                json!({"failure": [{"move": {}}]}),
                "failure[0]: unknown operation \"move\" (put, delete, get, range)",
            ),
            (
                json!({"success": [{"delete": {"key": {"text": 1}}}]}),
                "success[0]: delete.key: expected {\"text\": ...} or {\"base64\": ...}",
            ),
        ] {
            assert_eq!(refusal(body), message);
        }
        let decoder = crate::api::BASE64.decode("%").unwrap_err();
        assert_eq!(
            refusal(json!({"success": [{"range": {"prefix": {"base64": "%"}}}]})),
            format!("success[0]: range.prefix: not base64: {decoder}")
        );
    }

    #[test]
    fn base64_round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", &[0, 255, 1, 254]] {
            let text = crate::api::BASE64.encode(data);
            assert_eq!(crate::api::BASE64.decode(&text).unwrap(), data);
            let unpadded = text.trim_end_matches('=');
            assert_eq!(crate::api::BASE64.decode(unpadded).unwrap(), data);
        }
        assert!(crate::api::BASE64.decode("a$").is_err());
    }
}

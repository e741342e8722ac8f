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

/// Parses a transaction; the error says which field is wrong.
pub fn parse(body: &Value) -> Result<Txn, String> {
    let list = |name: &str| -> Result<Vec<Value>, String> {
        match &body[name] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) if items.len() <= TXN_OPS_MAX => Ok(items.clone()),
            Value::Array(_) => Err(format!("{name}: more than {TXN_OPS_MAX} items")),
            _ => Err(format!("{name} must be an array")),
        }
    };
    if let Value::Object(map) = body {
        if let Some(unknown) = map
            .keys()
            .find(|k| !["compare", "success", "failure"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown field {unknown:?} (compare, success, failure)"
            ));
        }
    } else {
        return Err("the body must be a JSON object".into());
    }
    let compares = list("compare")?
        .iter()
        .enumerate()
        .map(|(i, c)| compare(c).map_err(|e| format!("compare[{i}]: {e}")))
        .collect::<Result<_, _>>()?;
    let ops = |name: &str| -> Result<Vec<Op>, String> {
        list(name)?
            .iter()
            .enumerate()
            .map(|(i, o)| op(o).map_err(|e| format!("{name}[{i}]: {e}")))
            .collect()
    };
    Ok(Txn {
        compares,
        success: ops("success")?,
        failure: ops("failure")?,
    })
}

fn compare(c: &Value) -> Result<Compare, String> {
    let key = bytes(&c["key"]).map_err(|e| format!("key: {e}"))?;
    let op = match c["op"].as_str() {
        Some("equal") => CompareOp::Equal,
        Some("not_equal") => CompareOp::NotEqual,
        Some("less") => CompareOp::Less,
        Some("greater") => CompareOp::Greater,
        _ => return Err("op must be equal, not_equal, less or greater".into()),
    };
    let number = || {
        c["value"]
            .as_u64()
            .ok_or_else(|| "value must be a non-negative integer for this target".to_string())
    };
    let target = match c["target"].as_str() {
        Some("value") => {
            CompareTarget::Value(bytes(&c["value"]).map_err(|e| format!("value: {e}"))?)
        }
        Some("version") => CompareTarget::Version(number()?),
        Some("create_revision") => CompareTarget::CreateRevision(number()?),
        Some("mod_revision") => CompareTarget::ModRevision(number()?),
        Some("exists") => CompareTarget::Exists(
            c["value"]
                .as_bool()
                .ok_or("value must be true or false for exists")?,
        ),
        _ => {
            return Err(
                "target must be value, version, create_revision, mod_revision or exists".into(),
            )
        }
    };
    Ok(Compare { key, op, target })
}

fn op(o: &Value) -> Result<Op, String> {
    let Value::Object(map) = o else {
        return Err("an operation is an object such as {\"put\": {...}}".into());
    };
    if map.len() != 1 {
        return Err("an operation has exactly one of put, delete, get, range".into());
    }
    let (kind, args) = map.iter().next().expect("one entry");
    let key = || bytes(&args["key"]).map_err(|e| format!("{kind}.key: {e}"));
    match kind.as_str() {
        "put" => Ok(Op::Put {
            key: key()?,
            value: bytes(&args["value"]).map_err(|e| format!("put.value: {e}"))?,
        }),
        "delete" => Ok(Op::Delete { key: key()? }),
        "get" => Ok(Op::Get { key: key()? }),
        "range" => Ok(Op::Range {
            prefix: match &args["prefix"] {
                Value::Null => Vec::new(),
                p => bytes(p).map_err(|e| format!("range.prefix: {e}"))?,
            },
            limit: args["limit"]
                .as_u64()
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(1000),
        }),
        other => Err(format!(
            "unknown operation {other:?} (put, delete, get, range)"
        )),
    }
}

/// Bytes from JSON: a string (UTF-8 text), `{"text": ...}` or `{"base64": ...}`.
pub fn bytes(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Object(map) => match (map.get("text"), map.get("base64")) {
            (Some(Value::String(s)), None) => Ok(s.as_bytes().to_vec()),
            (None, Some(Value::String(b))) => super::BASE64
                .decode(b)
                .map_err(|e| format!("not base64: {e}")),
            _ => Err("expected {\"text\": ...} or {\"base64\": ...}".into()),
        },
        Value::Null => Err("missing".into()),
        _ => Err("expected a string, {\"text\": ...} or {\"base64\": ...}".into()),
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
        assert!(err.contains("success[0]: put.value"), "{err}");
        let err = parse(&json!({"compare": [{"key": "a", "op": "equal", "target": "colour"}]}))
            .unwrap_err();
        assert!(err.contains("compare[0]"), "{err}");
        assert!(parse(&json!({"other": []}))
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse(&json!([1])).is_err());
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

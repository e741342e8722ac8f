//! Membership changes through the API, and the members' replicated address records.
//!
//! A member's address is replicated state: `POST /v1/admin/members?add=ID&address=HOST:PORT`
//! first writes the record `\0regent/member/ID` = `HOST:PORT` through the log (an ordinary put
//! under a prefix reserved for regent), waits until it is applied here, and only then proposes
//! the configuration change. Every node applies the record before (or, on a follower, soon
//! after) the change, learns the address from its own state machine, and adds the peer to its
//! transport; a restart reads the records back. The configuration file's `members` are then
//! only the bootstrap.
//!
//! Invariants: clients cannot write under `RESERVED_PREFIX` (refused with 400 `bad_key`
//! before anything is proposed); a record's value is a socket address in text, and a record
//! that does not parse is ignored with a warning, never trusted halfway.

use super::routes::{error, json_response, query_param, request_error, HttpResponse};
use super::{ApiContext, Request, RequestError};
use hyper::StatusCode;
use regent_raft::{ConfChange, NodeId};
use regent_storage::{Command, KeyValue, Op, Proposal};
use serde_json::json;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// Keys under this prefix hold regent's own records; clients may read but not write them.
pub const RESERVED_PREFIX: &[u8] = regent_storage::RESERVED_PREFIX;
/// The prefix of the members' address records: `\0regent/member/<id>` = `HOST:PORT`.
pub const MEMBER_ADDRESS_PREFIX: &[u8] = b"\0regent/member/";
/// The most address records read at once (far above `config::MEMBERS_MAX`).
pub const MEMBER_RECORDS_MAX: u32 = 1000;

/// The key of `id`'s address record.
pub fn member_address_key(id: NodeId) -> Vec<u8> {
    let mut key = MEMBER_ADDRESS_PREFIX.to_vec();
    key.extend_from_slice(id.0.to_string().as_bytes());
    key
}

/// Reads an address record back: `None` for a key outside the prefix or a record that does
/// not parse (logged by the caller).
pub fn parse_member_address(kv: &KeyValue) -> Option<(NodeId, SocketAddr)> {
    let id = kv.key.strip_prefix(MEMBER_ADDRESS_PREFIX)?;
    let id: u64 = std::str::from_utf8(id).ok()?.parse().ok()?;
    let addr: SocketAddr = std::str::from_utf8(&kv.value).ok()?.parse().ok()?;
    (id > 0).then_some((NodeId(id), addr))
}

/// The first key under `RESERVED_PREFIX` a client command would write, if any.
pub fn reserved_write(command: &Command) -> Option<&[u8]> {
    let reserved = |key: &[u8]| key.starts_with(RESERVED_PREFIX);
    match command {
        Command::Put { key, .. } | Command::Delete { key } if reserved(key) => Some(key),
        Command::Txn(txn) => txn
            .success
            .iter()
            .chain(txn.failure.iter())
            .find_map(|op| match op {
                Op::Put { key, .. } | Op::Delete { key } if reserved(key) => Some(key.as_slice()),
                _ => None,
            }),
        _ => None,
    }
}

/// The 400 answer for a client write under the reserved prefix.
pub fn reserved_refusal(key: &[u8]) -> HttpResponse {
    error(
        StatusCode::BAD_REQUEST,
        "bad_key",
        &format!(
            "key {:?} is under the prefix \\0regent/, reserved for regent's own records",
            String::from_utf8_lossy(key)
        ),
        None,
    )
}

/// `POST /v1/admin/members?add=ID[&address=IP:PORT]` (as a learner), `update=ID&address=
/// IP:PORT` (a member moved), `promote=ID`, `remove=ID`, or `abort`. Answered with the
/// configuration entry's index once the leader appended it (for `update`, the record's).
pub async fn members(context: &ApiContext, query: &str) -> HttpResponse {
    let id = |name: &str| {
        query_param(query, name)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&v| v > 0)
    };
    let change = if let Some(n) = id("add") {
        if let Some(text) = query_param(query, "address") {
            let Ok(address) = text.parse::<SocketAddr>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    &format!("address={text:?} is not IP:PORT (resolve a host name first)"),
                    None,
                );
            };
            if let Err(err) = record_address(context, NodeId(n), address)
                .await
                .map(|_| ())
            {
                return request_error(err);
            }
        }
        Some(ConfChange::AddLearner(NodeId(n)))
    } else if let Some(n) = id("update") {
        // A member moved: only its address record changes (etcd's `member update`).
        let Some(address) = query_param(query, "address").and_then(|t| t.parse().ok()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                "update=ID needs address=IP:PORT",
                None,
            );
        };
        return match record_address(context, NodeId(n), address).await {
            Ok(index) => json_response(StatusCode::OK, &json!({ "index": index.0 })),
            Err(err) => request_error(err),
        };
    } else if let Some(n) = id("promote") {
        Some(ConfChange::Promote(NodeId(n)))
    } else if let Some(n) = id("remove") {
        Some(ConfChange::Remove(NodeId(n)))
    } else if query_param(query, "abort").is_some() {
        None
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            "say add=ID (with address=IP:PORT), update=ID&address=IP:PORT, promote=ID, remove=ID or abort",
            None,
        );
    };
    let (reply, answer) = oneshot::channel();
    match super::routes::ask(context, Request::Members { change, reply }, answer).await {
        Ok(index) => json_response(StatusCode::OK, &json!({ "index": index.0 })),
        Err(err) => request_error(err),
    }
}

/// Writes `id`'s address record through the log and waits until it is applied here; answers
/// the record's index.
async fn record_address(
    context: &ApiContext,
    id: NodeId,
    address: SocketAddr,
) -> Result<regent_raft::LogIndex, RequestError> {
    // Address records came after `regent/2`: a node of that version would store the record as
    // a plain key and never learn the address.
    super::routes::version_gate(context, regent_replica::VERSION_OPERATIONS)
        .await
        .map_err(RequestError::Version)?;
    let proposal = Proposal::new(Command::Put {
        key: member_address_key(id),
        value: address.to_string().into_bytes(),
    });
    let (reply, answer) = oneshot::channel();
    let written = super::routes::ask(context, Request::Propose { proposal, reply }, answer).await?;
    tracing::info!(node = %id, %address, index = %written.index, "member address recorded");
    Ok(written.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regent_storage::Txn;

    #[test]
    fn address_records_round_trip_and_bad_ones_are_ignored() {
        let kv = |key: Vec<u8>, value: &str| KeyValue {
            key,
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        };
        let key = member_address_key(NodeId(4));
        assert_eq!(key, b"\0regent/member/4");
        assert_eq!(
            parse_member_address(&kv(key.clone(), "10.0.0.4:7401")),
            Some((NodeId(4), "10.0.0.4:7401".parse().unwrap()))
        );
        assert_eq!(parse_member_address(&kv(key.clone(), "nowhere")), None);
        assert_eq!(
            parse_member_address(&kv(b"\0regent/member/x".to_vec(), "10.0.0.4:1")),
            None
        );
        assert_eq!(
            parse_member_address(&kv(b"\0regent/member/0".to_vec(), "10.0.0.4:1")),
            None
        );
        assert_eq!(
            parse_member_address(&kv(b"w1".to_vec(), "10.0.0.4:1")),
            None
        );
    }

    #[test]
    fn clients_cannot_write_reserved_keys() {
        let put = |key: &[u8]| Command::Put {
            key: key.to_vec(),
            value: vec![],
        };
        assert!(reserved_write(&put(b"\0regent/member/1")).is_some());
        assert!(reserved_write(&Command::Delete {
            key: b"\0regent/x".to_vec()
        })
        .is_some());
        assert!(reserved_write(&put(b"regent/member/1")).is_none());
        assert!(reserved_write(&Command::Get {
            key: b"\0regent/member/1".to_vec()
        })
        .is_none());
        let txn = |op: Op| {
            Command::Txn(Txn {
                compares: vec![],
                success: vec![],
                failure: vec![op],
            })
        };
        assert!(reserved_write(&txn(Op::Delete {
            key: b"\0regent/member/2".to_vec()
        }))
        .is_some());
        assert!(reserved_write(&txn(Op::Get {
            key: b"\0regent/member/2".to_vec()
        }))
        .is_none());
    }
}

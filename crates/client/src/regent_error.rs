//! The host API's error codes as a type (docs/api.md, the table of codes), for `Leadership`,
//! `Journal` and `Kv`: a caller matches on the variant, never on a message. Errors that arise
//! in the library itself (`NotWritable`, `Unavailable`) have codes that do not collide with
//! the API's.

use crate::{Answer, ClientError};
use serde_json::Value;

/// What regent answered (or what kept the request from getting an answer).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegentError {
    /// 503 `not_leader`: this node does not lead; the leader when known.
    #[error("not_leader: {message}")]
    NotLeader {
        leader_id: Option<u64>,
        leader_address: Option<String>,
        message: String,
    },
    /// 409 `term_mismatch`: fenced; the host is deposed and must stop writing.
    #[error("term_mismatch: {message}")]
    TermMismatch {
        expected_term: Option<u64>,
        term: Option<u64>,
        message: String,
    },
    /// 503 `busy`: backpressure, a hand-over, or no answer within 10 s.
    #[error("busy: {message}")]
    Busy { message: String },
    /// 503 `superseded`: another leader's entry took the write's position.
    #[error("superseded: {message}")]
    Superseded { message: String },
    /// 400 `command_refused`: the state machine refused the command.
    #[error("command_refused: {message}")]
    CommandRefused { message: String },
    /// 410 `journal_compacted`: the journal starts at `first_index` now.
    #[error("journal_compacted: {message} (first index {first_index})")]
    JournalCompacted { first_index: u64, message: String },
    /// 410 `compacted`: the KV feed starts at `oldest_revision` now.
    #[error("compacted: {message}")]
    Compacted {
        oldest_revision: Option<u64>,
        message: String,
    },
    /// 404 `key_not_found`.
    #[error("key_not_found: {message}")]
    KeyNotFound { message: String },
    /// 503 `leader_unreachable` (forwarding): the request was not sent.
    #[error("leader_unreachable: {message}")]
    LeaderUnreachable { message: String },
    /// 503 `outcome_unknown`, or the library's retries ended after an attempt that may have
    /// landed: read before writing again.
    #[error("outcome_unknown: {message}")]
    OutcomeUnknown { message: String },
    /// 503 `shutting_down`.
    #[error("shutting_down: {message}")]
    ShuttingDown { message: String },
    /// 400 `bad_*` (`code` says which), 413 `payload_too_large`, 403 `forbidden`, 404
    /// `not_found`, 405, 500 `storage_error`/`internal`, and any code this library does not
    /// know.
    #[error("{code}: {message} (HTTP {status})")]
    Other {
        status: u16,
        code: String,
        message: String,
    },
    /// The library: this host is not active (not writable, or not caught up); nothing was
    /// sent.
    #[error("not_writable: {message}")]
    NotWritable { message: String },
    /// The library: the socket could not be reached or the exchange broke. `sent`: the
    /// request may have reached regent; `timeout`: no answer in time.
    #[error("unavailable: {message}")]
    Unavailable {
        message: String,
        sent: bool,
        timeout: bool,
    },
}

impl RegentError {
    /// The API's error code (or the library's own: `not_writable`, `unavailable`).
    pub fn code(&self) -> &str {
        match self {
            RegentError::NotLeader { .. } => "not_leader",
            RegentError::TermMismatch { .. } => "term_mismatch",
            RegentError::Busy { .. } => "busy",
            RegentError::Superseded { .. } => "superseded",
            RegentError::CommandRefused { .. } => "command_refused",
            RegentError::JournalCompacted { .. } => "journal_compacted",
            RegentError::Compacted { .. } => "compacted",
            RegentError::KeyNotFound { .. } => "key_not_found",
            RegentError::LeaderUnreachable { .. } => "leader_unreachable",
            RegentError::OutcomeUnknown { .. } => "outcome_unknown",
            RegentError::ShuttingDown { .. } => "shutting_down",
            RegentError::Other { code, .. } => code,
            RegentError::NotWritable { .. } => "not_writable",
            RegentError::Unavailable { .. } => "unavailable",
        }
    }

    /// The HTTP status regent answered with; None for the library's own errors.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            RegentError::NotLeader { .. }
            | RegentError::Busy { .. }
            | RegentError::Superseded { .. }
            | RegentError::LeaderUnreachable { .. }
            | RegentError::OutcomeUnknown { .. }
            | RegentError::ShuttingDown { .. } => 503,
            RegentError::TermMismatch { .. } => 409,
            RegentError::CommandRefused { .. } => 400,
            RegentError::JournalCompacted { .. } | RegentError::Compacted { .. } => 410,
            RegentError::KeyNotFound { .. } => 404,
            RegentError::Other { status, .. } => *status,
            RegentError::NotWritable { .. } | RegentError::Unavailable { .. } => return None,
        })
    }

    /// The error of an answer whose status is not 2xx (`body` its JSON, or anything).
    pub fn from_answer(status: u16, body: &[u8]) -> RegentError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        Self::from_json(status, &v)
    }

    /// The error an error object describes (an answer's body, or a stream's error line).
    pub fn from_json(status: u16, v: &Value) -> RegentError {
        let code = v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("http_{status}"));
        let message = v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        match code.as_str() {
            "not_leader" => RegentError::NotLeader {
                leader_id: v["leader_id"].as_u64(),
                leader_address: v["leader_address"].as_str().map(str::to_string),
                message,
            },
            "term_mismatch" => RegentError::TermMismatch {
                expected_term: v["expected_term"].as_u64(),
                term: v["term"].as_u64(),
                message,
            },
            "busy" => RegentError::Busy { message },
            "superseded" => RegentError::Superseded { message },
            "command_refused" => RegentError::CommandRefused { message },
            "journal_compacted" => RegentError::JournalCompacted {
                first_index: v["first_index"].as_u64().unwrap_or(0),
                message,
            },
            "compacted" => RegentError::Compacted {
                oldest_revision: v["oldest_revision"].as_u64(),
                message,
            },
            "key_not_found" => RegentError::KeyNotFound { message },
            "leader_unreachable" => RegentError::LeaderUnreachable { message },
            "outcome_unknown" => RegentError::OutcomeUnknown { message },
            "shutting_down" => RegentError::ShuttingDown { message },
            _ => RegentError::Other {
                status,
                code,
                message,
            },
        }
    }

    /// A failed exchange: whether the request may have left is judged by the step that
    /// failed (a refused connection sent nothing).
    pub(crate) fn from_client(err: ClientError) -> RegentError {
        let (sent, timeout) = match &err {
            ClientError::Connect { .. } | ClientError::ConnectStream { .. } => (false, false),
            ClientError::Send { source, .. } => (true, source.is_timeout()),
            ClientError::Receive { source, .. } => (true, source.is_timeout()),
            ClientError::Http(source) => (true, source.is_timeout()),
            _ => (true, false),
        };
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        RegentError::Unavailable {
            message,
            sent,
            timeout,
        }
    }

    /// Whether a write that got this answer is sent again with the same `seq`.
    pub(crate) fn is_retried(&self) -> bool {
        matches!(
            self,
            RegentError::Busy { .. }
                | RegentError::Superseded { .. }
                | RegentError::OutcomeUnknown { .. }
                | RegentError::LeaderUnreachable { .. }
                | RegentError::ShuttingDown { .. }
                | RegentError::Unavailable { .. }
        )
    }
}

/// The answer's JSON when it is 2xx, else its error.
pub(crate) fn checked(answer: Answer) -> Result<Answer, RegentError> {
    if (200..300).contains(&answer.status) {
        Ok(answer)
    } else {
        Err(RegentError::from_answer(answer.status, &answer.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_become_variants_with_their_fields() {
        let e = RegentError::from_answer(
            503,
            br#"{"error":"not_leader","message":"m","leader_id":2,"leader_address":"a:1"}"#,
        );
        assert!(matches!(
            &e,
            RegentError::NotLeader { leader_id: Some(2), leader_address: Some(a), .. } if a == "a:1"
        ));
        assert_eq!((e.code(), e.status()), ("not_leader", Some(503)));
        let e = RegentError::from_answer(410, br#"{"error":"journal_compacted","first_index":9}"#);
        assert!(matches!(
            e,
            RegentError::JournalCompacted { first_index: 9, .. }
        ));
        let e = RegentError::from_answer(400, br#"{"error":"bad_txn","message":"compare"}"#);
        assert_eq!((e.code(), e.status()), ("bad_txn", Some(400)));
        let e = RegentError::from_answer(502, b"<html>");
        assert_eq!(e.code(), "http_502");
        assert!(!e.is_retried());
    }
}

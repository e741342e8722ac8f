//! Kv: the replicated key-value store (docs/api.md, "The replicated key-value store").
//!
//! Writes (`put`, `delete`, `txn`) are fenced with the Leadership's term and sent exactly once
//! in a session (`session.rs`). Reads take a `Consistency`. `watch` yields the changes under a
//! prefix, reconnecting from the next revision; `Compacted` when that revision is gone.

use crate::encode_key;
use crate::feed::Feed;
use crate::leadership::Leadership;
use crate::regent_error::{checked, RegentError};
use crate::session::{json, Session, WriteOptions};
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// ReadIndex: confirmed with a heartbeat round (the default).
    #[default]
    Linearizable,
    /// On the leader while its lease holds, no round trip.
    Lease,
    /// This node's applied state as it is.
    Local,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Local => "local",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// One change seen by `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `put` or `delete`.
    pub kind: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub revision: u64,
}

pub struct Kv {
    socket: PathBuf,
    session: Session,
}

impl Kv {
    pub fn new(socket: &Path, leadership: Option<Leadership>, options: WriteOptions) -> Kv {
        Kv {
            socket: socket.to_path_buf(),
            session: Session::new(socket, leadership, options),
        }
    }

    fn timeout(&self) -> Duration {
        self.session.options().timeout
    }

    /// The key's value and revisions; None when it is absent.
    pub fn get(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, RegentError> {
        let path = format!(
            "/v1/kv/{}?consistency={}",
            encode_key(key),
            consistency.as_str()
        );
        let answer = crate::request(&self.socket, "GET", &path, b"", self.timeout())
            .map_err(RegentError::from_client)?;
        let answer = match checked(answer) {
            Ok(answer) => answer,
            Err(RegentError::KeyNotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let number = |name: &str| {
            answer
                .header(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Some(KeyValue {
            key: key.to_vec(),
            create_revision: number("x-regent-create-revision"),
            mod_revision: number("x-regent-revision"),
            version: number("x-regent-version"),
            value: answer.body,
        }))
    }

    /// `{"revision", "index", "term"}`.
    pub fn put(
        &self,
        key: &[u8],
        value: &[u8],
        expected_term: Option<u64>,
    ) -> Result<Value, RegentError> {
        let path = format!("/v1/kv/{}", encode_key(key));
        self.session.write("PUT", &path, value, expected_term)
    }

    /// `{"revision", "index", "term", "deleted"}`.
    pub fn delete(&self, key: &[u8], expected_term: Option<u64>) -> Result<Value, RegentError> {
        let path = format!("/v1/kv/{}", encode_key(key));
        self.session.write("DELETE", &path, b"", expected_term)
    }

    /// The keys under `prefix` (at most `limit`), and whether there are more.
    pub fn range(
        &self,
        prefix: &[u8],
        limit: u32,
        consistency: Consistency,
    ) -> Result<(Vec<KeyValue>, bool), RegentError> {
        let path = format!(
            "/v1/kv?prefix={}&limit={limit}&consistency={}",
            encode_key(prefix).replace('/', "%2F"),
            consistency.as_str()
        );
        let answer = crate::request(&self.socket, "GET", &path, b"", self.timeout())
            .map_err(RegentError::from_client)?;
        let v = json(checked(answer)?)?;
        let kvs = v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| KeyValue {
                        key: decode_bytes(&kv["key"]).unwrap_or_default(),
                        value: decode_bytes(&kv["value"]).unwrap_or_default(),
                        create_revision: kv["create_revision"].as_u64().unwrap_or(0),
                        mod_revision: kv["mod_revision"].as_u64().unwrap_or(0),
                        version: kv["version"].as_u64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((kvs, v["more"] == true))
    }

    /// A transaction as docs/api.md writes it (`compare`, `success`, `failure` as JSON).
    pub fn txn(
        &self,
        compare: Value,
        success: Value,
        failure: Value,
        expected_term: Option<u64>,
    ) -> Result<Value, RegentError> {
        let body = json!({"compare": compare, "success": success, "failure": failure});
        self.session.write(
            "POST",
            "/v1/txn",
            body.to_string().as_bytes(),
            expected_term,
        )
    }

    /// The changes under `prefix` from `from_revision` (None: from now), in order.
    pub fn watch(&self, prefix: &[u8], from_revision: Option<u64>) -> Watch {
        Watch {
            socket: self.socket.clone(),
            prefix: encode_key(prefix).replace('/', "%2F"),
            next: from_revision,
            feed: None,
            ended: false,
        }
    }
}

/// A KV watch: an iterator of `Change` that reconnects from the next revision; it yields
/// `Err(Compacted)` when that revision is gone, and ends after it.
pub struct Watch {
    socket: PathBuf,
    prefix: String,
    next: Option<u64>,
    feed: Option<Feed>,
    ended: bool,
}

impl Iterator for Watch {
    type Item = Result<Change, RegentError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.ended {
                return None;
            }
            if self.feed.is_none() {
                let from = self
                    .next
                    .map_or(String::new(), |r| format!("&from_revision={r}"));
                match Feed::open(
                    &self.socket,
                    &format!("/v1/watch?prefix={}{from}", self.prefix),
                ) {
                    Ok(feed) => self.feed = Some(feed),
                    Err(err @ RegentError::Compacted { .. }) => {
                        self.ended = true;
                        return Some(Err(err));
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
            }
            let feed = self.feed.as_mut().expect("opened above");
            let Some(line) = feed.next_line() else {
                self.feed = None;
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            let Ok(e) = serde_json::from_str::<Value>(&line) else {
                self.feed = None;
                continue;
            };
            if e.get("error").is_some() {
                self.feed = None;
                continue;
            }
            let revision = e["revision"].as_u64().unwrap_or(0);
            self.next = Some(revision + 1);
            return Some(Ok(Change {
                kind: e["type"].as_str().unwrap_or("").to_string(),
                key: decode_bytes(&e["key"]).unwrap_or_default(),
                value: decode_bytes(&e["value"]),
                revision,
            }));
        }
    }
}

/// The API's `{"text": ...}` / `{"base64": ...}` (or a plain string) as bytes.
pub fn decode_bytes(v: &Value) -> Option<Vec<u8>> {
    if let Some(s) = v.as_str() {
        return Some(s.as_bytes().to_vec());
    }
    if let Some(s) = v["text"].as_str() {
        return Some(s.as_bytes().to_vec());
    }
    v["base64"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
}

//! Journal: the host's operation log (docs/api.md, "The host's operation journal").
//!
//! - `append(ops)`: fenced with the Leadership's term, exactly once in a session
//!   (`session.rs`); one operation, or several as one batch (consecutive indexes, atomically);
//! - `tail(from)`: the committed operations in order (the binary framing), reconnecting from
//!   the next index when the stream breaks; `JournalCompacted` with `first_index` when the
//!   journal no longer holds the next index;
//! - `ack(index)`: the hand-over ack (a journal host's `Leadership` sends it itself);
//! - `checkpoint(index)`: this host's durable checkpoint covers the journal up to `index`.

use crate::feed::Feed;
use crate::leadership::Leadership;
use crate::regent_error::{checked, RegentError};
use crate::session::{json, Session, WriteOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The largest operation regent takes (docs/api.md, "Framing").
pub const OPERATION_BYTES_MAX: usize = 1 << 20;
/// The most operations in one batch.
pub const BATCH_OPERATIONS_MAX: usize = 4096;
/// A frame's header: index, term, length.
const FRAME_HEADER_BYTES: usize = 20;

/// One committed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub op: Vec<u8>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The last operation's index (= `last_index`).
    pub index: u64,
    pub term: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub log_index: Option<u64>,
}

pub struct Journal {
    socket: PathBuf,
    session: Session,
    reconnect: Duration,
}

impl Journal {
    /// A journal on the regent at `socket`; appends are fenced with `leadership`'s term
    /// (None: each append names its expected term, or is not fenced).
    pub fn new(socket: &Path, leadership: Option<Leadership>, options: WriteOptions) -> Journal {
        Journal {
            socket: socket.to_path_buf(),
            session: Session::new(socket, leadership, options),
            reconnect: Duration::from_millis(200),
        }
    }

    /// Appends `ops` (one: a plain append; more: one batch). `expected_term` None takes the
    /// Leadership's (`NotWritable` when it is not writable).
    pub fn append<O: AsRef<[u8]>>(
        &self,
        ops: &[O],
        expected_term: Option<u64>,
    ) -> Result<Appended, RegentError> {
        let bad = |message: String| RegentError::Other {
            status: 400,
            code: "bad_operation".into(),
            message,
        };
        if ops.is_empty() || ops.len() > BATCH_OPERATIONS_MAX {
            return Err(bad(format!(
                "{} operations; 1 ..= {BATCH_OPERATIONS_MAX}",
                ops.len()
            )));
        }
        for op in ops {
            let len = op.as_ref().len();
            if len == 0 || len > OPERATION_BYTES_MAX {
                return Err(bad(format!(
                    "an operation of {len} bytes (1 ..= {OPERATION_BYTES_MAX})"
                )));
            }
        }
        let v = if ops.len() == 1 {
            self.session
                .write("POST", "/v1/journal", ops[0].as_ref(), expected_term)?
        } else {
            let mut body = Vec::new();
            for op in ops {
                body.extend_from_slice(&(op.as_ref().len() as u32).to_be_bytes());
                body.extend_from_slice(op.as_ref());
            }
            self.session
                .write("POST", "/v1/journal?batch=true", &body, expected_term)?
        };
        let field = |name: &str| {
            v[name].as_u64().ok_or_else(|| RegentError::Other {
                status: 200,
                code: "bad_answer".into(),
                message: format!("an append's answer without {name}: {v}"),
            })
        };
        Ok(Appended {
            index: field("index")?,
            term: field("term")?,
            first_index: field("first_index")?,
            last_index: field("last_index")?,
            log_index: v["log_index"].as_u64(),
        })
    }

    /// The committed operations from `from` on (see `Tail`).
    pub fn tail(&self, from: u64) -> Tail {
        Tail {
            socket: self.socket.clone(),
            next: from,
            feed: None,
            reconnect: self.reconnect,
            stop: Arc::new(AtomicBool::new(false)),
            follow: true,
        }
    }

    /// `POST /v1/journal/applied`: this host applied the journal up to `index`.
    pub fn ack(&self, index: u64) -> Result<Value, RegentError> {
        self.report("/v1/journal/applied", index)
    }

    /// `POST /v1/journal/checkpoint`: this host's checkpoint covers the journal up to `index`.
    pub fn checkpoint(&self, index: u64) -> Result<Value, RegentError> {
        self.report("/v1/journal/checkpoint", index)
    }

    /// `GET /v1/journal/state`.
    pub fn state(&self) -> Result<Value, RegentError> {
        let timeout = self.session.options().timeout;
        let answer = crate::request(&self.socket, "GET", "/v1/journal/state", b"", timeout)
            .map_err(RegentError::from_client)?;
        json(checked(answer)?)
    }

    fn report(&self, path: &str, index: u64) -> Result<Value, RegentError> {
        let body = format!("{{\"index\": {index}}}");
        let timeout = self.session.options().timeout;
        let answer = crate::request(&self.socket, "POST", path, body.as_bytes(), timeout)
            .map_err(RegentError::from_client)?;
        json(checked(answer)?)
    }
}

/// A journal tail: an iterator of `Entry`, each once and in index order, that opens the
/// stream again from the next index whenever it breaks. It yields `Err(JournalCompacted)`
/// when the next index is gone (and ends after it), and ends when `stop` is set or, with
/// `follow(false)`, after the backlog.
pub struct Tail {
    socket: PathBuf,
    next: u64,
    feed: Option<Feed>,
    reconnect: Duration,
    stop: Arc<AtomicBool>,
    follow: bool,
}

impl Tail {
    /// A flag that ends the tail at its next entry or reconnect.
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// `false`: end after the backlog instead of following live.
    pub fn follow(mut self, follow: bool) -> Tail {
        self.follow = follow;
        self
    }

    /// The index the next entry will have.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    fn frame(&mut self) -> Option<Result<Entry, RegentError>> {
        let feed = self.feed.as_mut()?;
        loop {
            if feed.pending.len() >= FRAME_HEADER_BYTES {
                let p = &feed.pending;
                let len = u32::from_be_bytes(p[16..20].try_into().expect("4 bytes")) as usize;
                if p.len() >= FRAME_HEADER_BYTES + len {
                    let index = u64::from_be_bytes(p[0..8].try_into().expect("8 bytes"));
                    let term = u64::from_be_bytes(p[8..16].try_into().expect("8 bytes"));
                    let op = p[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len].to_vec();
                    feed.pending.drain(..FRAME_HEADER_BYTES + len);
                    if index != self.next {
                        self.feed = None;
                        return Some(Err(RegentError::Other {
                            status: 200,
                            code: "bad_stream".into(),
                            message: format!("journal index {index} after {}", self.next - 1),
                        }));
                    }
                    self.next += 1;
                    return Some(Ok(Entry { index, term, op }));
                }
            }
            if !feed.fill() {
                self.feed = None;
                return None;
            }
        }
    }
}

impl Iterator for Tail {
    type Item = Result<Entry, RegentError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if self.feed.is_none() {
                let follow = if self.follow { "" } else { "&follow=false" };
                match Feed::open(
                    &self.socket,
                    &format!("/v1/journal?from={}{follow}", self.next),
                ) {
                    Ok(feed) => self.feed = Some(feed),
                    Err(err @ RegentError::JournalCompacted { .. }) => {
                        self.stop.store(true, Ordering::Relaxed);
                        return Some(Err(err));
                    }
                    Err(_) => {
                        std::thread::sleep(self.reconnect);
                        continue;
                    }
                }
            }
            match self.frame() {
                Some(item) => return Some(item),
                None if !self.follow => return None,
                None => std::thread::sleep(self.reconnect),
            }
        }
    }
}

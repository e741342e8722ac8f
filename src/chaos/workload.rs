//! The clients: threads writing and reading through the nodes' Unix sockets, concurrently,
//! with unique values and exactly-once sessions, recording every operation's invocation and
//! completion on CLOCK_MONOTONIC.
//!
//! Operation kinds ([`OpKind`]): a write of a register key (a few keys, so that clients
//! contend), a read of one (linearizable on any node, or lease on the node believed to lead),
//! and a write of a key of its own that is never overwritten (for the "no acknowledged write
//! lost" check). Writes carry `client_id`/`seq` from `POST /v1/session` and are retried with the
//! same `seq` (other node, after `not_leader`, `busy`, `superseded`, a timeout) until acknowledged
//! or the retry budget is spent; then their outcome is unknown and the checker treats them so.
//!
//! TODO(journal): appends (`POST /v1/journal`) and tails (`GET /v1/journal?from=N`) go in as one
//! more [`OpKind`] here (an append is a write with a unique value and a session; a tail is a
//! read of the sequence), with their check in `checks.rs` (acknowledged appends exactly once, in
//! one order, on every node's tail).

use crate::cli::client::{self, Answer};
use crate::raft::SplitMix64;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Register keys the clients contend on.
pub const REGISTER_KEYS: u64 = 12;
/// How long a write is retried (same seq) before its outcome is declared unknown.
const WRITE_RETRY: Duration = Duration::from_secs(6);
/// One HTTP request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

pub fn register_key(key: u64) -> String {
    format!("chaos-r{key}")
}

pub fn unique_key(client: u64, n: u64) -> String {
    format!("chaos-u{client}-{n}")
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Write `value` to register `key`.
    Write { key: u64, value: u64 },
    /// Read register `key`; `observed` None for absent. `lease` for a lease read.
    Read {
        key: u64,
        observed: Option<u64>,
        lease: bool,
    },
    /// Write `value` under the client's own key `unique_key(client, n)`.
    Unique { n: u64, value: u64 },
}

/// One operation as the client saw it.
#[derive(Clone, Debug)]
pub struct Record {
    pub client: u64,
    pub kind: OpKind,
    pub invoke: u64,
    /// None: the outcome is unknown (a write) or the read failed.
    pub complete: Option<u64>,
}

pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Record>>>,
}

impl Workload {
    pub fn start(sockets: Vec<PathBuf>, clients: u64, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|c| {
                let (sockets, stop) = (sockets.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut client = Client::new(
                        c,
                        sockets,
                        seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    while !stop.load(Ordering::Relaxed) {
                        client.one();
                    }
                    client.history
                })
            })
            .collect();
        Workload { stop, threads }
    }

    pub fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    }
}

struct Client {
    id: u64,
    sockets: Vec<PathBuf>,
    rng: SplitMix64,
    session: Option<u64>,
    seq: u64,
    counter: u64,
    /// The node believed to lead (index into sockets).
    target: usize,
    history: Vec<Record>,
}

impl Client {
    fn new(id: u64, sockets: Vec<PathBuf>, seed: u64) -> Client {
        Client {
            id,
            sockets,
            rng: SplitMix64::new(seed),
            session: None,
            seq: 0,
            counter: 0,
            target: 0,
            history: Vec::new(),
        }
    }

    fn next_value(&mut self) -> u64 {
        self.counter += 1;
        (self.id + 1) * 1_000_000_000_000 + self.counter
    }

    fn one(&mut self) {
        let roll = self.rng.below(100);
        if roll < 40 {
            let key = self.rng.below(REGISTER_KEYS);
            let value = self.next_value();
            self.write(OpKind::Write { key, value }, &register_key(key), value);
        } else if roll < 60 {
            let value = self.next_value();
            let n = self.counter;
            self.write(OpKind::Unique { n, value }, &unique_key(self.id, n), value);
        } else {
            let key = self.rng.below(REGISTER_KEYS);
            let lease = roll >= 90;
            self.read(key, lease);
        }
    }

    fn follow(&mut self, answer: &Answer) {
        let leader = answer.json().ok().and_then(|v| v["leader_id"].as_u64());
        match leader {
            Some(l)
                if l >= 1
                    && (l as usize) <= self.sockets.len()
                    && (l - 1) as usize != self.target =>
            {
                self.target = (l - 1) as usize
            }
            _ => {
                self.target = (self.target + 1) % self.sockets.len();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn open_session(&mut self, until: std::time::Instant) -> Option<u64> {
        while std::time::Instant::now() < until {
            match client::request(
                &self.sockets[self.target],
                "POST",
                "/v1/session",
                br#"{"ttl_ms": 600000}"#,
                REQUEST_TIMEOUT,
            ) {
                Ok(a) if a.status == 200 => {
                    let id = a.json().ok()?["client_id"].as_u64()?;
                    self.session = Some(id);
                    self.seq = 0;
                    return Some(id);
                }
                Ok(a) => self.follow(&a),
                Err(_) => {
                    self.target = (self.target + 1) % self.sockets.len();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        None
    }

    fn write(&mut self, kind: OpKind, key: &str, value: u64) {
        let invoke = crate::clock::now();
        let until = std::time::Instant::now() + WRITE_RETRY;
        let complete = self.write_until(key, value, until);
        self.history.push(Record {
            client: self.id,
            kind,
            invoke,
            complete,
        });
    }

    /// Retries one write (one seq) until acknowledged or `until`.
    fn write_until(&mut self, key: &str, value: u64, until: std::time::Instant) -> Option<u64> {
        let session = match self.session {
            Some(s) => s,
            None => self.open_session(until)?,
        };
        self.seq += 1;
        let path = format!("/v1/kv/{}?client_id={session}&seq={}", key, self.seq);
        let body = value.to_string();
        while std::time::Instant::now() < until {
            match client::request(
                &self.sockets[self.target],
                "PUT",
                &path,
                body.as_bytes(),
                REQUEST_TIMEOUT,
            ) {
                Ok(a) if a.status == 200 => return Some(crate::clock::now()),
                Ok(a) if a.status == 400 => {
                    // The session is unknown (expired): the write was not applied under it.
                    // Its outcome is left unknown; the next write opens a new session.
                    self.session = None;
                    return None;
                }
                Ok(a) => self.follow(&a),
                Err(_) => {
                    self.target = (self.target + 1) % self.sockets.len();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        None
    }

    fn read(&mut self, key: u64, lease: bool) {
        let node = if lease {
            self.target
        } else {
            self.rng.below(self.sockets.len() as u64) as usize
        };
        let consistency = if lease { "lease" } else { "linearizable" };
        let path = format!("/v1/kv/{}?consistency={consistency}", register_key(key));
        let invoke = crate::clock::now();
        let answer = client::request(&self.sockets[node], "GET", &path, b"", REQUEST_TIMEOUT);
        let done = crate::clock::now();
        // A body that is not one of our values reads as u64::MAX, which no write produces.
        let (observed, complete) = match &answer {
            Ok(a) if a.status == 200 => (Some(parse_value(&a.body)), Some(done)),
            Ok(a) if a.status == 404 && a.json().is_ok_and(|v| v["error"] == "key_not_found") => {
                (None, Some(done))
            }
            Ok(a) => {
                if lease {
                    self.follow(a);
                }
                (None, None)
            }
            Err(_) => (None, None),
        };
        self.history.push(Record {
            client: self.id,
            kind: OpKind::Read {
                key,
                observed,
                lease,
            },
            invoke,
            complete,
        });
    }
}

/// Final reads of every register key, one client's worth, recorded as operations (so the
/// final state is part of the linearizability check).
pub fn final_reads(socket: &std::path::Path, client: u64) -> Vec<Record> {
    let mut out = Vec::new();
    for key in 0..REGISTER_KEYS {
        let path = format!("/v1/kv/{}?consistency=linearizable", register_key(key));
        let invoke = crate::clock::now();
        if let Ok(a) = client::request(socket, "GET", &path, b"", REQUEST_TIMEOUT) {
            let done = crate::clock::now();
            let observed = match a.status {
                200 => Some(parse_value(&a.body)),
                404 => None,
                _ => continue,
            };
            out.push(Record {
                client,
                kind: OpKind::Read {
                    key,
                    observed,
                    lease: false,
                },
                invoke,
                complete: Some(done),
            });
        }
    }
    out
}

/// Reads `key` on `socket` with `consistency`; Some(None) when absent, None on failure.
pub fn read_value(
    socket: &std::path::Path,
    key: &str,
    consistency: &str,
) -> Option<Option<Vec<u8>>> {
    let path = format!("/v1/kv/{key}?consistency={consistency}");
    let a = client::request(socket, "GET", &path, b"", REQUEST_TIMEOUT).ok()?;
    match a.status {
        200 => Some(Some(a.body)),
        404 => Some(None),
        _ => None,
    }
}

fn parse_value(body: &[u8]) -> u64 {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

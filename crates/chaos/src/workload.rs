//! The clients: threads writing and reading through the nodes' Unix sockets, concurrently,
//! with unique values and exactly-once sessions, recording every operation's invocation and
//! completion on CLOCK_MONOTONIC.
//!
//! Operation kinds ([`OpKind`]): a write of a register key (a few keys, so that clients
//! contend), a read of one (linearizable on any node, or lease on the node believed to lead),
//! a write of a key of its own that is never overwritten (for the "no acknowledged write
//! lost" check), and an append to the host's operation journal of a payload unique in the run
//! (for the journal check, [`super::journal`]). Writes and appends carry `client_id`/`seq` from
//! `POST /v1/session` and are retried with the same `seq` (other node, after `not_leader`,
//! `busy`, `superseded`, a timeout) until acknowledged or the retry budget is spent; then their
//! outcome is unknown and the checkers treat them so.

use regent_client::{self as client, Answer};
use regent_raft::SplitMix64;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Register keys the clients contend on.
pub const REGISTER_KEYS: u64 = 12;
/// How long a write is retried (same seq) before its outcome is declared unknown.
const WRITE_RETRY: Duration = Duration::from_secs(6);
/// One attempt in this many is sent to a random node with `forward=true`.
const FORWARD_ONE_IN: u64 = 4;
/// One HTTP request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

pub fn register_key(key: u64) -> String {
    format!("chaos-r{key}")
}

pub fn unique_key(client: u64, n: u64) -> String {
    format!("chaos-u{client}-{n}")
}

/// The operation a client's `n`th value appends to the journal: unique in the run.
pub fn journal_payload(client: u64, n: u64) -> Vec<u8> {
    format!("c{client}-n{n}").into_bytes()
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
    /// Append `journal_payload(client, n)` to the journal; `ack` is what the 200 answer said
    /// (None while the outcome is unknown).
    Append { n: u64, ack: Option<JournalAck> },
}

/// The journal position an acknowledged append was answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalAck {
    pub index: u64,
    pub term: u64,
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
    forwarded: Arc<AtomicU64>,
}

impl Workload {
    pub fn start(sockets: Vec<PathBuf>, clients: u64, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|c| {
                let (sockets, stop) = (sockets.clone(), stop.clone());
                let forwarded = forwarded.clone();
                std::thread::spawn(move || {
                    let mut client = Client::new(
                        c,
                        sockets,
                        seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    client.forwarded = forwarded;
                    while !stop.load(Ordering::Relaxed) {
                        client.one();
                    }
                    client.history
                })
            })
            .collect();
        Workload {
            stop,
            threads,
            forwarded,
        }
    }

    /// Writes and appends acknowledged through a follower that relayed them to the leader.
    pub fn forwarded_acked(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
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
    forwarded: Arc<AtomicU64>,
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
            forwarded: Arc::new(AtomicU64::new(0)),
        }
    }

    fn next_value(&mut self) -> u64 {
        self.counter += 1;
        (self.id + 1) * 1_000_000_000_000 + self.counter
    }

    fn one(&mut self) {
        let roll = self.rng.below(100);
        if roll < 35 {
            let key = self.rng.below(REGISTER_KEYS);
            let value = self.next_value();
            self.write(OpKind::Write { key, value }, &register_key(key), value);
        } else if roll < 50 {
            let value = self.next_value();
            let n = self.counter;
            self.write(OpKind::Unique { n, value }, &unique_key(self.id, n), value);
        } else if roll < 65 {
            // The value counter numbers the appends too: a payload is unique for the client.
            self.next_value();
            let n = self.counter;
            self.append(n);
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
        let invoke = regent_daemon::clock::now();
        let until = std::time::Instant::now() + WRITE_RETRY;
        let path = format!("/v1/kv/{key}");
        let complete = self
            .submit_until("PUT", &path, value.to_string().as_bytes(), until)
            .map(|(done, _)| done);
        self.history.push(Record {
            client: self.id,
            kind,
            invoke,
            complete,
        });
    }

    /// Appends `journal_payload(self.id, n)`, recording the index and term it was answered
    /// with. A 200 answer without them is recorded with index 0, which no append takes, so
    /// that the journal check reports it.
    fn append(&mut self, n: u64) {
        let invoke = regent_daemon::clock::now();
        let until = std::time::Instant::now() + WRITE_RETRY;
        let payload = journal_payload(self.id, n);
        let answered = self.submit_until("POST", "/v1/journal", &payload, until);
        let (complete, ack) = match answered {
            Some((done, answer)) => {
                let v = answer.json().unwrap_or_default();
                let ack = JournalAck {
                    index: v["index"].as_u64().unwrap_or(0),
                    term: v["term"].as_u64().unwrap_or(0),
                };
                (Some(done), Some(ack))
            }
            None => (None, None),
        };
        self.history.push(Record {
            client: self.id,
            kind: OpKind::Append { n, ack },
            invoke,
            complete,
        });
    }

    /// Retries one session command (one seq) to `path` until acknowledged or `until`; the
    /// completion time and the 200 answer.
    fn submit_until(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        until: std::time::Instant,
    ) -> Option<(u64, Answer)> {
        let session = match self.session {
            Some(s) => s,
            None => self.open_session(until)?,
        };
        self.seq += 1;
        let path = format!("{path}?client_id={session}&seq={}", self.seq);
        let forwarded_path = format!("{path}&forward=true");
        while std::time::Instant::now() < until {
            // A share of the attempts goes through a random node that relays it to the
            // leader (`forward=true`): the same session and seq, so a relay that failed
            // after the leader carried it out is still applied once.
            let relay = self.rng.below(FORWARD_ONE_IN) == 0;
            let (node, path) = if relay {
                let node = self.rng.below(self.sockets.len() as u64) as usize;
                (node, forwarded_path.as_str())
            } else {
                (self.target, path.as_str())
            };
            match client::request(&self.sockets[node], method, path, body, REQUEST_TIMEOUT) {
                Ok(a) if a.status == 200 => {
                    if a.header("x-regent-forwarded-by").is_some() {
                        self.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some((regent_daemon::clock::now(), a));
                }
                Ok(a) if a.status == 400 => {
                    // The session is unknown (expired): the command was not applied under it.
                    // Its outcome is left unknown; the next command opens a new session.
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
        let invoke = regent_daemon::clock::now();
        let answer = client::request(&self.sockets[node], "GET", &path, b"", REQUEST_TIMEOUT);
        let done = regent_daemon::clock::now();
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
        let invoke = regent_daemon::clock::now();
        if let Ok(a) = client::request(socket, "GET", &path, b"", REQUEST_TIMEOUT) {
            let done = regent_daemon::clock::now();
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

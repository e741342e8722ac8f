//! Writes exactly once: an exactly-once session (`POST /v1/session`), a `seq` per write, and
//! retries of that very `seq` on answers that leave the outcome open.
//!
//! A write is sent again (same `client_id`, same `seq`) on `busy`, `superseded`,
//! `outcome_unknown`, `leader_unreachable`, `shutting_down`, a timeout or a broken connection,
//! until `retry_for` has passed. It ends with the answer (the first outcome, carried out
//! once), `TermMismatch` (fenced: nothing carried out, the host is deposed; the Leadership is
//! told), `NotLeader` (only when no earlier attempt may have landed), or `OutcomeUnknown`.
//!
//! Invariant: `acked_below` never passes the lowest `seq` still in flight, so regent keeps the
//! answer of every write that may still be retried.

use crate::leadership::Leadership;
use crate::regent_error::{checked, RegentError};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session outlives any retry: a day.
pub const SESSION_TTL_MS: u64 = 24 * 3600 * 1000;

/// How writes are sent: bounds and options shared by `Journal` and `Kv`.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// One attempt's bound (regent answers `busy` after 10 s itself).
    pub timeout: Duration,
    /// How long a write is retried with the same `seq`.
    pub retry_for: Duration,
    /// The pause between attempts.
    pub retry_pause: Duration,
    /// `forward=true`: a follower relays the write to the leader. A host never needs it.
    pub forward: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            timeout: Duration::from_secs(15),
            retry_for: Duration::from_secs(30),
            retry_pause: Duration::from_millis(200),
            forward: false,
        }
    }
}

struct State {
    client_id: Option<u64>,
    seq: u64,
    in_flight: BTreeSet<u64>,
}

/// One exactly-once session on one regent, shared by a host's writes.
pub struct Session {
    socket: PathBuf,
    leadership: Option<Leadership>,
    options: WriteOptions,
    state: Mutex<State>,
}

impl Session {
    pub fn new(socket: &Path, leadership: Option<Leadership>, options: WriteOptions) -> Session {
        Session {
            socket: socket.to_path_buf(),
            leadership,
            options,
            state: Mutex::new(State {
                client_id: None,
                seq: 0,
                in_flight: BTreeSet::new(),
            }),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn options(&self) -> &WriteOptions {
        &self.options
    }

    /// The session's id once opened.
    pub fn client_id(&self) -> Option<u64> {
        self.state.lock().unwrap().client_id
    }

    fn forward(&self) -> &'static str {
        if self.options.forward {
            "&forward=true"
        } else {
            ""
        }
    }

    fn open(&self) -> Result<u64, RegentError> {
        let body = format!("{{\"ttl_ms\": {SESSION_TTL_MS}}}");
        let path = format!("/v1/session?forward={}", self.options.forward);
        let answer = crate::request(
            &self.socket,
            "POST",
            &path,
            body.as_bytes(),
            self.options.timeout,
        )
        .map_err(RegentError::from_client)?;
        let v = json(checked(answer)?)?;
        v["client_id"]
            .as_u64()
            .ok_or_else(|| RegentError::OutcomeUnknown {
                message: format!("a session answer without client_id: {v}"),
            })
    }

    /// The expected term: the Leadership's while it is writable.
    fn fence(&self) -> Result<Option<u64>, RegentError> {
        let Some(leadership) = &self.leadership else {
            return Ok(None);
        };
        match leadership.term() {
            Some(term) if leadership.is_writable() => Ok(Some(term)),
            _ => Err(RegentError::NotWritable {
                message: "this host's regent is not a writable leader (or not caught up)".into(),
            }),
        }
    }

    /// Sends one write exactly once: `path` already carries its own query (or none);
    /// `expected_term` None takes the Leadership's. Returns the answer's JSON.
    pub fn write(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        expected_term: Option<u64>,
    ) -> Result<Value, RegentError> {
        let expected_term = match expected_term {
            Some(term) => Some(term),
            None => self.fence()?,
        };
        let (client_id, seq) = {
            let mut state = self.state.lock().unwrap();
            let client_id = match state.client_id {
                Some(id) => id,
                None => {
                    let id = self.open()?;
                    state.client_id = Some(id);
                    id
                }
            };
            state.seq += 1;
            let seq = state.seq;
            state.in_flight.insert(seq);
            (client_id, seq)
        };
        let result = self.send(method, path, body, expected_term, client_id, seq);
        self.state.lock().unwrap().in_flight.remove(&seq);
        result
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        expected_term: Option<u64>,
        client_id: u64,
        seq: u64,
    ) -> Result<Value, RegentError> {
        let deadline = Instant::now() + self.options.retry_for;
        let mut may_have_landed = false;
        loop {
            let acked_below = {
                let state = self.state.lock().unwrap();
                state.in_flight.first().copied().unwrap_or(seq).min(seq)
            };
            let separator = if path.contains('?') { '&' } else { '?' };
            let fence = expected_term.map_or(String::new(), |t| format!("&expected_term={t}"));
            let url = format!(
                "{path}{separator}client_id={client_id}&seq={seq}&acked_below={acked_below}{fence}{}",
                self.forward()
            );
            let outcome = crate::request(&self.socket, method, &url, body, self.options.timeout)
                .map_err(RegentError::from_client)
                .and_then(checked);
            let err = match outcome {
                Ok(answer) => return json(answer),
                Err(err) => err,
            };
            match &err {
                RegentError::TermMismatch { .. } => {
                    if let (Some(leadership), Some(term)) = (&self.leadership, expected_term) {
                        leadership.fenced(term);
                    }
                    return Err(err);
                }
                RegentError::NotLeader { .. } if may_have_landed => {
                    return Err(RegentError::OutcomeUnknown {
                        message: format!("an earlier attempt may have landed, then: {err}"),
                    })
                }
                RegentError::CommandRefused { message } if message.contains("session") => {
                    if !may_have_landed {
                        let mut state = self.state.lock().unwrap();
                        if state.client_id == Some(client_id) {
                            state.client_id = None;
                        }
                    }
                    return Err(err);
                }
                _ if err.is_retried() => {
                    let sent = match &err {
                        RegentError::Unavailable { sent, .. } => *sent,
                        RegentError::LeaderUnreachable { .. } => false,
                        _ => true,
                    };
                    may_have_landed |= sent;
                }
                _ => return Err(err),
            }
            if Instant::now() >= deadline {
                if may_have_landed {
                    return Err(RegentError::OutcomeUnknown {
                        message: format!(
                            "retries ran out after {:?}: {err}",
                            self.options.retry_for
                        ),
                    });
                }
                return Err(err);
            }
            std::thread::sleep(self.options.retry_pause);
        }
    }
}

/// An answer's body as JSON.
pub(crate) fn json(answer: crate::Answer) -> Result<Value, RegentError> {
    serde_json::from_slice(&answer.body).map_err(|e| RegentError::Other {
        status: answer.status,
        code: "bad_answer".into(),
        message: format!(
            "not JSON ({e}): {:?}",
            String::from_utf8_lossy(&answer.body)
        ),
    })
}

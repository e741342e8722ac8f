//! Leadership: may this host write now, and with which fencing term.
//!
//! Three threads keep it:
//! - the watcher keeps `GET /v1/leadership/watch` open (reconnecting); its events say when
//!   this node becomes writable (with the term and `catch_up_index`) and when it stops;
//! - the refresher asks `GET /v1/status` every `refresh` while writable: the watch stream
//!   does not carry lease renewals, so the renewed `lease.deadline_monotonic_ns` is read there;
//! - the clock wakes at the lease's deadline and ends the activation if nothing renewed it.
//!
//! Invariant: `is_writable()` is true only while an activation's term is current and the
//! local CLOCK_MONOTONIC is before the last deadline regent gave; it turns false the instant
//! the deadline passes, whatever the stream says (a stopped daemon says nothing).
//!
//! A journal host (`LeadershipOptions::journal_host`) becomes active only once it has applied
//! the journal up to the `catch_up_index` of the event that made its regent writable (reported
//! with `applied(index)`) and regent acknowledged that (`POST /v1/journal/applied`): the
//! hand-over rule. Events (`LeadershipEvent`) go out on a channel, in order.

use crate::clock::monotonic_ns;
use crate::feed::{Cutter, Feed};
use crate::regent_error::checked;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What happened to this host's right to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadershipEvent {
    /// The host may write in `term` (its fencing token) from `at_ns` (CLOCK_MONOTONIC);
    /// a journal host has applied up to `catch_up_index` (None: nothing was reported to
    /// catch up to, as after a restart of the host in the same term).
    Active {
        term: u64,
        catch_up_index: Option<u64>,
        at_ns: u64,
    },
    /// The host must stop writing, from `at_ns`, for `reason`. `deadline_ns` is the lease's
    /// last deadline: `is_writable()` was false from `min(at_ns, deadline_ns)` on.
    Inactive {
        reason: String,
        at_ns: u64,
        deadline_ns: u64,
    },
}

#[derive(Debug, Clone)]
pub struct LeadershipOptions {
    /// Become active only after catching up (see the module's documentation).
    pub journal_host: bool,
    /// How often the lease's deadline is read while writable.
    pub refresh: Duration,
    /// The pause before a broken watch is opened again.
    pub reconnect: Duration,
    /// The bound of each status request and hand-over ack.
    pub request_timeout: Duration,
}

impl Default for LeadershipOptions {
    fn default() -> Self {
        LeadershipOptions {
            journal_host: false,
            refresh: Duration::from_millis(100),
            reconnect: Duration::from_millis(200),
            request_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Default)]
struct State {
    closed: bool,
    /// What the stream last said: writable in `stream_term` until `deadline_ns`.
    writable: bool,
    stream_term: Option<u64>,
    deadline_ns: u64,
    /// A lease warning not yet followed by a renewal.
    warned: bool,
    catch_up_index: Option<u64>,
    /// What a journal host must have applied before it is active (None: not known yet).
    catch_up_target: Option<u64>,
    applied: u64,
    /// The term this host is active in.
    active_term: Option<u64>,
    cutter: Option<Cutter>,
}

struct Inner {
    socket: PathBuf,
    options: LeadershipOptions,
    state: Mutex<State>,
    wake: Condvar,
    /// Held while a transition is decided and its event sent: events go out in order.
    transition: Mutex<Sender<LeadershipEvent>>,
}

/// A handle on the leadership of this host's regent; clones share it. The threads end once
/// `close` is called.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

impl Leadership {
    /// Starts following the regent at `socket`; the events come on the receiver.
    pub fn start(
        socket: &Path,
        options: LeadershipOptions,
    ) -> (Leadership, Receiver<LeadershipEvent>) {
        let (tx, rx) = mpsc::channel();
        let leadership = Leadership {
            inner: Arc::new(Inner {
                socket: socket.to_path_buf(),
                options,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                transition: Mutex::new(tx),
            }),
        };
        for run in [Inner::watch, Inner::refresh, Inner::clock] {
            let inner = leadership.inner.clone();
            std::thread::spawn(move || run(&inner));
        }
        (leadership, rx)
    }

    /// True while active and the lease's deadline is ahead on the local monotonic clock.
    pub fn is_writable(&self) -> bool {
        let s = self.inner.state.lock().unwrap();
        s.active_term.is_some() && !s.warned && monotonic_ns() < s.deadline_ns
    }

    /// The fencing term of the current activation (send it as `expected_term`).
    pub fn term(&self) -> Option<u64> {
        self.inner.state.lock().unwrap().active_term
    }

    /// The lease's deadline on CLOCK_MONOTONIC as regent last gave it (0: none).
    pub fn deadline_ns(&self) -> u64 {
        self.inner.state.lock().unwrap().deadline_ns
    }

    /// A journal host reports the journal index it has applied up to.
    pub fn applied(&self, index: u64) {
        {
            let mut s = self.inner.state.lock().unwrap();
            s.applied = s.applied.max(index);
        }
        self.inner.maybe_activate();
    }

    /// A write in `term` was refused with `term_mismatch`: this host is deposed.
    pub fn fenced(&self, term: u64) {
        let current = self.inner.state.lock().unwrap().active_term == Some(term);
        if current {
            self.inner
                .deactivate(format!("term_mismatch: a write in term {term} was fenced"));
        }
    }

    /// Ends the threads (the watch is cut) and the activation.
    pub fn close(&self) {
        let cutter = {
            let mut s = self.inner.state.lock().unwrap();
            s.closed = true;
            self.inner.wake.notify_all();
            s.cutter.take()
        };
        if let Some(cutter) = cutter {
            cutter.cut();
        }
        self.inner.deactivate("closed".into());
    }
}

impl Inner {
    fn send(&self, tx: &Sender<LeadershipEvent>, event: LeadershipEvent) {
        // A host that dropped the receiver does not want events; the state is kept anyway.
        let _ = tx.send(event);
    }

    fn maybe_activate(&self) {
        let tx = self.transition.lock().unwrap();
        let (term, target, applied, catch_up) = {
            let s = self.state.lock().unwrap();
            if s.closed
                || !s.writable
                || s.warned
                || s.active_term == s.stream_term
                || monotonic_ns() >= s.deadline_ns
            {
                return;
            }
            let Some(term) = s.stream_term else { return };
            (term, s.catch_up_target, s.applied, s.catch_up_index)
        };
        if self.options.journal_host {
            match target {
                Some(target) if applied >= target => {}
                _ => return,
            }
            let body = format!("{{\"index\": {applied}}}");
            let acked = crate::request(
                &self.socket,
                "POST",
                "/v1/journal/applied",
                body.as_bytes(),
                self.options.request_timeout,
            );
            if !matches!(acked.map(checked), Ok(Ok(_))) {
                return; // the next event, refresh or applied() tries again
            }
        }
        {
            let mut s = self.state.lock().unwrap();
            if !s.writable || s.stream_term != Some(term) || monotonic_ns() >= s.deadline_ns {
                return;
            }
            s.active_term = Some(term);
            self.wake.notify_all();
        }
        let at_ns = monotonic_ns();
        self.send(
            &tx,
            LeadershipEvent::Active {
                term,
                catch_up_index: catch_up,
                at_ns,
            },
        );
    }

    fn deactivate(&self, reason: String) {
        let tx = self.transition.lock().unwrap();
        let deadline_ns = {
            let mut s = self.state.lock().unwrap();
            if s.active_term.is_none() {
                return;
            }
            s.active_term = None;
            self.wake.notify_all();
            s.deadline_ns
        };
        let at_ns = monotonic_ns();
        self.send(
            &tx,
            LeadershipEvent::Inactive {
                reason,
                at_ns,
                deadline_ns,
            },
        );
    }

    fn on_event(&self, event: &Value) {
        let writable = event["writable"].as_bool() == Some(true);
        let deadline = event["lease"]["deadline_monotonic_ns"]
            .as_u64()
            .unwrap_or(0);
        let term = event["term"].as_u64();
        if !writable {
            {
                let mut s = self.state.lock().unwrap();
                s.writable = false;
                self.wake.notify_all();
            }
            self.deactivate(format!(
                "not writable (role {}, term {})",
                event["role"].as_str().unwrap_or("?"),
                term.unwrap_or(0)
            ));
            return;
        }
        let (new_term, old_active) = {
            let s = self.state.lock().unwrap();
            (term != s.stream_term || !s.writable, s.active_term)
        };
        if let Some(old) = old_active.filter(|&old| new_term && Some(old) != term) {
            self.deactivate(format!("term {old} ended (now {})", term.unwrap_or(0)));
        }
        {
            let mut s = self.state.lock().unwrap();
            if new_term {
                s.stream_term = term;
                s.writable = true;
                s.deadline_ns = deadline;
                s.warned = false;
                s.catch_up_index = event["catch_up_index"].as_u64();
                // Acked already (a host restarted in the term): everything committed.
                s.catch_up_target = s
                    .catch_up_index
                    .or_else(|| event["journal"]["last_index"].as_u64())
                    .or(Some(0));
            } else if event["event"] == "lease_warning" {
                // Not renewed lately: stop until a later deadline shows up.
                if deadline <= s.deadline_ns {
                    s.warned = true;
                }
            } else if deadline > s.deadline_ns {
                s.deadline_ns = deadline;
                s.warned = false;
            }
            self.wake.notify_all();
        }
        self.maybe_activate();
    }

    fn closed(&self) -> bool {
        self.state.lock().unwrap().closed
    }

    fn watch(&self) {
        while !self.closed() {
            let reason = match Feed::open(&self.socket, "/v1/leadership/watch") {
                Ok(mut feed) => {
                    {
                        let mut s = self.state.lock().unwrap();
                        if s.closed {
                            return;
                        }
                        s.cutter = feed.cutter();
                    }
                    while let Some(line) = feed.next_line() {
                        match serde_json::from_str::<Value>(&line) {
                            Ok(event) => self.on_event(&event),
                            Err(_) => break,
                        }
                    }
                    "the leadership watch ended".to_string()
                }
                Err(err) => format!("the leadership watch failed: {err}"),
            };
            // A stream that broke says nothing about the lease: assume it ended.
            {
                let mut s = self.state.lock().unwrap();
                s.writable = false;
                s.cutter = None;
                self.wake.notify_all();
            }
            self.deactivate(reason);
            let s = self.state.lock().unwrap();
            if s.closed {
                return;
            }
            let _ = self.wake.wait_timeout(s, self.options.reconnect).unwrap();
        }
    }

    fn refresh(&self) {
        loop {
            let (writable, term) = {
                let s = self.state.lock().unwrap();
                if s.closed {
                    return;
                }
                (s.writable, s.stream_term)
            };
            if writable {
                let status = crate::request(
                    &self.socket,
                    "GET",
                    "/v1/status",
                    b"",
                    self.options.request_timeout,
                );
                // A failure leaves the lease to run out on its own; the clock ends it.
                if let Ok(Ok(answer)) = status.map(checked) {
                    if let Ok(status) = serde_json::from_slice::<Value>(&answer.body) {
                        self.on_status(&status, term);
                    }
                }
            }
            let s = self.state.lock().unwrap();
            if s.closed {
                return;
            }
            let _ = self.wake.wait_timeout(s, self.options.refresh).unwrap();
        }
    }

    fn on_status(&self, status: &Value, term: Option<u64>) {
        {
            let mut s = self.state.lock().unwrap();
            if s.stream_term != term || !s.writable {
                return;
            }
            let lease = &status["lease"];
            if status["term"].as_u64() == term
                && status["writable"] == true
                && lease["valid"] == true
            {
                let deadline = lease["deadline_monotonic_ns"].as_u64().unwrap_or(0);
                if deadline > s.deadline_ns {
                    s.deadline_ns = deadline;
                    s.warned = false;
                }
            }
            self.wake.notify_all();
        }
        self.maybe_activate();
    }

    fn clock(&self) {
        loop {
            let expired = {
                let mut s = self.state.lock().unwrap();
                loop {
                    if s.closed {
                        return;
                    }
                    let now = monotonic_ns();
                    if s.active_term.is_some() && now >= s.deadline_ns {
                        break s.deadline_ns;
                    }
                    s = if s.active_term.is_some() {
                        let wait = Duration::from_nanos(s.deadline_ns - now);
                        self.wake.wait_timeout(s, wait).unwrap().0
                    } else {
                        self.wake.wait(s).unwrap()
                    };
                }
            };
            self.deactivate(format!("the lease ran out unrenewed at {expired} ns"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    /// A scripted daemon: the watch sends one event (writable in term 7 until `deadline_ns`)
    /// and then stays silent, as a stopped daemon would; any other request gets no answer.
    fn silent_after_one_event(dir: &Path, deadline_ns: u64) -> PathBuf {
        let path = dir.join("regent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read_exact(&mut byte).is_err() {
                        break;
                    }
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET /v1/leadership/watch ") {
                    let event = format!(
                        "{{\"event\":\"state\",\"role\":\"leader\",\"term\":7,\"writable\":true,\
                         \"catch_up_index\":null,\"lease\":{{\"valid\":true,\
                         \"deadline_monotonic_ns\":{deadline_ns}}}}}\n"
                    );
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                        event.len()
                    );
                }
                held.push(stream);
            }
        });
        path
    }

    #[test]
    fn a_silent_stream_is_not_writable_once_the_deadline_passes() {
        let dir = tempfile::tempdir().unwrap();
        // The test owns the deadline: far enough for a busy machine to activate before it.
        let deadline = monotonic_ns() + 3_000_000_000;
        let socket = silent_after_one_event(dir.path(), deadline);
        let options = LeadershipOptions {
            request_timeout: Duration::from_secs(30),
            ..LeadershipOptions::default()
        };
        let (lead, events) = Leadership::start(&socket, options);
        let active = events.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            matches!(active, LeadershipEvent::Active { term: 7, catch_up_index: None, at_ns } if at_ns < deadline),
            "{active:?}"
        );
        assert_eq!(lead.term(), Some(7));
        // The status refresh hangs and the stream says nothing more: the clock alone ends it.
        let inactive = events.recv_timeout(Duration::from_secs(30)).unwrap();
        let LeadershipEvent::Inactive {
            at_ns, deadline_ns, ..
        } = inactive
        else {
            panic!("{inactive:?}")
        };
        assert_eq!(deadline_ns, deadline);
        assert!(at_ns >= deadline);
        assert!(!lead.is_writable());
        assert_eq!(lead.term(), None);
        assert!(monotonic_ns() >= deadline);
        lead.close();
    }
}

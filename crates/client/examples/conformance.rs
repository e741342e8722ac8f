//! The Rust library's conformance runner: one JSON step per line on stdin, one JSON result per
//! line on stdout (clients/conformance/README.md). Run by clients/conformance/run.py:
//!
//! ```sh
//! cargo build --release -p regent-client --example conformance
//! python3 clients/conformance/run.py --regent target/release/regent -- \
//!     target/release/examples/conformance
//! ```

use regent_client::{
    monotonic_ns, Consistency, Journal, Kv, Leadership, LeadershipEvent, LeadershipOptions,
    RegentError, WriteOptions,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Leadership, a Journal and a Kv on one socket; a journal host also tails the journal from
/// 1 and applies it (here: keeps the indexes), reporting its progress to Leadership.
struct Host {
    leadership: Leadership,
    journal: Journal,
    kv: Kv,
    events: Arc<Mutex<Vec<Value>>>,
    applied: Arc<AtomicU64>,
    in_order: Arc<AtomicBool>,
    /// Set by hold_apply: the applier waits (the host falls behind) until release_apply.
    held: Arc<AtomicBool>,
}

impl Host {
    fn open(step: &Value) -> Host {
        let socket = PathBuf::from(step["socket"].as_str().unwrap_or_default());
        let journal_host = step["journal_host"] == true;
        let options = WriteOptions {
            timeout: Duration::from_millis(step["timeout_ms"].as_u64().unwrap_or(15_000)),
            forward: step["forward"] == true,
            ..WriteOptions::default()
        };
        let (leadership, rx) = Leadership::start(
            &socket,
            LeadershipOptions {
                journal_host,
                ..LeadershipOptions::default()
            },
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let applied = Arc::new(AtomicU64::new(0));
        let in_order = Arc::new(AtomicBool::new(true));
        let held = Arc::new(AtomicBool::new(false));
        {
            let (events, applied, lead) = (events.clone(), applied.clone(), leadership.clone());
            std::thread::spawn(move || {
                for event in rx {
                    let v = match event {
                        LeadershipEvent::Active {
                            term,
                            catch_up_index,
                            at_ns,
                        } => json!({"kind": "active", "term": term,
                            "catch_up_index": catch_up_index,
                            "applied": applied.load(Ordering::SeqCst), "at_ns": at_ns,
                            "deadline_ns": lead.deadline_ns()}),
                        LeadershipEvent::Inactive {
                            reason,
                            at_ns,
                            deadline_ns,
                        } => json!({
                            "kind": "inactive", "reason": reason, "at_ns": at_ns,
                            "deadline_ns": deadline_ns}),
                    };
                    events.lock().unwrap().push(v);
                }
            });
        }
        let journal = Journal::new(&socket, Some(leadership.clone()), options.clone());
        if journal_host {
            let tail = Journal::new(&socket, None, options.clone()).tail(1);
            let (applied, in_order, lead, held) = (
                applied.clone(),
                in_order.clone(),
                leadership.clone(),
                held.clone(),
            );
            std::thread::spawn(move || {
                for entry in tail {
                    let Ok(entry) = entry else { return };
                    while held.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if entry.index != applied.load(Ordering::SeqCst) + 1 {
                        in_order.store(false, Ordering::SeqCst);
                    }
                    applied.store(entry.index, Ordering::SeqCst);
                    lead.applied(entry.index);
                }
            });
        }
        Host {
            kv: Kv::new(&socket, Some(leadership.clone()), options),
            journal,
            leadership,
            events,
            applied,
            in_order,
            held,
        }
    }
}

fn error(e: &RegentError) -> Value {
    let mut v = json!({"error": e.code(), "status": e.status(), "message": e.to_string()});
    match e {
        RegentError::NotLeader {
            leader_id,
            leader_address,
            ..
        } => {
            v["leader_id"] = json!(leader_id);
            v["leader_address"] = json!(leader_address);
        }
        RegentError::TermMismatch {
            expected_term,
            term,
            ..
        } => {
            v["expected_term"] = json!(expected_term);
            v["term"] = json!(term);
        }
        RegentError::JournalCompacted { first_index, .. } => v["first_index"] = json!(first_index),
        _ => {}
    }
    v
}

fn text(v: &Value) -> Vec<u8> {
    v.as_str().unwrap_or_default().as_bytes().to_vec()
}

fn consistency(step: &Value) -> Consistency {
    match step["consistency"].as_str() {
        Some("lease") => Consistency::Lease,
        Some("local") => Consistency::Local,
        _ => Consistency::Linearizable,
    }
}

fn timeout(step: &Value) -> Duration {
    Duration::from_millis(step["timeout_ms"].as_u64().unwrap_or(30_000))
}

fn run(step: &Value, hosts: &mut HashMap<String, Host>) -> Result<Value, RegentError> {
    let do_ = step["do"].as_str().unwrap_or_default();
    let name = step["host"].as_str().unwrap_or_default().to_string();
    match do_ {
        "open" => {
            hosts.insert(name, Host::open(step));
            return Ok(json!({"ok": true}));
        }
        "tail" => return tail(step),
        _ => {}
    }
    let Some(h) = hosts.get(&name) else {
        return Ok(json!({"error": "no_such_host", "host": name}));
    };
    let term = step["expected_term"].as_u64();
    Ok(match do_ {
        "events" => json!({"events": *h.events.lock().unwrap()}),
        "is_writable" => json!({"writable": h.leadership.is_writable(),
            "term": h.leadership.term(), "deadline_ns": h.leadership.deadline_ns(),
            "now_ns": monotonic_ns()}),
        "writable_after_deadline" => {
            let end = Instant::now() + timeout(step);
            loop {
                let deadline = h.leadership.deadline_ns();
                let now = monotonic_ns();
                if now >= deadline {
                    let writable = h.leadership.is_writable();
                    // A renewal read just before the stop may land meanwhile: look again.
                    if h.leadership.deadline_ns() == deadline {
                        break json!({"writable": writable, "now_ns": now,
                            "deadline_ns": deadline});
                    }
                    continue;
                }
                if Instant::now() > end {
                    break json!({"error": "deadline_not_reached"});
                }
                std::thread::sleep(
                    Duration::from_nanos(deadline - now).min(Duration::from_millis(50)),
                );
            }
        }
        "append" => {
            let ops: Vec<Vec<u8>> = step["ops"]
                .as_array()
                .map(|ops| ops.iter().map(text).collect())
                .unwrap_or_default();
            let a = h.journal.append(&ops, term)?;
            json!({"index": a.index, "term": a.term, "first_index": a.first_index,
                "last_index": a.last_index, "log_index": a.log_index})
        }
        "kv_put" => h.kv.put(&text(&step["key"]), &text(&step["value"]), term)?,
        "kv_delete" => h.kv.delete(&text(&step["key"]), term)?,
        "kv_get" => match h.kv.get(&text(&step["key"]), consistency(step))? {
            None => json!({"value": null}),
            Some(kv) => json!({"value": String::from_utf8_lossy(&kv.value),
                "mod_revision": kv.mod_revision, "create_revision": kv.create_revision,
                "version": kv.version}),
        },
        "kv_range" => {
            let limit = step["limit"].as_u64().unwrap_or(1000) as u32;
            let (kvs, more) =
                h.kv.range(&text(&step["prefix"]), limit, consistency(step))?;
            let keys: Vec<String> = kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                .collect();
            json!({"keys": keys, "more": more})
        }
        "kv_txn" => {
            let t = &step["txn"];
            let or_empty = |v: &Value| if v.is_null() { json!([]) } else { v.clone() };
            h.kv.txn(
                or_empty(&t["compare"]),
                or_empty(&t["success"]),
                or_empty(&t["failure"]),
                term,
            )?
        }
        "hold_apply" => {
            h.held.store(true, Ordering::SeqCst);
            json!({"ok": true})
        }
        "release_apply" => {
            h.held.store(false, Ordering::SeqCst);
            json!({"ok": true})
        }
        "kv_watch" => {
            let count = step["count"].as_u64().unwrap_or(1) as usize;
            let watch =
                h.kv.watch(&text(&step["prefix"]), step["from_revision"].as_u64());
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for change in watch.take(count) {
                    if tx.send(change).is_err() {
                        return;
                    }
                }
            });
            let end = Instant::now() + timeout(step);
            let mut changes = Vec::new();
            while changes.len() < count {
                let left = end.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(change) => changes.push(change?),
                    Err(_) => break,
                }
            }
            if changes.len() < count {
                json!({"error": "watch_timed_out", "changes": changes.len()})
            } else {
                let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                json!({
                    "keys": changes.iter().map(|c| lossy(&c.key)).collect::<Vec<_>>(),
                    "types": changes.iter().map(|c| c.kind.clone()).collect::<Vec<_>>(),
                    "values": changes.iter().map(|c| c.value.as_deref().map(lossy)).collect::<Vec<_>>(),
                    "first_revision": changes[0].revision,
                    "last_revision": changes[count - 1].revision,
                })
            }
        }
        "wait_applied" => {
            let end = Instant::now() + timeout(step);
            let want = step["index"].as_u64().unwrap_or(0);
            loop {
                let applied = h.applied.load(Ordering::SeqCst);
                if applied >= want {
                    break json!({"applied": applied,
                        "in_order": h.in_order.load(Ordering::SeqCst)});
                }
                if Instant::now() > end {
                    break json!({"error": "not_applied", "applied": applied});
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "close" => {
            h.leadership.close();
            hosts.remove(&name);
            json!({"ok": true})
        }
        _ => json!({"error": "unknown_step", "do": do_}),
    })
}

/// Reads the journal from `from` until index `until` (reconnecting inside the library).
fn tail(step: &Value) -> Result<Value, RegentError> {
    let socket = PathBuf::from(step["socket"].as_str().unwrap_or_default());
    let until = step["until"].as_u64().unwrap_or(0);
    let from = step["from"].as_u64().unwrap_or(1);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let journal = Journal::new(&socket, None, WriteOptions::default());
        let mut entries = Vec::new();
        for entry in journal.tail(from) {
            match entry {
                Ok(e) => {
                    let done = e.index >= until;
                    entries.push(e);
                    if done {
                        break;
                    }
                }
                Err(err) => {
                    let _ = tx.send(Err(err));
                    return;
                }
            }
        }
        let _ = tx.send(Ok(entries));
    });
    let entries = match rx.recv_timeout(timeout(step)) {
        Ok(result) => result?,
        Err(_) => return Ok(json!({"error": "tail_timed_out"})),
    };
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(json!({"error": "no_entries"}));
    };
    Ok(
        json!({"first": first.index, "last": last.index, "count": entries.len(),
        "in_order": entries.windows(2).all(|w| w[1].index == w[0].index + 1),
        "last_op": String::from_utf8_lossy(&last.op)}),
    )
}

fn main() {
    let mut hosts = HashMap::new();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let result = match serde_json::from_str::<Value>(&line) {
            Ok(step) => run(&step, &mut hosts).unwrap_or_else(|e| error(&e)),
            Err(e) => json!({"error": "bad_step", "message": e.to_string()}),
        };
        let mut out = stdout.lock();
        let _ = writeln!(out, "{result}");
        let _ = out.flush();
    }
    for h in hosts.values() {
        h.leadership.close();
    }
}

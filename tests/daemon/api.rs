//! The host API against real daemons: every endpoint with good and bad input, the fencing of a
//! deposed leader's host, exactly-once retries across a leader kill, and `regent demo --once`.

use crate::support::{http, Cluster, Feed, BIN, TEST_SETTINGS};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(20);

fn one_node(extra: &str) -> Cluster {
    let mut c = Cluster::init(1, "api", &format!("{TEST_SETTINGS}{extra}"));
    c.start_all();
    c.wait_writable_leader(ELECTION);
    c
}

fn call(c: &Cluster, method: &str, path: &str, body: &[u8]) -> crate::support::Answer {
    http(&c.nodes[0].socket, method, path, body).unwrap()
}

fn assert_error(answer: &crate::support::Answer, status: u16, code: &str) -> Value {
    assert_eq!(
        answer.status,
        status,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = answer.json();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

#[test]
fn every_endpoint_with_good_and_bad_input() {
    let c = one_node("api:\n  request_bytes_max: 4096\n");

    let status = call(&c, "GET", "/v1/status", b"").json();
    assert_eq!(status["role"], "leader");
    assert_eq!(status["writable"], true);
    assert!(
        status["lease"]["deadline_monotonic_ns"].as_u64().is_some(),
        "{status}"
    );
    for path in ["/v1/leader", "/v1/health"] {
        assert_eq!(call(&c, "GET", path, b"").status, 200, "{path}");
        assert_eq!(call(&c, "HEAD", path, b"").status, 200, "{path}");
    }
    assert_eq!(call(&c, "GET", "/v1/replica", b"").status, 503);

    // Unknown path, wrong method.
    assert_error(&call(&c, "GET", "/v1/nope", b""), 404, "not_found");
    assert_error(&call(&c, "GET", "/v2/status", b""), 404, "not_found");
    let wrong = call(&c, "POST", "/v1/status", b"");
    assert_error(&wrong, 405, "method_not_allowed");
    assert!(wrong.headers.contains_key("allow"));
    assert_error(
        &call(&c, "PATCH", "/v1/kv/a", b""),
        405,
        "method_not_allowed",
    );

    // KV round trip, binary keys and values.
    let put = call(&c, "PUT", "/v1/kv/a", b"1");
    assert_eq!(put.status, 200);
    let rev1 = put.json()["revision"].as_u64().unwrap();
    let put = call(&c, "PUT", "/v1/kv/%00%FFbin", &[0, 159, 255]);
    assert_eq!(put.status, 200);
    assert!(put.json()["revision"].as_u64().unwrap() > rev1);
    assert_eq!(
        call(&c, "GET", "/v1/kv/%00%FFbin", b"").body,
        vec![0, 159, 255]
    );
    for consistency in ["linearizable", "lease", "local"] {
        let got = call(
            &c,
            "GET",
            &format!("/v1/kv/a?consistency={consistency}"),
            b"",
        );
        assert_eq!(got.body, b"1", "{consistency}");
    }
    let list = call(&c, "GET", "/v1/kv?prefix=", b"").json();
    // regent's own records (the failover history's first one) are keys too: first in order.
    let kvs: Vec<&Value> = (list["kvs"].as_array().unwrap().iter())
        .filter(|kv| {
            !kv["key"]["text"]
                .as_str()
                .is_some_and(|k| k.starts_with("\0regent/"))
        })
        .collect();
    assert_eq!(kvs.len(), 2, "{list}");
    assert_eq!(kvs[0]["key"]["base64"], "AP9iaW4=", "{list}");
    assert_eq!(kvs[1]["key"]["text"], "a");
    let del = call(&c, "DELETE", "/v1/kv/a", b"");
    assert_eq!(del.json()["deleted"], true);
    assert_error(&call(&c, "GET", "/v1/kv/a", b""), 404, "key_not_found");
    assert_eq!(call(&c, "DELETE", "/v1/kv/a", b"").json()["deleted"], false);

    // A transaction: compare on the version, then put; the failure branch reads.
    let txn = br#"{"compare": [{"key": "t", "target": "version", "op": "equal", "value": 0}],
                   "success": [{"put": {"key": "t", "value": {"base64": "AP8="}}}],
                   "failure": [{"get": {"key": "t"}}]}"#;
    let first = call(&c, "POST", "/v1/txn", txn).json();
    assert_eq!(first["succeeded"], true, "{first}");
    let second = call(&c, "POST", "/v1/txn", txn).json();
    assert_eq!(second["succeeded"], false, "{second}");
    assert_eq!(
        second["responses"][0]["get"]["value"]["base64"], "AP8=",
        "{second}"
    );
    assert_error(
        &call(&c, "POST", "/v1/txn", b"{\"success\": 3}"),
        400,
        "bad_txn",
    );
    assert_error(&call(&c, "POST", "/v1/txn", b"nope"), 400, "bad_json");
    assert_error(&call(&c, "GET", "/v1/txn", b""), 405, "method_not_allowed");

    // Bad input.
    assert_error(
        &call(&c, "PUT", "/v1/kv/big", &vec![7u8; 5000]),
        413,
        "payload_too_large",
    );
    assert_error(&call(&c, "GET", "/v1/kv/%zz", b""), 400, "bad_key");
    assert_error(&call(&c, "GET", "/v1/kv/", b""), 400, "bad_key");
    assert_error(
        &call(&c, "GET", "/v1/kv/a?consistency=maybe", b""),
        400,
        "bad_consistency",
    );
    assert_error(
        &call(&c, "PUT", "/v1/kv/a?expected_term=x", b"v"),
        400,
        "bad_parameter",
    );
    assert_error(
        &call(&c, "PUT", "/v1/kv/a?client_id=1", b"v"),
        400,
        "bad_parameter",
    );
    assert_error(
        &call(&c, "GET", "/v1/kv?limit=0", b""),
        400,
        "bad_parameter",
    );
    assert_error(
        &call(&c, "POST", "/v1/session", b"{not json"),
        400,
        "bad_json",
    );
    assert_error(
        &call(&c, "PUT", "/v1/kv/a?client_id=999&seq=1", b"v"),
        400,
        "command_refused",
    );
    // A request that is not HTTP at all.
    let mut raw = UnixStream::connect(&c.nodes[0].socket).unwrap();
    raw.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");

    // A slow client (headers never finished) is cut off and disturbs nobody meanwhile.
    let mut slow = UnixStream::connect(&c.nodes[0].socket).unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        assert_eq!(call(&c, "PUT", "/v1/kv/during-slow", b"v").status, 200);
    }
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "a client that never finished its headers was kept for {:?}",
        started.elapsed()
    );

    // Fencing on a single node: the current term passes, another is refused.
    let term = call(&c, "GET", "/v1/status", b"").json()["term"]
        .as_u64()
        .unwrap();
    let ok = call(&c, "PUT", &format!("/v1/kv/f?expected_term={term}"), b"v");
    assert_eq!(ok.status, 200);
    let fenced = call(
        &c,
        "PUT",
        &format!("/v1/kv/f?expected_term={}", term - 1),
        b"w",
    );
    let body = assert_error(&fenced, 409, "term_mismatch");
    assert_eq!(body["term"].as_u64(), Some(term));
    assert_eq!(call(&c, "GET", "/v1/kv/f", b"").body, b"v");

    // The change feed: from revision 1, in order; a bad revision is a 400.
    assert_error(
        &call(&c, "GET", "/v1/watch?from_revision=0", b""),
        400,
        "bad_parameter",
    );
    let mut feed = Feed::open(&c.nodes[0].socket, "/v1/watch?from_revision=1", None).unwrap();
    let mut revisions = Vec::new();
    while revisions.len() < 3 {
        let line = feed.next_line().unwrap().expect("the feed ended");
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(line.trim()) {
            revisions.push(v["revision"].as_u64().unwrap());
        }
    }
    assert_eq!(revisions, vec![1, 2, 3]);
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_never_taken() {
    let mut c = one_node("");
    // kill -9 leaves the socket file behind; the restart replaces it.
    c.kill(1);
    assert!(c.nodes[0].socket.exists());
    c.start(1);
    c.wait_writable_leader(ELECTION);
    // A second daemon configured with the same socket (and its own data and port) refuses.
    let mut other = Cluster::init(1, "api2", TEST_SETTINGS);
    let yaml = std::fs::read_to_string(&other.nodes[0].config).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    config["socket"] = c.nodes[0].socket.display().to_string().into();
    std::fs::write(
        &other.nodes[0].config,
        serde_yaml::to_string(&config).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&other.nodes[0].config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process is listening"), "{err}");
    // The first daemon still answers.
    assert_eq!(call(&c, "GET", "/v1/status", b"").status, 200);
    other.kill(1);
}

/// Reads NDJSON events from a leadership watch into a shared list, with local receive times.
fn watch_leadership(socket: &std::path::Path) -> Arc<Mutex<Vec<Value>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut feed = Feed::open(socket, "/v1/leadership/watch", None).unwrap();
    let sink = events.clone();
    std::thread::spawn(move || {
        while let Ok(Some(line)) = feed.next_line() {
            if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                if v.get("event").is_some() {
                    sink.lock().unwrap().push(v);
                }
            }
        }
    });
    events
}

#[test]
fn a_deposed_leaders_host_cannot_write() {
    // The watch warns `lease_warning_ms` before the lease lapses, from a timer: the default
    // 100 ms is all the slack a busy machine would have to run that timer in time. A longer
    // election timeout (and so lease) makes room for a warning of over a second.
    let settings = format!(
        "{TEST_SETTINGS}timing:\n  election_timeout_min_ms: 2000\n  lease_warning_ms: 1200\n"
    );
    let mut c = Cluster::init(3, "fence", &settings);
    let relay = c.route_through_relay();
    c.start_all();
    let (old, _) = c.wait_writable_leader(ELECTION);
    let old_term = c.status(old).unwrap()["term"].as_u64().unwrap();
    let events = watch_leadership(&c.nodes[(old - 1) as usize].socket);
    let ok = c
        .put(old, &format!("k?expected_term={old_term}"), b"before")
        .unwrap();
    assert_eq!(ok.status, 200);

    // Cut the leader's regent off; its socket still answers.
    relay.isolate(old);
    let started = Instant::now();
    let new = loop {
        let found = (1..=3).filter(|&id| id != old).find(|&id| {
            c.status(id)
                .is_some_and(|s| s["writable"] == true && s["term"].as_u64() > Some(old_term))
        });
        if let Some(id) = found {
            break id;
        }
        assert!(
            started.elapsed() < ELECTION,
            "no new leader; logs:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let new_status = c.status(new).unwrap();
    let new_term = new_status["term"].as_u64().unwrap();

    // The old host, still holding the old term, cannot get a write through anywhere.
    let stale = c
        .put(old, &format!("k?expected_term={old_term}"), b"stale")
        .unwrap();
    assert_ne!(stale.status, 200, "{:?}", stale.json());
    let stale = c
        .put(new, &format!("k?expected_term={old_term}"), b"stale")
        .unwrap();
    assert_eq!(stale.status, 409, "{:?}", stale.json());
    assert_eq!(stale.json()["error"], "term_mismatch");
    // The new leader's host writes with its own term.
    let fresh = c
        .put(new, &format!("k?expected_term={new_term}"), b"fresh")
        .unwrap();
    assert_eq!(fresh.status, 200);

    // The old host's watch said it was no longer writable before the new leader could write:
    // both judged on this machine's CLOCK_MONOTONIC, by the time the event carries (this
    // reader may see it later on a busy machine: it waits for it).
    let started = Instant::now();
    let events = loop {
        let events = events.lock().unwrap().clone();
        if events
            .iter()
            .any(|e| e["writable"] == false || e["event"] == "lease_warning")
        {
            break events;
        }
        assert!(
            started.elapsed() < ELECTION,
            "the old leader's watch never said it lost the lease: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let lost = events
        .iter()
        .find(|e| e["writable"] == false || e["event"] == "lease_warning")
        .unwrap();
    let told_at = lost["monotonic_ns"].as_u64().unwrap();
    let last_deadline = events
        .iter()
        .filter_map(|e| e["lease"]["deadline_monotonic_ns"].as_u64())
        .max()
        .unwrap();
    assert!(
        told_at <= last_deadline,
        "told at {told_at}, lease ended at {last_deadline}"
    );

    relay.rejoin(old);
    std::thread::sleep(Duration::from_secs(1));
    for id in 1..=3 {
        let got = c.get(id, "k", "linearizable").unwrap();
        if got.status == 200 {
            assert_eq!(got.body, b"fresh", "n{id}");
        }
    }
}

#[test]
fn exactly_once_retries_across_a_leader_kill() {
    let mut c = Cluster::init(3, "once", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let socket = c.nodes[(leader - 1) as usize].socket.clone();
    let session = http(&socket, "POST", "/v1/session", b"{\"ttl_ms\": 60000}")
        .unwrap()
        .json();
    let client = session["client_id"].as_u64().unwrap();

    let first = c
        .put(leader, &format!("x?client_id={client}&seq=1"), b"one")
        .unwrap();
    assert_eq!(first.status, 200);
    let revision = first.json()["revision"].as_u64().unwrap();
    // seq 2 is sent and the leader killed at once: its outcome is unknown to the client.
    // acked_below=1 on seq 2: seq 1's answer is still wanted (it is retried below).
    let in_flight = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            http(
                &socket,
                "PUT",
                &format!("/v1/kv/y?client_id={client}&seq=2&acked_below=1"),
                b"two",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(2));
    c.kill(leader);
    let _ = in_flight.join();
    let (new, _) = c.wait_writable_leader(ELECTION);

    // Retries on the new leader: seq 1 answers with its first outcome, seq 2 applies at most once.
    let again = c
        .put(new, &format!("x?client_id={client}&seq=1"), b"one")
        .unwrap();
    assert_eq!(again.status, 200, "{:?}", again.json());
    assert_eq!(again.json()["revision"].as_u64(), Some(revision));
    let started = Instant::now();
    let second = loop {
        let answer = c
            .put(
                new,
                &format!("y?client_id={client}&seq=2&acked_below=1"),
                b"two",
            )
            .unwrap();
        if answer.status == 200 {
            break answer.json()["revision"].as_u64().unwrap();
        }
        assert!(
            started.elapsed() < ELECTION,
            "the retry of seq 2 was never answered: {:?}",
            answer.json()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let replay = c
        .put(
            new,
            &format!("y?client_id={client}&seq=2&acked_below=1"),
            b"two",
        )
        .unwrap();
    assert_eq!(replay.json()["revision"].as_u64(), Some(second));
    // The change feed holds each value once: read up to the last revision written (seq 2's),
    // which is the last change there is.
    let mut feed = Feed::open(
        &c.nodes[(new - 1) as usize].socket,
        "/v1/watch?from_revision=1",
        Some(Duration::from_secs(15)),
    )
    .unwrap();
    let mut text = String::new();
    loop {
        let line = feed.next_line();
        let Ok(Some(line)) = line else {
            panic!("the feed ended before revision {second}: {text}");
        };
        text.push_str(&line);
        text.push('\n');
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(line.trim()) {
            if v["revision"].as_u64() >= Some(second) {
                break;
            }
        }
    }
    assert_eq!(text.matches("\"one\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"two\"").count(), 1, "{text}");
}

#[test]
fn demo_once_tells_the_story_and_exits_0() {
    let out = std::process::Command::new(BIN)
        .args(["demo", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "was elected leader",
        "kill -9 of the leader",
        "first write accepted after",
        "demo: done",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

/// The leadership watch carries lease renewals (`renewed` events with a later deadline) while
/// nothing else changes, so a host that judges the lease on its own clock never has to poll.
#[test]
fn the_leadership_watch_carries_lease_renewals() {
    let mut c = Cluster::init(3, "renewals", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let events = watch_leadership(&c.nodes[(leader - 1) as usize].socket);
    let started = Instant::now();
    let renewed = loop {
        let renewed: Vec<Value> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "renewed")
            .cloned()
            .collect();
        if renewed.len() >= 5 {
            break renewed;
        }
        assert!(
            started.elapsed() < ELECTION,
            "{} renewals: {:?}",
            renewed.len(),
            events.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut last = 0;
    for e in &renewed {
        let deadline = e["lease"]["deadline_monotonic_ns"].as_u64().unwrap();
        assert!(deadline > last, "deadlines only grow: {renewed:?}");
        assert!(e["monotonic_ns"].as_u64().unwrap() < deadline, "{e}");
        assert_eq!(e["writable"], true);
        last = deadline;
    }
}

//! The host's operation journal end to end: appends from several clients with a leader kill in
//! the middle, tailed live on every node; a deposed leader's host fenced; retention and 410;
//! the toy master's failover (examples/toy_master.py) with identical namespaces.

use crate::support::{http, Cluster, Feed, TEST_SETTINGS};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(20);

/// One operation as a tail saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Op {
    index: u64,
    term: u64,
    op: Vec<u8>,
}

/// A live tail of one node's journal (NDJSON), reconnecting from the next index whenever the
/// stream ends (its regent was killed), until stopped.
struct Tail {
    ops: Arc<Mutex<Vec<Op>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tail {
    fn start(socket: PathBuf) -> Tail {
        let ops = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, flag) = (ops.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let next = sink.lock().unwrap().last().map_or(1, |o: &Op| o.index + 1);
                let _ = tail_once(&socket, next, &sink, &flag);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Tail {
            ops,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }

    /// Waits until the tail has seen index `last`.
    fn wait_for(&self, last: u64, timeout: Duration) -> Vec<Op> {
        let started = Instant::now();
        loop {
            let seen = self.seen();
            if seen.last().is_some_and(|o| o.index >= last) {
                return seen;
            }
            assert!(
                started.elapsed() < timeout,
                "the tail reached {:?}, not {last}",
                seen.last().map(|o| o.index)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread may be blocked on a quiet stream: it ends with the cluster.
        drop(self.thread.take());
    }
}

/// Follows `GET /v1/journal?from=NEXT&format=ndjson` until it ends; returns why.
fn tail_once(
    socket: &Path,
    next: u64,
    sink: &Mutex<Vec<Op>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // Reads time out now and then, so that the stop flag is looked at while the stream is
    // quiet; a timed-out read loses nothing.
    let path = format!("/v1/journal?from={next}&format=ndjson");
    let mut feed = Feed::open(socket, &path, Some(Duration::from_millis(500)))?;
    if !feed.status_line().contains(" 200 ") {
        return Err(std::io::Error::other(feed.status_line().to_string()));
    }
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let line = match feed.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let value: Value = serde_json::from_str(&line).unwrap();
        assert!(value.get("error").is_none(), "tail error: {value}");
        let op = Op {
            index: value["index"].as_u64().unwrap(),
            term: value["term"].as_u64().unwrap(),
            op: base64_decode(value["op"].as_str().unwrap()),
        };
        let mut ops = sink.lock().unwrap();
        let expected = ops.last().map_or(next, |o| o.index + 1);
        assert_eq!(op.index, expected, "a tail is dense and in order");
        ops.push(op);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    regent::cli::journal::decode_op(text).expect("the tail sends standard base64")
}

fn socket(c: &Cluster, id: u64) -> PathBuf {
    c.nodes[(id - 1) as usize].socket.clone()
}

/// The term of whichever node is writable now, and that node.
fn writable_node(sockets: &[PathBuf]) -> Option<(u64, u64)> {
    sockets.iter().enumerate().find_map(|(i, s)| {
        let a = http(s, "GET", "/v1/status", b"").ok()?;
        let v = a.json();
        (v["writable"] == true).then(|| (i as u64 + 1, v["term"].as_u64().unwrap()))
    })
}

#[derive(Default)]
struct ClientLog {
    /// Acknowledged: the operation and the journal index it took.
    acked: Vec<(Vec<u8>, u64)>,
    /// Refused on the first try (fenced): never applied.
    refused: Vec<Vec<u8>>,
    /// Outcome unknown (a try failed, then a retry was refused or the run ended).
    unknown: Vec<Vec<u8>>,
}

/// Appends `c{k}-{seq}` operations, each once (a session), fenced with the writable node's
/// term, retrying unknown outcomes with the same seq, until `stop`.
fn run_client(k: u64, sockets: Vec<PathBuf>, stop: Arc<AtomicBool>) -> ClientLog {
    let mut log = ClientLog::default();
    let client_id = loop {
        if let Some((node, _)) = writable_node(&sockets) {
            let a = http(&sockets[(node - 1) as usize], "POST", "/v1/session", b"{}");
            if let Ok(a) = a {
                if a.status == 200 {
                    break a.json()["client_id"].as_u64().unwrap();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut seq = 1u64;
    while !stop.load(Ordering::Relaxed) {
        let op = format!("c{k}-{seq}").into_bytes();
        let mut tried = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                if tried {
                    log.unknown.push(op.clone());
                }
                break;
            }
            let Some((node, term)) = writable_node(&sockets) else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let path = format!("/v1/journal?expected_term={term}&client_id={client_id}&seq={seq}");
            let answer = http(&sockets[(node - 1) as usize], "POST", &path, &op);
            match answer {
                Ok(a) if a.status == 200 => {
                    log.acked
                        .push((op.clone(), a.json()["index"].as_u64().unwrap()));
                    break;
                }
                Ok(a) if a.status == 409 && a.json()["error"] == "term_mismatch" => {
                    if tried {
                        log.unknown.push(op.clone());
                    } else {
                        log.refused.push(op.clone());
                    }
                    break;
                }
                Ok(a) if a.status == 400 => panic!("client {k}: {:?}", a.json()),
                _ => {
                    tried = true;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        seq += 1;
    }
    log
}

#[test]
fn journal_appends_survive_a_leader_kill_exactly_once_in_order_on_every_tail() {
    let mut c = Cluster::init(3, "journal", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let sockets: Vec<PathBuf> = (1..=3).map(|id| socket(&c, id)).collect();
    let tails: Vec<Tail> = sockets.iter().cloned().map(Tail::start).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=4)
        .map(|k| {
            let (sockets, stop) = (sockets.clone(), stop.clone());
            std::thread::spawn(move || run_client(k, sockets, stop))
        })
        .collect();
    // Appends in the first term (at least 20, whatever the machine's speed), the leader
    // killed, then at least 20 in later terms, then the old leader back.
    let old_term = c.status(leader).unwrap()["term"].as_u64().unwrap();
    let wait_appends = |tail: &Tail, what: &str, in_term: &dyn Fn(u64) -> bool| {
        let started = Instant::now();
        while tail.seen().iter().filter(|o| in_term(o.term)).count() < 20 {
            assert!(
                started.elapsed() < ELECTION,
                "fewer than 20 appends {what}: {:?}",
                tail.seen().last()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_appends(&tails[(leader - 1) as usize], "before the kill", &|t| {
        t == old_term
    });
    c.kill(leader);
    let new = c.wait_writable_other_than(leader, ELECTION);
    wait_appends(&tails[(new - 1) as usize], "after the kill", &|t| {
        t > old_term
    });
    c.start(leader);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<ClientLog> = clients.into_iter().map(|t| t.join().unwrap()).collect();

    let state = http(&socket(&c, new), "GET", "/v1/journal/state", b"")
        .unwrap()
        .json();
    // The state is the published status (a moment behind the last answer): the last index is
    // at least the last acknowledged one.
    let acked_max = logs
        .iter()
        .flat_map(|l| l.acked.iter().map(|(_, i)| *i))
        .max()
        .unwrap_or(0);
    let last = state["last_index"].as_u64().unwrap().max(acked_max);
    let seen: Vec<Vec<Op>> = tails
        .iter()
        .map(|t| t.wait_for(last, ELECTION))
        .map(|ops| ops.into_iter().take_while(|o| o.index <= last).collect())
        .collect();
    for (i, ops) in seen.iter().enumerate() {
        assert_eq!(ops, &seen[0], "node {} saw another journal", i + 1);
    }
    let journal = &seen[0];
    assert_eq!(journal.len() as u64, last, "dense from 1");
    let mut at: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for op in journal {
        assert!(
            at.insert(op.op.clone(), op.index).is_none(),
            "{:?} appears twice",
            String::from_utf8_lossy(&op.op)
        );
    }
    let terms: BTreeSet<u64> = journal.iter().map(|o| o.term).collect();
    assert!(terms.len() >= 2, "appends in both terms: {terms:?}");
    let mut acked = 0;
    for log in &logs {
        for (op, index) in &log.acked {
            assert_eq!(
                at.get(op),
                Some(index),
                "acknowledged {:?} at {index}",
                String::from_utf8_lossy(op)
            );
            acked += 1;
        }
        for op in &log.refused {
            assert!(
                !at.contains_key(op),
                "refused {:?} appears",
                String::from_utf8_lossy(op)
            );
        }
    }
    let before_kill = journal.iter().filter(|o| o.term == *terms.first().unwrap());
    assert!(
        before_kill.count() > 0 && acked > 20,
        "{acked} acknowledged"
    );
    // What the tails saw is what every node's storage holds (the restarted node included).
    for id in 1..=3 {
        let a = http(
            &socket(&c, id),
            "GET",
            "/v1/journal?from=1&format=ndjson&follow=false",
            b"",
        )
        .unwrap();
        assert_eq!(a.status, 200);
        let lines = String::from_utf8(a.body).unwrap();
        let count = lines.lines().filter(|l| l.contains("\"index\"")).count() as u64;
        assert!(count >= last, "node {id} holds {count} of {last}");
    }
}

#[test]
fn a_deposed_leaders_host_cannot_append_with_its_old_term() {
    let mut c = Cluster::init(3, "jfence", TEST_SETTINGS);
    let relay = c.route_through_relay();
    c.start_all();
    let (old, _) = c.wait_writable_leader(ELECTION);
    let old_term = c.status(old).unwrap()["term"].as_u64().unwrap();
    let old_socket = socket(&c, old);
    let path = format!("/v1/journal?expected_term={old_term}");
    let first = http(&old_socket, "POST", &path, b"before").unwrap();
    assert_eq!(first.status, 200, "{:?}", first.json());

    relay.isolate(old);
    // The old host keeps its term and tries again on its own regent (in the background: a
    // leader cut off answers only once it gives up).
    let stale_old = std::thread::spawn({
        let (socket, path) = (old_socket.clone(), path.clone());
        move || http(&socket, "POST", &path, b"stale on the old leader").unwrap()
    });
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
            "no new leader:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let new_term = c.status(new).unwrap()["term"].as_u64().unwrap();
    let stale_new = http(&socket(&c, new), "POST", &path, b"stale on the new leader").unwrap();
    assert_eq!(stale_new.status, 409, "{:?}", stale_new.json());
    assert_eq!(stale_new.json()["error"], "term_mismatch");
    let fresh = http(
        &socket(&c, new),
        "POST",
        &format!("/v1/journal?expected_term={new_term}"),
        b"fresh",
    )
    .unwrap();
    assert_eq!(fresh.status, 200, "{:?}", fresh.json());
    let stale_old = stale_old.join().unwrap();
    assert_ne!(stale_old.status, 200, "{:?}", stale_old.json());

    relay.rejoin(old);
    let last = fresh.json()["index"].as_u64().unwrap();
    let started = Instant::now();
    for id in 1..=3 {
        loop {
            let a = http(
                &socket(&c, id),
                "GET",
                "/v1/journal?from=1&format=ndjson&follow=false",
                b"",
            )
            .unwrap();
            let ops: Vec<Value> = String::from_utf8(a.body)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let texts: Vec<Vec<u8>> = ops
                .iter()
                .map(|o| base64_decode(o["op"].as_str().unwrap()))
                .collect();
            assert!(
                !texts.iter().any(|t| t.starts_with(b"stale")),
                "node {id}: a fenced append landed: {texts:?}"
            );
            if ops.len() as u64 >= last {
                assert_eq!(texts, vec![b"before".to_vec(), b"fresh".to_vec()]);
                break;
            }
            assert!(started.elapsed() < ELECTION, "node {id} did not catch up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The first event of a leadership watch on `socket`.
fn first_watch_event(socket: &Path) -> Value {
    let mut feed = Feed::open(
        socket,
        "/v1/leadership/watch",
        Some(Duration::from_secs(10)),
    )
    .unwrap();
    loop {
        let line = feed.next_line().unwrap().expect("the watch ended");
        if line.trim_start().starts_with('{') {
            return serde_json::from_str(line.trim()).unwrap();
        }
    }
}

#[test]
fn a_new_leader_announces_catch_up_index_until_its_host_has_applied_it() {
    let mut c = Cluster::init(3, "jcatch", TEST_SETTINGS);
    c.start_all();
    let (old, _) = c.wait_writable_leader(ELECTION);
    let old_socket = socket(&c, old);
    let first = http(
        &old_socket,
        "POST",
        "/v1/journal/applied",
        b"{\"index\": 0}",
    )
    .unwrap();
    assert_eq!(first.status, 200, "{:?}", first.json());
    let body = batch((1..=5).map(|i| format!("op{i}").into_bytes()));
    let a = http(&old_socket, "POST", "/v1/journal?batch=true", &body).unwrap();
    assert_eq!(a.json()["index"], 5);
    c.kill(old);
    let new = c.wait_writable_other_than(old, ELECTION);
    let new_socket = socket(&c, new);
    // The watch event that shows the node writable carries the hand-over index: everything
    // committed before this term.
    let event = first_watch_event(&new_socket);
    assert_eq!(event["writable"], true, "{event}");
    assert_eq!(event["catch_up_index"], 5, "{event}");
    assert_eq!(c.status(new).unwrap()["catch_up_index"], 5);
    let state = http(&new_socket, "GET", "/v1/journal/state", b"")
        .unwrap()
        .json();
    assert_eq!(state["catch_up_index"], 5);
    // Reported until the host says it applied that far (in this term).
    let partial = http(
        &new_socket,
        "POST",
        "/v1/journal/applied",
        b"{\"index\": 4}",
    )
    .unwrap();
    assert_eq!(partial.status, 200);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.status(new).unwrap()["catch_up_index"], 5);
    let done = http(
        &new_socket,
        "POST",
        "/v1/journal/applied",
        b"{\"index\": 5}",
    )
    .unwrap();
    assert_eq!(done.status, 200, "{:?}", done.json());
    let started = Instant::now();
    while !c.status(new).unwrap()["catch_up_index"].is_null() {
        assert!(
            started.elapsed() < ELECTION,
            "catch_up_index still reported"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let event = first_watch_event(&new_socket);
    assert!(event["catch_up_index"].is_null(), "{event}");
    let state = http(&new_socket, "GET", "/v1/journal/state", b"")
        .unwrap()
        .json();
    let me = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node_id"] == new)
        .cloned()
        .unwrap();
    assert_eq!(me["applied_index"], 5, "{state}");
    // The new leader's own appends keep the hand-over index of its term.
    let term = c.status(new).unwrap()["term"].as_u64().unwrap();
    let a = http(
        &new_socket,
        "POST",
        &format!("/v1/journal?expected_term={term}"),
        b"op6",
    )
    .unwrap();
    assert_eq!(a.json()["index"], 6);
    assert_eq!(a.json()["term"], term);
}

fn batch(ops: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    regent_daemon::api::journal::encode_batch(&ops.collect::<Vec<_>>())
}

fn journal_first(c: &Cluster, id: u64) -> u64 {
    http(&socket(c, id), "GET", "/v1/journal/state", b"")
        .unwrap()
        .json()["first_index"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_host_that_never_checkpoints_holds_the_journal_to_the_bound_then_gets_410() {
    let settings = format!("{TEST_SETTINGS}journal:\n  retained_count_max: 4096\n");
    let mut c = Cluster::init(3, "jretain", &settings);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let leader_socket = socket(&c, leader);
    let mut next = 0u64;
    let mut append = |count: u64| {
        let ops = (next..next + count).map(|i| format!("op{i:06}").into_bytes());
        next += count;
        let a = http(
            &leader_socket,
            "POST",
            "/v1/journal?batch=true",
            &batch(ops),
        )
        .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.json());
        a.json()
    };
    for _ in 0..4 {
        append(1000);
    }
    // Nobody checkpointed and the bound is not reached: everything is held.
    assert_eq!(journal_first(&c, leader), 1);
    let from_start = http(
        &leader_socket,
        "GET",
        "/v1/journal?from=1&follow=false",
        b"",
    )
    .unwrap();
    assert_eq!(from_start.status, 200);
    let answer = append(1000);
    assert_eq!(answer["last_index"], 5000);
    assert_eq!(answer["first_index"], 4001);
    // Past the bound the oldest go, and asking for them is answered 410 with the first index.
    // (The state endpoint reads the status the driver publishes after its turn: a moment later
    // than the append's answer.)
    let first = 5000 - 4096 + 1;
    let started = Instant::now();
    while journal_first(&c, leader) != first {
        assert!(
            started.elapsed() < ELECTION,
            "first index {}",
            journal_first(&c, leader)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone = http(&leader_socket, "GET", "/v1/journal?from=1", b"").unwrap();
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["error"], "journal_compacted");
    assert_eq!(gone.json()["first_index"], first);
    // From the first retained index the binary framing carries index, term, length, bytes.
    let a = http(
        &leader_socket,
        "GET",
        &format!("/v1/journal?from={first}&follow=false"),
        b"",
    )
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/octet-stream");
    let body = a.body;
    let index = u64::from_be_bytes(body[0..8].try_into().unwrap());
    let len = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
    assert_eq!(index, first);
    assert_eq!(
        &body[20..20 + len],
        format!("op{:06}", first - 1).as_bytes()
    );
    assert_eq!(body.len(), (5000 - first as usize + 1) * (20 + 8));
    // Once every member's host has checkpointed past an index (the followers' reports are
    // forwarded to the leader), the journal lets go of it on every node. (A host checkpoints
    // what it applied from its own regent, which has it by then.)
    let started = Instant::now();
    while (1..=3).any(|id| {
        http(&socket(&c, id), "GET", "/v1/journal/state", b"")
            .unwrap()
            .json()["last_index"]
            != 5000
    }) {
        assert!(
            started.elapsed() < ELECTION,
            "the followers did not catch up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in 1..=3 {
        let a = http(
            &socket(&c, id),
            "POST",
            "/v1/journal/checkpoint",
            b"{\"index\": 4500}",
        )
        .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.json());
    }
    let started = Instant::now();
    while (1..=3).any(|id| journal_first(&c, id) != 4501) {
        assert!(
            started.elapsed() < ELECTION,
            "first indexes: {:?}",
            (1..=3).map(|id| journal_first(&c, id)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Bad input is a 4xx naming what was wrong.
    for (method, path, body, status) in [
        ("POST", "/v1/journal", &b""[..], 400),
        ("POST", "/v1/journal?batch=true", &[0, 0, 0, 9, 1][..], 400),
        ("GET", "/v1/journal?from=0", &b""[..], 400),
        ("GET", "/v1/journal?format=xml", &b""[..], 400),
        ("POST", "/v1/journal/applied", &b"{\"index\": -1}"[..], 400),
        (
            "POST",
            "/v1/journal/checkpoint",
            &b"{\"index\": 99999}"[..],
            400,
        ),
        ("PUT", "/v1/journal", &b""[..], 405),
    ] {
        let a = http(&leader_socket, method, path, body).unwrap();
        assert_eq!(a.status, status, "{method} {path}: {:?}", a.json());
        assert!(a.json()["message"].as_str().is_some());
    }
}

/// The toy masters (python3 examples/toy_master.py), killed when dropped.
struct Masters {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
    ports: Vec<u16>,
}

impl Drop for Masters {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Masters {
    fn status(&self, i: usize) -> Option<Value> {
        let text = std::fs::read_to_string(self.dirs[i].join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits for exactly one active master (other than `except`) and returns it.
    fn wait_active(&self, except: Option<usize>, timeout: Duration) -> usize {
        let started = Instant::now();
        loop {
            let active: Vec<usize> = (0..self.dirs.len())
                .filter(|&i| Some(i) != except)
                .filter(|&i| self.status(i).is_some_and(|s| s["active"] == true))
                .collect();
            if active.len() == 1 {
                return active[0];
            }
            assert!(started.elapsed() < timeout, "active masters: {active:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the masters in `which` have the same digest at the same applied index (the
    /// `expected` digest if given: status files lag the answers a little).
    fn wait_same(
        &self,
        which: &[usize],
        expected: Option<&Value>,
        timeout: Duration,
    ) -> (String, u64) {
        let started = Instant::now();
        loop {
            let views: Vec<(String, u64)> = which
                .iter()
                .filter_map(|&i| self.status(i))
                .map(|s| {
                    (
                        s["digest"].as_str().unwrap().to_string(),
                        s["applied"].as_u64().unwrap(),
                    )
                })
                .collect();
            let settled =
                expected.is_none_or(|e| views.first().is_some_and(|v| *e == v.0.as_str()));
            if views.len() == which.len() && views.iter().all(|v| *v == views[0]) && settled {
                return views[0].clone();
            }
            assert!(started.elapsed() < timeout, "masters differ: {views:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self, ops: u32, seed: u32) -> Value {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let out = Command::new("python3")
            .arg(example())
            .args(["client", "--ports", &ports.join(",")])
            .args(["--random", &ops.to_string(), "--seed", &seed.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["stderr"] = String::from_utf8_lossy(&out.stderr).into();
        v
    }
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/toy_master.py")
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn toy_masters_fail_over_with_identical_namespaces() {
    let mut c = Cluster::init(3, "toy", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let state = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| state.path().join(format!("m{i}")))
        .collect();
    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    let mut masters = Masters {
        children: Vec::new(),
        dirs: dirs.clone(),
        ports: ports.clone(),
    };
    for i in 0..3 {
        let mut command = Command::new("python3");
        command
            .arg(example())
            .arg("serve")
            .arg("--socket")
            .arg(socket(&c, i as u64 + 1))
            .arg("--state-dir")
            .arg(&dirs[i])
            .args(["--port", &ports[i].to_string(), "--checkpoint-ms", "300"]);
        for (j, dir) in dirs.iter().enumerate() {
            if j != i {
                command.arg("--peer").arg(dir);
            }
        }
        let log = std::fs::File::create(state.path().join(format!("m{}.log", i + 1))).unwrap();
        command.stdout(log.try_clone().unwrap()).stderr(log);
        command.stdin(Stdio::null());
        masters.children.push(command.spawn().unwrap());
    }
    let active = masters.wait_active(None, ELECTION);
    let sent = masters.client(60, 1);
    assert!(sent["sent"].as_u64().unwrap() > 20, "{sent}");
    let (digest, applied) = masters.wait_same(&[0, 1, 2], Some(&sent["digest"]), ELECTION);
    assert_eq!(
        digest, sent["digest"],
        "the masters hold what the client did"
    );

    // Kill the active master's regent: its master steps down; another takes over with the
    // identical namespace, and serves the clients from there.
    c.kill(active as u64 + 1);
    let successor = masters.wait_active(Some(active), ELECTION);
    let s = masters.status(successor).unwrap();
    let logs = || {
        (0..3)
            .map(|i| {
                let log = std::fs::read_to_string(state.path().join(format!("m{}.log", i + 1)));
                format!(
                    "m{}: {:?}\n{}",
                    i + 1,
                    masters.status(i),
                    log.unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        s["digest"],
        digest.as_str(),
        "the new active master's namespace (before: applied {applied}):\n{}",
        logs()
    );
    assert!(s["applied"].as_u64().unwrap() >= applied);
    let sent = masters.client(40, 2);
    let others: Vec<usize> = (0..3).filter(|&i| i != active).collect();
    let (after, _) = masters.wait_same(&others, Some(&sent["digest"]), ELECTION);
    assert_eq!(after, sent["digest"], "{sent}\n{}", logs());
    assert_ne!(after, digest);
    // The old master's regent comes back as a follower: its master catches up by tailing.
    c.start(active as u64 + 1);
    masters.wait_same(&[0, 1, 2], Some(&after.as_str().into()), ELECTION);
    // Checkpoints reached every member's regent and the leader logged them.
    let state = http(
        &socket(&c, successor as u64 + 1),
        "GET",
        "/v1/journal/state",
        b"",
    )
    .unwrap()
    .json();
    let reported = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["checkpoint_index"].as_u64() > Some(0))
        .count();
    assert!(reported >= 2, "{state}");
}

//! An operator acts from any node: writes and cluster changes sent to a follower with
//! `forward=true` (the CLI's default) are carried out by the leader, answers unchanged; and
//! every printing command ends quietly when its output pipe closes.

use crate::support::{http, regent_at, voters, Cluster, BIN, TEST_SETTINGS};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(20);

fn some_follower(leader: u64) -> u64 {
    (1..=3).find(|&id| id != leader).unwrap()
}

#[test]
fn a_follower_relays_writes_sessions_and_fencing_to_the_leader_unchanged() {
    let mut c = Cluster::init(3, "forward", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let follower = some_follower(leader);
    let socket = c.nodes[(follower - 1) as usize].socket.clone();
    let term = c.status(leader).unwrap()["term"].as_u64().unwrap();

    // Without forward=true nothing changes.
    let plain = http(&socket, "PUT", "/v1/kv/a", b"1").unwrap();
    assert_eq!(plain.status, 503);
    assert_eq!(plain.json()["error"], "not_leader");
    assert_eq!(plain.json()["leader_id"], leader);
    let bad = http(&socket, "PUT", "/v1/kv/a?forward=yes", b"1").unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "bad_parameter");

    // Relayed: the leader's answer, naming who answered and who relayed.
    let put = http(&socket, "PUT", "/v1/kv/a?forward=true", b"one").unwrap();
    assert_eq!(put.status, 200, "{:?}\n{}", put, c.all_logs());
    assert_eq!(put.headers["x-regent-node"], leader.to_string());
    assert_eq!(put.headers["x-regent-forwarded-by"], follower.to_string());
    assert_eq!(put.json()["term"], term);
    let read = c.get(leader, "a", "linearizable").unwrap();
    assert_eq!(read.body, b"one");

    // Fencing crosses the relay: a stale expected_term is the leader's 409, unchanged.
    let stale = http(
        &socket,
        "PUT",
        &format!("/v1/kv/a?forward=true&expected_term={}", term + 7),
        b"two",
    )
    .unwrap();
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["error"], "term_mismatch");
    assert_eq!(stale.headers["x-regent-node"], leader.to_string());
    let fenced = http(
        &socket,
        "PUT",
        &format!("/v1/kv/a?forward=true&expected_term={term}"),
        b"two",
    )
    .unwrap();
    assert_eq!(fenced.status, 200, "{fenced:?}");

    // Exactly-once across the relay: a session opened through the follower, the same seq
    // sent twice through it, applied once.
    let session = http(&socket, "POST", "/v1/session?forward=true", b"").unwrap();
    assert_eq!(session.status, 200, "{session:?}");
    let client_id = session.json()["client_id"].as_u64().unwrap();
    let path = format!("/v1/kv/s?forward=true&client_id={client_id}&seq=1");
    let first = http(&socket, "PUT", &path, b"once").unwrap();
    let again = http(&socket, "PUT", &path, b"once").unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(first.json()["revision"], again.json()["revision"]);
    let next = http(&socket, "PUT", "/v1/kv/s2?forward=true", b"x").unwrap();
    assert_eq!(
        next.json()["revision"].as_u64().unwrap(),
        first.json()["revision"].as_u64().unwrap() + 1,
        "the repeated seq wrote nothing"
    );

    // A transaction, a journal append and a delete, relayed.
    let txn = http(
        &socket,
        "POST",
        "/v1/txn?forward=true",
        br#"{"success":[{"put":{"key":"t","value":"dg=="}}]}"#,
    )
    .unwrap();
    assert_eq!(txn.status, 200, "{txn:?}");
    assert_eq!(txn.json()["succeeded"], true);
    let append = http(&socket, "POST", "/v1/journal?forward=true", b"op-1").unwrap();
    assert_eq!(append.status, 200, "{append:?}");
    assert!(append.json()["index"].as_u64().unwrap() >= 1);
    let delete = http(&socket, "DELETE", "/v1/kv/t?forward=true", b"").unwrap();
    assert_eq!(delete.status, 200, "{delete:?}");
    assert_eq!(c.get(leader, "t", "linearizable").unwrap().status, 404);

    // Reads are never relayed: the follower serves its own linearizable read.
    let read = http(&socket, "GET", "/v1/kv/a?forward=true", b"").unwrap();
    assert_eq!(read.status, 200);
    assert_eq!(read.body, b"two");
    assert_eq!(read.headers["x-regent-node"], follower.to_string());
}

#[test]
fn the_cli_changes_members_and_hands_over_from_a_follower() {
    let mut c = Cluster::init(3, "fwdcli", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let follower = some_follower(leader);
    let socket = c.nodes[(follower - 1) as usize].socket.clone();

    // kv put from a follower: forwarded by default, and says so.
    let (ok, out, err) = regent_at(&socket, &["kv", "put", "k", "v"]);
    assert!(ok, "{out}{err}\n{}", c.all_logs());
    assert!(
        out.contains(&format!("by node {leader} (forwarded by node {follower})")),
        "{out}"
    );
    let (ok, out, err) = regent_at(&socket, &["kv", "put", "k", "w", "--no-forward"]);
    assert!(!ok, "{out}");
    assert!(err.contains("not_leader"), "{err}");
    let (ok, out, err) = regent_at(&socket, &["journal", "append", "op"]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains(&format!("forwarded by node {follower}")),
        "{err}"
    );
    let (ok, out, err) = regent_at(&socket, &["kv", "del", "k"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = regent_at(&socket, &["leader", "--id"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), leader.to_string());

    // Members: a new node added, promoted and removed, all through the follower.
    let address = c.add_joining_node(4, TEST_SETTINGS);
    c.start(4);
    let (ok, out, err) = regent_at(&socket, &["members", "add", "4", &address.to_string()]);
    assert!(ok, "members add: {out}{err}\n{}", c.all_logs());
    assert!(out.contains("forwarded by node"), "{out}");
    // The one promotion rule refuses a learner that has not caught up yet: retry.
    retry(&socket, &["members", "promote", "4"], |_| true);
    wait_voters(&c, follower, &[1, 2, 3, 4]);
    // The joint configuration of the promotion may still be finishing: retry.
    retry(&socket, &["members", "remove", "4"], |err| {
        err.contains("in progress")
    });
    wait_voters(&c, follower, &[1, 2, 3]);
    c.kill(4);

    // A switchover asked of a follower, to that follower.
    let (ok, out, err) = regent_at(&socket, &["switchover", "--to", &follower.to_string()]);
    assert!(ok, "switchover: {out}{err}\n{}", c.all_logs());
    assert!(out.contains(&format!("to node {follower}")), "{out}");
    let (now, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(now, follower);
}

/// Runs `regent ARGS` at `socket` until it succeeds, while its refusal is one `expected`
/// allows (and for at most `ELECTION`).
fn retry(socket: &Path, args: &[&str], expected: impl Fn(&str) -> bool) {
    let started = Instant::now();
    loop {
        let (ok, out, err) = regent_at(socket, args);
        if ok {
            return;
        }
        assert!(
            expected(&err) && started.elapsed() < ELECTION,
            "{args:?}: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until node `id`'s status lists exactly `expected` as voters.
fn wait_voters(c: &Cluster, id: u64, expected: &[u64]) {
    let started = Instant::now();
    while voters(c, id) != expected {
        assert!(
            started.elapsed() < ELECTION,
            "n{id}'s voters are {:?}, not {expected:?}",
            voters(c, id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every printing command, its output pipe closed before it writes: it ends by SIGPIPE or
/// with success, never with a panic or a message about the pipe.
#[test]
fn every_printing_command_ends_quietly_on_a_closed_pipe() {
    let mut c = Cluster::init(3, "pipes", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    c.put(leader, "p", b"v").unwrap();
    let append = http(
        &c.nodes[(leader - 1) as usize].socket,
        "POST",
        "/v1/journal",
        b"op",
    )
    .unwrap();
    assert_eq!(append.status, 200);
    let socket = c.nodes[(leader - 1) as usize].socket.display().to_string();
    let config = c.nodes[0].config.display().to_string();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/regent.yaml");
    let s = socket.as_str();
    let demo_root = tempfile::tempdir().unwrap();
    let demo_dir = demo_root.path().join("d").display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["--version"],
        vec!["explain-timing", example],
        vec!["check-config", &config],
        vec!["admin", "--help"],
        vec!["status", "--socket", s],
        vec!["status", "--json", "--socket", s],
        vec!["version", "--socket", s],
        vec!["members", "list", "--socket", s],
        vec!["leader", "--socket", s],
        vec!["leader", "watch", "--socket", s],
        vec!["kv", "get", "p", "--socket", s],
        vec!["kv", "ls", "--socket", s],
        vec!["kv", "put", "q", "v", "--socket", s],
        vec!["kv", "watch", "--from-revision", "1", "--socket", s],
        vec!["journal", "tail", "--socket", s],
        vec!["journal", "tail", "--text", "--socket", s],
        vec!["journal", "state", "--socket", s],
        vec!["journal", "append", "x", "--socket", s],
        vec!["snapshot", "--socket", s],
        vec!["history", "--socket", s],
        vec!["sim", "--seeds", "1"],
        vec!["demo", "--once", "--keep", &demo_dir],
    ];
    for args in commands {
        let mut child = Command::new(BIN)
            .args(&args)
            .env("REGENT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the command writes anything.
        drop(child.stdout.take());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("regent {args:?} did not end with its output closed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        use std::os::unix::process::ExitStatusExt;
        let quiet = status.success() || status.signal() == Some(libc::SIGPIPE);
        assert!(quiet, "regent {args:?}: {status:?}\n{err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "regent {args:?}:\n{err}"
        );
    }
    // The demo's nodes did not outlive it (they die with their parent).
    let started = Instant::now();
    loop {
        let out = Command::new("pgrep")
            .args(["-f", &demo_dir])
            .output()
            .unwrap();
        if out.stdout.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the demo's nodes outlived it: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The README's "Running a cluster by hand", run as written in a fresh directory (the binary,
/// `config/`, `examples/` and the Python client library where the README expects them): the first block's `cluster init`
/// and `regent run` for each node (the README says to run node2 and node3 the same way), then
/// the second block as one `bash -e` script, whichever node happens to lead.
#[test]
fn the_readme_by_hand_sequence_runs_as_written() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("## Running a cluster by hand")
        .nth(1)
        .expect("the README has its by-hand section");
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .take(2)
        .collect();
    assert_eq!(blocks.len(), 2, "two shell blocks in the by-hand section");
    let setup = blocks[0].replace("\\\n", " ");
    let run_line = "./target/release/regent run --config demo/node1/regent.yaml";
    assert!(setup.contains(run_line), "{setup}");

    let dir = tempfile::tempdir().unwrap();
    let at = dir.path();
    std::fs::create_dir_all(at.join("target/release")).unwrap();
    std::os::unix::fs::symlink(BIN, at.join("target/release/regent")).unwrap();
    // examples/host.py imports the Python client library from clients/python beside it.
    for sub in ["config", "examples", "clients/python/regent_client"] {
        std::fs::create_dir_all(at.join(sub)).unwrap();
        for entry in std::fs::read_dir(format!("{root}/{sub}")).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), at.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    let bash = |script: &str| {
        Command::new("bash")
            .arg("-e")
            .arg("-c")
            .arg(script)
            .current_dir(at)
            .env_remove("REGENT_SOCKET")
            .output()
            .unwrap()
    };
    struct Nodes(Vec<std::process::Child>);
    impl Drop for Nodes {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut nodes = Nodes(Vec::new());
    for line in setup.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("cargo build") {
            continue;
        }
        if line.starts_with(run_line) {
            for id in 1..=3 {
                let log = std::fs::File::create(at.join(format!("node{id}.log"))).unwrap();
                nodes.0.push(
                    Command::new(at.join("target/release/regent"))
                        .args(["run", "--config", &format!("demo/node{id}/regent.yaml")])
                        .current_dir(at)
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().unwrap())
                        .stderr(log)
                        .spawn()
                        .unwrap(),
                );
            }
            // As a reader would: wait until the cluster has a leader before going on.
            let started = Instant::now();
            while !(1..=3).any(|id| {
                http(
                    &at.join(format!("demo/node{id}/regent.sock")),
                    "GET",
                    "/v1/status",
                    b"",
                )
                .is_ok_and(|a| a.json()["writable"] == true)
            }) {
                assert!(started.elapsed() < ELECTION, "no leader");
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        let out = bash(line);
        assert!(
            out.status.success(),
            "{line}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = bash(&format!("set -x\n{}", blocks[1]));
    let logs = || {
        (1..=3)
            .map(|id| std::fs::read_to_string(at.join(format!("node{id}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    assert!(
        out.status.success(),
        "the second block failed:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    // The writes of the block happened.
    let leader = (1..=3)
        .find(|id| {
            http(
                &at.join(format!("demo/node{id}/regent.sock")),
                "GET",
                "/v1/status",
                b"",
            )
            .is_ok_and(|a| a.json()["writable"] == true)
        })
        .expect("a leader");
    let read = http(
        &at.join(format!("demo/node{leader}/regent.sock")),
        "GET",
        "/v1/kv/b",
        b"",
    )
    .unwrap();
    assert_eq!(read.body, b"hello");
}

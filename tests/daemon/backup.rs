//! Backup and restore end to end: `regent backup` from a follower while clients write KV and
//! journal entries, `regent backup verify`, `regent restore` into a new cluster (new
//! directories, ports and cluster id), and the restored cluster's digest from
//! `/v1/status?digest=true` against the one `verify` printed. Damaged files are refused by
//! `verify` and `restore` with a message that says what is wrong. And the `backup:` schedule.

use super::support::{http, regent_at, Cluster, Writer, BIN, TEST_SETTINGS};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(30);

/// Runs `regent ARGS` (no socket); returns success, stdout and stderr.
fn regent(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `digest: {...}` line of `backup`, `backup verify` or `restore`.
fn printed_digest(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest line in {stdout:?}"));
    serde_json::from_str(line).unwrap()
}

fn status_digest(socket: &Path) -> Option<Value> {
    let answer = http(socket, "GET", "/v1/status?digest=true", b"").ok()?;
    (answer.status == 200).then(|| answer.json())
}

/// The state machine's content: the digest without the applied index (a restored cluster's
/// leader appends its first entry after the image).
fn content(digest: &Value) -> Value {
    let mut d = digest.clone();
    d.as_object_mut().unwrap().remove("applied_index");
    d
}

/// Appends journal operations to whichever node is writable, fenced with its term, until
/// stopped; returns how many were acknowledged.
fn journal_load(sockets: Vec<PathBuf>, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let writable = sockets.iter().find_map(|s| {
            let v = http(s, "GET", "/v1/status", b"").ok()?.json();
            (v["writable"] == true).then(|| (s.clone(), v["term"].as_u64().unwrap()))
        });
        let Some((socket, term)) = writable else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        i += 1;
        let path = format!("/v1/journal?expected_term={term}");
        if let Ok(a) = http(&socket, "POST", &path, format!("op-{i}").as_bytes()) {
            if a.status == 200 {
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn a_backup_under_write_load_restores_into_a_new_cluster_with_the_same_digest() {
    let mut c = Cluster::init(3, "prod", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let leader_socket = c.nodes[(leader - 1) as usize].socket.clone();
    // A session, so that the image holds one (a long TTL: it must outlive the test).
    let session = http(
        &leader_socket,
        "POST",
        "/v1/session",
        br#"{"ttl_ms": 3600000}"#,
    )
    .unwrap();
    assert_eq!(session.status, 200, "{:?}", session.json());

    // Enough data for several KV frames (about 1 MiB each), read while the writes go on.
    for i in 0..300 {
        c.put_anywhere(&format!("big{i:03}"), &[b'b'; 10_000], ELECTION);
    }

    let writer = Writer::start(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let journal_acked = Arc::new(AtomicU64::new(0));
    let journal = {
        let sockets = c.nodes.iter().map(|n| n.socket.clone()).collect();
        let (stop, acked) = (stop.clone(), journal_acked.clone());
        std::thread::spawn(move || journal_load(sockets, stop, acked))
    };
    writer.wait_acked(300, Duration::from_secs(60));
    let started = Instant::now();
    while journal_acked.load(Ordering::Relaxed) < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "journal appends stall"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // On a follower, while both clients go on writing.
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let follower_socket = c.nodes[(follower - 1) as usize].socket.clone();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("prod.backup");
    let file_arg = file.to_str().unwrap();
    let before = writer.acked();
    let applied_before = c.status(follower).unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    let (ok, out, err) = regent_at(&follower_socket, &["backup", "--out", file_arg]);
    assert!(ok, "backup failed: {err}{out}");
    let during = writer.acked() - before;
    let backup_digest = printed_digest(&out);
    // More writes after the backup: the image is the one at its index, not the latest.
    writer.wait_acked(writer.acked() + 50, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    journal.join().unwrap();
    let (acked, _) = writer.stop();
    eprintln!(
        "{during} writes acknowledged while the backup ran; {} in all",
        acked.len()
    );
    assert!(during > 0, "the backup ran under write load");

    let (ok, verified, err) = regent(&["backup", "verify", file_arg]);
    assert!(ok, "verify failed: {err}");
    assert!(verified.contains("every checksum matches"), "{verified}");
    let digest = printed_digest(&verified);
    assert_eq!(digest, backup_digest, "backup and verify print one digest");
    // The follower's storage may be a little behind what the leader acknowledged.
    assert!(digest["kv_count"].as_u64().unwrap() >= 100, "{digest}");
    assert!(digest["journal_count"].as_u64().unwrap() >= 1, "{digest}");
    assert_eq!(digest["session_count"], 1, "{digest}");
    let (ok, json_out, _) = regent(&["backup", "verify", file_arg, "--json"]);
    assert!(ok);
    let summary: Value = serde_json::from_str(json_out.trim()).unwrap();
    assert_eq!(summary["cluster_id"], "prod");
    assert_eq!(summary["node_id"], follower);
    assert_eq!(summary["digest"], digest);
    let index = digest["applied_index"].as_u64().unwrap();
    assert_eq!(summary["index"], index);
    assert!(
        summary["frames"].as_u64().unwrap() >= 6,
        "several KV frames: {summary}"
    );
    assert!(
        index >= applied_before,
        "the image holds what the follower had applied when asked ({applied_before}): {index}"
    );

    // The old cluster is left running: the new one shares nothing with it.
    let (mut r, restored) = Cluster::restore(&file, 3, "restored", TEST_SETTINGS);
    assert_eq!(printed_digest(&restored), digest, "{restored}");
    r.start_all();
    let (new_leader, _) = r.wait_writable_leader(ELECTION);
    let new_socket = r.nodes[(new_leader - 1) as usize].socket.clone();
    let status = status_digest(&new_socket).unwrap();
    assert!(
        status["term"].as_u64().unwrap() > summary["term"].as_u64().unwrap(),
        "the new cluster's terms follow the image's: {status}"
    );
    // Every node of the new cluster: the image's content, and the log after it — in which the
    // new cluster's first leader writes its failover history record (one key more, one
    // revision more; the sessions and the journal as they were).
    let mut expected = content(&digest);
    for field in ["kv_count", "revision"] {
        expected[field] = (digest[field].as_u64().unwrap() + 1).into();
    }
    for node in &r.nodes {
        let started = Instant::now();
        loop {
            let now = status_digest(&node.socket).map(|s| s["digest"].clone());
            if let Some(d) = &now {
                if d["applied_index"].as_u64().unwrap() > index
                    && d["kv_count"] == expected["kv_count"]
                {
                    let mut d = content(d);
                    let crc = d.as_object_mut().unwrap().remove("kv_crc32c");
                    let mut want = expected.clone();
                    want.as_object_mut().unwrap().remove("kv_crc32c");
                    assert_eq!(d, want, "n{} of the new cluster", node.id);
                    assert_ne!(crc.as_ref(), Some(&digest["kv_crc32c"]));
                    break;
                }
            }
            assert!(
                started.elapsed() < ELECTION,
                "n{} never applied past the image at {index}: {now:?}\n{}",
                node.id,
                r.all_logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // What the image holds reads back, and the new cluster takes writes and journal appends.
    let w1 = r.get(new_leader, "w1", "linearizable").unwrap();
    assert_eq!(w1.body, b"1");
    r.put_anywhere("after-restore", b"yes", ELECTION);
    let term = status["term"].as_u64().unwrap();
    let append = http(
        &new_socket,
        "POST",
        &format!("/v1/journal?expected_term={term}"),
        b"op-new",
    )
    .unwrap();
    assert_eq!(append.status, 200, "{:?}", append.json());
    assert_eq!(
        append.json()["index"].as_u64().unwrap(),
        digest["journal_count"].as_u64().unwrap() + 1,
        "the journal goes on after the image's"
    );
}

#[test]
fn damaged_or_foreign_backups_are_refused_with_what_is_wrong() {
    let mut c = Cluster::init(1, "small", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    for i in 0..50 {
        c.put_anywhere(&format!("k{i}"), &[b'x'; 300], ELECTION);
    }
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("small.backup");
    let (ok, out, err) = regent_at(
        &c.nodes[0].socket,
        &["backup", "--out", file.to_str().unwrap()],
    );
    assert!(ok, "{err}{out}");
    let (ok, _, err) = regent_at(
        &c.nodes[0].socket,
        &["backup", "--out", file.to_str().unwrap()],
    );
    assert!(!ok && err.contains("exists"), "never overwrites: {err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the whole state machine, for its owner only");
    // Nothing is written any more: the node's own digest at the same index is the backup's.
    let backup_digest = printed_digest(&out);
    let status = status_digest(&c.nodes[0].socket).unwrap();
    assert_eq!(
        status["digest"], backup_digest,
        "an idle node's digest is its backup's"
    );
    // The endpoint itself: the file's bytes, with its index and term in the head.
    let answer = http(&c.nodes[0].socket, "GET", "/v1/admin/backup", b"").unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/octet-stream");
    assert_eq!(
        answer.headers["x-regent-backup-index"],
        backup_digest["applied_index"].to_string()
    );
    let fetched = files.path().join("fetched.backup");
    std::fs::write(&fetched, &answer.body).unwrap();
    let (ok, verified, err) = regent(&["backup", "verify", fetched.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(printed_digest(&verified), backup_digest);
    let post = http(&c.nodes[0].socket, "POST", "/v1/admin/backup", b"").unwrap();
    assert_eq!(post.status, 405);
    let bytes = std::fs::read(&file).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            bytes[..bytes.len() * 2 / 3].to_vec(),
            "truncated",
        ),
        (
            "flipped",
            {
                let mut b = bytes.clone();
                let middle = b.len() / 2;
                b[middle] ^= 0x55;
                b
            },
            "checksum mismatch",
        ),
        (
            "foreign",
            b"{\"not\": \"a backup\"}".repeat(10),
            "bad magic",
        ),
        ("empty", Vec::new(), "truncated"),
    ];
    for (name, content, expected) in cases {
        let bad = files.path().join(format!("{name}.backup"));
        std::fs::write(&bad, content).unwrap();
        let bad_arg = bad.to_str().unwrap();
        let (ok, out, err) = regent(&["backup", "verify", bad_arg]);
        assert!(!ok, "{name}: verify accepted it: {out}");
        assert!(
            err.contains(expected) && err.contains("not a good backup"),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        let dir = files.path().join(format!("restore-{name}"));
        let (ok, out, err) = regent(&[
            "restore",
            "--from",
            bad_arg,
            "--dir",
            dir.to_str().unwrap(),
            "--cluster",
            "other",
            "--node",
            "1=127.0.0.1:7401",
        ]);
        assert!(!ok, "{name}: restore accepted it: {out}");
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            !dir.exists(),
            "{name}: restore wrote {} anyway",
            dir.display()
        );
    }

    // The backup's own cluster id needs the unsafe flag.
    let dir = files.path().join("same-id");
    let same = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
            "--cluster",
            "small",
            "--node",
            "1=127.0.0.1:7401",
        ];
        args.extend_from_slice(extra);
        regent(&args)
    };
    let (ok, _, err) = same(&[]);
    assert!(!ok && err.contains("--unsafe-keep-cluster-id"), "{err}");
    assert!(!dir.exists());
    let (ok, out, err) = same(&["--unsafe-keep-cluster-id"]);
    assert!(ok, "{err}{out}");
    assert!(dir
        .join("node1/data")
        .join(regent_storage::DB_FILE_NAME)
        .exists());
}

#[test]
fn the_schedule_writes_backups_and_keeps_the_newest() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().join("backups");
    let settings = format!(
        "{TEST_SETTINGS}backup:\n  dir: {}\n  interval_s: 1\n  keep: 2\n",
        dir.display()
    );
    let mut c = Cluster::init(1, "sched", &settings);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        c.put_anywhere(&format!("k{}", seen.len()), b"v", ELECTION);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.ends_with(".backup"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(names.len() <= 2, "keep: 2, found {names:?}");
        seen.extend(names.iter().cloned());
        if seen.len() >= 4 && names.len() == 2 {
            assert!(
                names.iter().all(|n| n.starts_with("regent-sched-n1-")),
                "{names:?}"
            );
            // The newest: the next backup prunes the older one, not this.
            let newest = names.iter().max().unwrap();
            let (ok, out, err) = regent(&["backup", "verify", dir.join(newest).to_str().unwrap()]);
            assert!(ok, "{newest}: {err}{out}");
            // The metrics count them and say when the last one was written.
            let answer = http(&c.nodes[0].socket, "GET", "/metrics", b"").unwrap();
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            let value = |name: &str| -> u64 {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name} ")))
                    .unwrap_or_else(|| panic!("no {name} in /metrics"))
                    .parse()
                    .unwrap()
            };
            assert!(value("regent_backups_written_total") >= 4, "{text}");
            assert_eq!(value("regent_backups_failed_total"), 0, "{text}");
            let unix_now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let last = value("regent_backup_last_success_unix_seconds");
            assert!(
                last > 0 && last <= unix_now && unix_now - last < 120,
                "{last} vs {unix_now}"
            );
            assert!(value("regent_backup_last_index") > 0, "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "backups seen within 60 s: {seen:?}\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A member's address record (`\0regent/member/ID`, written by `members update` or `add`)
/// names the old cluster's machine; a node prefers it to its configuration. The restore gives
/// the new cluster's nodes their new addresses there, and says that the digest moved.
#[test]
fn a_restore_gives_the_address_records_the_new_addresses() {
    let mut c = Cluster::init(1, "moved", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let socket = c.nodes[0].socket.clone();
    let status = c.status(1).unwrap();
    let address = status["members"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/admin/members?update=1&address={address}");
    let a = http(&socket, "POST", &path, b"").unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json());
    c.put_anywhere("k", b"v", ELECTION);
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("moved.backup");
    let (ok, out, err) = regent_at(&socket, &["backup", "--out", file.to_str().unwrap()]);
    assert!(ok, "{err}{out}");
    let backup_digest = printed_digest(&out);

    let (mut r, restored) = Cluster::restore(&file, 3, "moved-again", TEST_SETTINGS);
    assert!(restored.contains("note: the address records"), "{restored}");
    let digest = printed_digest(&restored);
    assert_ne!(digest["kv_crc32c"], backup_digest["kv_crc32c"]);
    assert_eq!(digest["kv_count"], backup_digest["kv_count"]);
    r.start_all();
    let (leader, _) = r.wait_writable_leader(ELECTION);
    // Node 1 is reachable at its new address: a write needs two of the three nodes, and all
    // three are connected.
    r.put_anywhere("after", b"yes", ELECTION);
    let started = Instant::now();
    loop {
        let s = r.status(leader).unwrap();
        let connected = s["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["connected"] == true)
            .count();
        if connected == 2 {
            break;
        }
        assert!(
            started.elapsed() < ELECTION,
            "links of the new cluster: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let record = r.get(leader, "%00regent/member/1", "linearizable").unwrap();
    let new_address = r.status(1).unwrap()["members"][0]["address"].clone();
    assert_eq!(
        Value::String(String::from_utf8(record.body).unwrap()),
        new_address
    );
    // Node 1 may be a follower that applies the write a moment later. The new cluster's first
    // leader wrote its failover history record too.
    let expected = digest["kv_count"].as_u64().unwrap() + 2;
    let started = Instant::now();
    loop {
        let now = status_digest(&r.nodes[0].socket).unwrap()["digest"].clone();
        if now["kv_count"] == expected {
            break;
        }
        assert!(
            started.elapsed() < ELECTION,
            "node 1's digest after the write: {now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

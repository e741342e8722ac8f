//! A cluster's life: election, replication, failover, catch-up by snapshot, restart, strangers.

use crate::support::{http, Cluster, TEST_SETTINGS};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(20);

/// Writes `count` keys `prefix-i` through the leader; returns what each holds.
fn write_keys(c: &mut Cluster, prefix: &str, count: usize) -> BTreeMap<String, Vec<u8>> {
    let mut written = BTreeMap::new();
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        let value = format!("value of {key}").into_bytes();
        c.put_anywhere(&key, &value, ELECTION);
        written.insert(key, value);
    }
    written
}

/// Every acknowledged write reads back, linearizably, on node `id`.
fn assert_readable(c: &Cluster, id: u64, written: &BTreeMap<String, Vec<u8>>) {
    for (key, value) in written {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 500, "n{id} never answered a read of {key}");
            // A node that is starting has no socket yet.
            let Ok(answer) = c.get(id, key, "linearizable") else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            if answer.status == 200 {
                assert_eq!(&answer.body, value, "n{id} holds another value for {key}");
                break;
            }
            // A follower without a leader yet answers 503; anything else is wrong.
            assert_eq!(answer.status, 503, "n{id} {key}: {:?}", answer.json());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits until node `id` has applied at least `index` (its local state is then complete).
fn wait_applied(c: &Cluster, id: u64, index: u64) {
    for _ in 0..1000 {
        if c.status(id)
            .is_some_and(|s| s["applied_index"].as_u64().unwrap_or(0) >= index)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("n{id} did not apply {index}; logs:\n{}", c.all_logs());
}

#[test]
fn three_nodes_elect_replicate_fail_over_catch_up_by_snapshot_and_restart() {
    let mut c = Cluster::init(3, "itest", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);

    // The status names the leader on every node.
    for id in 1..=3 {
        let mut status = c.status(id);
        let started = Instant::now();
        while started.elapsed() < ELECTION {
            if status
                .as_ref()
                .is_some_and(|s| s["leader_id"].as_u64() == Some(leader))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            status = c.status(id);
        }
        let status = status.unwrap();
        assert_eq!(status["leader_id"].as_u64(), Some(leader), "{status}");
        assert_eq!(status["node_id"].as_u64(), Some(id));
        let role = status["role"].as_str().unwrap();
        assert_eq!(role == "leader", id == leader, "n{id} is {role}");
    }

    // A write on a follower is refused with the leader's id and address.
    let follower = if leader == 1 { 2 } else { 1 };
    let refused = c.put(follower, "x", b"y").unwrap();
    assert_eq!(refused.status, 503);
    let body = refused.json();
    assert_eq!(body["error"], "not_leader");
    assert_eq!(body["leader_id"].as_u64(), Some(leader));
    assert!(body["leader_address"].as_str().is_some(), "{body}");

    let mut written = write_keys(&mut c, "before", 30);
    for id in 1..=3 {
        assert_readable(&c, id, &written);
    }
    let first = c.get(leader, "before-0", "linearizable").unwrap();
    assert_eq!(
        first.headers.get("x-regent-version").map(String::as_str),
        Some("1")
    );
    assert!(
        first.headers.contains_key("x-regent-revision"),
        "{:?}",
        first.headers
    );

    // kill -9 of the leader: a new writable leader, no acknowledged write lost.
    c.kill(leader);
    let (new_leader, failover) = c.wait_writable_leader(ELECTION);
    assert_ne!(new_leader, leader);
    eprintln!("failover after kill -9: {failover:?}");
    for id in (1..=3).filter(|&id| id != leader) {
        assert_readable(&c, id, &written);
    }

    // Far more writes than the compaction threshold while the old leader is down: it can
    // only catch up by snapshot.
    written.extend(write_keys(&mut c, "during", 450));
    let last = c.status(new_leader).unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    c.start(leader);
    wait_applied(&c, leader, last);
    assert!(
        c.nodes[(leader - 1) as usize]
            .logs()
            .contains("snapshot installed"),
        "n{leader} caught up without a snapshot; logs:\n{}",
        c.all_logs()
    );
    for (key, value) in &written {
        let answer = c.get(leader, key, "local").unwrap();
        assert_eq!(answer.status, 200, "{key} missing on the restarted node");
        assert_eq!(&answer.body, value);
    }
    assert_readable(&c, leader, &written);

    // Restart of all three (SIGTERM, clean exit): the same state comes back.
    for id in 1..=3 {
        assert_eq!(c.stop(id), Some(0), "n{id} did not exit cleanly");
        assert!(
            !c.nodes[(id - 1) as usize].socket.exists(),
            "n{id} left its socket behind"
        );
    }
    c.start_all();
    c.wait_writable_leader(ELECTION);
    for id in 1..=3 {
        assert_readable(&c, id, &written);
    }
}

#[test]
fn five_nodes_survive_a_leader_kill() {
    let mut c = Cluster::init(5, "itest5", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let mut written = write_keys(&mut c, "a", 20);
    c.kill(leader);
    let (new_leader, failover) = c.wait_writable_leader(ELECTION);
    assert_ne!(new_leader, leader);
    eprintln!("five nodes, failover after kill -9: {failover:?}");
    written.extend(write_keys(&mut c, "b", 20));
    for id in (1..=5).filter(|&id| id != leader) {
        assert_readable(&c, id, &written);
    }
    c.start(leader);
    assert_readable(&c, leader, &written);
}

#[test]
fn foreign_nodes_never_join() {
    let mut a = Cluster::init(3, "alpha", TEST_SETTINGS);
    a.start_all();
    let (_, _) = a.wait_writable_leader(ELECTION);
    let written = write_keys(&mut a, "k", 5);

    // A node of another cluster (another CA, another cluster name) configured with alpha's
    // addresses for its peers: its links are refused, it never sees a leader.
    let mut b = Cluster::init(3, "beta", TEST_SETTINGS);
    // beta's node 1 keeps its own listen address; its peers 2 and 3 are alpha's nodes.
    let alpha: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&a.nodes[0].config).unwrap()).unwrap();
    let mut beta: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&b.nodes[0].config).unwrap()).unwrap();
    let address_of = |config: &serde_yaml::Value, id: u64| -> serde_yaml::Value {
        config["members"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["id"].as_u64() == Some(id))
            .unwrap()["address"]
            .clone()
    };
    for member in beta["members"].as_sequence_mut().unwrap() {
        let id = member["id"].as_u64().unwrap();
        if id != 1 {
            member["address"] = address_of(&alpha, id);
        }
    }
    std::fs::write(&b.nodes[0].config, serde_yaml::to_string(&beta).unwrap()).unwrap();
    b.start(1);
    // Alpha refuses beta's dials (waited for: a busy machine may take a while to start beta),
    // and beta gets nowhere for a few seconds of trying.
    let started = Instant::now();
    while !a.all_logs().contains("connection refused") {
        assert!(
            started.elapsed() < ELECTION,
            "alpha logged no refusal:\n{}",
            a.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let status = b.status(1).expect("the foreign node serves its socket");
    assert!(status["leader_id"].is_null(), "{status}");
    assert_eq!(status["writable"], false);
    assert_eq!(status["commit_index"].as_u64(), Some(1), "{status}");
    // Alpha is untouched.
    let (leader, _) = a.wait_writable_leader(ELECTION);
    assert_readable(&a, leader, &written);
    drop(b);
}

#[test]
fn a_data_directory_of_another_node_is_refused() {
    let mut c = Cluster::init(3, "gamma", TEST_SETTINGS);
    c.start(1);
    // Node 1 created its data directory; node 2 pointed at it must refuse to start. Node 1
    // answers on its socket once recovered, bound and watching for signals.
    let up = Instant::now();
    while c.status(1).is_none() {
        assert!(
            up.elapsed() < ELECTION,
            "n1 did not serve:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(c.stop(1).is_some());
    let yaml = std::fs::read_to_string(&c.nodes[1].config).unwrap();
    let own = c.nodes[1].dir.join("data").display().to_string();
    let foreign = c.nodes[0].dir.join("data").display().to_string();
    assert!(yaml.contains(&own), "{yaml}");
    std::fs::write(&c.nodes[1].config, yaml.replace(&own, &foreign)).unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .args(["run", "--config"])
        .arg(&c.nodes[1].config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node"), "{err}");
    assert!(
        http(&c.nodes[1].socket, "GET", "/v1/status", b"").is_err(),
        "a refused node must not serve"
    );
}

/// A node that restarts at once is reconnected at once, although it only accepts (the lower ids
/// dial it) and its peers' old connections to it look alive: its stateless resets, made with a
/// key that survives the restart, tell them the old connections are dead. Without that they
/// would wait for the idle timeout (10 s) and the node would stay cut off that long.
#[test]
fn a_node_restarted_at_once_is_reconnected_at_once() {
    let mut c = Cluster::init(3, "relink", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let written = write_keys(&mut c, "a", 5);
    // Let every link settle, then kill -9 and restart the highest id (the accepting side).
    std::thread::sleep(Duration::from_millis(500));
    c.kill(3);
    c.start(3);
    let restarted = Instant::now();
    loop {
        let linked = c.status(3).is_some_and(|s| {
            s["members"]
                .as_array()
                .is_some_and(|m| m.iter().filter(|m| m["connected"] == true).count() == 2)
        });
        if linked {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(6),
            "n3 still not linked to its peers {:?} after its restart:\n{}",
            restarted.elapsed(),
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "restarted node linked again after {:?}",
        restarted.elapsed()
    );
    assert_readable(&c, 3, &written);
}

/// Unmounts a tmpfs when dropped, whichever way the test ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A follower whose disk fills up while it installs a snapshot stops, as after any failed
/// durable write, instead of waiting for ever beside a store that refuses every write; given
/// space and restarted, it installs the snapshot and serves everything. Root only (a tmpfs).
#[test]
fn a_snapshot_install_that_fills_the_disk_stops_the_follower() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let mut c = Cluster::init(3, "fulldisk", TEST_SETTINGS);
    let disk = Tmpfs::mount(&c.node(3).dir.join("data"), "4m");
    c.start(1);
    c.start(2);
    c.wait_writable_leader(ELECTION);
    // About 10 MiB of state, and far more entries than the compaction threshold: n3 (never
    // started) can only catch up by a snapshot larger than its disk.
    let value = vec![b'v'; 32 << 10];
    for i in 0..320 {
        c.put_anywhere(&format!("big-{i}"), &value, ELECTION);
    }
    c.start(3);
    let mut stopped = false;
    for _ in 0..3000 {
        if !c.node(3).is_running() {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = c.nodes[2].logs();
    assert!(stopped, "n3 kept running with a full disk; logs:\n{logs}");
    assert!(
        logs.contains("a snapshot install failed") && logs.contains("disk is full"),
        "n3 stopped for another reason; logs:\n{logs}"
    );

    // Space freed, restarted: the snapshot installs and every write reads back on n3.
    disk.resize("256m");
    let last = c.status(1).or_else(|| c.status(2)).unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    c.start(3);
    wait_applied(&c, 3, last);
    assert!(c.nodes[2].logs().contains("snapshot installed"));
    for i in (0..320).step_by(37) {
        let answer = c.get(3, &format!("big-{i}"), "local").unwrap();
        assert_eq!(answer.status, 200, "big-{i} missing on n3");
        assert_eq!(answer.body, value);
    }
}

//! Mixed versions on real processes: a cluster with one node forced to speak as the previous
//! build (`REGENT_TEST_WIRE_VERSION_MAX=2`: ALPN `regent/2` only, no clock stamps, no calls)
//! runs at cluster version 2 — writes replicate everywhere, version-3 requests (pause, backup,
//! forwarding) get 409 `cluster_version_too_old` —; restarting that node without the switch
//! (the upgrade) raises the cluster version to 3 on every node and the version-3 requests work;
//! restarting one node with the switch again (a downgrade) lowers it back to 2, and so does a
//! downgrade of the leader. The state digests of all nodes agree at the same applied index
//! after each step.
//!
//! Timing: every wait polls against a generous deadline; nothing asserts a sub-second duration.

use crate::support::{http, regent_at, wait_status, Cluster, TEST_SETTINGS};
use serde_json::Value;
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
const SWITCH: &str = "REGENT_TEST_WIRE_VERSION_MAX";

/// Waits until every node shows cluster version `version`.
fn wait_cluster_version(c: &Cluster, version: u64) {
    for id in 1..=3 {
        wait_status(c, id, &format!("cluster_version {version}"), SETTLE, |s| {
            s["cluster_version"] == version
                && s["version"]["cluster_version"] == version
                && s["leader_id"].as_u64().is_some()
        });
    }
}

/// The node every node names as leader, once they agree and it is writable.
fn writable_leader(c: &Cluster) -> u64 {
    let started = Instant::now();
    loop {
        let leaders: Vec<Option<u64>> = (1..=3)
            .map(|id| c.status(id).and_then(|s| s["leader_id"].as_u64()))
            .collect();
        if let Some(l) = leaders[0] {
            if leaders.iter().all(|x| *x == Some(l))
                && c.status(l).is_some_and(|s| s["writable"] == true)
            {
                return l;
            }
        }
        assert!(
            started.elapsed() < ELECTION,
            "no agreed writable leader within {ELECTION:?} ({leaders:?}):\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `key` through the leader (retrying across an election) and waits until every node
/// reads it locally.
fn write_everywhere(c: &Cluster, key: &str, value: &[u8]) {
    let started = Instant::now();
    loop {
        let leader = writable_leader(c);
        let put = c.put(leader, key, value).unwrap();
        if put.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < ELECTION,
            "write of {key} refused: {} {}",
            put.status,
            String::from_utf8_lossy(&put.body)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for id in 1..=3 {
        let started = Instant::now();
        loop {
            let got = c.get(id, key, "local").unwrap();
            if got.status == 200 && got.body == value {
                break;
            }
            assert!(
                started.elapsed() < SETTLE,
                "n{id} did not apply {key}:\n{}",
                c.all_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until every node's state digest is taken at the same applied index, and checks that
/// they are equal there.
fn digests_agree(c: &Cluster) {
    let started = Instant::now();
    loop {
        let digests: Vec<Value> = (1..=3)
            .filter_map(|id| {
                let node = &c.nodes[(id - 1) as usize];
                let answer = http(&node.socket, "GET", "/v1/status?digest=true", b"").ok()?;
                (answer.status == 200).then(|| answer.json()["digest"].clone())
            })
            .collect();
        if digests.len() == 3
            && digests
                .iter()
                .all(|d| d["applied_index"] == digests[0]["applied_index"])
        {
            assert_eq!(digests[0], digests[1], "n1 and n2 diverge");
            assert_eq!(digests[0], digests[2], "n1 and n3 diverge");
            return;
        }
        assert!(
            started.elapsed() < SETTLE,
            "no common applied index within {SETTLE:?}: {digests:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts a 409 `cluster_version_too_old` that names both versions.
fn assert_too_old(answer: &crate::support::Answer, what: &str) {
    assert_eq!(
        answer.status,
        409,
        "{what}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = answer.json();
    assert_eq!(body["error"], "cluster_version_too_old", "{what}: {body}");
    assert_eq!(body["needed_version"], 3, "{what}: {body}");
    assert_eq!(body["cluster_version"], 2, "{what}: {body}");
}

#[test]
fn a_node_of_the_older_version_holds_the_cluster_at_2_until_upgraded_and_a_downgrade_lowers_it() {
    let mut c = Cluster::init(3, "versions", TEST_SETTINGS);
    let old = 3;
    c.start(1);
    c.start(2);
    c.start_with_env(old, &[(SWITCH, "2".to_string())]);

    // Mixed: cluster version 2 everywhere; the old node's links speak regent/2.
    wait_cluster_version(&c, 2);
    let s = c.status(old).unwrap();
    assert_eq!(s["version"]["wire"]["max"], 2, "{s}");
    assert_eq!(s["version"]["wire"]["min"], 2, "{s}");
    let s = c.status(1).unwrap();
    assert_eq!(s["version"]["wire"]["max"], 3, "{s}");
    wait_status(&c, 1, "n3's link at regent/2", SETTLE, |s| {
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == old && m["wire_version"] == 2)
    });
    write_everywhere(&c, "mixed", b"one");
    let sockets: Vec<std::path::PathBuf> = c.nodes.iter().map(|n| n.socket.clone()).collect();
    let socket = |id: u64| sockets[(id - 1) as usize].clone();

    // Hand-overs work across the versions: to the old node (it gets a TimeoutNow without the
    // cause) and back from it (its plain TimeoutNow reads as a hand-over).
    let leader = writable_leader(&c);
    if leader != old {
        let to_old = http(
            &socket(leader),
            "POST",
            &format!("/v1/admin/switchover?to={old}"),
            b"",
        )
        .unwrap();
        assert_eq!(
            to_old.status,
            200,
            "switchover to the old node: {:?}",
            to_old.json()
        );
    }
    wait_status(&c, old, "the old node writable", SETTLE, |s| {
        s["writable"] == true
    });
    let back = http(&socket(old), "POST", "/v1/admin/switchover?to=1", b"").unwrap();
    assert_eq!(
        back.status,
        200,
        "switchover from the old node: {:?}",
        back.json()
    );
    wait_status(&c, 1, "n1 writable", SETTLE, |s| s["writable"] == true);

    // Version-3 requests are refused, on the leader and on a follower.
    let leader = writable_leader(&c);
    let pause = http(
        &socket(leader),
        "POST",
        "/v1/admin/pause?reason=upgrade",
        b"",
    )
    .unwrap();
    assert_too_old(&pause, "pause on the leader");
    let backup = http(&socket(leader), "GET", "/v1/admin/backup", b"").unwrap();
    assert_too_old(&backup, "backup");
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let forwarded = http(&socket(follower), "PUT", "/v1/kv/f?forward=true", b"x").unwrap();
    assert_too_old(&forwarded, "a forwarded write");
    // The CLI says so too, and `regent version` shows both versions.
    let (ok, out, err) = regent_at(&socket(leader), &["pause"]);
    assert!(
        !ok && format!("{out}{err}").contains("cluster_version_too_old"),
        "{out}{err}"
    );
    let (ok, out, err) = regent_at(&socket(old), &["version"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("wire and command versions 2..=3"), "{out}");
    assert!(out.contains("wire 2..=2, cluster_version 2"), "{out}");
    digests_agree(&c);

    // The upgrade: the old node restarts on the new version.
    c.stop(old);
    c.start(old);
    wait_cluster_version(&c, 3);
    write_everywhere(&c, "upgraded", b"two");
    let leader = writable_leader(&c);
    let pause = http(
        &socket(leader),
        "POST",
        "/v1/admin/pause?reason=upgraded",
        b"",
    )
    .unwrap();
    assert_eq!(
        pause.status,
        200,
        "{}",
        String::from_utf8_lossy(&pause.body)
    );
    for id in 1..=3 {
        wait_status(&c, id, "the pause", SETTLE, |s| s["paused"] == true);
    }
    let resume = http(&socket(leader), "POST", "/v1/admin/resume", b"").unwrap();
    assert_eq!(
        resume.status,
        200,
        "{}",
        String::from_utf8_lossy(&resume.body)
    );
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let forwarded = http(&socket(follower), "PUT", "/v1/kv/f?forward=true", b"x").unwrap();
    assert_eq!(
        forwarded.status,
        200,
        "{}",
        String::from_utf8_lossy(&forwarded.body)
    );
    let (ok, out, err) = regent_at(&socket(old), &["version"]);
    assert!(
        ok && out.contains("wire 2..=3, cluster_version 3"),
        "{out}{err}"
    );
    digests_agree(&c);

    // The downgrade: a follower restarts as the older version; the leader lowers the cluster
    // version, and version-3 requests are refused again.
    let leader = writable_leader(&c);
    let down = (1..=3).find(|&id| id != leader).unwrap();
    c.stop(down);
    c.start_with_env(down, &[(SWITCH, "2".to_string())]);
    wait_cluster_version(&c, 2);
    write_everywhere(&c, "downgraded", b"three");
    let leader = writable_leader(&c);
    let pause = http(&socket(leader), "POST", "/v1/admin/pause", b"").unwrap();
    assert_too_old(&pause, "pause after the downgrade");
    digests_agree(&c);

    // Upgraded again, then the leader itself restarts as the older version: whichever node
    // leads next (the older one included, which cannot lower the record), every node shows 2.
    c.stop(down);
    c.start(down);
    wait_cluster_version(&c, 3);
    let leader = writable_leader(&c);
    c.stop(leader);
    c.start_with_env(leader, &[(SWITCH, "2".to_string())]);
    wait_cluster_version(&c, 2);
    write_everywhere(&c, "leader-downgraded", b"four");
    digests_agree(&c);
    for id in 1..=3 {
        c.stop(id);
    }
}

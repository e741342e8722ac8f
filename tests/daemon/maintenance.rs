//! Maintenance on real processes: `regent pause` / `resume` (replicated, shown in the status,
//! the leadership watch and the metrics; an unhealthy host, SIGTERM and kill -9 move nothing
//! while paused), a pause's TTL, `switchover --force`, and `regent drain` / `undrain`.
//!
//! Timing: every wait polls against a generous deadline; nothing asserts a sub-second duration.

use crate::support::{http, regent_at, wait_status, Cluster, Feed, TEST_SETTINGS};
use serde_json::Value;
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(20);

fn metric(c: &Cluster, id: u64, name: &str) -> Option<String> {
    let answer = http(&c.nodes[(id - 1) as usize].socket, "GET", "/metrics", b"").ok()?;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .map(|l| l[name.len() + 1..].to_string())
}

fn regent(c: &Cluster, id: u64, args: &[&str]) -> String {
    let (ok, out, err) = regent_at(&c.nodes[(id - 1) as usize].socket, args);
    assert!(ok, "regent {args:?} on n{id}: {out}{err}\n{}", c.all_logs());
    out
}

/// The node that leads in the eyes of every running node, once they agree.
fn wait_leader_other_than(c: &Cluster, except: u64, running: &[u64]) -> u64 {
    let started = Instant::now();
    loop {
        let leaders: Vec<u64> = running
            .iter()
            .filter_map(|&id| c.status(id))
            .filter(|s| s["role"] == "leader")
            .map(|s| s["node_id"].as_u64().unwrap())
            .collect();
        if let [l] = leaders[..] {
            if l != except {
                return l;
            }
        }
        assert!(
            started.elapsed() < ELECTION,
            "no leader other than n{except} within {ELECTION:?}:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_pause_shows_everywhere_and_holds_leadership_through_an_unhealthy_host_until_resumed() {
    let extra = format!(
        "{TEST_SETTINGS}host_health:\n  exec: test ! -e host-down\n  interval_ms: 1000\n  timeout_ms: 1000\n  failures: 2\n  successes: 1\n"
    );
    let mut c = Cluster::init(3, "pause", &extra);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    assert_eq!(c.status(leader).unwrap()["paused"], false);
    assert_eq!(metric(&c, leader, "regent_paused").as_deref(), Some("0"));
    let mut watch = Feed::open(
        &c.nodes[(leader - 1) as usize].socket,
        "/v1/leadership/watch",
        Some(Duration::from_secs(30)),
    )
    .unwrap();

    // Asked of a follower: relayed to the leader, like a switchover.
    let said = regent(
        &c,
        follower,
        &["pause", "--ttl-s", "600", "--reason", "kernel upgrade"],
    );
    assert!(said.contains("paused: true"), "{said}");
    for id in 1..=3 {
        wait_status(&c, id, "the pause", ELECTION, |s| {
            s["paused"] == true
                && s["pause"]["reason"] == "kernel upgrade"
                && s["pause"]["holder"] == leader
                && s["pause"]["until_ms"].as_u64().is_some()
        });
    }
    assert_eq!(metric(&c, leader, "regent_paused").as_deref(), Some("1"));
    let table = regent(&c, follower, &["status"]);
    assert!(
        table.contains("PAUSED") && table.contains("kernel upgrade"),
        "{table}"
    );
    loop {
        let line = watch.next_line().unwrap().expect("the watch ended");
        if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
            if v["paused"] == true {
                assert_eq!(v["writable"], true, "the holder keeps serving: {v}");
                break;
            }
        }
    }

    // An unhealthy host moves nothing while paused.
    std::fs::write(c.nodes[(leader - 1) as usize].dir.join("host-down"), b"").unwrap();
    wait_status(&c, leader, "the unhealthy host", ELECTION, |s| {
        s["host_healthy"] == false
    });
    std::thread::sleep(Duration::from_secs(3));
    let s = c.status(leader).unwrap();
    assert_eq!(s["role"], "leader", "leadership moved while paused: {s}");
    assert_eq!(s["writable"], true, "{s}");
    // A plain switchover is refused while paused.
    let (ok, _, err) = regent_at(
        &c.nodes[(leader - 1) as usize].socket,
        &["switchover", "--to", &follower.to_string()],
    );
    assert!(!ok && err.contains("paused"), "{err}");

    // Resumed: the unhealthy leader hands over.
    regent(&c, leader, &["resume"]);
    let new = c.wait_writable_other_than(leader, ELECTION);
    assert_ne!(new, leader);
    for id in 1..=3 {
        wait_status(&c, id, "the resume", ELECTION, |s| s["paused"] == false);
    }
    assert_eq!(metric(&c, new, "regent_paused").as_deref(), Some("0"));
}

#[test]
fn a_leader_killed_while_paused_leaves_a_leader_that_is_not_writable_until_a_forced_switchover() {
    let mut c = Cluster::init(3, "pause-kill", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    regent(&c, leader, &["pause", "--reason", "hands off"]);
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &others {
        wait_status(&c, id, "the pause", ELECTION, |s| s["paused"] == true);
    }
    c.kill(leader);
    let new = wait_leader_other_than(&c, leader, &others);
    // Leader, but it claims no writability while paused; nor does anyone else.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        for &id in &others {
            let s = c.status(id).unwrap();
            assert_eq!(s["writable"], false, "writable while paused: {s}");
            assert_eq!(s["paused"], true, "{s}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.status(new).unwrap()["role"], "leader");
    assert_eq!(metric(&c, new, "regent_writable").as_deref(), Some("0"));

    // The operator decides: the other survivor takes over and is writable.
    let target = *others.iter().find(|&&id| id != new).unwrap();
    let (ok, out, err) = regent_at(
        &c.nodes[(new - 1) as usize].socket,
        &["switchover", "--to", &target.to_string()],
    );
    assert!(!ok, "a plain switchover while paused: {out}");
    assert!(err.contains("paused"), "{err}");
    regent(
        &c,
        new,
        &["switchover", "--to", &target.to_string(), "--force"],
    );
    let writable = c.wait_writable_other_than(leader, ELECTION);
    assert_eq!(writable, target);
    let s = c.status(target).unwrap();
    assert_eq!(s["paused"], true, "still paused: {s}");
    assert_eq!(s["pause"]["holder"], target, "{s}");
}

#[test]
fn sigterm_while_paused_hands_nothing_over_and_resume_makes_the_new_leader_writable() {
    let mut c = Cluster::init(3, "pause-stop", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    regent(&c, leader, &["pause"]);
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &others {
        wait_status(&c, id, "the pause", ELECTION, |s| s["paused"] == true);
    }
    c.stop(leader);
    assert!(
        c.nodes[(leader - 1) as usize]
            .logs()
            .contains("stopping while paused: no hand-over"),
        "{}",
        c.all_logs()
    );
    let new = wait_leader_other_than(&c, leader, &others);
    std::thread::sleep(Duration::from_secs(2));
    let s = c.status(new).unwrap();
    assert_eq!(
        (s["writable"].clone(), s["paused"].clone()),
        (false.into(), true.into()),
        "{s}"
    );
    regent(&c, new, &["resume"]);
    assert_eq!(c.wait_writable_other_than(leader, ELECTION), new);
}

#[test]
fn a_pause_with_a_ttl_ends_by_itself() {
    let mut c = Cluster::init(3, "pause-ttl", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    // Over the API itself.
    let answer = http(
        &c.nodes[(leader - 1) as usize].socket,
        "POST",
        "/v1/admin/pause?ttl_s=2&reason=ttl%20test",
        b"",
    )
    .unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["paused"], true);
    let s = c.status(leader).unwrap();
    assert_eq!(s["pause"]["reason"], "ttl test", "{s}");
    let (at, until) = (
        s["pause"]["at_ms"].as_u64(),
        s["pause"]["until_ms"].as_u64(),
    );
    assert_eq!(until.unwrap() - at.unwrap(), 2000, "{s}");
    for id in 1..=3 {
        wait_status(&c, id, "the pause", ELECTION, |s| s["paused"] == true);
    }
    // No writes meanwhile: the leader itself ends the pause when its clock passes the TTL.
    for id in 1..=3 {
        wait_status(&c, id, "the pause's end", Duration::from_secs(40), |s| {
            s["paused"] == false && s["pause"].is_null()
        });
    }
    assert_eq!(metric(&c, leader, "regent_paused").as_deref(), Some("0"));
}

#[test]
fn a_drained_leader_hands_over_and_the_drained_node_never_leads_until_undrained() {
    let mut c = Cluster::init(3, "drain", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    regent(&c, follower, &["drain", &leader.to_string()]);
    let new = c.wait_writable_other_than(leader, ELECTION);
    for id in 1..=3 {
        wait_status(&c, id, "the drain", ELECTION, |s| {
            s["drained"] == serde_json::json!([leader])
        });
    }
    assert_eq!(metric(&c, leader, "regent_drained").as_deref(), Some("1"));
    let table = regent(&c, new, &["status"]);
    assert!(table.contains(&format!("drained: {leader}")), "{table}");
    // A switchover to it is refused.
    let (ok, _, err) = regent_at(
        &c.nodes[(new - 1) as usize].socket,
        &["switchover", "--to", &leader.to_string()],
    );
    assert!(!ok && err.contains("drained"), "{err}");
    // The new leader dies: the third node leads, never the drained one.
    c.kill(new);
    let third = (1..=3).find(|&id| id != leader && id != new).unwrap();
    assert_eq!(c.wait_writable_other_than(new, ELECTION), third);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let s = c.status(leader).unwrap();
        assert_ne!(s["role"], "leader", "the drained node leads: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.start(new);
    regent(&c, third, &["undrain", &leader.to_string()]);
    wait_status(&c, leader, "the undrain", ELECTION, |s| {
        s["drained"] == serde_json::json!([])
    });
    regent(&c, third, &["switchover", "--to", &leader.to_string()]);
    let (back, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(back, leader, "undrained, it may lead again");
}

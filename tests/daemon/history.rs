//! The failover history on real processes: the first election, `regent switchover`, a SIGTERM
//! of the leader and a kill -9 each leave one record (term, leader, previous leader, cause,
//! time) that every node serves alike from `GET /v1/history` and `regent history`; `limit`
//! and `history.keep` bound what is answered and kept.
//!
//! Timing: every wait polls against a generous deadline; nothing asserts a sub-second duration.

use crate::support::{http, regent_at, Cluster, TEST_SETTINGS};
use serde_json::Value;
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(30);

/// Node `id`'s answer to `GET /v1/history?limit=N` (`None`: not answered with 200).
fn history(c: &Cluster, id: u64, limit: u32) -> Option<Value> {
    let socket = &c.nodes[(id - 1) as usize].socket;
    let answer = http(socket, "GET", &format!("/v1/history?limit={limit}"), b"").ok()?;
    (answer.status == 200).then(|| answer.json())
}

fn records(c: &Cluster, id: u64) -> Vec<Value> {
    history(c, id, 1000)
        .and_then(|h| h["history"].as_array().cloned())
        .unwrap_or_default()
}

/// Polls node `id` until its newest record is of a term above `after`; returns that record.
fn wait_record_after(c: &Cluster, id: u64, after: u64) -> Value {
    let started = Instant::now();
    loop {
        if let Some(last) = records(c, id).last() {
            if last["term"].as_u64().unwrap() > after {
                return last.clone();
            }
        }
        assert!(
            started.elapsed() < ELECTION,
            "n{id}: no record after term {after} within {ELECTION:?} (history: {:?}):\n{}",
            records(c, id),
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls until every node of `running` answers the same records; returns them.
fn wait_same_everywhere(c: &Cluster, running: &[u64]) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let all: Vec<Vec<Value>> = running.iter().map(|&id| records(c, id)).collect();
        if !all[0].is_empty() && all.windows(2).all(|w| w[0] == w[1]) {
            return all[0].clone();
        }
        assert!(
            started.elapsed() < ELECTION,
            "the nodes {running:?} disagree on the history: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn regent(c: &Cluster, id: u64, args: &[&str]) -> String {
    let (ok, out, err) = regent_at(&c.nodes[(id - 1) as usize].socket, args);
    assert!(ok, "regent {args:?} on n{id}: {out}{err}\n{}", c.all_logs());
    out
}

/// The newest record must say who leads now, who led before and why.
fn assert_record(record: &Value, leader: u64, previous: Option<u64>, cause: &str) {
    assert_eq!(record["leader"], leader, "{record}");
    assert_eq!(record["previous_leader"].as_u64(), previous, "{record}");
    assert_eq!(record["cause"], cause, "{record}");
    assert!(
        record["time_ms"].as_u64().unwrap() > 1_600_000_000_000,
        "{record}"
    );
    assert!(record["time"].as_str().unwrap().ends_with('Z'), "{record}");
}

#[test]
fn every_leadership_change_is_recorded_with_its_cause_and_served_alike_by_every_node() {
    let extra = format!("{TEST_SETTINGS}history:\n  keep: 4\n");
    let mut c = Cluster::init(3, "history", &extra);
    c.start_all();
    let (first, _) = c.wait_writable_leader(ELECTION);

    // The first leader: an election, nobody before it.
    let record = wait_record_after(&c, first, 0);
    assert_record(&record, first, None, "election");
    let mut term = record["term"].as_u64().unwrap();
    let same = wait_same_everywhere(&c, &[1, 2, 3]);
    assert_eq!(same.len(), 1, "{same:?}");

    // An operator's switchover.
    let to = (1..=3).find(|&id| id != first).unwrap();
    regent(&c, first, &["switchover", "--to", &to.to_string()]);
    let record = wait_record_after(&c, to, term);
    assert_record(&record, to, Some(first), "switchover");
    term = record["term"].as_u64().unwrap();

    // SIGTERM of the leader: it hands over first.
    assert_eq!(c.stop(to), Some(0));
    let running: Vec<u64> = (1..=3).filter(|&id| id != to).collect();
    let third = c.wait_writable_other_than(to, ELECTION);
    let record = wait_record_after(&c, third, term);
    assert_record(&record, third, Some(to), "sigterm");
    term = record["term"].as_u64().unwrap();
    wait_same_everywhere(&c, &running);
    c.start(to);

    // kill -9 of the leader: an election, naming the dead leader.
    c.kill(third);
    let fourth = c.wait_writable_other_than(third, ELECTION);
    let record = wait_record_after(&c, fourth, term);
    assert_record(&record, fourth, Some(third), "election");
    term = record["term"].as_u64().unwrap();
    c.start(third);

    // One more switchover: five changes, and history.keep: 4 keeps the newest four.
    let fifth = (1..=3).find(|&id| id != fourth).unwrap();
    regent(&c, fourth, &["switchover", "--to", &fifth.to_string()]);
    let record = wait_record_after(&c, fifth, term);
    assert_record(&record, fifth, Some(fourth), "switchover");
    let kept = wait_same_everywhere(&c, &[1, 2, 3]);
    assert_eq!(kept.len(), 4, "history.keep: 4 ({kept:?})");
    let terms: Vec<u64> = kept.iter().map(|r| r["term"].as_u64().unwrap()).collect();
    assert!(
        terms.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {terms:?}"
    );
    assert_eq!(*terms.last().unwrap(), record["term"].as_u64().unwrap());
    assert!(
        !kept.iter().any(|r| r["previous_leader"].is_null()),
        "the first election was dropped: {kept:?}"
    );

    // limit: the newest N, oldest first; the answer says which applied index it reflects.
    let two = history(&c, fifth, 2).unwrap();
    assert_eq!(two["history"].as_array().unwrap()[..], kept[2..]);
    assert!(two["applied_index"].as_u64().unwrap() > 0);
    assert_eq!(two["node_id"], fifth);
    let socket = &c.nodes[(fifth - 1) as usize].socket;
    for bad in ["0", "1001", "x", "-1"] {
        let answer = http(socket, "GET", &format!("/v1/history?limit={bad}"), b"").unwrap();
        assert_eq!(answer.status, 400, "limit={bad}");
        let body = answer.json();
        assert_eq!(body["error"], "bad_parameter", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("limit"),
            "{body}"
        );
    }
    let answer = http(socket, "POST", "/v1/history", b"").unwrap();
    assert_eq!(answer.status, 405);

    // `regent history`: a table of the same records, --limit, --json.
    let follower = (1..=3).find(|&id| id != fifth).unwrap();
    let table = regent(&c, follower, &["history"]);
    for cause in ["switchover", "sigterm", "election"] {
        assert!(table.contains(cause), "{table}");
    }
    assert!(table.starts_with("TERM"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains('Z')).count(),
        4,
        "{table}"
    );
    let limited = regent(&c, follower, &["history", "--limit", "1"]);
    assert_eq!(
        limited.lines().filter(|l| l.contains('Z')).count(),
        1,
        "{limited}"
    );
    let json: Value = serde_json::from_str(&regent(&c, follower, &["history", "--json"])).unwrap();
    assert_eq!(json["history"].as_array().unwrap().len(), 4);
}

#[test]
fn an_unhealthy_hosts_hand_over_is_recorded_as_health() {
    let extra = format!(
        "{TEST_SETTINGS}host_health:\n  exec: test ! -e host-down\n  interval_ms: 500\n  timeout_ms: 500\n  failures: 2\n  successes: 1\n"
    );
    let mut c = Cluster::init(3, "history-health", &extra);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let term = wait_record_after(&c, leader, 0)["term"].as_u64().unwrap();
    std::fs::write(c.nodes[(leader - 1) as usize].dir.join("host-down"), b"").unwrap();
    let next = c.wait_writable_other_than(leader, ELECTION);
    let record = wait_record_after(&c, next, term);
    assert_record(&record, next, Some(leader), "health");
    wait_record_after(&c, leader, term);
    let table = regent(&c, leader, &["history"]);
    assert!(table.contains("health"), "{table}");
}

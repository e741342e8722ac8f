//! Who may lead, on real processes: `election: {role, priority}` per node, the roles every
//! node learns (the status' `members[].election`), nofailover and witness nodes that never
//! lead, a member change that would leave no candidate refused, and `prefer_priority` moving
//! leadership to the highest priority after its hold-down, without flapping.
//!
//! Timing: every wait polls against a generous deadline; nothing asserts a sub-second duration.

use crate::support::{regent_at, wait_status, Cluster, TEST_SETTINGS};
use serde_json::Value;
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(20);

/// Appends `yaml` to node `id`'s configuration file.
fn configure(c: &Cluster, id: u64, yaml: &str) {
    let path = &c.nodes[(id - 1) as usize].config;
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(yaml);
    std::fs::write(path, text).unwrap();
}

/// The role and priority node `id`'s status gives member `member`.
fn member_election(status: &Value, member: u64) -> Option<(String, u64)> {
    let m = status["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == member)?;
    Some((
        m["election"]["role"].as_str()?.to_string(),
        m["election"]["priority"].as_u64()?,
    ))
}

fn writable(c: &Cluster, id: u64) -> bool {
    c.status(id).is_some_and(|s| s["writable"] == true)
}

#[test]
fn nofailover_and_witness_nodes_never_lead_and_every_node_knows_every_role() {
    let mut c = Cluster::init(3, "roles", TEST_SETTINGS);
    configure(&c, 1, "election:\n  role: nofailover\n");
    configure(&c, 2, "election:\n  role: witness\n  priority: 3\n");
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(leader, 3, "the only candidate leads");
    // Every node learns every role: the records are committed and applied everywhere.
    for id in 1..=3 {
        wait_status(&c, id, "every member's role", ELECTION, |s| {
            member_election(s, 1) == Some(("nofailover".into(), 1))
                && member_election(s, 2) == Some(("witness".into(), 3))
                && member_election(s, 3) == Some(("candidate".into(), 1))
        });
    }
    let s1 = c.status(1).unwrap();
    assert_eq!(s1["election"]["role"], "nofailover");
    assert_eq!(
        s1["election"]["ready"], false,
        "a nofailover node is never ready to lead"
    );
    let s3 = c.status(3).unwrap();
    assert_eq!(s3["election"]["ready"], true);
    let eligible: Vec<bool> = s3["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["election"]["eligible"] == true)
        .collect();
    assert_eq!(eligible, [false, false, true]);
    // Removing the only candidate is refused: no voter left could lead.
    let (ok, out, err) = regent_at(
        &c.nodes[2].socket,
        &["members", "remove", "3", "--no-forward"],
    );
    assert!(!ok, "removing the only candidate succeeded: {out}{err}");
    assert!(
        err.contains("may lead") || out.contains("may lead"),
        "the refusal names the rule: {out}{err}"
    );
    // The candidate's regent dies: the others keep voting, but neither becomes writable.
    c.kill(3);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert!(
            !writable(&c, 1) && !writable(&c, 2),
            "a non-candidate is writable:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Back, it leads again (whoever led meanwhile handed over).
    c.start(3);
    let (leader, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(leader, 3);
    assert!(c.put(3, "after", b"v").unwrap().status == 200);
}

#[test]
fn prefer_priority_moves_leadership_to_the_highest_priority_and_keeps_it_there() {
    let mut c = Cluster::init(3, "priority", TEST_SETTINGS);
    for (id, priority) in [(1, 1), (2, 1), (3, 9)] {
        configure(
            &c,
            id,
            &format!("election:\n  priority: {priority}\n  prefer_priority: true\n  hold_down_ms: 2000\n"),
        );
    }
    // Without node 3, one of the others leads.
    c.start(1);
    c.start(2);
    let (first, _) = c.wait_writable_leader(ELECTION);
    assert_ne!(first, 3);
    // Node 3 joins: once it is caught up and the leader has led for the hold-down, it takes
    // over.
    c.start(3);
    wait_status(&c, 3, "n3 leading and writable", ELECTION, |s| {
        s["role"] == "leader" && s["writable"] == true
    });
    let term = c.status(3).unwrap()["term"].as_u64().unwrap();
    // No flapping: it keeps leading in the same term.
    std::thread::sleep(Duration::from_secs(5));
    let s = c.status(3).unwrap();
    assert_eq!(s["role"], "leader", "n3 kept leadership:\n{}", c.all_logs());
    assert_eq!(
        s["term"].as_u64().unwrap(),
        term,
        "no election since:\n{}",
        c.all_logs()
    );
    // It dies: another leads; back, it takes leadership over again.
    c.kill(3);
    let other = c.wait_writable_other_than(3, ELECTION);
    assert_ne!(other, 3);
    c.start(3);
    wait_status(&c, 3, "n3 leading again", ELECTION, |s| {
        s["role"] == "leader" && s["writable"] == true
    });
}

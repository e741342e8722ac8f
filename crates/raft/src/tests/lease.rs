//! The leader lease (dissertation §6.4.1; DESIGN.md "Lease safety").
//!
//! ```text
//! lease deadline = start of the newest heartbeat round a quorum answered
//!                  + election_timeout_min × (1 − clock_drift_max), here 90 ms.
//! ```
//!
//! Every voter that answered the round heard from the leader after it started, so it refuses
//! votes until at least election_timeout_min after that start. The host may write while the
//! leader holds the lease and has applied its own term's no-op.

use super::*;

#[test]
fn a_new_leader_is_writable_once_a_quorum_answered_and_its_no_op_applied() {
    let elected = AFTER_TIMEOUT;
    let mut node = candidate(3, 2, &[]);
    step(&mut node, msg(2, 1, 2, vote_response(true)), elected);
    let s = node.status(elected);
    assert_eq!(s.role, Role::Leader);
    assert_eq!((s.lease_deadline, s.writable), (None, false));

    // A follower answers round 1 (which started at the election): lease = start + 90 ms. The
    // no-op is neither durable on the leader nor committed yet.
    let answered = elected + 5 * MS;
    step(&mut node, msg(2, 1, 2, append_ok(1)), answered);
    let s = node.status(answered);
    assert_eq!(s.lease_deadline, Some(elected + LEASE));
    assert_eq!((s.commit_index, s.writable), (i(0), false));

    // The leader writes its no-op: committed, but not yet applied.
    let ready = node.ready().unwrap();
    assert_eq!(ready.batch.entries.len(), 1);
    node.advance(ready.number);
    let s = node.status(answered);
    assert_eq!(
        (s.commit_index, s.applied_index, s.writable),
        (i(1), i(0), false)
    );

    // Applied: writable, until the lease ends.
    let ready = node.ready().unwrap();
    assert_eq!(ready.batch.committed.len(), 1);
    node.advance(ready.number);
    assert!(node.status(answered).writable);
    assert!(node.status(elected + LEASE - 1).writable);
    assert!(!node.status(elected + LEASE).writable);

    // An answer to the next round, started at +10 ms, extends the lease from that start; a late
    // answer to round 1 changes nothing.
    node.tick(elected + HEARTBEAT_MS * MS);
    assert_eq!(
        node.take_messages(),
        vec![msg(1, 2, 2, heartbeat(1, 2)), msg(1, 3, 2, heartbeat(0, 2))],
        "the commit index sent is capped by what each follower is known to hold"
    );
    step(
        &mut node,
        msg(3, 1, 2, heartbeat_response(1)),
        elected + 15 * MS,
    );
    assert_eq!(
        node.status(elected + 15 * MS).lease_deadline,
        Some(elected + LEASE)
    );
    step(
        &mut node,
        msg(3, 1, 2, heartbeat_response(2)),
        elected + 20 * MS,
    );
    let s = node.status(elected + 20 * MS);
    assert_eq!(s.lease_deadline, Some(elected + HEARTBEAT_MS * MS + LEASE));
    assert!(s.writable);
}

#[test]
fn an_isolated_leader_stops_being_writable_before_anyone_else_leads() {
    // Writable exactly until the deadline; the followers elect someone else only after it.
    let mut net = Network::new(3);
    net.elect(1);
    net.run_ms(25);
    assert!(net.status(1).writable);
    // The last round every follower answered started at the last heartbeat.
    let last_round = net
        .delivered
        .iter()
        .filter(|(_, m)| m.from == n(1) && matches!(m.body, MessageBody::Heartbeat { .. }))
        .map(|(at, _)| *at)
        .max()
        .unwrap();
    let deadline = last_round + LEASE;
    assert_eq!(net.status(1).lease_deadline, Some(deadline));

    net.isolate(1);
    let mut new_leader_at = None;
    while new_leader_at.is_none() {
        net.run_ms(1);
        let writable = net.status(1).writable;
        assert_eq!(writable, net.now < deadline, "at {} ms", net.now / MS);
        if net.leaders().iter().any(|&id| id != n(1)) {
            new_leader_at = Some(net.now);
        }
        assert!(net.now < deadline + 1000 * MS, "no new leader");
    }
    assert!(new_leader_at.unwrap() >= deadline);
    assert_ne!(net.status(1).role, Role::Leader, "check-quorum deposed it");
}

#[test]
fn a_deposed_leader_refuses_votes_until_its_advertised_deadline() {
    // The lease counts the leader itself among the voters that refuse to vote for anyone else
    // until a minimum election timeout after each round started (`update_lease` credits it
    // with every round). That refusal must outlive its leadership: in a cluster of three where
    // n2 answered the round, the old leader's vote for n3, which answered nothing, completes a
    // quorum that elects n3 while the old lease still runs.
    let mut failures = Vec::new();
    for trigger in ["an answer with a higher term", "a stalled disk"] {
        let mut node = leader(3, 2, &[]);
        let mut now = AFTER_TIMEOUT;
        step(&mut node, msg(2, 1, 2, append_ok(1)), now);
        persist(&mut node);
        let advertised;
        if trigger == "a stalled disk" {
            node.propose(b"x".to_vec(), now).unwrap();
            let hanging = node.ready().expect("the proposal to write");
            // n2 keeps answering heartbeats, which renews the lease, until the leader gives up
            // on its disk (persist_stall_max_ms).
            loop {
                let before = node.status(now);
                now += HEARTBEAT_MS * MS;
                node.tick(now);
                if node.status(now).role != Role::Leader {
                    advertised = before.lease_deadline.expect("a lease");
                    // It tells every voter why it went quiet (for the next leader's record).
                    let told: Vec<u64> = (node.take_messages().into_iter())
                        .filter(|m| m.body == MessageBody::StallStepDown && m.term == before.term)
                        .map(|m| m.to.0)
                        .collect();
                    assert_eq!(told, [2, 3]);
                    break;
                }
                for m in node.take_messages() {
                    if let (MessageBody::Heartbeat { round, .. }, 2) = (m.body, m.to.0) {
                        step(&mut node, msg(2, 1, 2, heartbeat_response(round)), now);
                    }
                }
            }
            node.advance(hanging.number); // The disk recovers.
        } else {
            now += MS;
            advertised = node.status(now).lease_deadline.expect("a lease");
            // n3, cut off from the leader for a while, campaigned in term 3 without pre-vote.
            step(&mut node, msg(3, 1, 3, heartbeat_response(0)), now);
        }
        let s = node.status(now);
        assert_eq!(s.role, Role::Follower, "{trigger}");
        assert!(now < advertised, "{trigger}: the lease is still running");

        let refuses = node.sticky_refuses_votes(now);
        let term = s.term.0 + 1;
        let last = s.last_index.0;
        step(&mut node, msg(3, 1, term, vote_request(last, 2)), now);
        let granted = persist(&mut node).contains(&msg(1, 3, term, vote_response(true)));
        if granted || !refuses {
            failures.push(format!(
                "after {trigger}: sticky_refuses_votes {refuses}, grants n3 a vote {granted}, \
                 {} ms before the end of its lease",
                (advertised - now) / MS
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn no_one_leads_before_a_deposed_leaders_advertised_deadline() {
    // Status::lease_deadline: "until when this leader is sure no other node can be leader".
    // The whole cluster, with pre-vote and check-quorum on: n1's disk hangs on a proposal that
    // n2 and n3 store and commit; then n3 is cut off from n1's messages and from n2. n2 keeps
    // answering n1's heartbeats, so n1's lease runs on, until n1 gives up on its disk.
    let mut net = Network::new(3);
    net.elect(1);
    net.run_ms(20);
    net.stall(1);
    let now = net.now;
    let (x, _) = net
        .nodes
        .get_mut(&n(1))
        .unwrap()
        .propose(b"x".to_vec(), now)
        .unwrap();
    net.deliver();
    let stored = (
        net.status(1).commit_index,
        net.status(2).last_index,
        net.status(3).last_index,
    );
    assert_eq!(
        stored,
        (x, x, x),
        "committed by n2 and n3 without n1's disk"
    );
    net.cut.extend([(n(1), n(3)), (n(2), n(3)), (n(3), n(2))]);
    let mut advertised = None;
    while net.status(1).role == Role::Leader {
        advertised = net.status(1).lease_deadline;
        net.now += MS;
        net.tick(&[1, 2]);
        assert!(net.now < 10_000 * MS, "n1 never gave up on its disk");
    }
    let advertised = advertised.expect("n1 had a lease");
    assert!(net.now < advertised);

    // n1's disk recovers and n3 hears from it again. n3, silent for a second, campaigns.
    net.unstall(1);
    net.heal();
    net.cut.extend([(n(2), n(3)), (n(3), n(2))]);
    net.tick(&[3]);
    assert!(
        net.now >= advertised || net.status(3).role != Role::Leader,
        "n3 leads {} ms before the end of n1's lease (writable: {})",
        (advertised - net.now) / MS,
        net.status(3).writable
    );
}

#[test]
fn a_held_stall_step_down_keeps_a_leader_with_a_stalled_disk_until_released() {
    // An operator's pause holds the step-down (`hold_stall_step_down`): the leader keeps
    // leading with its disk stalled, on its followers' acknowledgements; released, it steps
    // down at the next tick.
    let mut node = leader(3, 2, &[]);
    let mut now = AFTER_TIMEOUT;
    step(&mut node, msg(2, 1, 2, append_ok(1)), now);
    persist(&mut node);
    node.hold_stall_step_down(true);
    node.propose(b"x".to_vec(), now).unwrap();
    let hanging = node.ready().expect("the proposal to write");
    // Far past `persist_stall_max_ms`.
    let until = now + 10_000 * MS;
    while now < until {
        now += HEARTBEAT_MS * MS;
        node.tick(now);
        assert_eq!(
            node.status(now).role,
            Role::Leader,
            "stepped down while held"
        );
        for m in node.take_messages() {
            if let (MessageBody::Heartbeat { round, .. }, 2) = (m.body, m.to.0) {
                step(&mut node, msg(2, 1, 2, heartbeat_response(round)), now);
            }
        }
    }
    node.hold_stall_step_down(false);
    now += HEARTBEAT_MS * MS;
    node.tick(now);
    assert_ne!(
        node.status(now).role,
        Role::Leader,
        "released: it steps down"
    );
    node.advance(hanging.number);
}

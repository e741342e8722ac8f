//! Snapshots and compaction: the compaction policy, snapshot requests with their timeout, and
//! installing a snapshot.

use super::*;

#[test]
fn the_policy_asks_for_a_snapshot_and_compact_drops_the_prefix() {
    let mut c = config(1);
    c.compaction_entries_max = 3;
    let mut node = boot(c, restored(1, 1, &[1, 1], 2));
    assert_eq!(
        node.snapshot_due(),
        None,
        "2 applied entries are below the threshold"
    );
    node.tick(AFTER_TIMEOUT);
    persist(&mut node);
    assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);
    assert_eq!(
        node.snapshot_due(),
        Some(i(3)),
        "its no-op is the third applied entry"
    );
    node.compact(i(3));
    assert_eq!(node.snapshot_index(), i(3));
    assert_eq!(node.log_term(i(2)), None, "compacted away");
    assert_eq!(
        node.log_term(i(3)),
        Some(t(2)),
        "the snapshot's term is known"
    );
    assert_eq!(node.snapshot_due(), None);
}

#[test]
fn a_follower_behind_it_gets_one_and_is_asked_again_after_a_timeout() {
    let mut c = config_without_pre_vote(1);
    c.snapshot_timeout_ms = 50;
    let (mut node, now) = streaming_a_snapshot_to_n3(c);
    // Nothing comes back: after the timeout the leader probes, and asks again.
    node.tick(now + 60 * MS);
    persist(&mut node);
    step(
        &mut node,
        msg(3, 1, 2, heartbeat_response(1)),
        now + 61 * MS,
    );
    persist(&mut node);
    assert_eq!(
        node.take_snapshot_requests().len(),
        1,
        "no follower stays in snapshot state forever"
    );
    // The follower installs it: appends resume after the snapshot.
    step(
        &mut node,
        msg(3, 1, 2, MessageBody::SnapshotInstalled { last_index: i(4) }),
        now + 62 * MS,
    );
    persist(&mut node);
    node.propose(vec![7], now + 63 * MS).unwrap();
    let out = persist(&mut node);
    let resumes_after_the_snapshot = |m: &Message| match m.body {
        MessageBody::AppendEntries { prev_log_index, .. } => m.to == n(3) && prev_log_index == i(4),
        _ => false,
    };
    assert!(out.iter().any(resumes_after_the_snapshot));
}

#[test]
fn a_stream_that_keeps_making_progress_is_not_started_again() {
    // The timeout bounds a stall, not the whole transfer: a slow stream whose chunks keep being
    // acknowledged runs for many timeouts, and the leader neither probes nor asks again.
    let mut c = config_without_pre_vote(1);
    c.snapshot_timeout_ms = 50;
    let (mut node, now) = streaming_a_snapshot_to_n3(c);
    let mut at = now;
    for _ in 0..20 {
        at += 30 * MS;
        node.snapshot_progress(n(3), at);
        assert_eq!(node.next_deadline().min(at + 51 * MS), node.next_deadline());
        node.tick(at);
        step(&mut node, msg(3, 1, 2, heartbeat_response(1)), at);
        let out = persist(&mut node);
        assert!(
            !out.iter()
                .any(|m| m.to == n(3) && matches!(m.body, MessageBody::AppendEntries { .. })),
            "at {} ms: the leader probed n3 during a stream in progress",
            (at - now) / MS
        );
        assert!(node.take_snapshot_requests().is_empty());
    }
    // Once it stalls for longer than the timeout, the leader probes and asks again.
    at += 60 * MS;
    node.tick(at);
    persist(&mut node);
    step(&mut node, msg(3, 1, 2, heartbeat_response(1)), at + MS);
    persist(&mut node);
    assert_eq!(node.take_snapshot_requests().len(), 1);
}

#[test]
fn a_failed_stream_is_asked_again_after_one_election_timeout_not_the_snapshot_timeout() {
    // The stream ended in an error (link lost, the follower refused the install): the leader
    // asks again soon, but not at once (a follower that refuses every install is not flooded).
    let mut c = config_without_pre_vote(1);
    c.snapshot_timeout_ms = 60_000;
    let election = c.election_timeout_min_ms * MS;
    let (mut node, now) = streaming_a_snapshot_to_n3(c);
    let failed = now + 10 * MS;
    node.snapshot_failed(n(3), failed);
    assert!(
        node.next_deadline() <= failed + election + 1,
        "the retry is not timed"
    );
    // Before the election timeout: still waiting, nothing asked.
    let early = failed + election / 2;
    node.tick(early);
    step(&mut node, msg(2, 1, 2, heartbeat_response(1)), early);
    step(&mut node, msg(3, 1, 2, heartbeat_response(1)), early);
    persist(&mut node);
    assert!(
        node.take_snapshot_requests().is_empty(),
        "asked again at once"
    );
    // After it: the leader probes n3 and asks for a snapshot again.
    let later = failed + election + MS;
    node.tick(later);
    persist(&mut node);
    step(&mut node, msg(3, 1, 2, heartbeat_response(1)), later + MS);
    persist(&mut node);
    assert_eq!(
        node.take_snapshot_requests().len(),
        1,
        "a failed stream waited for the whole snapshot timeout"
    );
    // A failure reported for a follower that is not waiting for a snapshot changes nothing.
    node.snapshot_failed(n(2), later + 2 * MS);
}

#[test]
fn a_stream_acknowledged_by_the_follower_resumes_appends_without_its_message() {
    // The follower's SnapshotInstalled message is lost, but the stream's own acknowledgement
    // reached the caller: the leader probes after the snapshot at once, not after the timeout.
    let mut c = config_without_pre_vote(1);
    c.snapshot_timeout_ms = 60_000;
    let (mut node, now) = streaming_a_snapshot_to_n3(c);
    node.snapshot_sent(n(3), i(4), now + MS);
    let out = persist(&mut node);
    let probes_after_the_snapshot = |m: &Message| match m.body {
        MessageBody::AppendEntries { prev_log_index, .. } => m.to == n(3) && prev_log_index == i(4),
        _ => false,
    };
    assert!(
        out.iter().any(probes_after_the_snapshot),
        "no probe after the snapshot: {out:?}"
    );
    assert!(node.take_snapshot_requests().is_empty());
    // Its answer confirms the match; appends are pipelined again.
    step(&mut node, msg(3, 1, 2, append_ok(4)), now + 2 * MS);
    persist(&mut node);
    node.propose(vec![7], now + 3 * MS).unwrap();
    let out = persist(&mut node);
    assert!(out.iter().any(probes_after_the_snapshot));
    // An acknowledgement for a follower not waiting for a snapshot changes nothing.
    node.snapshot_sent(n(2), i(4), now + 4 * MS);
    assert!(persist(&mut node)
        .iter()
        .all(|m| !matches!(m.body, MessageBody::AppendEntries { .. }) || m.to != n(2)));
}

#[test]
fn an_install_keeps_the_matching_durable_suffix_and_nothing_else() {
    // A follower whose log holds the snapshot's last entry keeps what follows it.
    let mut node = follower(3, 2, &[1, 1, 2, 2, 2]);
    let members = Membership::new([n(1), n(2), n(3)]);
    node.snapshot_installed(n(2), i(3), t(2), members.clone(), 0);
    assert_eq!(node.snapshot_index(), i(3));
    assert_eq!(node.status(0).last_index, i(5));
    assert_eq!(node.status(0).applied_index, i(3));
    // One whose log disagrees at that index starts over after it.
    let mut node = follower(3, 2, &[1, 1, 1, 1]);
    node.snapshot_installed(n(2), i(3), t(2), members.clone(), 0);
    assert_eq!(node.status(0).last_index, i(3));
    assert_eq!(node.log_term(i(3)), Some(t(2)));
    // A stale snapshot is answered with the commit index, so the leader resumes from there.
    let mut node = follower(3, 2, &[1, 1]);
    node.snapshot_installed(n(2), i(3), t(2), members.clone(), 0);
    persist(&mut node);
    node.snapshot_installed(n(2), i(2), t(1), members, 0);
    let out = persist(&mut node);
    assert!(out
        .iter()
        .any(|m| m.body == MessageBody::SnapshotInstalled { last_index: i(3) }));
}

/// A leader of three (`c` for node 1) that compacted past what n3 holds, once n2 has it all,
/// and has asked for one snapshot stream to n3, of at least index 4; and the time it did.
fn streaming_a_snapshot_to_n3(c: Config) -> (RaftNode, Nanos) {
    let mut node = leader_with(c, 3, 2, &[1, 1, 1]);
    let now = AFTER_TIMEOUT;
    // n2 holds everything; the leader compacts past what n3 has.
    step(&mut node, msg(2, 1, 2, append_ok(4)), now);
    persist(&mut node);
    node.compact(i(4));
    // n3 says its log is empty: the entries it needs are gone.
    step(&mut node, msg(3, 1, 2, append_rejected(3, None, 1)), now);
    persist(&mut node);
    let requests = node.take_snapshot_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!((requests[0].to, requests[0].at_least), (n(3), i(4)));
    (node, now)
}

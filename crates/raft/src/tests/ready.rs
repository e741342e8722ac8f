//! `Ready`: numbered, carrying one `Batch`, acknowledged by its number.

use super::*;

#[test]
fn numbered_from_one_and_acknowledged_by_number() {
    let mut node = follower(3, 1, &[]);
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    let first = node.ready().expect("a vote to persist");
    assert_eq!(first.number, 1);
    assert!(first.needs_write());
    assert_eq!(
        first.batch,
        Batch {
            hard_state: Some(HardState {
                term: t(2),
                vote: Some(n(2)),
                commit: i(0)
            }),
            ..Batch::default()
        }
    );
    assert!(node.ready().is_none(), "one Ready outstanding at a time");
    node.advance(first.number);
    step(
        &mut node,
        msg(2, 1, 2, append(0, 0, vec![entry(2, 1)], 1)),
        AFTER_TIMEOUT,
    );
    let second = node.ready().expect("an entry to persist");
    assert_eq!(second.number, 2);
    assert_eq!(second.batch.entries, vec![entry(2, 1)]);
    assert_eq!(second.batch.committed, vec![entry(2, 1)]);
    node.advance(second.number);
    // Only the soft state changed: a Ready with nothing to write.
    node.tick(10 * AFTER_TIMEOUT);
    let third = node.ready().expect("the role changed");
    assert_eq!(third.number, 3);
    assert!(third.batch.is_empty() && !third.needs_write());
    node.advance(3);
}

#[test]
#[should_panic(expected = "advance(1) while Ready 2 is outstanding")]
fn advancing_another_number_is_a_bug() {
    let mut node = follower(3, 1, &[]);
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    let first = node.ready().unwrap();
    node.advance(first.number);
    step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), AFTER_TIMEOUT);
    let _second = node.ready().unwrap();
    node.advance(first.number);
}

#[test]
#[should_panic(expected = "advance without an outstanding Ready")]
fn advancing_with_none_outstanding_is_a_bug() {
    let mut node = follower(3, 1, &[]);
    node.advance(1);
}

#[test]
fn applicable_entries_are_durable_and_come_after_the_ready_ones() {
    let mut node = follower(3, 1, &[]);
    // Entries 1 and 2 arrive committed with the same message: not durable yet, so they go
    // with the batch that writes them, and nothing is applicable outside it meanwhile.
    step(
        &mut node,
        msg(2, 1, 2, append(0, 0, vec![entry(2, 1), entry(2, 2)], 2)),
        AFTER_TIMEOUT,
    );
    assert!(node.take_applicable().is_empty(), "not durable here yet");
    let ready = node.ready().expect("entries to persist");
    assert_eq!(ready.batch.committed, vec![entry(2, 1), entry(2, 2)]);
    // Entry 3 arrives and is committed while that batch is on the disk: the batch's
    // committed entries apply first, so nothing is handed out before `advance`.
    step(
        &mut node,
        msg(2, 1, 2, append(2, 2, vec![entry(2, 3)], 3)),
        AFTER_TIMEOUT,
    );
    assert!(
        node.take_applicable().is_empty(),
        "the batch's entries apply first"
    );
    node.advance(ready.number);
    assert_eq!(node.status(0).applied_index, i(2));
    // Entry 3 is committed but not durable: it comes with the next batch, not before.
    assert!(node.take_applicable().is_empty());
    let next = node.ready().expect("entry 3 to persist");
    assert_eq!(next.batch.committed, vec![entry(2, 3)]);
    node.advance(next.number);
    // Durable now; the leader commits entry 4, which this node already holds durably.
    step(
        &mut node,
        msg(2, 1, 2, append(3, 2, vec![entry(2, 4)], 3)),
        AFTER_TIMEOUT,
    );
    let write = node.ready().expect("entry 4 to persist");
    assert!(write.batch.committed.is_empty());
    node.advance(write.number);
    step(&mut node, msg(2, 1, 2, heartbeat(4, 1)), AFTER_TIMEOUT);
    let applicable = node.take_applicable();
    assert_eq!(
        applicable,
        vec![entry(2, 4)],
        "committed and durable: applied at once"
    );
    assert_eq!(node.status(0).applied_index, i(4));
    assert!(
        node.take_applicable().is_empty(),
        "each entry is handed out once"
    );
}

#[test]
fn only_entries_a_truncation_or_a_new_term_or_vote_must_sync() {
    let mut node = follower(3, 1, &[]);
    // A vote: durable before the grant goes out.
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    let vote = node.ready().expect("a vote to persist");
    assert!(vote.must_sync && !vote.persisted_messages.is_empty());
    node.advance(vote.number);
    // Entries: durable before the acknowledgement.
    step(
        &mut node,
        msg(2, 1, 2, append(0, 0, vec![entry(2, 1), entry(2, 2)], 0)),
        AFTER_TIMEOUT,
    );
    let write = node.ready().expect("entries to persist");
    assert!(write.must_sync);
    node.advance(write.number);
    // The leader's commit index moves, and nothing else: the hard state changes (its commit)
    // and entries apply, but nothing needs to be durable first.
    step(&mut node, msg(2, 1, 2, heartbeat(2, 1)), AFTER_TIMEOUT);
    let commit = node.ready().expect("the commit index moved");
    assert_eq!(commit.batch.hard_state.map(|hs| hs.commit), Some(i(2)));
    assert!(commit.batch.entries.is_empty() && commit.batch.truncate_from.is_none());
    assert!(!commit.must_sync, "a commit index alone is volatile");
    node.advance(commit.number);
    // A new term from a newer leader must be durable again.
    step(&mut node, msg(3, 1, 3, heartbeat(2, 3)), AFTER_TIMEOUT);
    let term = node.ready().expect("a new term");
    assert_eq!(term.batch.hard_state.map(|hs| hs.term), Some(t(3)));
    assert!(term.must_sync);
}

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

//! Hand-written histories: each a case the checker must get right, with its explanation.

use super::*;

const STEPS: u64 = 10_000_000;

fn w(client: u64, value: u64, invoke: u64, complete: u64) -> Operation {
    Operation {
        client,
        key: 1,
        kind: OpKind::Write { value },
        invoke,
        complete: Some(complete),
    }
}

fn w_unknown(client: u64, value: u64, invoke: u64) -> Operation {
    Operation {
        client,
        key: 1,
        kind: OpKind::Write { value },
        invoke,
        complete: None,
    }
}

fn r(client: u64, observed: Option<u64>, invoke: u64, complete: u64) -> Operation {
    Operation {
        client,
        key: 1,
        kind: OpKind::Read { observed },
        invoke,
        complete: Some(complete),
    }
}

fn on_key(key: u64, mut op: Operation) -> Operation {
    op.key = key;
    op
}

fn explanation(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Violation { explanation, .. } => explanation,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(check(&[], 0), Verdict::Linearizable);
}

#[test]
fn sequential_history() {
    let h = vec![
        r(1, None, 0, 5),
        w(1, 1, 10, 20),
        r(2, Some(1), 30, 40),
        w(2, 2, 50, 60),
        r(1, Some(2), 70, 80),
        w(3, 3, 90, 100),
        r(3, Some(3), 110, 120),
    ];
    assert_eq!(check(&h, STEPS), Verdict::Linearizable);
    // The same history with a read of absent after a write: a violation.
    let mut bad = h.clone();
    bad.push(r(4, None, 130, 140));
    assert!(check(&bad, STEPS).is_violation());
}

#[test]
fn concurrent_writes_read_may_see_either() {
    for seen in [1, 2] {
        let h = vec![
            w(1, 1, 0, 100),
            w(2, 2, 10, 90),
            r(3, Some(seen), 20, 80),
            r(3, Some(seen), 120, 130),
        ];
        assert_eq!(check(&h, STEPS), Verdict::Linearizable, "seen {seen}");
    }
    // Concurrent reads may even see both orders of the two writes' effects, one after the
    // other, but not flip back.
    let h = vec![
        w(1, 1, 0, 100),
        w(2, 2, 0, 100),
        r(3, Some(1), 10, 20),
        r(3, Some(2), 30, 40),
        r(4, Some(1), 50, 60),
    ];
    assert!(check(&h, STEPS).is_violation());
}

#[test]
fn equal_times_are_concurrent() {
    // A.complete == B.invoke does not order A before B.
    let h = vec![w(1, 1, 0, 10), r(2, None, 10, 20)];
    assert_eq!(check(&h, STEPS), Verdict::Linearizable);
    let h = vec![w(1, 1, 0, 10), r(2, None, 11, 20)];
    assert!(check(&h, STEPS).is_violation());
}

#[test]
fn stale_read_after_completed_write_is_a_violation() {
    let h = vec![w(1, 1, 0, 10), w(2, 2, 20, 30), r(3, Some(1), 40, 50)];
    let v = check(&h, STEPS);
    let text = explanation(&v);
    assert!(
        text.contains("read by client 3 at [40, 50] observed 1"),
        "{text}"
    );
    assert!(text.contains("the register holds 2"), "{text}");
    assert!(
        text.contains("overwritten by write of 2 by client 2 at [20, 30]"),
        "{text}"
    );
    assert!(matches!(v, Verdict::Violation { key: 1, .. }));
}

#[test]
fn read_of_a_value_never_written_is_a_violation() {
    let h = vec![w(1, 1, 0, 10), r(2, Some(7), 20, 30)];
    let v = check(&h, STEPS);
    let text = explanation(&v);
    assert!(
        text.contains("read by client 2 at [20, 30] observed 7"),
        "{text}"
    );
    assert!(text.contains("no write of 7"), "{text}");
    // Found even with no search budget at all.
    assert!(check(&h, 0).is_violation());
}

#[test]
fn read_of_a_write_invoked_after_the_read_completed_is_a_violation() {
    let h = vec![r(1, Some(5), 0, 10), w(2, 5, 20, 30)];
    let text = explanation(&check(&h, STEPS)).to_string();
    assert!(
        text.contains("read by client 1 at [0, 10] observed 5"),
        "{text}"
    );
    assert!(
        text.contains("write of 5 by client 2 at [20, 30]"),
        "{text}"
    );
    // Overlapping by a single instant is fine.
    let h = vec![r(1, Some(5), 0, 20), w(2, 5, 20, 30)];
    assert_eq!(check(&h, STEPS), Verdict::Linearizable);
}

#[test]
fn unknown_outcome_writes() {
    // Took effect, even long after the client gave up.
    let took_effect = vec![
        w(1, 1, 0, 10),
        w_unknown(2, 2, 20),
        r(3, Some(1), 100, 110),
        r(3, Some(2), 1000, 1010),
        r(4, Some(2), 2000, 2010),
    ];
    assert_eq!(check(&took_effect, STEPS), Verdict::Linearizable);
    // Never took effect.
    let lost = vec![
        w(1, 1, 0, 10),
        w_unknown(2, 2, 20),
        r(3, Some(1), 100, 110),
        r(3, Some(1), 1000, 1010),
    ];
    assert_eq!(check(&lost, STEPS), Verdict::Linearizable);
    // But once seen it cannot be unseen.
    let mut flip = took_effect.clone();
    flip.push(r(5, Some(1), 3000, 3010));
    assert!(check(&flip, STEPS).is_violation());
    // And it cannot be seen before it was invoked.
    let early = vec![w(1, 1, 0, 10), r(3, Some(2), 12, 15), w_unknown(2, 2, 20)];
    let text = explanation(&check(&early, STEPS)).to_string();
    assert!(
        text.contains("read by client 3 at [12, 15] observed 2"),
        "{text}"
    );
    assert!(text.contains("[20, ?] (outcome unknown)"), "{text}");
    // Unknown-outcome reads carry no information.
    let mut unknown_read = lost.clone();
    unknown_read.push(Operation {
        client: 9,
        key: 1,
        kind: OpKind::Read { observed: Some(42) },
        invoke: 5,
        complete: None,
    });
    assert_eq!(check(&unknown_read, STEPS), Verdict::Linearizable);
}

#[test]
fn new_then_old_reads_after_both_writes_is_a_stale_read() {
    // Both writes completed before either read; one client sees the new value, a later read
    // by another client (e.g. served by a deposed leader) sees the old one.
    let h = vec![
        w(1, 1, 0, 10),
        w(2, 2, 5, 15),
        r(3, Some(2), 20, 30),
        r(4, Some(1), 40, 50),
    ];
    let text = explanation(&check(&h, STEPS)).to_string();
    assert!(
        text.contains("read by client 4 at [40, 50] observed 1"),
        "{text}"
    );
    // Old-then-new is fine (the writes were concurrent).
    let h = vec![
        w(1, 1, 0, 10),
        w(2, 2, 5, 15),
        r(3, Some(1), 20, 30),
        r(4, Some(1), 40, 50),
    ];
    assert_eq!(check(&h, STEPS), Verdict::Linearizable);
    // Concurrent reads may see new and old in either order of completion.
    let h = vec![
        w(1, 1, 0, 10),
        w(2, 2, 5, 100),
        r(3, Some(2), 20, 30),
        r(4, Some(1), 15, 50),
    ];
    assert_eq!(check(&h, STEPS), Verdict::Linearizable);
}

#[test]
fn keys_are_independent() {
    let h = vec![
        on_key(1, w(1, 1, 0, 10)),
        on_key(2, w(1, 2, 0, 10)),
        on_key(1, r(2, Some(1), 20, 30)),
        on_key(2, r(2, Some(2), 20, 30)),
        on_key(3, r(2, None, 20, 30)),
    ];
    assert_eq!(check(&h, STEPS), Verdict::Linearizable);
    let mut bad = h.clone();
    bad.push(on_key(3, r(2, Some(1), 40, 50)));
    let v = check(&bad, STEPS);
    assert!(matches!(v, Verdict::Violation { key: 3, .. }), "{v:?}");
    assert!(explanation(&v).starts_with("key 3:"));
}

#[test]
fn step_limit_gives_inconclusive_never_a_false_violation() {
    // Many concurrent writes followed by reads: a lot of orders to try.
    let mut h: Vec<Operation> = (0..12).map(|i| w(i, i + 1, i, 1000 + i)).collect();
    h.push(r(100, Some(12), 2000, 2010));
    h.push(r(101, Some(12), 2020, 2030));
    assert_eq!(check(&h, 5), Verdict::Inconclusive { key: 1 });
    assert_eq!(check(&h, STEPS), Verdict::Linearizable);
    // A violating history also becomes Inconclusive when the budget is too small...
    h.push(r(102, Some(11), 2040, 2050));
    assert_eq!(check(&h, 5), Verdict::Inconclusive { key: 1 });
    assert_eq!(check(&h, 50), Verdict::Inconclusive { key: 1 });
    assert!(check(&h, STEPS).is_violation());
    // ...but a violation on another key (checked after it) still wins.
    h.push(on_key(2, w(1, 3, 0, 1)));
    h.push(on_key(2, w(1, 4, 2, 3)));
    h.push(on_key(2, r(1, Some(3), 4, 5)));
    assert!(matches!(check(&h, 50), Verdict::Violation { key: 2, .. }));
}

#[test]
fn linearizable_verdict_does_not_depend_on_history_order() {
    let h = vec![
        w(1, 1, 0, 100),
        w(2, 2, 10, 90),
        r(3, Some(1), 20, 80),
        r(4, Some(2), 30, 70),
        r(5, Some(1), 110, 120),
    ];
    let expected = check(&h, STEPS);
    assert!(expected.is_linearizable());
    let mut rev = h.clone();
    rev.reverse();
    assert_eq!(check(&rev, STEPS), expected);
}

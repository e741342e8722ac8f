//! Randomized histories of a correct register store, corrupted ones, and agreement with a
//! brute-force search on small histories.

use super::*;
use std::collections::BTreeMap;

const STEPS: u64 = 10_000_000;

/// splitmix64: a tiny deterministic generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A history of a correct register store: every client issues operations one after another,
/// each takes effect at a random instant strictly inside its interval, and reads return what
/// the store held at that instant. Some writes have an unknown outcome (taking effect or
/// not, possibly long after the client gave up), some reads too.
fn correct_history(seed: u64, clients: u64, ops_per_client: u64, keys: u64) -> Vec<Operation> {
    let mut rng = Rng(seed);
    let mut history = Vec::new();
    // (instant the op takes effect, index into history)
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut next_value = 1;
    for client in 0..clients {
        let mut t = rng.below(50);
        for _ in 0..ops_per_client {
            let key = rng.below(keys);
            let invoke = t;
            let effect = invoke + 1 + rng.below(60);
            let mut complete = Some(effect + 1 + rng.below(60));
            let kind = if rng.chance(50) {
                next_value += 1;
                OpKind::Write { value: next_value }
            } else {
                OpKind::Read { observed: None }
            };
            let mut effect = Some(effect);
            if rng.chance(6) {
                // Unknown outcome; a write may still land, even much later.
                complete = None;
                effect = if rng.chance(50) {
                    Some(invoke + 1 + rng.below(400))
                } else {
                    None
                };
            }
            if let Some(e) = effect {
                effects.push((e, history.len()));
            }
            history.push(Operation {
                client,
                key,
                kind,
                invoke,
                complete,
            });
            t = complete.unwrap_or(invoke + 150) + rng.below(40);
        }
    }
    effects.sort_unstable();
    let mut register: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, i) in effects {
        let op = &mut history[i];
        match op.kind {
            OpKind::Write { value } => {
                register.insert(op.key, value);
            }
            OpKind::Read { ref mut observed } => *observed = register.get(&op.key).copied(),
        }
    }
    history
}

fn write_value(op: &Operation) -> Option<u64> {
    match op.kind {
        OpKind::Write { value } => Some(value),
        OpKind::Read { .. } => None,
    }
}

/// Makes one read observe a value that is definitely stale: a write W of that value
/// completed before another write W2 was invoked, and W2 completed before the read was
/// invoked. Returns the corrupted read's index.
fn corrupt(history: &mut [Operation]) -> Option<usize> {
    let done = |i: usize| history[i].complete;
    for read in 0..history.len() {
        let (OpKind::Read { .. }, Some(_)) = (&history[read].kind, done(read)) else {
            continue;
        };
        let key = history[read].key;
        let writes = |i: &usize| {
            history[*i].key == key && write_value(&history[*i]).is_some() && done(*i).is_some()
        };
        for w2 in (0..history.len()).filter(writes) {
            if done(w2).unwrap() >= history[read].invoke {
                continue;
            }
            let old = (0..history.len())
                .filter(writes)
                .find(|&w1| done(w1).unwrap() < history[w2].invoke);
            if let Some(w1) = old {
                let value = write_value(&history[w1]);
                history[read].kind = OpKind::Read { observed: value };
                return Some(read);
            }
        }
    }
    None
}

#[test]
fn random_correct_histories_are_linearizable_and_corrupted_ones_are_not() {
    let mut corrupted = 0;
    for seed in 0..40 {
        let keys = 1 + seed % 3;
        let history = correct_history(seed, 6, 60, keys);
        let verdict = check(&history, STEPS);
        assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");

        let mut bad = history.clone();
        let Some(read) = corrupt(&mut bad) else {
            continue;
        };
        corrupted += 1;
        let verdict = check(&bad, STEPS);
        match &verdict {
            Verdict::Violation { key, explanation } => {
                assert_eq!(*key, bad[read].key, "seed {seed}");
                let described = bad[read].to_string();
                assert!(
                    explanation.contains(&described),
                    "seed {seed}: {described} not in {explanation}"
                );
            }
            other => panic!("seed {seed}: expected a violation, got {other:?}"),
        }
    }
    assert!(corrupted >= 30, "only {corrupted} histories corrupted");
}

#[test]
fn large_history_is_fast() {
    // One key, 8 clients, ~400 operations with plenty of overlap.
    let history = correct_history(7, 8, 50, 1);
    let start = std::time::Instant::now();
    assert_eq!(check(&history, 1_000_000), Verdict::Linearizable);
    let mut bad = history.clone();
    corrupt(&mut bad).expect("corruptible");
    assert!(check(&bad, 1_000_000).is_violation());
    let elapsed = start.elapsed();
    assert!(elapsed.as_secs() < 5, "took {elapsed:?}");
}

/// The definition, by brute force: some subset of the unknown-outcome writes plus all the
/// completed operations, in some order respecting real-time precedence, is a legal sequential
/// register history.
fn brute_force(history: &[Operation]) -> bool {
    let ops: Vec<&Operation> = history
        .iter()
        .filter(|op| op.complete.is_some() || write_value(op).is_some())
        .collect();
    let precedes = |a: &Operation, b: &Operation| a.complete.is_some_and(|c| c < b.invoke);
    fn search(
        ops: &[&Operation],
        order: &mut Vec<usize>,
        used: &mut Vec<bool>,
        precedes: &dyn Fn(&Operation, &Operation) -> bool,
    ) -> bool {
        // Is the order so far legal?
        let mut state = None;
        for (i, &a) in order.iter().enumerate() {
            for &b in &order[i + 1..] {
                if precedes(ops[b], ops[a]) {
                    return false;
                }
            }
            match ops[a].kind {
                OpKind::Write { value } => state = Some(value),
                OpKind::Read { observed } => {
                    if observed != state {
                        return false;
                    }
                }
            }
        }
        let complete = (0..ops.len()).all(|i| used[i] || ops[i].complete.is_none());
        if complete {
            // Omitted ops are unknown-outcome writes; nothing in the order may need to
            // follow one of them (none can: they never complete).
            return true;
        }
        for i in 0..ops.len() {
            if !used[i] {
                used[i] = true;
                order.push(i);
                let ok = search(ops, order, used, precedes);
                order.pop();
                used[i] = false;
                if ok {
                    return true;
                }
            }
        }
        false
    }
    search(
        &ops,
        &mut Vec::new(),
        &mut vec![false; ops.len()],
        &precedes,
    )
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = Rng(0xC0FFEE);
    let (mut yes, mut no) = (0, 0);
    for case in 0..3000 {
        let n = 1 + rng.below(6);
        let history: Vec<Operation> = (0..n)
            .map(|i| {
                let invoke = rng.below(12);
                let complete = if rng.chance(15) {
                    None
                } else {
                    Some(invoke + rng.below(8))
                };
                let kind = if rng.chance(50) {
                    OpKind::Write {
                        value: 1 + rng.below(3),
                    }
                } else {
                    OpKind::Read {
                        observed: rng.below(4).checked_sub(1).map(|v| v + 1),
                    }
                };
                Operation {
                    client: i,
                    key: 1,
                    kind,
                    invoke,
                    complete,
                }
            })
            .collect();
        let expected = brute_force(&history);
        let verdict = check(&history, STEPS);
        assert_eq!(
            verdict.is_linearizable(),
            expected,
            "case {case}: {history:#?} gave {verdict:?}"
        );
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 300 && no > 300, "{yes} linearizable, {no} not");
}

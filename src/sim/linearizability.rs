//! Linearizability checker for the simulator's client histories.
//!
//! The simulated clients read and write a key-value store; each key is an independent register
//! (initially absent). Linearizability is compositional (a history is linearizable iff each
//! per-object sub-history is), so the checker partitions the history by key and checks every key
//! on its own.
//!
//! Per key it runs the Wing & Gong search as improved by Lowe and used by porcupine ("WGL"):
//!
//! * every operation contributes a *call* entry at its invoke time and, when its outcome is known,
//!   a *return* entry at its complete time; the entries are sorted by time (calls before returns
//!   at equal times, since precedence is the strict `A.complete < B.invoke`) and threaded into a
//!   doubly linked list;
//! * the operations that may be linearized next are exactly those whose call entry lies before
//!   the first return entry still in the list: no operation still unordered completed before they
//!   were invoked;
//! * the search tries them in list order; when one is consistent with the register it is *lifted*
//!   (both entries unlinked, in O(1)), pushed on a stack and the scan restarts from the head; when
//!   the scan reaches a return entry, the operation it belongs to can no longer be postponed, so
//!   the search backtracks (pops the last choice, relinks it, and tries the next candidate);
//! * a set of (linearized-operations bitset, register value) pairs memoizes the configurations
//!   already explored, which is what keeps the search fast on realistic histories;
//! * a register-specific reduction: a candidate read that fits the current value is never a
//!   worse choice than anything else, so when ordering it next fails, its siblings are skipped.
//!
//! Operations with an unknown outcome (`complete == None`) are treated as never completing: a
//! write with an unknown outcome has no return entry, so it may be linearized at any point after
//! its invoke or never at all (the search succeeds as soon as every *completed* operation is
//! ordered). Such a write whose value no other write produces is simplified first: dropped if no
//! read observed its value, else given the first observing read's completion as its deadline.
//! A read with an unknown outcome carries no information and is dropped.
//!
//! Work per key is bounded by a step budget; running out yields [`Verdict::Inconclusive`], never
//! a false [`Verdict::Violation`]. A violation comes with an explanation built from the deepest
//! point the search reached: the operations already ordered there, the register's value, and why
//! none of the operations that could come next fits.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// One client operation on one key, as seen by the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub key: u64,
    pub kind: OpKind,
    /// Simulated time (ns) the client issued the request.
    pub invoke: u64,
    /// Simulated time the client got its answer; None when the outcome is unknown (timeout,
    /// lost reply, crash): such a write may or may not have taken effect, at any time after invoke.
    pub complete: Option<u64>,
}

/// What an [`Operation`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Set the key's value (values are unique per write in the simulator, but don't rely on it).
    Write { value: u64 },
    /// Read the key; `observed` is None for "absent". Reads with unknown outcome (complete None)
    /// carry no information and may be dropped by the checker.
    Read { observed: Option<u64> },
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's sub-history is linearizable.
    Linearizable,
    /// The sub-history of `key` has no linearization; `explanation` says where the search got
    /// stuck deepest and why.
    Violation { key: u64, explanation: String },
    /// The step budget ran out on `key` (and no other key has a violation).
    Inconclusive { key: u64 },
}

impl Verdict {
    /// True for [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// True for [`Verdict::Violation`].
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::Violation { .. })
    }
}

fn show_value(value: Option<u64>) -> String {
    match value {
        Some(v) => v.to_string(),
        None => "absent".to_string(),
    }
}

fn show_interval(invoke: u64, complete: Option<u64>) -> String {
    match complete {
        Some(c) => format!("[{invoke}, {c}]"),
        None => format!("[{invoke}, ?] (outcome unknown)"),
    }
}

impl fmt::Display for Operation {
    /// E.g. `write of 7 by client 2 at [50, 120]`, `read by client 3 at [100, 250] observed 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let interval = show_interval(self.invoke, self.complete);
        match self.kind {
            OpKind::Write { value } => {
                write!(
                    f,
                    "write of {value} by client {} at {interval}",
                    self.client
                )
            }
            OpKind::Read { observed } => write!(
                f,
                "read by client {} at {interval} observed {}",
                self.client,
                show_value(observed)
            ),
        }
    }
}

/// Checks every key independently (a register, initially absent). `search_steps_max` bounds the
/// DFS work per key; exceeding it gives Inconclusive (never a false Violation).
///
/// Keys are checked in increasing order. A violation on any key wins over an inconclusive key;
/// among several violating (or several inconclusive) keys, the smallest key is reported.
pub fn check(history: &[Operation], search_steps_max: u64) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op);
    }
    let mut inconclusive = None;
    for (key, ops) in by_key {
        match check_register(key, &ops, search_steps_max) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive { key } => {
                inconclusive.get_or_insert(key);
            }
            violation @ Verdict::Violation { .. } => return violation,
        }
    }
    match inconclusive {
        Some(key) => Verdict::Inconclusive { key },
        None => Verdict::Linearizable,
    }
}

/// Checks the operations of one key (all of `ops` must be on `key`) as a single register.
pub fn check_key(key: u64, ops: &[Operation], search_steps_max: u64) -> Verdict {
    let refs: Vec<&Operation> = ops.iter().collect();
    assert!(
        refs.iter().all(|op| op.key == key),
        "check_key({key}) given operations on other keys"
    );
    check_register(key, &refs, search_steps_max)
}

/// An operation as the search sees it.
struct Op<'a> {
    src: &'a Operation,
    invoke: u64,
    /// The time by which the operation must be linearized: its completion (clamped to at least
    /// `invoke`, so a malformed history can't break the list invariants), or a deadline inferred
    /// for an unknown-outcome write (see [`prepare`]), or None for no deadline.
    complete: Option<u64>,
    /// `complete` was inferred for an unknown-outcome write rather than observed.
    inferred: bool,
}

impl Op<'_> {
    fn is_read(&self) -> bool {
        matches!(self.src.kind, OpKind::Read { .. })
    }

    /// The register value after this operation, or None if it is inconsistent with `state`.
    fn step(&self, state: Option<u64>) -> Option<Option<u64>> {
        match self.src.kind {
            OpKind::Write { value } => Some(Some(value)),
            OpKind::Read { observed } => (observed == state).then_some(state),
        }
    }
}

/// The memo's keys are our own bitsets and values, so a fast non-keyed hash (FxHash's mixing)
/// is fine, and much cheaper than the default SipHash on the search's hot path.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The call/return entries in a doubly linked list with a sentinel head (node 0).
struct EntryList {
    /// For node `n >= 1`: the operation it belongs to and whether it is the call entry.
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_node: Vec<usize>,
    return_node: Vec<usize>,
}

impl EntryList {
    fn new(ops: &[Op<'_>]) -> EntryList {
        // (time, 0 for call / 1 for return, op): calls sort before returns at equal times.
        let mut entries: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.invoke, 0, i));
            if let Some(c) = op.complete {
                entries.push((c, 1, i));
            }
        }
        entries.sort_unstable();
        let nodes = entries.len() + 1;
        let mut list = EntryList {
            op_of: vec![NIL; nodes],
            is_call: vec![false; nodes],
            next: vec![NIL; nodes],
            prev: vec![NIL; nodes],
            call_node: vec![NIL; ops.len()],
            return_node: vec![NIL; ops.len()],
        };
        for (k, &(_, kind, op)) in entries.iter().enumerate() {
            let node = k + 1;
            list.op_of[node] = op;
            list.is_call[node] = kind == 0;
            if kind == 0 {
                list.call_node[op] = node;
            } else {
                list.return_node[op] = node;
            }
            list.prev[node] = node - 1;
            list.next[node - 1] = node;
        }
        list
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if self.return_node[op] != NIL {
            self.unlink(self.return_node[op]);
        }
    }

    /// Undoes [`EntryList::lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, op: usize) {
        if self.return_node[op] != NIL {
            self.relink(self.return_node[op]);
        }
        self.relink(self.call_node[op]);
    }
}

/// Where the search got stuck with the most operations ordered.
struct Stuck {
    /// The operations ordered so far, in linearization order.
    order: Vec<usize>,
    /// The register value after them.
    state: Option<u64>,
    /// The operation whose return entry stopped the scan: it must be ordered next or earlier.
    blocking: usize,
    /// The operations that could have been ordered next (their call precedes that return).
    candidates: Vec<usize>,
}

/// Turns one key's history into the operations the search works on.
///
/// Reads with an unknown outcome are dropped. An unknown-outcome write whose value no other
/// write produces is simplified, which keeps its "may be linearized anywhere later" freedom from
/// multiplying the search space:
/// * if no completed read observes its value, it is dropped: in any linearization that includes
///   it, no read sits between it and the next write, so leaving it out changes nothing;
/// * otherwise it must be in the linearization, before every read that observes its value, so it
///   gets the earliest completion of those reads as its deadline, exactly as if it had completed
///   then (anything invoked after that deadline must come after the read, hence after it).
fn prepare<'a>(history: &[&'a Operation]) -> Vec<Op<'a>> {
    // value -> (number of writes of it, earliest completion of a read observing it)
    let mut values: BTreeMap<u64, (usize, Option<u64>)> = BTreeMap::new();
    for op in history {
        match (&op.kind, op.complete) {
            (OpKind::Write { value }, _) => values.entry(*value).or_default().0 += 1,
            (OpKind::Read { observed: Some(v) }, Some(c)) => {
                let seen = &mut values.entry(*v).or_default().1;
                *seen = Some(seen.map_or(c, |s| s.min(c)));
            }
            (OpKind::Read { .. }, _) => {}
        }
    }
    let mut ops = Vec::with_capacity(history.len());
    for &op in history {
        let (complete, inferred) = match (&op.kind, op.complete) {
            (_, Some(c)) => (Some(c), false),
            (OpKind::Read { .. }, None) => continue,
            (OpKind::Write { value }, None) => match values[value] {
                (1, None) => continue,
                (1, Some(first_seen)) => (Some(first_seen), true),
                _ => (None, false),
            },
        };
        ops.push(Op {
            src: op,
            invoke: op.invoke,
            complete: complete.map(|c| c.max(op.invoke)),
            inferred,
        });
    }
    ops
}

fn check_register(key: u64, history: &[&Operation], steps_max: u64) -> Verdict {
    if let Some(explanation) = impossible_read(key, history) {
        return Verdict::Violation { key, explanation };
    }
    let ops = prepare(history);

    let completed_total = ops.iter().filter(|op| op.complete.is_some()).count();
    let mut list = EntryList::new(&ops);
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut completed_done = 0usize;
    let mut state: Option<u64> = None;
    // (operation, register value before it)
    let mut stack: Vec<(usize, Option<u64>)> = Vec::with_capacity(ops.len());
    let mut seen: HashSet<(Vec<u64>, Option<u64>), BuildHasherDefault<FxHasher>> =
        HashSet::default();
    let mut deepest: Option<Stuck> = None;
    let mut steps = 0u64;
    let mut node = list.next[HEAD];

    loop {
        if completed_done == completed_total {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > steps_max {
            return Verdict::Inconclusive { key };
        }
        // Reaching a return entry (or, defensively, the end of the list, which can't happen
        // while a completed operation is unordered) means its operation can't be postponed
        // any further and nothing before it fits: backtrack.
        let mut backtrack = node == NIL || !list.is_call[node];
        if !backtrack {
            let op = list.op_of[node];
            if let Some(next_state) = ops[op].step(state) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), next_state)) {
                    stack.push((op, state));
                    state = next_state;
                    list.lift(op);
                    if ops[op].complete.is_some() {
                        completed_done += 1;
                    }
                    node = list.next[HEAD];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
                // Ordering a fitting candidate read next is never worse than anything else (see
                // below), so if that configuration already failed, this one fails too.
                backtrack = ops[op].is_read();
            }
            node = list.next[node];
        }
        if !backtrack {
            continue;
        }
        if deepest.as_ref().is_none_or(|d| stack.len() > d.order.len()) {
            deepest = Some(stuck_here(&list, &stack, state));
        }
        loop {
            let Some((op, previous)) = stack.pop() else {
                let stuck = deepest.expect("recorded before the search can fail");
                return Verdict::Violation {
                    key,
                    explanation: explain(key, &ops, &stuck),
                };
            };
            linearized[op / 64] &= !(1 << (op % 64));
            state = previous;
            list.unlift(op);
            if ops[op].complete.is_some() {
                completed_done -= 1;
            }
            // A read that fits and may come next can always come next: in any valid
            // continuation, moving it to the front leaves every other read's value unchanged
            // (reads don't change the register) and respects precedence (no unordered
            // operation completed before it was invoked, or it wouldn't be a candidate). So
            // when ordering such a read first failed, the configuration before it fails too,
            // and its siblings need not be tried.
            if !ops[op].is_read() {
                node = list.next[list.call_node[op]];
                break;
            }
        }
    }
}

/// Records the current configuration for the violation's explanation.
fn stuck_here(list: &EntryList, stack: &[(usize, Option<u64>)], state: Option<u64>) -> Stuck {
    let mut candidates = Vec::new();
    let mut n = list.next[HEAD];
    while n != NIL && list.is_call[n] {
        candidates.push(list.op_of[n]);
        n = list.next[n];
    }
    Stuck {
        order: stack.iter().map(|&(op, _)| op).collect(),
        state,
        blocking: if n == NIL { NIL } else { list.op_of[n] },
        candidates,
    }
}

/// A fast, sound pre-check: a completed read observing a value that no write invoked before the
/// read completed could have produced. Gives the most direct explanation for the common cases.
fn impossible_read(key: u64, ops: &[&Operation]) -> Option<String> {
    for read in ops {
        let (OpKind::Read { observed: Some(v) }, Some(read_complete)) = (&read.kind, read.complete)
        else {
            continue;
        };
        let writes: Vec<&Operation> = ops
            .iter()
            .copied()
            .filter(|w| w.kind == OpKind::Write { value: *v })
            .collect();
        if writes.is_empty() {
            return Some(format!(
                "key {key}: {read} but no write of {v} to key {key} exists in the history"
            ));
        }
        if writes.iter().all(|w| w.invoke > read_complete) {
            let list: Vec<String> = writes.iter().map(|w| w.to_string()).collect();
            return Some(format!(
                "key {key}: {read} but no write of {v} could be linearized there: every write of \
                 {v} was invoked after the read completed ({})",
                list.join("; ")
            ));
        }
    }
    None
}

const ORDER_SHOWN: usize = 12;

fn explain(key: u64, ops: &[Op<'_>], stuck: &Stuck) -> String {
    let known = ops
        .iter()
        .filter(|op| op.complete.is_some() && !op.inferred)
        .count();
    let mut out = format!(
        "key {key}: no linearization exists ({} operations, {known} with a known outcome). \
         The deepest partial linearization found orders {} of them",
        ops.len(),
        stuck.order.len()
    );
    if stuck.order.is_empty() {
        out.push_str(" (none), with the register absent.");
    } else {
        let skipped = stuck.order.len().saturating_sub(ORDER_SHOWN);
        out.push_str(":\n");
        if skipped > 0 {
            out.push_str(&format!("  ... {skipped} earlier operations\n"));
        }
        for (i, &op) in stuck.order.iter().enumerate().skip(skipped) {
            out.push_str(&format!("  {}. {}\n", i + 1, ops[op].src));
        }
        out.push_str(&format!(
            "after which the register holds {}.",
            show_value(stuck.state)
        ));
    }
    let position: Vec<Option<usize>> = {
        let mut position = vec![None; ops.len()];
        for (i, &op) in stuck.order.iter().enumerate() {
            position[op] = Some(i);
        }
        position
    };
    if stuck.blocking != NIL {
        let blocking = &ops[stuck.blocking];
        let by = blocking.complete.unwrap_or(blocking.invoke);
        let why = if blocking.inferred {
            "when a read observing its value completed"
        } else {
            "when it completed"
        };
        out.push_str(&format!(
            "\nStuck: {} must be ordered by {by} ({why}), but none of the operations that could \
             come next fits:",
            blocking.src,
        ));
    } else {
        out.push_str("\nStuck: none of the operations that could come next fits:");
    }
    for &c in &stuck.candidates {
        let op = &ops[c];
        out.push_str(&format!("\n  - {}", op.src));
        match op.src.kind {
            OpKind::Write { .. } => out.push_str(
                ": every continuation that orders it next was already explored and fails",
            ),
            OpKind::Read { observed } => {
                out.push_str(&format!(
                    ": the register holds {} there",
                    show_value(stuck.state)
                ));
                if let Some(v) = observed {
                    explain_writes_of(&mut out, ops, stuck, &position, v, op);
                }
            }
        }
    }
    out
}

/// Says, for a stuck read observing `v`, why no write of `v` can supply it at this point.
fn explain_writes_of(
    out: &mut String,
    ops: &[Op<'_>],
    stuck: &Stuck,
    position: &[Option<usize>],
    v: u64,
    read: &Op<'_>,
) {
    let read_complete = read.complete.unwrap_or(u64::MAX);
    for (w, write) in ops.iter().enumerate() {
        if write.src.kind != (OpKind::Write { value: v }) {
            continue;
        }
        out.push_str(&format!("\n      {}: ", write.src));
        if let Some(p) = position[w] {
            let overwrite = stuck.order[p + 1..]
                .iter()
                .find(|&&o| matches!(ops[o].src.kind, OpKind::Write { .. }));
            match overwrite {
                Some(&o) => {
                    out.push_str(&format!("ordered earlier, overwritten by {}", ops[o].src))
                }
                None => out.push_str("ordered earlier"),
            }
        } else if write.invoke > read_complete {
            out.push_str("invoked only after the read completed");
        } else {
            // Not orderable yet: some unordered completed operation finished before it started.
            let before = ops
                .iter()
                .enumerate()
                .filter(|&(o, op)| {
                    position[o].is_none() && op.complete.is_some_and(|c| c < write.invoke)
                })
                .min_by_key(|(_, op)| op.complete);
            match before {
                Some((_, b)) => out.push_str(&format!(
                    "cannot be ordered yet, it was invoked after {} had to be ordered",
                    b.src
                )),
                None => out.push_str("not ordered yet"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}

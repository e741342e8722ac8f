//! The WGL search over one key's history: the call/return entry list, the memo of explored
//! configurations, and the deepest point reached (for the explanation).
//!
//! Invariant: a violation is reported only when every order respecting real-time precedence
//! was explored (or pruned by the register reduction); running out of steps is inconclusive.

use super::explain::{explain, impossible_read};
use super::{OpKind, Operation, Verdict};
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// An operation as the search sees it.
pub(super) struct Op<'a> {
    pub(super) src: &'a Operation,
    pub(super) invoke: u64,
    /// The time by which the operation must be linearized: its completion (clamped to at least
    /// `invoke`, so a malformed history can't break the list invariants), or a deadline inferred
    /// for an unknown-outcome write (see [`prepare`]), or None for no deadline.
    pub(super) complete: Option<u64>,
    /// `complete` was inferred for an unknown-outcome write rather than observed.
    pub(super) inferred: bool,
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

pub(super) const NIL: usize = usize::MAX;
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
pub(super) struct Stuck {
    /// The operations ordered so far, in linearization order.
    pub(super) order: Vec<usize>,
    /// The register value after them.
    pub(super) state: Option<u64>,
    /// The operation whose return entry stopped the scan: it must be ordered next or earlier.
    pub(super) blocking: usize,
    /// The operations that could have been ordered next (their call precedes that return).
    pub(super) candidates: Vec<usize>,
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

/// What scanning one entry of the list decided.
enum Scan {
    /// Go on scanning from this node.
    Continue(usize),
    /// Nothing before this return entry fits: undo the last choice.
    Backtrack,
}

/// The state of the WGL search over one key.
struct Search<'a, 'o> {
    ops: &'a [Op<'o>],
    list: EntryList,
    /// Bit `op` is set when the operation is ordered.
    linearized: Vec<u64>,
    completed_done: usize,
    completed_total: usize,
    /// The register's value after the ordered operations.
    state: Option<u64>,
    /// (operation, register value before it), in linearization order.
    stack: Vec<(usize, Option<u64>)>,
    seen: HashSet<(Vec<u64>, Option<u64>), BuildHasherDefault<FxHasher>>,
    deepest: Option<Stuck>,
}

pub(super) fn check_register(key: u64, history: &[&Operation], steps_max: u64) -> Verdict {
    if let Some(explanation) = impossible_read(key, history) {
        return Verdict::Violation { key, explanation };
    }
    let ops = prepare(history);
    let mut search = Search::new(&ops);
    let mut node = search.list.next[HEAD];
    let mut steps = 0u64;
    loop {
        if search.completed_done == search.completed_total {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > steps_max {
            return Verdict::Inconclusive { key };
        }
        node = match search.scan(node) {
            Scan::Continue(next) => next,
            Scan::Backtrack => match search.backtrack() {
                Some(next) => next,
                None => {
                    let stuck = search.deepest.expect("recorded before the search can fail");
                    return Verdict::Violation {
                        key,
                        explanation: explain(key, &ops, &stuck),
                    };
                }
            },
        };
    }
}

impl<'a, 'o> Search<'a, 'o> {
    fn new(ops: &'a [Op<'o>]) -> Self {
        Search {
            ops,
            list: EntryList::new(ops),
            linearized: vec![0u64; ops.len().div_ceil(64)],
            completed_done: 0,
            completed_total: ops.iter().filter(|op| op.complete.is_some()).count(),
            state: None,
            stack: Vec::with_capacity(ops.len()),
            seen: HashSet::default(),
            deepest: None,
        }
    }

    /// Looks at one entry: a call entry whose operation fits is ordered (and the scan restarts
    /// from the head); reaching a return entry (or, defensively, the end of the list, which
    /// can't happen while a completed operation is unordered) means its operation can't be
    /// postponed any further and nothing before it fits.
    fn scan(&mut self, node: usize) -> Scan {
        if node == NIL || !self.list.is_call[node] {
            return Scan::Backtrack;
        }
        let op = self.list.op_of[node];
        if let Some(next_state) = self.ops[op].step(self.state) {
            if self.order(op, next_state) {
                return Scan::Continue(self.list.next[HEAD]);
            }
            // Ordering a fitting candidate read next is never worse than anything else (see
            // `backtrack`), so if that configuration already failed, this one fails too.
            if self.ops[op].is_read() {
                return Scan::Backtrack;
            }
        }
        Scan::Continue(self.list.next[node])
    }

    /// Orders `op` next unless that configuration was explored before.
    fn order(&mut self, op: usize, next_state: Option<u64>) -> bool {
        self.linearized[op / 64] |= 1 << (op % 64);
        if !self.seen.insert((self.linearized.clone(), next_state)) {
            self.linearized[op / 64] &= !(1 << (op % 64));
            return false;
        }
        self.stack.push((op, self.state));
        self.state = next_state;
        self.list.lift(op);
        if self.ops[op].complete.is_some() {
            self.completed_done += 1;
        }
        true
    }

    /// Undoes choices until one whose siblings are worth trying; returns where the scan goes
    /// on, or `None` when every choice is exhausted (no linearization exists).
    fn backtrack(&mut self) -> Option<usize> {
        if self
            .deepest
            .as_ref()
            .is_none_or(|d| self.stack.len() > d.order.len())
        {
            self.deepest = Some(stuck_here(&self.list, &self.stack, self.state));
        }
        loop {
            let (op, previous) = self.stack.pop()?;
            self.linearized[op / 64] &= !(1 << (op % 64));
            self.state = previous;
            self.list.unlift(op);
            if self.ops[op].complete.is_some() {
                self.completed_done -= 1;
            }
            // A read that fits and may come next can always come next: in any valid
            // continuation, moving it to the front leaves every other read's value unchanged
            // (reads don't change the register) and respects precedence (no unordered
            // operation completed before it was invoked, or it wouldn't be a candidate). So
            // when ordering such a read first failed, the configuration before it fails too,
            // and its siblings need not be tried.
            if !self.ops[op].is_read() {
                return Some(self.list.next[self.list.call_node[op]]);
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

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

mod explain;
#[cfg(test)]
mod random_tests;
mod search;
#[cfg(test)]
mod tests;

use search::check_register;
use std::collections::BTreeMap;
use std::fmt;

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

//! Explanations of a violation: a read no write could have produced, or the deepest partial
//! linearization and why none of the operations that could come next fits there.

use super::search::{Op, Stuck, NIL};
use super::{show_value, OpKind, Operation};

/// A fast, sound pre-check: a completed read observing a value that no write invoked before the
/// read completed could have produced. Gives the most direct explanation for the common cases.
pub(super) fn impossible_read(key: u64, ops: &[&Operation]) -> Option<String> {
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

pub(super) fn explain(key: u64, ops: &[Op<'_>], stuck: &Stuck) -> String {
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
    explain_order(&mut out, ops, stuck);
    explain_blocking(&mut out, ops, stuck);
    explain_candidates(&mut out, ops, stuck);
    out
}

/// The operations ordered at the deepest point (the last `ORDER_SHOWN` of them) and the value
/// they leave in the register.
fn explain_order(out: &mut String, ops: &[Op<'_>], stuck: &Stuck) {
    if stuck.order.is_empty() {
        out.push_str(" (none), with the register absent.");
        return;
    }
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

/// The operation that could not be postponed any further, and by when it had to be ordered.
fn explain_blocking(out: &mut String, ops: &[Op<'_>], stuck: &Stuck) {
    if stuck.blocking == NIL {
        out.push_str("\nStuck: none of the operations that could come next fits:");
        return;
    }
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
}

/// Why each operation that could come next does not fit.
fn explain_candidates(out: &mut String, ops: &[Op<'_>], stuck: &Stuck) {
    let mut position = vec![None; ops.len()];
    for (i, &op) in stuck.order.iter().enumerate() {
        position[op] = Some(i);
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
                    explain_writes_of(out, ops, stuck, &position, v, op);
                }
            }
        }
    }
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

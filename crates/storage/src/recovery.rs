//! Recovery: reads what a store holds and checks every invariant before anyone trusts it.
//!
//! Invariant: recovery only reads. A store that breaks an invariant fails with
//! `StorageError::Damaged` naming the file and the broken rule; nothing is truncated,
//! rewritten or "repaired" here.

use super::engine;
use super::error::StorageError;
use super::state;
use super::store::StoreRead;
use super::{Identity, Recovered};
use regent_raft::{LogIndex, Term};

/// What the log's check found.
enum Shape {
    Sound,
    Damaged(String),
    /// Fewer entries than the bounds span: somewhere a gap, found by a scan.
    Gap,
}

/// Checks the log's shape in O(terms × log entries) reads, not O(entries), so that a node with
/// a long log serves at once: the entry count against the bounds (contiguity, since keys are
/// unique), then each run of one term found by binary search, checking at every probe that the
/// terms never decrease and stay within the current term. A decreasing term that no probe
/// lands on is not seen here; every entry's term is checked again when it is read (a
/// follower's append, a snapshot, the core's own checks).
fn check_log_by_runs(
    store: &mut dyn StoreRead,
    state: &super::LogState,
) -> Result<Shape, StorageError> {
    let snap = &state.snapshot;
    let Some((first, last)) = store.log_bounds()? else {
        return Ok(Shape::Sound);
    };
    if first != snap.last_included_index.next() {
        return Ok(Shape::Damaged(format!(
            "the log starts at {first} but the snapshot ends at {} (first index must be {})",
            snap.last_included_index,
            snap.last_included_index.next()
        )));
    }
    if store.log_len()? != last.0 - first.0 + 1 {
        return Ok(Shape::Gap);
    }
    let path = store.path().to_path_buf();
    let term_at = |store: &mut dyn StoreRead, index: LogIndex| -> Result<Term, StorageError> {
        store
            .log_term(index)?
            .ok_or_else(|| StorageError::damaged(&path, format!("log entry {index} is missing")))
    };
    let current = state.hard_state.term;
    let (mut at, mut term) = (first, term_at(store, first)?);
    if term < snap.last_included_term {
        return Ok(Shape::Damaged(format!(
            "entry {first} has term {term}, below the term {} before it",
            snap.last_included_term
        )));
    }
    loop {
        if term > current {
            return Ok(Shape::Damaged(format!(
                "entry {at} has term {term}, above the current term {current}"
            )));
        }
        // The run of `term` starting at `at`: the first index past it, by bisection (`lo`
        // always holds `term`, `hi` is past the log or holds a higher one).
        let (mut lo, mut hi) = (at.0, last.0 + 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let t = term_at(store, LogIndex(mid))?;
            match t.cmp(&term) {
                std::cmp::Ordering::Equal => lo = mid,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Less => {
                    return Ok(Shape::Damaged(format!(
                        "entry {} has term {t}, below the term {term} of entry {} before it",
                        LogIndex(mid),
                        LogIndex(lo)
                    )))
                }
            }
        }
        if hi > last.0 {
            return Ok(Shape::Sound);
        }
        at = LogIndex(hi);
        term = term_at(store, at)?;
    }
}

/// Checks every entry of the log, in index order; the first problem found.
fn scan_log(
    store: &mut dyn StoreRead,
    state: &super::LogState,
) -> Result<Option<String>, StorageError> {
    let (snap, hs) = (&state.snapshot, state.hard_state);
    let mut expected = snap.last_included_index.next();
    let mut prev_term = snap.last_included_term;
    let mut problem = None;
    store.log_scan_terms(&mut |index, term| {
        if problem.is_some() {
            return Ok(());
        }
        if index != expected {
            problem = Some(if expected == snap.last_included_index.next() {
                format!(
                    "the log starts at {index} but the snapshot ends at {} (first index must be {expected})",
                    snap.last_included_index
                )
            } else {
                format!("the log has a gap: entry {index} follows {}", expected.prev())
            });
        } else if term < prev_term {
            problem = Some(format!(
                "entry {index} has term {term}, below the term {prev_term} before it"
            ));
        } else if term > hs.term {
            problem = Some(format!(
                "entry {index} has term {term}, above the current term {}",
                hs.term
            ));
        }
        expected = index.next();
        prev_term = term;
        Ok(())
    })?;
    if problem.is_none() && expected.prev() != state.last_index {
        problem = Some(format!(
            "the log ends at {} but its last entry is {}",
            expected.prev(),
            state.last_index
        ));
    }
    Ok(problem)
}

/// Loads the state, checks it, and reads the entries after the applied index.
pub(crate) fn recover(
    store: &mut dyn StoreRead,
    identity: &Identity,
) -> Result<Recovered, StorageError> {
    let state = engine::load_state(store)?;
    let path = store.path().to_path_buf();
    let damaged = |problem: String| Err(StorageError::damaged(&path, problem));
    let snap = &state.snapshot;
    let hs = state.hard_state;

    // The log: contiguous from the snapshot, terms never decreasing, none above the current term.
    let problem = match check_log_by_runs(store, &state)? {
        Shape::Sound => None,
        Shape::Damaged(problem) => Some(problem),
        // Only a damaged log gets here: the scan names where.
        Shape::Gap => scan_log(store, &state)?,
    };
    if let Some(problem) = problem {
        return damaged(problem);
    }
    if snap.last_included_term > hs.term {
        return damaged(format!(
            "the snapshot's term {} is above the current term {}",
            snap.last_included_term, hs.term
        ));
    }
    if state.applied < snap.last_included_index {
        return damaged(format!(
            "applied index {} is below the snapshot index {}",
            state.applied, snap.last_included_index
        ));
    }
    // The commit index is written with the log's batches and the state machine in its own
    // layers, so the stored commit may lag the applied index (both are committed); but what
    // was applied is always in the log.
    if state.applied > state.last_index {
        return damaged(format!(
            "applied index {} is above the last index {}",
            state.applied, state.last_index
        ));
    }
    if hs.commit > state.last_index {
        return damaged(format!(
            "commit index {} is above the last index {}",
            hs.commit, state.last_index
        ));
    }
    let applied_term = if state.applied == snap.last_included_index {
        snap.last_included_term
    } else {
        store.log_term(state.applied)?.unwrap_or(Term(0))
    };
    if applied_term != state.applied_term {
        return damaged(format!(
            "applied entry {} has term {} in the log but {} in the state machine",
            state.applied, applied_term, state.applied_term
        ));
    }
    if state.membership_index > state.applied {
        return damaged(format!(
            "membership from entry {} is newer than the applied index {}",
            state.membership_index, state.applied
        ));
    }
    if let Some(problem) = state::check_stored(store, &state.journal)? {
        return damaged(problem);
    }

    let entries = if state.applied < state.last_index {
        let mut out = Vec::new();
        let mut lo = state.applied.next();
        while lo <= state.last_index {
            let page = engine::entries(store, &state, lo, state.last_index.next(), 16 << 20)?;
            lo = LogIndex(lo.0 + page.len() as u64);
            out.extend(page);
        }
        out
    } else {
        Vec::new()
    };
    Ok(Recovered {
        identity: identity.clone(),
        state,
        entries,
    })
}

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
    if let Some(problem) = problem {
        return damaged(problem);
    }
    assert_eq!(
        expected.prev(),
        state.last_index,
        "the scan ends at the last index"
    );

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

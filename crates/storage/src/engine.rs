//! The log engine: the write and read paths of the log half shared by every backend: a batch's
//! validation and log write (its apply is the state machine's, `state::apply`), log
//! compaction, the checks and the swap of a snapshot install, and the log reads.
//!
//! Invariant: every request is validated in full before its first write, so a refused request
//! returns an error having changed nothing; the backend's transaction makes a failure midway
//! (I/O) change nothing either. After each path the returned `LogState` describes the store.

use super::error::StorageError;
use super::snapshot::SnapshotHeader;
use super::state;
use super::state::StateFlush;
use super::store::{LogRead, LogWrite, StoreRead, StoreWrite};
use super::{Batch, LogState, SnapshotMeta, StorageOptions};
use regent_raft::{Entry, LogIndex, Term};

/// Reads the summary of the durable state (no invariant checks: see `recovery`).
pub(crate) fn load_state(store: &mut dyn StoreRead) -> Result<LogState, StorageError> {
    let hard_state = store.hard_state()?;
    let snapshot = store.snapshot_meta()?;
    let sm = store.sm_meta()?;
    let membership = store.membership()?;
    let (last_index, last_term) = match store.log_bounds()? {
        Some((_, last)) => {
            let term = store.log_term(last)?;
            (last, term.expect("the last index of the log has an entry"))
        }
        None => (snapshot.last_included_index, snapshot.last_included_term),
    };
    Ok(LogState {
        hard_state,
        first_index: snapshot.last_included_index.next(),
        snapshot,
        last_index,
        last_term,
        applied: sm.applied,
        applied_term: sm.applied_term,
        membership: membership.membership,
        membership_index: membership.index,
        revision: sm.revision,
        journal: store.journal_state()?,
    })
}

/// The term at `index`, which must lie within `snapshot index ..= last index`.
fn term_at(
    store: &mut dyn LogRead,
    state: &LogState,
    index: LogIndex,
) -> Result<Term, StorageError> {
    if index == state.snapshot.last_included_index {
        return Ok(state.snapshot.last_included_term);
    }
    assert!(index > state.snapshot.last_included_index && index <= state.last_index);
    match store.log_term(index)? {
        Some(term) => Ok(term),
        None => Err(StorageError::damaged(
            store.path(),
            format!(
                "log entry {index} is missing (the log holds {}..={})",
                state.first_index, state.last_index
            ),
        )),
    }
}

/// Checks a batch against the state before it. Nothing is written.
pub(crate) fn validate(
    store: &mut dyn LogRead,
    state: &LogState,
    batch: &Batch,
    options: &StorageOptions,
) -> Result<(), StorageError> {
    let invalid = |msg: String| Err(StorageError::InvalidBatch(msg));
    let old = state.hard_state;
    let hs = batch.hard_state.unwrap_or(old);
    if hs.term < old.term {
        return invalid(format!(
            "the term goes back from {} to {}",
            old.term, hs.term
        ));
    }
    if hs.term == old.term && old.vote.is_some() && hs.vote != old.vote {
        return invalid(format!(
            "the vote changes from {:?} to {:?} within {}",
            old.vote, hs.vote, hs.term
        ));
    }
    if hs.commit < old.commit {
        return invalid(format!(
            "the commit index goes back from {} to {}",
            old.commit, hs.commit
        ));
    }
    if batch.entries.len() > options.batch_entries_max {
        return invalid(format!(
            "{} entries, more than batch_entries_max {}",
            batch.entries.len(),
            options.batch_entries_max
        ));
    }
    let mut last = state.last_index;
    let mut last_term = state.last_term;
    if let Some(from) = batch.truncate_from {
        // Deleting a committed entry is how others lost acknowledged writes: never. (An
        // applied entry is committed even where the stored commit index lags it.)
        let committed = old.commit.max(state.applied);
        if from <= committed {
            return invalid(format!(
                "truncate_from {from} would delete committed entries (commit is {committed})"
            ));
        }
        if from.0 > last.0 + 1 {
            return invalid(format!(
                "truncate_from {from} is beyond the last index {last} + 1"
            ));
        }
        if from <= last {
            last = from.prev();
            last_term = term_at(store, state, last)?;
        }
    }
    for entry in &batch.entries {
        if entry.index != last.next() {
            return invalid(format!(
                "entry {} where {} was expected",
                entry.index,
                last.next()
            ));
        }
        if entry.term < last_term {
            return invalid(format!(
                "entry {} has term {} below the term {} before it",
                entry.index, entry.term, last_term
            ));
        }
        if entry.term > hs.term {
            return invalid(format!(
                "entry {} has term {} above the current term {}",
                entry.index, entry.term, hs.term
            ));
        }
        last = entry.index;
        last_term = entry.term;
    }
    if hs.commit > last {
        return invalid(format!(
            "commit {} is beyond the last index {last}",
            hs.commit
        ));
    }
    let appended_from = batch.entries.first().map(|e| e.index);
    let mut next = state.applied.next();
    for entry in &batch.committed {
        if entry.index != next {
            return invalid(format!(
                "applying entry {} where {next} was expected",
                entry.index
            ));
        }
        if entry.index > hs.commit {
            return invalid(format!(
                "applying entry {} above the commit index {}",
                entry.index, hs.commit
            ));
        }
        let term = match appended_from {
            Some(from) if entry.index >= from => {
                batch.entries[(entry.index.0 - from.0) as usize].term
            }
            _ => term_at(store, state, entry.index)?,
        };
        if term != entry.term {
            return invalid(format!(
                "committed entry {} has term {} but the log holds term {term}",
                entry.index, entry.term
            ));
        }
        next = next.next();
    }
    Ok(())
}

/// Writes the hard state, the truncation and the appends of a validated batch.
pub(crate) fn write_log(
    store: &mut dyn LogWrite,
    state: &LogState,
    batch: &Batch,
) -> Result<LogState, StorageError> {
    let mut next = state.clone();
    if let Some(hs) = batch.hard_state {
        if hs != state.hard_state {
            store.set_hard_state(&hs)?;
            next.hard_state = hs;
        }
    }
    if let Some(from) = batch.truncate_from {
        if from <= state.last_index {
            store.log_remove_from(from)?;
            next.last_index = from.prev();
            next.last_term = term_at(store, state, next.last_index)?;
        }
    }
    for entry in &batch.entries {
        assert_eq!(entry.index, next.last_index.next(), "validated: contiguous");
        store.log_append(entry)?;
        next.last_index = entry.index;
        next.last_term = entry.term;
    }
    Ok(next)
}

/// Writes a frozen layer of the state machine over the backend's state half, after checking
/// that it was built on exactly what the backend holds and that the log holds the entry it
/// brings the state machine to. The stored commit index may stay below the new applied index
/// (it is written with the log's batches, in their order): it is volatile, and recovery takes
/// the larger of the two.
pub(crate) fn write_state(
    store: &mut dyn StoreWrite,
    state: &LogState,
    flush: &StateFlush,
) -> Result<LogState, StorageError> {
    let to = &flush.to;
    if flush.from != state.applied {
        return Err(StorageError::InvalidRequest(format!(
            "a state-machine layer built on applied index {} but the store holds {}",
            flush.from, state.applied
        )));
    }
    if to.applied < flush.from || to.applied > state.last_index {
        return Err(StorageError::InvalidRequest(format!(
            "a state-machine layer up to {} but the log holds {}..={}",
            to.applied, state.first_index, state.last_index
        )));
    }
    let term = term_at(store, state, to.applied)?;
    if term != to.applied_term {
        return Err(StorageError::InvalidRequest(format!(
            "a state-machine layer up to entry {} of term {}, but the log holds term {term} there",
            to.applied, to.applied_term
        )));
    }
    flush.layer.write_to(store)?;
    let mut next = state.clone();
    next.applied = to.applied;
    next.applied_term = to.applied_term;
    next.revision = to.revision;
    next.journal = to.journal.clone();
    next.membership = to.membership.clone();
    next.membership_index = to.membership_index;
    Ok(next)
}

/// Drops the log through `through` and records the prefix it covered.
pub(crate) fn compact_log(
    store: &mut dyn LogWrite,
    state: &LogState,
    through: LogIndex,
) -> Result<LogState, StorageError> {
    if through <= state.snapshot.last_included_index {
        return Ok(state.clone());
    }
    if through > state.applied {
        return Err(StorageError::InvalidRequest(format!(
            "cannot compact the log through {through}: only {} is applied",
            state.applied
        )));
    }
    let term = term_at(store, state, through)?;
    let removed_config = store.log_remove_through(through)?;
    // The membership in force at `through`: the applied one if it is not newer, else the last
    // Config entry removed, else the one the previous prefix recorded.
    let membership = if state.membership_index <= through {
        state.membership.clone()
    } else if let Some((_, membership)) = removed_config {
        membership
    } else {
        state.snapshot.membership.clone()
    };
    let snapshot = SnapshotMeta {
        last_included_index: through,
        last_included_term: term,
        membership,
    };
    store.set_snapshot_meta(&snapshot)?;
    let mut next = state.clone();
    next.first_index = through.next();
    if state.last_index == through {
        next.last_term = term;
    }
    next.snapshot = snapshot;
    Ok(next)
}

/// Checks that a snapshot may replace the state (at its header, and again at the swap).
pub(crate) fn check_install(
    store: &mut dyn LogRead,
    state: &LogState,
    meta: &SnapshotMeta,
) -> Result<bool, StorageError> {
    let index = meta.last_included_index;
    if index <= state.applied {
        return Err(StorageError::Snapshot(format!(
            "stale: the snapshot ends at {index} but {} is already applied",
            state.applied
        )));
    }
    if meta.last_included_term > state.hard_state.term {
        return Err(StorageError::Snapshot(format!(
            "the snapshot's term {} is above the node's term {}: persist the hard state first",
            meta.last_included_term, state.hard_state.term
        )));
    }
    let ours = if index <= state.last_index {
        Some(term_at(store, state, index)?)
    } else {
        None
    };
    let keep_suffix = ours == Some(meta.last_included_term);
    if index <= state.hard_state.commit && !keep_suffix {
        return Err(StorageError::Snapshot(format!(
            "the snapshot's entry {index} (term {}) conflicts with the committed entry of term {:?}",
            meta.last_included_term, ours
        )));
    }
    Ok(keep_suffix)
}

/// Everything of an install but the KV, session and journal tables, which the backend swaps in
/// the same transaction: the log half here, the state machine's rows by `state::install`.
pub(crate) fn finish_install(
    store: &mut dyn StoreWrite,
    state: &LogState,
    header: &SnapshotHeader,
) -> Result<LogState, StorageError> {
    let meta = &header.meta;
    let keep_suffix = check_install(store, state, meta)?;
    let index = meta.last_included_index;
    // Raft §7: keep the entries after the snapshot if the log agrees at its index, else drop
    // the whole log.
    if keep_suffix {
        store.log_remove_through(index)?;
    } else if state.last_index >= state.first_index {
        store.log_remove_from(state.first_index)?;
    }
    store.set_snapshot_meta(meta)?;
    state::install(store, header)?;
    let mut hard_state = state.hard_state;
    if hard_state.commit < index {
        hard_state.commit = index;
        store.set_hard_state(&hard_state)?;
    }
    let (last_index, last_term) = if keep_suffix && state.last_index > index {
        (state.last_index, state.last_term)
    } else {
        (index, meta.last_included_term)
    };
    Ok(LogState {
        hard_state,
        snapshot: meta.clone(),
        first_index: index.next(),
        last_index,
        last_term,
        applied: index,
        applied_term: meta.last_included_term,
        membership: meta.membership.clone(),
        membership_index: index,
        revision: header.revision,
        journal: header.journal.clone(),
    })
}

pub(crate) fn entries(
    store: &mut dyn LogRead,
    state: &LogState,
    lo: LogIndex,
    hi: LogIndex,
    bytes_max: usize,
) -> Result<Vec<Entry>, StorageError> {
    if lo >= hi {
        return Ok(Vec::new());
    }
    if lo < state.first_index {
        return Err(StorageError::Compacted {
            index: lo,
            snapshot_index: state.snapshot.last_included_index,
        });
    }
    if hi > state.last_index.next() {
        return Err(StorageError::Unavailable {
            index: hi.prev(),
            last: state.last_index,
        });
    }
    let entries = store.log_entries(lo, hi, bytes_max)?;
    let contiguous = entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.index.0 == lo.0 + i as u64);
    if entries.is_empty() || !contiguous {
        return Err(StorageError::damaged(
            store.path(),
            format!("the log has a gap within {lo}..{hi}"),
        ));
    }
    Ok(entries)
}

/// The term at `index` when the summary alone knows it: index 0, and the snapshot's index
/// (whose entry the log no longer holds). A backend answers these without reading the store.
pub(crate) fn term_without_log(state: &LogState, index: LogIndex) -> Option<Term> {
    if index == LogIndex(0) {
        Some(Term(0))
    } else if index == state.snapshot.last_included_index {
        Some(state.snapshot.last_included_term)
    } else {
        None
    }
}

pub(crate) fn term(
    store: &mut dyn LogRead,
    state: &LogState,
    index: LogIndex,
) -> Result<Term, StorageError> {
    if let Some(term) = term_without_log(state, index) {
        return Ok(term);
    }
    if index < state.snapshot.last_included_index {
        return Err(StorageError::Compacted {
            index,
            snapshot_index: state.snapshot.last_included_index,
        });
    }
    if index > state.last_index {
        return Err(StorageError::Unavailable {
            index,
            last: state.last_index,
        });
    }
    term_at(store, state, index)
}

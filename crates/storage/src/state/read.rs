//! The state machine's local queries (the bodies of `StateReader`, over any backend's state
//! half) and its part of recovery: the checks of its stored invariants.
//!
//! Invariant: these only read. A query answers from one consistent view of the tables; a
//! stored record that breaks an invariant is `StorageError::Damaged`, never repaired here.

use super::command::{KeyValue, RANGE_BYTES_MAX, RANGE_LIMIT_MAX};
use super::journal::{JournalOp, JournalPage, JournalState};
use super::{ChangePage, StateDigest};
use crate::error::StorageError;
use crate::store::{encode_row, StateRead};

/// The state machine's stored invariants, checked by recovery after the log's: the change
/// feed's floor, the session count, and the journal table against its summary (`journal`, as
/// the summary of the durable state read it). Returns the first broken rule, if any.
pub(crate) fn check_stored(
    store: &mut dyn StateRead,
    journal: &JournalState,
) -> Result<Option<String>, StorageError> {
    let sm = store.sm_meta()?;
    if sm.changes_floor > sm.revision {
        return Ok(Some(format!(
            "change feed floor {} is above the revision {}",
            sm.changes_floor, sm.revision
        )));
    }
    let mut session_count = 0u64;
    store.session_scan(&mut |_, _| {
        session_count += 1;
        Ok(())
    })?;
    if session_count != sm.session_count {
        return Ok(Some(format!(
            "{session_count} sessions stored but the state machine counts {}",
            sm.session_count
        )));
    }
    if let Err(problem) = journal.check() {
        return Ok(Some(problem));
    }
    let bounds = store.journal_bounds()?;
    let expected_bounds = (journal.count() > 0).then_some((journal.first, journal.last));
    if bounds != expected_bounds {
        return Ok(Some(format!(
            "the journal table holds {bounds:?} but its summary says {}..={}",
            journal.first, journal.last
        )));
    }
    Ok(None)
}

/// `StateReader::kv_range`: the limit capped at `RANGE_LIMIT_MAX`, the bytes at
/// `RANGE_BYTES_MAX`.
pub(crate) fn kv_range(
    store: &mut dyn StateRead,
    prefix: &[u8],
    limit: u32,
) -> Result<(Vec<KeyValue>, bool), StorageError> {
    let limit = limit.min(RANGE_LIMIT_MAX) as usize;
    let (pairs, more) = store.kv_range(prefix, None, limit, RANGE_BYTES_MAX)?;
    let kvs = pairs
        .into_iter()
        .map(|(key, r)| KeyValue {
            key,
            value: r.value,
            create_revision: r.create_revision,
            mod_revision: r.mod_revision,
            version: r.version,
        })
        .collect();
    Ok((kvs, more))
}

/// `StateReader::kv_get`.
pub(crate) fn kv_get(
    store: &mut dyn StateRead,
    key: &[u8],
) -> Result<Option<KeyValue>, StorageError> {
    Ok(store.kv_get(key)?.map(|r| KeyValue {
        key: key.to_vec(),
        value: r.value,
        create_revision: r.create_revision,
        mod_revision: r.mod_revision,
        version: r.version,
    }))
}

/// `StateReader::changes_after`: `ChangesCompacted` below the feed's floor.
pub(crate) fn changes_after(
    store: &mut dyn StateRead,
    revision: u64,
    limit: usize,
) -> Result<ChangePage, StorageError> {
    let meta = store.sm_meta()?;
    if revision < meta.changes_floor {
        return Err(StorageError::ChangesCompacted {
            requested: revision,
            floor: meta.changes_floor,
        });
    }
    let (changes, more) = store.changes_after(revision, limit)?;
    Ok(ChangePage { changes, more })
}

/// `StateReader::journal_page`.
pub(crate) fn journal_page(
    store: &mut dyn StateRead,
    from: u64,
    limit: usize,
    bytes_max: usize,
) -> Result<JournalPage, StorageError> {
    let state = store.journal_state()?;
    if from < state.first {
        return Err(StorageError::JournalCompacted {
            requested: from,
            first: state.first,
        });
    }
    let ops = if from > state.last {
        Vec::new()
    } else {
        store
            .journal_range(from, limit, bytes_max)?
            .into_iter()
            .map(|(index, record)| JournalOp {
                index,
                term: record.term,
                op: record.op,
            })
            .collect()
    };
    let dense = ops
        .iter()
        .enumerate()
        .all(|(i, op)| op.index == from + i as u64);
    if !dense || (from <= state.last && ops.is_empty()) {
        return Err(StorageError::damaged(
            store.path(),
            format!(
                "the journal has a gap after {from} (it should hold {}..={})",
                state.first, state.last
            ),
        ));
    }
    Ok(JournalPage { ops, state })
}

/// `StateReader::digest`: counts and crcs of the KV, session and journal tables.
pub(crate) fn digest(store: &mut dyn StateRead) -> Result<StateDigest, StorageError> {
    let meta = store.sm_meta()?;
    let (mut kv_count, mut kv_crc) = (0u64, 0u32);
    store.kv_scan(&mut |key, value| {
        kv_count += 1;
        kv_crc = crc32c::crc32c_append(kv_crc, &(key.len() as u32).to_le_bytes());
        kv_crc = crc32c::crc32c_append(kv_crc, key);
        kv_crc = crc32c::crc32c_append(kv_crc, value);
        Ok(())
    })?;
    let (mut session_count, mut session_crc) = (0u64, 0u32);
    store.session_scan(&mut |key, value| {
        session_count += 1;
        session_crc = crc32c::crc32c_append(session_crc, key);
        session_crc = crc32c::crc32c_append(session_crc, value);
        Ok(())
    })?;
    let journal = store.journal_state()?;
    let mut journal_crc = crc32c::crc32c(&encode_row(&journal));
    let mut journal_count = 0u64;
    store.journal_scan(&mut |key, value| {
        journal_count += 1;
        journal_crc = crc32c::crc32c_append(journal_crc, key);
        journal_crc = crc32c::crc32c_append(journal_crc, value);
        Ok(())
    })?;
    Ok(StateDigest {
        journal_count,
        journal_crc,
        applied: meta.applied,
        revision: meta.revision,
        kv_count,
        kv_crc,
        session_count,
        session_crc,
    })
}

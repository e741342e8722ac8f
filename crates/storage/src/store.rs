//! The primitive operations of one storage transaction: the only code each backend (redb,
//! memory) implements, in two halves. The log half (`LogRead`, `LogWrite`: the hard state, the
//! snapshot prefix, the entries) is what the log engine (`engine`, `recovery`) builds on; the
//! state half (`StateRead`, `StateWrite`: the state machine's tables) is what the state machine
//! (`state`) builds on. Batches, apply, compaction, recovery and snapshots are written once on
//! top of these, so both backends give the same answers.
//!
//! Invariant: a primitive changes exactly what it names, and a view implements a half only if
//! it can answer every method of it. Atomicity is the backend's: a redb write transaction, or
//! the memory store's undo log.

use super::error::StorageError;
use super::state::{
    Change, JournalRecord, JournalState, KvRecord, MembershipRecord, SessionRecord, SmMeta,
};
use super::SnapshotMeta;
use regent_raft::{Entry, EntryPayload, HardState, LogIndex, Membership, Term};
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::Path;

/// Keys with their records, and whether more keys matched.
pub(crate) type KvPage = (Vec<(Vec<u8>, KvRecord)>, bool);

/// A visitor of raw records: key bytes and value bytes as stored.
pub(crate) type RecordVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StorageError> + 'a;

/// What both halves share: the file the store lives in, for error messages.
pub(crate) trait StorePath {
    fn path(&self) -> &Path;
}

/// Reads of the log half: the hard state, the snapshot prefix and the entries.
pub(crate) trait LogRead: StorePath {
    fn hard_state(&mut self) -> Result<HardState, StorageError>;
    fn snapshot_meta(&mut self) -> Result<SnapshotMeta, StorageError>;
    /// The first and last index present, or `None` for an empty log.
    fn log_bounds(&mut self) -> Result<Option<(LogIndex, LogIndex)>, StorageError>;
    fn log_term(&mut self, index: LogIndex) -> Result<Option<Term>, StorageError>;
    /// How many entries the log holds (O(1)).
    fn log_len(&mut self) -> Result<u64, StorageError>;
    /// The entries present in `lo..hi`, stopping after the one that passes `bytes_max`.
    fn log_entries(
        &mut self,
        lo: LogIndex,
        hi: LogIndex,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError>;
    /// Visits the index and term of every entry, in index order.
    fn log_scan_terms(
        &mut self,
        visit: &mut dyn FnMut(LogIndex, Term) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;
}

/// Reads of the state half: the state machine's metadata, the applied membership, the KV
/// table, the sessions, the change feed and the journal.
pub(crate) trait StateRead: StorePath {
    fn membership(&mut self) -> Result<MembershipRecord, StorageError>;
    fn sm_meta(&mut self) -> Result<SmMeta, StorageError>;
    fn kv_get(&mut self, key: &[u8]) -> Result<Option<KvRecord>, StorageError>;
    /// Keys starting with `prefix` (and above `after`, if given) in order: at most `limit`,
    /// stopping after the pair that passes `bytes_max`. The flag tells whether more keys match.
    /// Where the range starts is `kv_range_start`.
    fn kv_range(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<KvPage, StorageError>;
    /// Visits every key and its encoded record (`KvRecord::encode`), in key order.
    fn kv_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError>;
    fn session(&mut self, client_id: u64) -> Result<Option<SessionRecord>, StorageError>;
    /// Visits every session id (8 bytes, big-endian) and its encoded record, in id order.
    fn session_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError>;
    /// The changes with a revision above `revision`, at most `limit`, and whether more follow.
    fn changes_after(
        &mut self,
        revision: u64,
        limit: usize,
    ) -> Result<(Vec<Change>, bool), StorageError>;
    fn journal_state(&mut self) -> Result<JournalState, StorageError>;
    /// The journal operations from index `from` on, in order: at most `limit`, stopping after
    /// the one that passes `bytes_max`.
    fn journal_range(
        &mut self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<(u64, JournalRecord)>, StorageError>;
    /// The first and last journal index present, or `None` when the table is empty.
    fn journal_bounds(&mut self) -> Result<Option<(u64, u64)>, StorageError>;
    /// Visits every journal index (8 bytes, big-endian) and its encoded record, in order.
    fn journal_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError>;
}

/// Writes of the log half.
pub(crate) trait LogWrite: LogRead {
    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError>;
    fn set_snapshot_meta(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError>;
    fn log_append(&mut self, entry: &Entry) -> Result<(), StorageError>;
    /// Removes every entry at or after `from`.
    fn log_remove_from(&mut self, from: LogIndex) -> Result<(), StorageError>;
    /// Removes every entry at or before `through`; returns the last `Config` entry removed.
    fn log_remove_through(
        &mut self,
        through: LogIndex,
    ) -> Result<Option<(LogIndex, Membership)>, StorageError>;
}

/// Writes of the state half.
pub(crate) trait StateWrite: StateRead {
    fn set_membership(&mut self, record: &MembershipRecord) -> Result<(), StorageError>;
    fn set_sm_meta(&mut self, meta: &SmMeta) -> Result<(), StorageError>;
    fn kv_put(&mut self, key: &[u8], record: &KvRecord) -> Result<(), StorageError>;
    fn kv_remove(&mut self, key: &[u8]) -> Result<(), StorageError>;
    fn session_put(&mut self, client_id: u64, record: &SessionRecord) -> Result<(), StorageError>;
    fn session_remove(&mut self, client_id: u64) -> Result<(), StorageError>;
    fn change_put(&mut self, change: &Change) -> Result<(), StorageError>;
    /// Removes every change with a revision at or below `revision`.
    fn changes_remove_through(&mut self, revision: u64) -> Result<(), StorageError>;
    fn set_journal_state(&mut self, state: &JournalState) -> Result<(), StorageError>;
    fn journal_put(&mut self, index: u64, record: &JournalRecord) -> Result<(), StorageError>;
    /// Removes every journal operation at or below `index`.
    fn journal_remove_through(&mut self, index: u64) -> Result<(), StorageError>;
}

/// Where `StateRead::kv_range` starts: above `after` when it is given and not below
/// `prefix`, else at `prefix` (every key with the prefix is then above `after`).
pub(crate) fn kv_range_start<'k>(prefix: &'k [u8], after: Option<&'k [u8]>) -> Bound<&'k [u8]> {
    match after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    }
}

/// Both halves, read: for recovery and the summary of the durable state.
pub(crate) trait StoreRead: LogRead + StateRead {}
impl<T: LogRead + StateRead + ?Sized> StoreRead for T {}

/// Both halves, written: for the swap at the end of a snapshot install, and for the backends
/// that hand one transaction to the log engine and then to the state machine.
pub(crate) trait StoreWrite: StoreRead + LogWrite + StateWrite {}
impl<T: LogWrite + StateWrite + ?Sized> StoreWrite for T {}

// The encodings of stored values, shared by redb (which stores them) and the memory store
// (which uses them for snapshots and digests), so both produce the same bytes.

const ENTRY_NOOP: u8 = 0;
const ENTRY_NORMAL: u8 = 1;
const ENTRY_CONFIG: u8 = 2;
/// Term (8 bytes, little-endian) then the payload tag.
pub(crate) const ENTRY_HEADER_BYTES: usize = 9;

/// A log entry as stored: the term first, so that a term lookup reads 8 bytes.
pub(crate) fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.size_bytes() + ENTRY_HEADER_BYTES);
    out.extend_from_slice(&entry.term.0.to_le_bytes());
    match &entry.payload {
        EntryPayload::Noop => out.push(ENTRY_NOOP),
        EntryPayload::Normal(data) => {
            out.push(ENTRY_NORMAL);
            out.extend_from_slice(data);
        }
        EntryPayload::Config(membership) => {
            out.push(ENTRY_CONFIG);
            out.extend_from_slice(&encode_row(membership));
        }
    }
    out
}

pub(crate) fn entry_term(bytes: &[u8]) -> Result<Term, String> {
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("log entry of {} bytes has no term", bytes.len()))?;
    Ok(Term(u64::from_le_bytes(head)))
}

pub(crate) fn decode_entry(index: LogIndex, bytes: &[u8]) -> Result<Entry, String> {
    let term = entry_term(bytes)?;
    let Some(&tag) = bytes.get(8) else {
        return Err(format!("log entry {index} has no payload tag"));
    };
    let body = &bytes[ENTRY_HEADER_BYTES..];
    let payload = match tag {
        ENTRY_NOOP if body.is_empty() => EntryPayload::Noop,
        ENTRY_NORMAL => EntryPayload::Normal(body.to_vec()),
        ENTRY_CONFIG => EntryPayload::Config(
            decode_row(body).map_err(|e| format!("log entry {index}: membership: {e}"))?,
        ),
        _ => return Err(format!("log entry {index}: unknown payload tag {tag}")),
    };
    Ok(Entry {
        term,
        index,
        payload,
    })
}

/// The membership carried by an encoded entry, if it is a `Config` entry.
pub(crate) fn entry_config(index: LogIndex, bytes: &[u8]) -> Result<Option<Membership>, String> {
    match bytes.get(8) {
        Some(&ENTRY_CONFIG) => match decode_entry(index, bytes)?.payload {
            EntryPayload::Config(m) => Ok(Some(m)),
            _ => unreachable!("tag checked above"),
        },
        Some(_) => Ok(None),
        None => Err(format!("log entry {index} has no payload tag")),
    }
}

/// A single-row value (hard state, membership, metadata) as stored.
pub(crate) fn encode_row<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    postcard::to_allocvec(value).expect("postcard encodes plain data")
}

pub(crate) fn decode_row<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regent_raft::NodeId;

    #[test]
    fn entry_encoding_round_trips() {
        for payload in [
            EntryPayload::Noop,
            EntryPayload::Normal(b"abc".to_vec()),
            EntryPayload::Normal(vec![]),
            EntryPayload::Config(Membership::new([NodeId(1), NodeId(2)])),
        ] {
            let entry = Entry {
                term: Term(7),
                index: LogIndex(9),
                payload,
            };
            let bytes = encode_entry(&entry);
            assert_eq!(decode_entry(LogIndex(9), &bytes), Ok(entry.clone()));
            assert_eq!(entry_term(&bytes), Ok(Term(7)));
        }
        assert!(decode_entry(LogIndex(1), &[1, 2]).is_err());
        assert!(decode_entry(LogIndex(1), &[0, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
    }
}

//! The host's operation journal: an ordered log of the master's own operations, kept in the
//! replicated state machine (so it survives Raft log compaction and travels in snapshots), with
//! its own dense index (1, 2, 3, … without gaps) and, for each operation, the term of the Raft
//! entry that carried it.
//!
//! Invariants: the journal holds exactly the operations `first..=last` (`first = last + 1` when
//! it is empty) and `bytes` is the sum of their sizes; indexes are never reused; truncation is
//! a pure function of the replicated state and the command (the retention bounds travel in the
//! command), so every node retains the same range and the state digests stay equal.

use super::command::{CommandError, JournalRetention, Outcome, Response};
use super::meta::SmMeta;
use crate::error::StorageError;
use crate::store::StateWrite;
use regent_raft::{Entry, Membership};
use serde::{Deserialize, Serialize};

/// Operations read per step of a truncation scan.
const TRUNCATE_PAGE: usize = 1024;

/// The journal's summary, one row in the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalState {
    /// The first retained index (`last + 1` when nothing is retained).
    pub first: u64,
    /// The last index ever appended (0 before the first append).
    pub last: u64,
    /// The bytes of the retained operations.
    pub bytes: u64,
    /// The term of the operation at `last` (0 before the first append).
    pub last_term: u64,
    /// The last index appended in a term below `last_term`.
    pub last_before_term: u64,
    /// What each member's host reported, by node id (ascending, no duplicates).
    pub members: Vec<JournalMember>,
}

impl Default for JournalState {
    fn default() -> Self {
        JournalState {
            first: 1,
            last: 0,
            bytes: 0,
            last_term: 0,
            last_before_term: 0,
            members: Vec::new(),
        }
    }
}

/// One member's reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalMember {
    pub node: u64,
    /// The journal index the host has applied to its in-memory state.
    pub applied: u64,
    /// The journal index its own durable checkpoint covers.
    pub checkpoint: u64,
}

impl JournalState {
    /// The number of retained operations.
    pub fn count(&self) -> u64 {
        self.last + 1 - self.first
    }

    /// The hand-over index for a leader of `term`: the last journal index committed in an
    /// earlier term. A new leader's host applies everything up to it before writing.
    pub fn catch_up_index(&self, term: u64) -> u64 {
        if self.last_term < term {
            self.last
        } else {
            self.last_before_term
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let sorted = self.members.windows(2).all(|w| w[0].node < w[1].node);
        if self.first == 0 || self.first > self.last + 1 || !sorted {
            return Err(format!(
                "journal state with first {} last {} (members sorted: {sorted})",
                self.first, self.last
            ));
        }
        if self.last_before_term > self.last || (self.count() == 0 && self.bytes != 0) {
            return Err(format!(
                "journal state with last {} before-term {} and {} bytes for {} operations",
                self.last,
                self.last_before_term,
                self.bytes,
                self.count()
            ));
        }
        Ok(())
    }
}

/// One operation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    pub term: u64,
    /// The log time of the entry that carried it (for the age bound).
    pub time_ms: u64,
    pub op: Vec<u8>,
}

/// Term (8 bytes, little-endian), log time (8), then the operation.
pub(crate) const JOURNAL_RECORD_HEADER_BYTES: usize = 16;

impl JournalRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(JOURNAL_RECORD_HEADER_BYTES + self.op.len());
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        out.extend_from_slice(&self.op);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<JournalRecord, String> {
        if bytes.len() < JOURNAL_RECORD_HEADER_BYTES {
            return Err(format!(
                "journal record of {} bytes is too short",
                bytes.len()
            ));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        Ok(JournalRecord {
            term: word(0),
            time_ms: word(1),
            op: bytes[JOURNAL_RECORD_HEADER_BYTES..].to_vec(),
        })
    }
}

/// One retained operation, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalOp {
    pub index: u64,
    pub term: u64,
    pub op: Vec<u8>,
}

/// A page of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalPage {
    pub ops: Vec<JournalOp>,
    /// The journal's summary when the page was read.
    pub state: JournalState,
}

/// Appends validated operations.
pub(crate) fn append(
    store: &mut dyn StateWrite,
    meta: &SmMeta,
    entry: &Entry,
    ops: &[Vec<u8>],
    retention: &JournalRetention,
) -> Result<Outcome, StorageError> {
    let mut state = store.journal_state()?;
    let term = entry.term.0;
    assert!(term >= state.last_term, "terms never decrease in the log");
    if term > state.last_term {
        state.last_before_term = state.last;
        state.last_term = term;
    }
    let first = state.last + 1;
    for op in ops {
        state.last += 1;
        state.bytes += op.len() as u64;
        store.journal_put(
            state.last,
            &JournalRecord {
                term,
                time_ms: meta.log_time_ms,
                op: op.clone(),
            },
        )?;
    }
    let last = state.last;
    truncate(store, meta, &mut state, retention)?;
    store.set_journal_state(&state)?;
    Ok(Ok(Response::JournalAppended { first, last }))
}

/// The answer to a retried append, made from its first answer (`first..=last`): the entry
/// carrying the retry has a term of its own, so it is answered with the term the operations
/// were stored with, as the first answer was (`None` once the journal no longer holds them).
pub(crate) fn retried(
    store: &mut dyn StateWrite,
    first: u64,
    last: u64,
) -> Result<Response, StorageError> {
    let term = store
        .journal_range(last, 1, 0)?
        .into_iter()
        .find(|(index, _)| *index == last)
        .map(|(_, record)| record.term);
    Ok(Response::JournalRetried { first, last, term })
}

/// Records a member's report (each index only moves forward).
pub(crate) fn report(
    store: &mut dyn StateWrite,
    meta: &SmMeta,
    node: u64,
    applied: Option<u64>,
    checkpoint: Option<u64>,
    retention: &JournalRetention,
) -> Result<Outcome, StorageError> {
    let mut state = store.journal_state()?;
    for index in applied.iter().chain(checkpoint.iter()) {
        if *index > state.last {
            return Ok(Err(CommandError::JournalReportAhead {
                index: *index,
                last: state.last,
            }));
        }
    }
    // Reports of nodes that left the configuration are dropped, so the list stays bounded.
    let membership = store.membership()?.membership;
    state
        .members
        .retain(|m| m.node == node || is_member(&membership, m.node));
    let at = match state.members.binary_search_by_key(&node, |m| m.node) {
        Ok(at) => at,
        Err(at) => {
            state.members.insert(
                at,
                JournalMember {
                    node,
                    ..Default::default()
                },
            );
            at
        }
    };
    let member = &mut state.members[at];
    if let Some(applied) = applied {
        member.applied = member.applied.max(applied);
    }
    if let Some(checkpoint) = checkpoint {
        member.checkpoint = member.checkpoint.max(checkpoint);
    }
    truncate(store, meta, &mut state, retention)?;
    store.set_journal_state(&state)?;
    Ok(Ok(Response::JournalReported {
        first: state.first,
        last: state.last,
    }))
}

fn is_member(membership: &Membership, node: u64) -> bool {
    membership.members().into_iter().any(|id| id.0 == node)
}

/// Drops the prefix that every member's host has checkpointed past, then whatever breaks a
/// retention bound (count, bytes, age by log time), oldest first.
fn truncate(
    store: &mut dyn StateWrite,
    meta: &SmMeta,
    state: &mut JournalState,
    retention: &JournalRetention,
) -> Result<(), StorageError> {
    let membership = store.membership()?.membership;
    let members = membership.members();
    // A member that never reported holds everything (checkpoint 0). An empty membership
    // (a store that never applied a configuration) holds everything too.
    let checkpointed = if members.is_empty() {
        0
    } else {
        members
            .iter()
            .map(|id| {
                state
                    .members
                    .binary_search_by_key(&id.0, |m| m.node)
                    .map_or(0, |at| state.members[at].checkpoint)
            })
            .min()
            .unwrap_or(0)
    };
    let mut through = state.first - 1;
    let mut count = state.count();
    let mut bytes = state.bytes;
    let mut done = false;
    while !done && through < state.last {
        let page = store.journal_range(through + 1, TRUNCATE_PAGE, usize::MAX)?;
        if page.is_empty() {
            return Err(StorageError::damaged(
                store.path(),
                format!(
                    "journal operation {} is missing (the journal holds {}..={})",
                    through + 1,
                    state.first,
                    state.last
                ),
            ));
        }
        for (index, record) in page {
            assert_eq!(index, through + 1, "the journal is dense");
            let drop = index <= checkpointed
                || count > retention.count_max
                || bytes > retention.bytes_max
                || meta.log_time_ms.saturating_sub(record.time_ms) > retention.age_max_ms;
            if !drop {
                done = true;
                break;
            }
            through = index;
            count -= 1;
            bytes -= record.op.len() as u64;
        }
    }
    if through >= state.first {
        store.journal_remove_through(through)?;
        state.first = through + 1;
        state.bytes = bytes;
    }
    assert!(
        state.check().is_ok(),
        "truncation keeps the journal state valid"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_catch_up_follows_terms() {
        let record = JournalRecord {
            term: 3,
            time_ms: 99,
            op: b"mkdir /a".to_vec(),
        };
        assert_eq!(JournalRecord::decode(&record.encode()), Ok(record));
        assert!(JournalRecord::decode(&[0; 15]).is_err());
        let state = JournalState {
            first: 1,
            last: 10,
            bytes: 10,
            last_term: 4,
            last_before_term: 7,
            members: vec![],
        };
        assert_eq!(
            state.catch_up_index(5),
            10,
            "everything is from earlier terms"
        );
        assert_eq!(
            state.catch_up_index(4),
            7,
            "ops of term 4 are the leader's own"
        );
        assert!(state.check().is_ok());
        assert!(JournalState {
            first: 12,
            ..state.clone()
        }
        .check()
        .is_err());
    }
}

//! Exactly-once client sessions: a command carrying (client id, seq) is applied once; a retry
//! is answered from the recorded result.
//!
//! Invariant: sessions live and die by log time (the largest leader-assigned time among the
//! applied proposals), never by the local clock, so every node opens, answers and expires the
//! same sessions at the same index. Every limit is a constant for the same reason.

use super::command::{CommandError, Outcome, Response, SessionSeq};
use super::meta::SmMeta;
use crate::error::StorageError;
use crate::store::{decode_row, StateWrite};
use regent_raft::LogIndex;
use serde::{Deserialize, Serialize};

/// Registering beyond this many open sessions fails with `SessionsFull`.
pub const SESSIONS_MAX: u64 = 10_000;
/// Each session keeps the results of at most this many unacknowledged commands.
pub const SESSION_RESULTS_MAX: usize = 128;
pub const SESSION_TTL_MIN_MS: u64 = 1_000;
pub const SESSION_TTL_MAX_MS: u64 = 24 * 3600 * 1000;
/// Expired sessions are swept when the log time enters a new interval of this length.
pub const SESSION_SWEEP_INTERVAL_MS: u64 = 1_000;

/// One open session, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub ttl_ms: u64,
    /// The log time of the session's last command.
    pub last_active_ms: u64,
    /// Every seq below this one was answered (or refused); its result may be gone.
    pub floor_seq: u64,
    /// Recorded results by seq, in increasing seq order, all at or above `floor_seq`.
    pub results: Vec<(u64, Outcome)>,
}

impl SessionRecord {
    pub fn is_expired(&self, log_time_ms: u64) -> bool {
        self.last_active_ms.saturating_add(self.ttl_ms) < log_time_ms
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let sorted = self.results.windows(2).all(|w| w[0].0 < w[1].0);
        let above_floor = self.results.first().is_none_or(|r| r.0 >= self.floor_seq);
        if !sorted || !above_floor || self.results.len() > SESSION_RESULTS_MAX {
            return Err("session record with unordered or excess results".into());
        }
        Ok(())
    }
}

pub(crate) enum Check {
    /// Not seen before: apply it, then `record`.
    Fresh(SessionRecord),
    /// A retry of an applied command: its recorded result.
    Duplicate(Outcome),
    Rejected(CommandError),
}

pub(crate) fn register(
    store: &mut dyn StateWrite,
    meta: &mut SmMeta,
    index: LogIndex,
    ttl_ms: u64,
) -> Result<Outcome, StorageError> {
    if !(SESSION_TTL_MIN_MS..=SESSION_TTL_MAX_MS).contains(&ttl_ms) {
        return Ok(Err(CommandError::SessionTtl {
            ttl_ms,
            min: SESSION_TTL_MIN_MS,
            max: SESSION_TTL_MAX_MS,
        }));
    }
    if meta.session_count >= SESSIONS_MAX {
        return Ok(Err(CommandError::SessionsFull { max: SESSIONS_MAX }));
    }
    // The entry's index is unique in the log, so it is a client id no other node can pick
    // differently.
    let client_id = index.0;
    assert!(
        store.session(client_id)?.is_none(),
        "an index registers once"
    );
    store.session_put(
        client_id,
        &SessionRecord {
            ttl_ms,
            last_active_ms: meta.log_time_ms,
            floor_seq: 0,
            results: Vec::new(),
        },
    )?;
    meta.session_count += 1;
    Ok(Ok(Response::SessionRegistered { client_id }))
}

pub(crate) fn check(
    store: &mut dyn StateWrite,
    meta: &mut SmMeta,
    seq: SessionSeq,
) -> Result<Check, StorageError> {
    let unknown = CommandError::SessionUnknown {
        client_id: seq.client_id,
    };
    let Some(record) = store.session(seq.client_id)? else {
        return Ok(Check::Rejected(unknown));
    };
    if record.is_expired(meta.log_time_ms) {
        store.session_remove(seq.client_id)?;
        meta.session_count -= 1;
        return Ok(Check::Rejected(unknown));
    }
    if let Ok(i) = record.results.binary_search_by_key(&seq.seq, |r| r.0) {
        return Ok(Check::Duplicate(record.results[i].1.clone()));
    }
    if seq.seq < record.floor_seq {
        return Ok(Check::Rejected(CommandError::SeqDiscarded {
            client_id: seq.client_id,
            seq: seq.seq,
        }));
    }
    Ok(Check::Fresh(record))
}

/// Records the outcome of a fresh command and refreshes the session's activity.
pub(crate) fn record(
    store: &mut dyn StateWrite,
    meta: &SmMeta,
    seq: SessionSeq,
    mut record: SessionRecord,
    outcome: &Outcome,
    keep_result: bool,
) -> Result<(), StorageError> {
    record.last_active_ms = meta.log_time_ms;
    if keep_result {
        let at = record
            .results
            .binary_search_by_key(&seq.seq, |r| r.0)
            .expect_err("a fresh seq has no result yet");
        record.results.insert(at, (seq.seq, outcome.clone()));
    }
    // The client will not retry below `acked_below`; results beyond the cap are dropped
    // oldest first, and the floor rises so that a late retry is refused, never re-applied.
    if seq.acked_below > record.floor_seq {
        record.floor_seq = seq.acked_below;
    }
    let floor = record.floor_seq;
    record.results.retain(|r| r.0 >= floor);
    while record.results.len() > SESSION_RESULTS_MAX {
        let (dropped, _) = record.results.remove(0);
        record.floor_seq = record.floor_seq.max(dropped + 1);
    }
    assert!(record.check().is_ok(), "session record stays ordered");
    store.session_put(seq.client_id, &record)
}

/// Removes the expired sessions once per sweep interval of log time.
pub(crate) fn maybe_sweep(
    store: &mut dyn StateWrite,
    meta: &mut SmMeta,
) -> Result<(), StorageError> {
    let bucket = meta.log_time_ms / SESSION_SWEEP_INTERVAL_MS;
    if bucket == meta.sweep_bucket {
        return Ok(());
    }
    meta.sweep_bucket = bucket;
    if meta.session_count == 0 {
        return Ok(());
    }
    let mut expired = Vec::new();
    let log_time_ms = meta.log_time_ms;
    let path = store.path().to_path_buf();
    store.session_scan(&mut |key, value| {
        let record: SessionRecord = decode_row(value)
            .map_err(|e| StorageError::damaged(&path, format!("session record: {e}")))?;
        if record.is_expired(log_time_ms) {
            let id: [u8; 8] = key
                .try_into()
                .map_err(|_| StorageError::damaged(&path, "session key is not 8 bytes"))?;
            expired.push(u64::from_be_bytes(id));
        }
        Ok(())
    })?;
    for id in expired {
        store.session_remove(id)?;
        meta.session_count -= 1;
    }
    Ok(())
}

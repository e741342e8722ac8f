//! The state machine's single-row records: its metadata (`SmMeta`: how far it has applied, the
//! revision, the log time, the session count) and the applied membership (`MembershipRecord`).
//!
//! Invariant: both rows change only with the apply of committed entries or the swap of an
//! installed snapshot, in the same transaction as the tables they describe, so they always
//! describe the state machine as of `SmMeta::applied`.

use regent_raft::{LogIndex, Membership, Term};
use serde::{Deserialize, Serialize};

/// The state machine's metadata: one row, written with every applied batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SmMeta {
    pub applied: LogIndex,
    pub applied_term: Term,
    /// The revision of the last applied write (0 before any).
    pub revision: u64,
    /// The change feed holds the changes with a revision above this one.
    pub changes_floor: u64,
    /// The largest leader-assigned time seen in an applied proposal.
    pub log_time_ms: u64,
    /// `log_time_ms / SESSION_SWEEP_INTERVAL_MS` at the last sweep of expired sessions.
    pub sweep_bucket: u64,
    pub session_count: u64,
}

/// The membership of the last applied `Config` entry (or of the installed snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MembershipRecord {
    pub membership: Membership,
    pub index: LogIndex,
}

//! The replicated state machine, on top of the storage primitives' state half
//! (`store::StateRead`, `store::StateWrite`): the command language carried in `Normal` entries,
//! the KV store and its change feed, exactly-once sessions, the host's journal, the applied
//! membership, the apply of committed entries, and the local queries (`StateReader`).
//!
//! Invariant: the state machine never reads or writes the log half of a store (entries, hard
//! state, snapshot prefix; its functions take only the state half, so the types hold it to
//! that): it sees committed entries only as `apply` hands them over, so its state is a pure
//! function of the applied log, the same on every node.
//!
//! | file | what it is |
//! | --- | --- |
//! | `command.rs` | the command encoding (version byte + postcard `Proposal`) and its limits |
//! | `apply.rs` | the apply of committed entries and of an installed snapshot's rows |
//! | `kv.rs` | KV records, revisions, transactions' reads and writes, the change feed |
//! | `session.rs` | exactly-once sessions, expired by log time |
//! | `journal.rs` | the host's operation journal and the members' reports |
//! | `meta.rs` | the single-row records: state-machine metadata, the applied membership |
//! | `overlay.rs` | layers of applied changes held in memory above the persisted state |
//! | `read.rs` | the local queries and the state machine's recovery checks |
//! | `machine.rs` | the state machine applied in memory over the persisted state, in layers |

mod apply;
mod command;
mod journal;
mod kv;
mod machine;
mod meta;
// Not wired in yet: the in-memory apply builds on it next.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod overlay;
mod read;
mod session;

pub use apply::{Applied, ApplyResult};
pub use command::{
    Command, CommandError, Compare, CompareOp, CompareTarget, JournalRetention, KeyValue, Op,
    Outcome, Proposal, Response, SessionSeq, Txn, COMMAND_BYTES_MAX, COMMAND_FORMAT_VERSION,
    JOURNAL_BATCH_OPS_MAX, JOURNAL_OP_BYTES_MAX, KEY_BYTES_MAX, RANGE_BYTES_MAX, RANGE_LIMIT_MAX,
    TXN_COMPARES_MAX, TXN_OPS_MAX, VALUE_BYTES_MAX,
};
pub use journal::{JournalMember, JournalOp, JournalPage, JournalState};
pub use kv::{Change, ChangeKind};
pub use machine::{StateBase, StateFlush, StateMachine};
pub use session::{
    SessionRecord, SESSIONS_MAX, SESSION_RESULTS_MAX, SESSION_SWEEP_INTERVAL_MS,
    SESSION_TTL_MAX_MS, SESSION_TTL_MIN_MS,
};

pub(crate) use apply::{apply, install};
pub(crate) use journal::JournalRecord;
pub(crate) use kv::KvRecord;
pub(crate) use meta::{MembershipRecord, SmMeta};
pub(crate) use read::{changes_after, check_stored, digest, journal_page, kv_get, kv_range};

use super::error::StorageError;
use regent_raft::LogIndex;

/// The local queries of the state machine: what this node has applied, read without going
/// through the log (so possibly stale on a follower). Both `RedbStorage` and `MemStorage`
/// implement it.
///
/// It is a supertrait of [`LogStorage`](crate::LogStorage), whose docs say why and how to
/// name the two in a bound.
pub trait StateReader {
    fn kv_get(&self, key: &[u8]) -> Result<Option<KeyValue>, StorageError>;
    fn kv_range(&self, prefix: &[u8], limit: u32) -> Result<(Vec<KeyValue>, bool), StorageError>;

    /// The changes with a revision above `revision`, in order, at most `limit`.
    fn changes_after(&self, revision: u64, limit: usize) -> Result<ChangePage, StorageError>;

    /// The journal operations from index `from` on (at most `limit`, stopping after the one
    /// that passes `bytes_max`), with the journal's summary. `JournalCompacted` when `from` is
    /// below the first retained index; an empty page when it is beyond the last.
    fn journal_page(
        &self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<JournalPage, StorageError>;

    /// The recorded state of a session, if it is open.
    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, StorageError>;

    /// A digest of the state machine, for comparing nodes.
    fn digest(&self) -> Result<StateDigest, StorageError>;
}

/// A page of the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// More changes follow the last one returned.
    pub more: bool,
}

/// A summary of the state machine, equal on two nodes that applied the same log (the change
/// feed aside, which is local history).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateDigest {
    pub applied: LogIndex,
    pub revision: u64,
    pub kv_count: u64,
    pub kv_crc: u32,
    pub session_count: u64,
    pub session_crc: u32,
    /// The journal: retained operations and a crc of its summary row and every operation.
    pub journal_count: u64,
    pub journal_crc: u32,
}

//! The apply of committed entries: each entry in turn moves the applied index, a `Config`
//! entry records the membership, and a `Normal` entry's proposal is decoded, checked against
//! its session and fencing term, and executed by the KV store, the sessions or the journal.
//!
//! Invariant: applying is a pure function of the state machine's tables and the entries (no
//! clock, no randomness, no setting that may differ between nodes besides the local
//! change-feed retention), so every node that applies the same log holds the same state and
//! gives the same answers; bad command bytes are an answer (`CommandError`), never a failure.

use super::command::{Command, CommandError, Outcome, Proposal, Response};
use super::journal;
use super::kv::{self, Writer};
use super::meta::{MembershipRecord, SmMeta};
use super::session;
use crate::error::StorageError;
use crate::snapshot::SnapshotHeader;
use crate::store::StateWrite;
use crate::{LogState, StorageOptions};
use regent_raft::{Entry, EntryPayload, LogIndex, Membership};

/// The result of applying one committed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub index: LogIndex,
    pub result: ApplyResult,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    Noop,
    /// The membership now in force.
    Config(Membership),
    /// A `Normal` entry: the command's answer, or why it was refused (bad bytes included).
    Command(Outcome),
}

/// Applies validated committed entries to the state machine.
pub(crate) fn apply(
    store: &mut dyn StateWrite,
    state: &LogState,
    committed: &[Entry],
    options: &StorageOptions,
) -> Result<(Vec<Applied>, LogState), StorageError> {
    let mut next = state.clone();
    if committed.is_empty() {
        return Ok((Vec::new(), next));
    }
    let mut meta = store.sm_meta()?;
    // Pair check: the cached summary and the stored metadata agree.
    assert_eq!(
        meta.applied, state.applied,
        "cached applied index matches the store"
    );
    let mut results = Vec::with_capacity(committed.len());
    // Only a command can touch the journal: its summary is re-read after a batch that had one.
    let mut commands = false;
    for entry in committed {
        commands |= matches!(entry.payload, EntryPayload::Normal(_));
        let result = apply_entry(store, &mut meta, entry, options)?;
        if let ApplyResult::Config(membership) = &result {
            next.membership = membership.clone();
            next.membership_index = entry.index;
        }
        results.push(Applied {
            index: entry.index,
            result,
        });
    }
    store.set_sm_meta(&meta)?;
    if commands {
        next.journal = store.journal_state()?;
    }
    next.applied = meta.applied;
    next.applied_term = meta.applied_term;
    next.revision = meta.revision;
    Ok((results, next))
}

/// Sets the state machine's rows to those of an installed snapshot: the membership, the
/// metadata and the journal's summary, the change feed emptied (it is local history the
/// snapshot does not carry). The backend swaps the snapshot's KV, session and journal tables in
/// within the same transaction.
pub(crate) fn install(
    store: &mut dyn StateWrite,
    header: &SnapshotHeader,
) -> Result<(), StorageError> {
    let meta = &header.meta;
    let index = meta.last_included_index;
    store.set_membership(&MembershipRecord {
        membership: meta.membership.clone(),
        index,
    })?;
    store.changes_remove_through(u64::MAX)?;
    store.set_sm_meta(&SmMeta {
        applied: index,
        applied_term: meta.last_included_term,
        revision: header.revision,
        changes_floor: header.revision,
        log_time_ms: header.log_time_ms,
        sweep_bucket: header.sweep_bucket,
        session_count: header.session_count,
    })?;
    store.set_journal_state(&header.journal)
}

/// Applies one committed entry. `meta` is updated in place; the caller stores it.
fn apply_entry(
    store: &mut dyn StateWrite,
    meta: &mut SmMeta,
    entry: &Entry,
    options: &StorageOptions,
) -> Result<ApplyResult, StorageError> {
    assert_eq!(entry.index, meta.applied.next(), "entries apply in order");
    assert!(
        entry.term >= meta.applied_term,
        "terms never decrease in the log"
    );
    meta.applied = entry.index;
    meta.applied_term = entry.term;
    match &entry.payload {
        EntryPayload::Noop => Ok(ApplyResult::Noop),
        EntryPayload::Config(membership) => {
            store.set_membership(&MembershipRecord {
                membership: membership.clone(),
                index: entry.index,
            })?;
            Ok(ApplyResult::Config(membership.clone()))
        }
        EntryPayload::Normal(bytes) => {
            let proposal = match Proposal::decode(bytes) {
                Ok(proposal) => proposal,
                Err(err) => return Ok(ApplyResult::Command(Err(err))),
            };
            let outcome = apply_proposal(store, meta, entry, proposal, options)?;
            Ok(ApplyResult::Command(outcome))
        }
    }
}

fn apply_proposal(
    store: &mut dyn StateWrite,
    meta: &mut SmMeta,
    entry: &Entry,
    proposal: Proposal,
    options: &StorageOptions,
) -> Result<Outcome, StorageError> {
    // Time only moves forward, whatever the clocks of successive leaders say.
    meta.log_time_ms = meta.log_time_ms.max(proposal.time_ms);
    session::maybe_sweep(store, meta)?;
    let Some(seq) = proposal.session else {
        if let Some(refused) = fenced(&proposal, entry) {
            return Ok(Err(refused));
        }
        return execute(store, meta, entry, &proposal.command, options);
    };
    match session::check(store, meta, seq)? {
        session::Check::Duplicate(Ok(Response::JournalAppended { first, last })) => {
            Ok(Ok(journal::retried(store, first, last)?))
        }
        session::Check::Duplicate(outcome) => Ok(outcome),
        session::Check::Rejected(err) => Ok(Err(err)),
        session::Check::Fresh(record) => {
            // A fenced write is recorded like any outcome: its retry gets the same refusal.
            let outcome = match fenced(&proposal, entry) {
                Some(refused) => Err(refused),
                None => execute(store, meta, entry, &proposal.command, options)?,
            };
            let record_result = !proposal.command.is_read_only();
            session::record(store, meta, seq, record, &outcome, record_result)?;
            Ok(outcome)
        }
    }
}

/// The fencing rule: a proposal that expects a term applies only in an entry of that term (an
/// entry's term is the term of the leader that appended it).
fn fenced(proposal: &Proposal, entry: &Entry) -> Option<CommandError> {
    let expected = proposal.expected_term?;
    (expected != entry.term.0).then_some(CommandError::TermMismatch {
        expected,
        actual: entry.term.0,
    })
}

/// Runs one command that passed its session and fencing checks.
fn execute(
    store: &mut dyn StateWrite,
    meta: &mut SmMeta,
    entry: &Entry,
    command: &Command,
    options: &StorageOptions,
) -> Result<Outcome, StorageError> {
    let index = entry.index;
    // Writes of one command share the next revision; it is taken only if something changed.
    let mut writer = Writer::new(meta.revision);
    let outcome = match command {
        Command::Get { key } => Ok(kv::get(store, key, meta.revision)?),
        Command::Range { prefix, limit } => Ok(kv::range(store, prefix, *limit, meta.revision)?),
        Command::Put { key, value } => Ok(writer.put(store, key, value)?),
        Command::Delete { key } => Ok(writer.delete(store, key, meta.revision)?),
        Command::Txn(txn) => Ok(kv::txn(store, &mut writer, meta.revision, txn)?),
        Command::RegisterSession { ttl_ms } => session::register(store, meta, index, *ttl_ms)?,
        Command::JournalAppend { ops, retention } => {
            journal::append(store, meta, entry, ops, retention)?
        }
        Command::JournalReport {
            node,
            applied,
            checkpoint,
            retention,
        } => journal::report(store, meta, *node, *applied, *checkpoint, retention)?,
    };
    if let Some(revision) = writer.wrote() {
        meta.revision = revision;
        kv::trim_changes(store, meta, options)?;
    }
    Ok(outcome)
}

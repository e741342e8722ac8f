//! The replicated KV state machine: applies committed entries to the KV tables, advances the
//! revision, records the change feed and answers each command.
//!
//! Invariant: applying is a pure function of the store's state and the entry (no clock, no
//! randomness, no setting that may differ between nodes besides the local change-feed
//! retention), so every node that applies the same log holds the same KV state and gives the
//! same answers. `revision` grows by exactly one per command that changed something.

use super::command::{
    Command, CommandError, Compare, CompareOp, CompareTarget, KeyValue, Op, Outcome, Proposal,
    Response, RANGE_BYTES_MAX,
};
use super::error::StorageError;
use super::journal;
use super::session;
use super::store::{MembershipRecord, StoreWrite};
use super::{ApplyResult, StorageOptions};
use regent_raft::{Entry, EntryPayload, LogIndex, Term};
use serde::{Deserialize, Serialize};

/// A key's value and metadata as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KvRecord {
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// Three little-endian u64 (create, mod, version), then the value.
pub(crate) const KV_RECORD_HEADER_BYTES: usize = 24;

impl KvRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KV_RECORD_HEADER_BYTES + self.value.len());
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.mod_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<KvRecord, String> {
        if bytes.len() < KV_RECORD_HEADER_BYTES {
            return Err(format!("kv record of {} bytes is too short", bytes.len()));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        let record = KvRecord {
            create_revision: word(0),
            mod_revision: word(1),
            version: word(2),
            value: bytes[KV_RECORD_HEADER_BYTES..].to_vec(),
        };
        record.check()?;
        Ok(record)
    }

    /// The relations every stored record keeps.
    pub fn check(&self) -> Result<(), String> {
        if self.create_revision == 0
            || self.create_revision > self.mod_revision
            || self.version == 0
        {
            return Err(format!(
                "kv record with create revision {}, mod revision {}, version {}",
                self.create_revision, self.mod_revision, self.version
            ));
        }
        Ok(())
    }

    fn to_key_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// One change of the feed: what a write did to one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub revision: u64,
    /// The position of this change among those of its revision (a transaction may write
    /// several keys at one revision).
    pub sub: u32,
    pub key: Vec<u8>,
    pub kind: ChangeKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Put {
        value: Vec<u8>,
        create_revision: u64,
        version: u64,
    },
    Delete,
}

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

/// Applies one committed entry. `meta` is updated in place; the caller stores it.
pub(crate) fn apply_entry(
    store: &mut dyn StoreWrite,
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
    store: &mut dyn StoreWrite,
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
            // The entry carrying the retry has a term of its own: answer with the one the
            // operations were stored with, as the first answer did.
            let term = store
                .journal_range(last, 1, 0)?
                .into_iter()
                .find(|(index, _)| *index == last)
                .map(|(_, record)| record.term);
            Ok(Ok(Response::JournalRetried { first, last, term }))
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

fn execute(
    store: &mut dyn StoreWrite,
    meta: &mut SmMeta,
    entry: &Entry,
    command: &Command,
    options: &StorageOptions,
) -> Result<Outcome, StorageError> {
    let index = entry.index;
    // Writes of one command share the next revision; it is taken only if something changed.
    let mut writer = Writer {
        revision: meta.revision + 1,
        sub: 0,
    };
    let outcome = match command {
        Command::Get { key } => Ok(get(store, key, meta.revision)?),
        Command::Range { prefix, limit } => Ok(range(store, prefix, *limit, meta.revision)?),
        Command::Put { key, value } => Ok(writer.put(store, key, value)?),
        Command::Delete { key } => Ok(writer.delete(store, key, meta.revision)?),
        Command::Txn(txn) => {
            let mut succeeded = true;
            for compare in &txn.compares {
                if !compare_holds(store, compare)? {
                    succeeded = false;
                    break;
                }
            }
            let ops = if succeeded {
                &txn.success
            } else {
                &txn.failure
            };
            let mut responses = Vec::with_capacity(ops.len());
            for op in ops {
                // Reads inside a transaction see its own earlier writes.
                let current = if writer.sub > 0 {
                    writer.revision
                } else {
                    meta.revision
                };
                let response = match op {
                    Op::Get { key } => get(store, key, current)?,
                    Op::Range { prefix, limit } => range(store, prefix, *limit, current)?,
                    Op::Put { key, value } => writer.put(store, key, value)?,
                    Op::Delete { key } => writer.delete(store, key, current)?,
                };
                responses.push(response);
            }
            let revision = if writer.sub > 0 {
                writer.revision
            } else {
                meta.revision
            };
            Ok(Response::Txn {
                succeeded,
                revision,
                responses,
            })
        }
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
    if writer.sub > 0 {
        meta.revision = writer.revision;
        trim_changes(store, meta, options)?;
    }
    Ok(outcome)
}

/// Writes at one revision, numbering the changes.
struct Writer {
    revision: u64,
    sub: u32,
}

impl Writer {
    fn put(
        &mut self,
        store: &mut dyn StoreWrite,
        key: &[u8],
        value: &[u8],
    ) -> Result<Response, StorageError> {
        let prev = store.kv_get(key)?;
        let record = KvRecord {
            value: value.to_vec(),
            create_revision: prev.as_ref().map_or(self.revision, |p| p.create_revision),
            mod_revision: self.revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
        };
        assert!(record.check().is_ok(), "a put makes a valid record");
        store.kv_put(key, &record)?;
        self.change(
            store,
            key,
            ChangeKind::Put {
                value: value.to_vec(),
                create_revision: record.create_revision,
                version: record.version,
            },
        )?;
        Ok(Response::Put {
            revision: self.revision,
            prev: prev.map(|p| p.to_key_value(key)),
        })
    }

    fn delete(
        &mut self,
        store: &mut dyn StoreWrite,
        key: &[u8],
        current: u64,
    ) -> Result<Response, StorageError> {
        let Some(prev) = store.kv_get(key)? else {
            return Ok(Response::Delete {
                revision: current,
                prev: None,
            });
        };
        store.kv_remove(key)?;
        self.change(store, key, ChangeKind::Delete)?;
        Ok(Response::Delete {
            revision: self.revision,
            prev: Some(prev.to_key_value(key)),
        })
    }

    fn change(
        &mut self,
        store: &mut dyn StoreWrite,
        key: &[u8],
        kind: ChangeKind,
    ) -> Result<(), StorageError> {
        store.change_put(&Change {
            revision: self.revision,
            sub: self.sub,
            key: key.to_vec(),
            kind,
        })?;
        self.sub += 1;
        Ok(())
    }
}

fn get(store: &mut dyn StoreWrite, key: &[u8], revision: u64) -> Result<Response, StorageError> {
    let kv = store.kv_get(key)?.map(|r| r.to_key_value(key));
    Ok(Response::Get { kv, revision })
}

fn range(
    store: &mut dyn StoreWrite,
    prefix: &[u8],
    limit: u32,
    revision: u64,
) -> Result<Response, StorageError> {
    let (pairs, more) = store.kv_range(prefix, limit as usize, RANGE_BYTES_MAX)?;
    let kvs = pairs.iter().map(|(k, r)| r.to_key_value(k)).collect();
    Ok(Response::Range {
        kvs,
        more,
        revision,
    })
}

fn compare_holds(store: &mut dyn StoreWrite, compare: &Compare) -> Result<bool, StorageError> {
    let record = store.kv_get(&compare.key)?;
    let ordering = match (&compare.target, &record) {
        (CompareTarget::Exists(expected), _) => {
            let equal = record.is_some() == *expected;
            return Ok(match compare.op {
                CompareOp::Equal => equal,
                CompareOp::NotEqual => !equal,
                // Rejected when the command was decoded.
                CompareOp::Less | CompareOp::Greater => unreachable!("validated at decode"),
            });
        }
        // As in etcd, a value compare on a missing key fails whatever the operator.
        (CompareTarget::Value(_), None) => return Ok(false),
        (CompareTarget::Value(value), Some(r)) => r.value.as_slice().cmp(value.as_slice()),
        (CompareTarget::Version(v), r) => r.as_ref().map_or(0, |r| r.version).cmp(v),
        (CompareTarget::CreateRevision(v), r) => r.as_ref().map_or(0, |r| r.create_revision).cmp(v),
        (CompareTarget::ModRevision(v), r) => r.as_ref().map_or(0, |r| r.mod_revision).cmp(v),
    };
    Ok(match compare.op {
        CompareOp::Equal => ordering.is_eq(),
        CompareOp::NotEqual => ordering.is_ne(),
        CompareOp::Less => ordering.is_lt(),
        CompareOp::Greater => ordering.is_gt(),
    })
}

/// Keeps the change feed within `changes_retained_max` revisions.
fn trim_changes(
    store: &mut dyn StoreWrite,
    meta: &mut SmMeta,
    options: &StorageOptions,
) -> Result<(), StorageError> {
    if meta.revision - meta.changes_floor > options.changes_retained_max {
        let floor = meta.revision - options.changes_retained_max;
        store.changes_remove_through(floor)?;
        meta.changes_floor = floor;
    }
    assert!(meta.changes_floor <= meta.revision);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_encoding_round_trips_and_rejects_bad_records() {
        let record = KvRecord {
            value: b"v".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
        };
        assert_eq!(KvRecord::decode(&record.encode()), Ok(record));
        assert!(KvRecord::decode(&[0; 10]).is_err());
        assert!(
            KvRecord::decode(&[0; 24]).is_err(),
            "revision 0 is never stored"
        );
    }
}

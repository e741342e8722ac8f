//! The KV store of the state machine: its records, the reads and writes of KV commands and
//! transactions at one revision, and the change feed that records every write.
//!
//! Invariant: applying is a pure function of the store's state and the entry (no clock, no
//! randomness, no setting that may differ between nodes besides the local change-feed
//! retention), so every node that applies the same log holds the same KV state and gives the
//! same answers. `revision` grows by exactly one per command that changed something.

use super::command::{
    Compare, CompareOp, CompareTarget, KeyValue, Op, Response, Txn, RANGE_BYTES_MAX,
};
use super::meta::SmMeta;
use crate::error::StorageError;
use crate::store::StateWrite;
use crate::StorageOptions;
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

/// Writes at one revision, numbering the changes.
pub(super) struct Writer {
    revision: u64,
    sub: u32,
}

impl Writer {
    /// The writer of one command: its writes share the revision after `current`, which it
    /// takes only if something changed.
    pub(super) fn new(current: u64) -> Writer {
        Writer {
            revision: current + 1,
            sub: 0,
        }
    }

    /// The revision this command's writes took, if it wrote anything.
    pub(super) fn wrote(&self) -> Option<u64> {
        (self.sub > 0).then_some(self.revision)
    }

    pub(super) fn put(
        &mut self,
        store: &mut dyn StateWrite,
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

    pub(super) fn delete(
        &mut self,
        store: &mut dyn StateWrite,
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
        store: &mut dyn StateWrite,
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

pub(super) fn get(
    store: &mut dyn StateWrite,
    key: &[u8],
    revision: u64,
) -> Result<Response, StorageError> {
    let kv = store.kv_get(key)?.map(|r| r.to_key_value(key));
    Ok(Response::Get { kv, revision })
}

pub(super) fn range(
    store: &mut dyn StateWrite,
    prefix: &[u8],
    limit: u32,
    revision: u64,
) -> Result<Response, StorageError> {
    let (pairs, more) = store.kv_range(prefix, None, limit as usize, RANGE_BYTES_MAX)?;
    let kvs = pairs.iter().map(|(k, r)| r.to_key_value(k)).collect();
    Ok(Response::Range {
        kvs,
        more,
        revision,
    })
}

fn compare_holds(store: &mut dyn StateWrite, compare: &Compare) -> Result<bool, StorageError> {
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

/// Runs a transaction: its compares, then the ops of the branch they chose, each read seeing
/// the transaction's own earlier writes. `current` is the revision before the command.
pub(super) fn txn(
    store: &mut dyn StateWrite,
    writer: &mut Writer,
    current: u64,
    txn: &Txn,
) -> Result<Response, StorageError> {
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
        let current = writer.wrote().unwrap_or(current);
        let response = match op {
            Op::Get { key } => get(store, key, current)?,
            Op::Range { prefix, limit } => range(store, prefix, *limit, current)?,
            Op::Put { key, value } => writer.put(store, key, value)?,
            Op::Delete { key } => writer.delete(store, key, current)?,
        };
        responses.push(response);
    }
    Ok(Response::Txn {
        succeeded,
        revision: writer.wrote().unwrap_or(current),
        responses,
    })
}

/// Keeps the change feed within `changes_retained_max` revisions.
pub(super) fn trim_changes(
    store: &mut dyn StateWrite,
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

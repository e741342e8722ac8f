//! The KV command encoding carried in `EntryPayload::Normal`: one version byte, then a postcard
//! `Proposal` (an optional exactly-once session, a leader-assigned time, a `Command`).
//!
//! Invariant: `decode` is total and deterministic: any byte string gives the same `Proposal` or
//! the same `CommandError` on every node, and never panics. Every limit here is a constant, not
//! a setting, because all nodes must reject the same commands.

use serde::{Deserialize, Serialize};

/// The first byte of every encoded proposal.
pub const COMMAND_FORMAT_VERSION: u8 = 3;
/// An encoded proposal larger than this is rejected before decoding.
pub const COMMAND_BYTES_MAX: usize = 4 << 20;
pub const KEY_BYTES_MAX: usize = 8 << 10;
pub const VALUE_BYTES_MAX: usize = 1 << 20;
pub const TXN_OPS_MAX: usize = 128;
pub const TXN_COMPARES_MAX: usize = 128;
/// The most keys one range returns; a larger `limit` is rejected.
pub const RANGE_LIMIT_MAX: u32 = 10_000;
/// A range stops (with `more = true`) once its keys and values exceed this many bytes.
pub const RANGE_BYTES_MAX: usize = 4 << 20;
/// One journal append carries at most this many operations.
pub const JOURNAL_BATCH_OPS_MAX: usize = 4096;
/// One journal operation is at most this many bytes.
pub const JOURNAL_OP_BYTES_MAX: usize = 1 << 20;

/// What a client proposes, as the leader puts it in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Present for exactly-once commands: a retry with the same (client, seq) is answered
    /// from the recorded result instead of being applied twice.
    pub session: Option<SessionSeq>,
    /// Wall-clock milliseconds assigned by the leader when it appended the entry. The state
    /// machine keeps the largest it has seen as its "log time", the only clock that expires
    /// sessions, so that every node expires the same sessions at the same index.
    pub time_ms: u64,
    /// Fencing: the command applies only if its entry was appended by the leader of this
    /// term; otherwise it is refused with `TermMismatch`, on every node alike. A host sends the
    /// term in which its regent became writable, so a deposed master's write cannot land.
    pub expected_term: Option<u64>,
    pub command: Command,
}

/// A client's place in its exactly-once session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSeq {
    /// The id returned by `Command::RegisterSession` (the index of that entry).
    pub client_id: u64,
    /// The client's sequence number for this command, unique within the session.
    pub seq: u64,
    /// The client has its answers for every seq below this one and will not retry them: their
    /// recorded results may be dropped.
    pub acked_below: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Get {
        key: Vec<u8>,
    },
    /// Keys starting with `prefix` (all keys for an empty prefix), in key order, at most `limit`.
    Range {
        prefix: Vec<u8>,
        limit: u32,
    },
    // Keys and values as bytes (`serde_bytes`): the same postcard encoding as a sequence of
    // `u8`, in one copy.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Txn(Txn),
    /// Opens an exactly-once session; the answer carries its client id. The session expires
    /// when the log time passes its last activity by `ttl_ms`.
    RegisterSession {
        ttl_ms: u64,
    },
    /// Appends the host's operations to its journal, in order, atomically: they take the next
    /// dense journal indexes and the term of the entry that carries them.
    JournalAppend {
        ops: Vec<Vec<u8>>,
        retention: JournalRetention,
    },
    /// A member's host reports how far it has applied the journal and/or how far its own
    /// durable checkpoint covers (each only moves forward).
    JournalReport {
        node: u64,
        applied: Option<u64>,
        checkpoint: Option<u64>,
        retention: JournalRetention,
    },
}

/// The journal's retention bounds, carried in every journal command (set by the leader from
/// its configuration) so that every node truncates the same prefix at the same index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRetention {
    /// Operations' bytes retained at most.
    pub bytes_max: u64,
    /// Operations retained at most.
    pub count_max: u64,
    /// Operations older than this (by log time) are dropped.
    pub age_max_ms: u64,
}

/// An etcd-style transaction: if every compare holds, run `success`, else `failure`. All writes
/// of a transaction share one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Get {
        key: Vec<u8>,
    },
    Range {
        prefix: Vec<u8>,
        limit: u32,
    },
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// `key`'s `target` compared with `op`. A missing key has version, create and mod revision 0,
/// and fails every value compare (as in etcd).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(u64),
    CreateRevision(u64),
    ModRevision(u64),
    /// Only `Equal` and `NotEqual` are meaningful: `Exists(true)` with `Equal` holds when the
    /// key is present.
    Exists(bool),
}

/// One key and its metadata, as answered to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision of the put that created the key (since it was last absent).
    pub create_revision: u64,
    /// The revision of the last put.
    pub mod_revision: u64,
    /// The number of puts since the key was created; 1 after the first.
    pub version: u64,
}

/// The answer to an applied command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Get {
        kv: Option<KeyValue>,
        revision: u64,
    },
    Range {
        kvs: Vec<KeyValue>,
        more: bool,
        revision: u64,
    },
    /// `revision` is the revision of this write.
    Put {
        revision: u64,
        prev: Option<KeyValue>,
    },
    /// `prev` is `None` when nothing was deleted; the revision then does not move.
    Delete {
        revision: u64,
        prev: Option<KeyValue>,
    },
    Txn {
        succeeded: bool,
        revision: u64,
        responses: Vec<Response>,
    },
    SessionRegistered {
        client_id: u64,
    },
    /// The journal indexes the appended operations took (`first..=last`).
    JournalAppended {
        first: u64,
        last: u64,
    },
    /// The report is recorded; the journal now retains `first..=last`.
    JournalReported {
        first: u64,
        last: u64,
    },
    /// A retried append (same session and seq), answered with its first outcome: the indexes
    /// it took and the term its operations were stored with (`None` once the journal no
    /// longer holds them). Only ever an answer: a session records the first
    /// `JournalAppended`, and this is made from it and the journal when the retry applies.
    JournalRetried {
        first: u64,
        last: u64,
        term: Option<u64>,
    },
}

/// Why a command was refused. It is a deterministic result of the log, the same on every
/// node, so it is recorded and answered like any other result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("empty command")]
    Empty,
    #[error("unsupported command format version {found} (this build reads version {supported})")]
    Version { found: u8, supported: u8 },
    #[error("command of {len} bytes is larger than {max}")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable command: {reason}")]
    Decode { reason: String },
    #[error("empty key")]
    EmptyKey,
    #[error("key of {len} bytes is larger than {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes is larger than {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("range limit {limit} is not within 1..={max}")]
    RangeLimit { limit: u32, max: u32 },
    #[error("transaction has {count} operations, more than {max}")]
    TooManyOps { count: usize, max: usize },
    #[error("transaction has {count} compares, more than {max}")]
    TooManyCompares { count: usize, max: usize },
    #[error("compare {op:?} is not defined on existence")]
    InvalidCompare { op: CompareOp },
    #[error("session ttl {ttl_ms} ms is not within {min}..={max} ms")]
    SessionTtl { ttl_ms: u64, min: u64, max: u64 },
    #[error("too many sessions (at most {max})")]
    SessionsFull { max: u64 },
    #[error("unknown or expired session {client_id}")]
    SessionUnknown { client_id: u64 },
    #[error("session {client_id}: seq {seq} was answered before and its result was dropped")]
    SeqDiscarded { client_id: u64, seq: u64 },
    #[error("bad journal command: {reason}")]
    Journal { reason: String },
    #[error("journal report of index {index} is beyond the last journal index {last}")]
    JournalReportAhead { index: u64, last: u64 },
    #[error("fenced: the write expected the leader of term {expected}, but it was appended in term {actual}")]
    TermMismatch { expected: u64, actual: u64 },
}

/// The outcome of one applied command.
pub type Outcome = Result<Response, CommandError>;

impl Proposal {
    pub fn new(command: Command) -> Proposal {
        Proposal {
            session: None,
            time_ms: 0,
            expected_term: None,
            command,
        }
    }

    /// The bytes to put in `EntryPayload::Normal`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![COMMAND_FORMAT_VERSION];
        // Serialising plain data into a Vec cannot fail.
        let body = postcard::to_allocvec(self).expect("postcard encodes a Proposal");
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and validates entry bytes. Every node gets the same answer for the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<Proposal, CommandError> {
        let Some((&version, body)) = bytes.split_first() else {
            return Err(CommandError::Empty);
        };
        if version != COMMAND_FORMAT_VERSION {
            return Err(CommandError::Version {
                found: version,
                supported: COMMAND_FORMAT_VERSION,
            });
        }
        if bytes.len() > COMMAND_BYTES_MAX {
            return Err(CommandError::TooLarge {
                len: bytes.len(),
                max: COMMAND_BYTES_MAX,
            });
        }
        let (proposal, rest): (Proposal, &[u8]) =
            postcard::take_from_bytes(body).map_err(|err| CommandError::Decode {
                reason: err.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(CommandError::Decode {
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        proposal.command.validate()?;
        Ok(proposal)
    }
}

impl Command {
    /// Whether the command only reads (its result need not be recorded for retries).
    pub fn is_read_only(&self) -> bool {
        match self {
            Command::Get { .. } | Command::Range { .. } => true,
            Command::Txn(txn) => txn
                .success
                .iter()
                .chain(txn.failure.iter())
                .all(|op| matches!(op, Op::Get { .. } | Op::Range { .. })),
            Command::Put { .. }
            | Command::Delete { .. }
            | Command::RegisterSession { .. }
            | Command::JournalAppend { .. }
            | Command::JournalReport { .. } => false,
        }
    }

    fn validate(&self) -> Result<(), CommandError> {
        match self {
            Command::Get { key } | Command::Delete { key } => validate_key(key),
            Command::Range { prefix, limit } => validate_range(prefix, *limit),
            Command::Put { key, value } => validate_put(key, value),
            Command::Txn(txn) => {
                let count = txn.success.len() + txn.failure.len();
                if count > TXN_OPS_MAX {
                    return Err(CommandError::TooManyOps {
                        count,
                        max: TXN_OPS_MAX,
                    });
                }
                if txn.compares.len() > TXN_COMPARES_MAX {
                    return Err(CommandError::TooManyCompares {
                        count: txn.compares.len(),
                        max: TXN_COMPARES_MAX,
                    });
                }
                for compare in &txn.compares {
                    validate_key(&compare.key)?;
                    match &compare.target {
                        CompareTarget::Exists(_)
                            if !matches!(compare.op, CompareOp::Equal | CompareOp::NotEqual) =>
                        {
                            return Err(CommandError::InvalidCompare { op: compare.op });
                        }
                        CompareTarget::Value(value) if value.len() > VALUE_BYTES_MAX => {
                            return Err(CommandError::ValueTooLarge {
                                len: value.len(),
                                max: VALUE_BYTES_MAX,
                            });
                        }
                        _ => {}
                    }
                }
                for op in txn.success.iter().chain(txn.failure.iter()) {
                    match op {
                        Op::Get { key } | Op::Delete { key } => validate_key(key)?,
                        Op::Range { prefix, limit } => validate_range(prefix, *limit)?,
                        Op::Put { key, value } => validate_put(key, value)?,
                    }
                }
                Ok(())
            }
            // The ttl is checked when the session is registered, with the other session rules.
            Command::RegisterSession { .. } => Ok(()),
            Command::JournalAppend { ops, retention } => {
                let fail = |reason: String| Err(CommandError::Journal { reason });
                if ops.is_empty() || ops.len() > JOURNAL_BATCH_OPS_MAX {
                    return fail(format!(
                        "{} operations; an append carries 1..={JOURNAL_BATCH_OPS_MAX}",
                        ops.len()
                    ));
                }
                for (i, op) in ops.iter().enumerate() {
                    if op.is_empty() || op.len() > JOURNAL_OP_BYTES_MAX {
                        return fail(format!(
                            "operation {i} has {} bytes; an operation has 1..={JOURNAL_OP_BYTES_MAX}",
                            op.len()
                        ));
                    }
                }
                validate_retention(retention)
            }
            Command::JournalReport {
                node,
                applied,
                checkpoint,
                retention,
            } => {
                if *node == 0 {
                    return Err(CommandError::Journal {
                        reason: "a report names node 0".into(),
                    });
                }
                if applied.is_none() && checkpoint.is_none() {
                    return Err(CommandError::Journal {
                        reason: "a report names an applied or a checkpoint index".into(),
                    });
                }
                validate_retention(retention)
            }
        }
    }
}

fn validate_retention(retention: &JournalRetention) -> Result<(), CommandError> {
    if retention.bytes_max == 0 || retention.count_max == 0 || retention.age_max_ms == 0 {
        return Err(CommandError::Journal {
            reason: format!("retention bounds must be positive: {retention:?}"),
        });
    }
    Ok(())
}

fn validate_key(key: &[u8]) -> Result<(), CommandError> {
    if key.is_empty() {
        return Err(CommandError::EmptyKey);
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(CommandError::KeyTooLarge {
            len: key.len(),
            max: KEY_BYTES_MAX,
        });
    }
    Ok(())
}

fn validate_range(prefix: &[u8], limit: u32) -> Result<(), CommandError> {
    if prefix.len() > KEY_BYTES_MAX {
        return Err(CommandError::KeyTooLarge {
            len: prefix.len(),
            max: KEY_BYTES_MAX,
        });
    }
    if limit == 0 || limit > RANGE_LIMIT_MAX {
        return Err(CommandError::RangeLimit {
            limit,
            max: RANGE_LIMIT_MAX,
        });
    }
    Ok(())
}

fn validate_put(key: &[u8], value: &[u8]) -> Result<(), CommandError> {
    validate_key(key)?;
    if value.len() > VALUE_BYTES_MAX {
        return Err(CommandError::ValueTooLarge {
            len: value.len(),
            max: VALUE_BYTES_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields serialized as bytes (`serde_bytes`) encode exactly as the sequences of `u8`
    /// they were before: entries in the log and on the wire, and proposals, read the same.
    #[test]
    fn byte_fields_encode_as_the_sequences_of_u8_they_were() {
        let seq = |v: &Vec<u8>| postcard::to_allocvec(v).unwrap();
        let key: Vec<u8> = b"a key".to_vec();
        let value: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let put = postcard::to_allocvec(&Command::Put {
            key: key.clone(),
            value: value.clone(),
        })
        .unwrap();
        assert_eq!(put, [vec![2], seq(&key), seq(&value)].concat());
        let delete = postcard::to_allocvec(&Command::Delete { key: key.clone() }).unwrap();
        assert_eq!(delete, [vec![3], seq(&key)].concat());
        let op = postcard::to_allocvec(&Op::Put {
            key: key.clone(),
            value: value.clone(),
        })
        .unwrap();
        assert_eq!(op, [vec![2], seq(&key), seq(&value)].concat());
        let payload = regent_raft::EntryPayload::Normal(value.clone());
        let bytes = postcard::to_allocvec(&payload).unwrap();
        assert_eq!(bytes, [vec![1], seq(&value)].concat());
        let back: regent_raft::EntryPayload = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, payload);
        let back: Command = postcard::from_bytes(&put).unwrap();
        assert_eq!(back, Command::Put { key, value });
    }

    #[test]
    fn round_trip() {
        let proposal = Proposal {
            session: Some(SessionSeq {
                client_id: 7,
                seq: 3,
                acked_below: 2,
            }),
            time_ms: 1234,
            expected_term: Some(9),
            command: Command::Put {
                key: b"a".to_vec(),
                value: b"b".to_vec(),
            },
        };
        assert_eq!(Proposal::decode(&proposal.encode()), Ok(proposal));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(Proposal::decode(&[]), Err(CommandError::Empty));
        assert_eq!(
            Proposal::decode(&[9, 1, 2]),
            Err(CommandError::Version {
                found: 9,
                supported: COMMAND_FORMAT_VERSION
            })
        );
        assert!(matches!(
            Proposal::decode(&[COMMAND_FORMAT_VERSION, 0xff, 0xff, 0xff]),
            Err(CommandError::Decode { .. })
        ));
        let mut bytes = Proposal::new(Command::Get { key: b"k".to_vec() }).encode();
        bytes.push(0);
        assert!(matches!(
            Proposal::decode(&bytes),
            Err(CommandError::Decode { .. })
        ));
        let empty_key = Proposal::new(Command::Get { key: vec![] }).encode();
        assert_eq!(Proposal::decode(&empty_key), Err(CommandError::EmptyKey));
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        // A cheap deterministic fuzz: every prefix and every single-byte mutation of a valid
        // transaction decodes to a value or an error.
        let txn = Proposal::new(Command::Txn(Txn {
            compares: vec![Compare {
                key: b"k".to_vec(),
                op: CompareOp::Greater,
                target: CompareTarget::Version(3),
            }],
            success: vec![Op::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }],
            failure: vec![Op::Range {
                prefix: b"".to_vec(),
                limit: 10,
            }],
        }))
        .encode();
        for len in 0..txn.len() {
            let _ = Proposal::decode(&txn[..len]);
        }
        for i in 0..txn.len() {
            for bit in 0..8 {
                let mut mutated = txn.clone();
                mutated[i] ^= 1 << bit;
                let first = Proposal::decode(&mutated);
                assert_eq!(first, Proposal::decode(&mutated), "decode is deterministic");
            }
        }
    }
}

//! The clients' commands in the real KV command encoding, so that the simulator runs the same
//! state machine code as the daemon.

use super::ClientOp;
use regent_storage::{Command, JournalRetention, Proposal, SessionSeq};

/// Small enough that runs truncate the journal (deterministically, on every node alike).
pub const JOURNAL_RETENTION: JournalRetention = JournalRetention {
    bytes_max: 4096,
    count_max: 200,
    age_max_ms: 60_000,
};

/// The journal operation of an append: its value's bytes.
pub fn append_op(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// The proposal for `op`, under the client's session for a write.
pub fn encode(op: ClientOp, session: Option<u64>, time_ms: u64) -> Vec<u8> {
    let mut proposal = Proposal::new(match op {
        ClientOp::Write { key, value, .. } => Command::Put {
            key: key_of(key),
            value: value.to_le_bytes().to_vec(),
        },
        ClientOp::LogRead { key } | ClientOp::LeaseRead { key } | ClientOp::IndexRead { key } => {
            Command::Get { key: key_of(key) }
        }
        ClientOp::Register => Command::RegisterSession { ttl_ms: 60_000 },
        ClientOp::Append { value, .. } => Command::JournalAppend {
            ops: vec![append_op(value)],
            retention: JOURNAL_RETENTION,
        },
    });
    if let (ClientOp::Write { seq, .. } | ClientOp::Append { seq, .. }, Some(client_id)) =
        (op, session)
    {
        proposal.session = Some(SessionSeq {
            client_id,
            seq,
            acked_below: seq,
        });
    }
    proposal.time_ms = time_ms;
    proposal.encode()
}

pub fn key_of(key: u64) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

/// The value a simulated write put, from its stored bytes.
pub fn value_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(
        bytes
            .try_into()
            .expect("the simulator writes 8-byte values"),
    )
}

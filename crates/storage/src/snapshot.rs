//! Snapshots on the wire: the state machine at its applied index, streamed as checksummed
//! chunks (a header, KV records, session records, journal operations, an end marker), and the
//! receiver's checks.
//!
//! Invariant: a receiver accepts a chunk only if its crc32c matches, it belongs to the snapshot
//! the header announced, it comes in order, and its records are well formed and strictly
//! increasing; the end marker must count exactly what was received. Anything else is a
//! `StorageError::SnapshotChunk` and the install is abandoned.
//!
//! Frame layout (little-endian): magic `RGSN` (4), format version (1), kind (1), seq (4),
//! snapshot index (8), snapshot term (8), body length (4), body, crc32c of everything before (4).

use super::error::StorageError;
use super::state::{JournalRecord, JournalState, KvRecord, SessionRecord, SESSIONS_MAX};
use super::store::decode_row;
use super::SnapshotMeta;
use serde::{Deserialize, Serialize};

pub const SNAPSHOT_FORMAT_VERSION: u8 = 2;
/// A frame larger than this is refused before its checksum is even computed.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 64 << 20;
const MAGIC: [u8; 4] = *b"RGSN";
const FRAME_HEADER_BYTES: usize = 30;
const FRAME_TRAILER_BYTES: usize = 4;

const KIND_HEADER: u8 = 1;
pub(crate) const KIND_KV: u8 = 2;
const KIND_SESSIONS: u8 = 3;
const KIND_END: u8 = 4;
const KIND_JOURNAL: u8 = 5;

/// The first chunk: what the snapshot is and the state-machine metadata that goes with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub meta: SnapshotMeta,
    pub revision: u64,
    pub log_time_ms: u64,
    pub sweep_bucket: u64,
    pub session_count: u64,
    pub journal: JournalState,
}

/// The last chunk: what the receiver must have counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotEnd {
    pub kv_count: u64,
    pub session_count: u64,
    pub journal_count: u64,
    pub chunk_count: u32,
}

/// A snapshot being read, chunk by chunk. It holds a consistent view (a redb read transaction,
/// or a copy in memory) for as long as it lives.
pub trait SnapshotSource: Send {
    fn meta(&self) -> &SnapshotMeta;
    /// The next frame to send, or `None` after the end marker.
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StorageError>;
}

/// Where a backend's snapshot records come from, in key order.
pub(crate) trait RecordCursor: Send {
    /// Appends encoded KV records (key, `KvRecord::encode`) after key `after` until `out`
    /// reaches `bytes_target`; returns how many it appended and the last key, or `None` at
    /// the end of the table.
    fn kv_records(
        &mut self,
        after: Option<&[u8]>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<Vec<u8>>), StorageError>;
    /// The same for sessions (key: the id, 8 bytes big-endian; value: the encoded record).
    fn session_records(
        &mut self,
        after: Option<u64>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<u64>), StorageError>;
    /// The same for journal operations (key: the index, 8 bytes big-endian; value: the
    /// encoded record).
    fn journal_records(
        &mut self,
        after: Option<u64>,
        bytes_target: usize,
        out: &mut Vec<u8>,
    ) -> Result<(u64, Option<u64>), StorageError>;
}

/// Appends one record: key length (u32), key, value length (u32), value.
pub(crate) fn push_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

enum Phase {
    Header,
    Kv(Option<Vec<u8>>),
    Sessions(Option<u64>),
    Journal(Option<u64>),
    End,
    Done,
}

/// Turns a backend's cursor into frames.
pub(crate) struct ChunkStream<C: RecordCursor> {
    header: SnapshotHeader,
    cursor: C,
    phase: Phase,
    seq: u32,
    chunk_bytes: usize,
    kv_count: u64,
    session_count: u64,
    journal_count: u64,
}

impl<C: RecordCursor> ChunkStream<C> {
    pub fn new(header: SnapshotHeader, cursor: C, chunk_bytes: usize) -> Self {
        ChunkStream {
            header,
            cursor,
            phase: Phase::Header,
            seq: 0,
            chunk_bytes,
            kv_count: 0,
            session_count: 0,
            journal_count: 0,
        }
    }

    fn frame(&mut self, kind: u8, body: &[u8]) -> Vec<u8> {
        let frame = encode_frame(kind, self.seq, &self.header.meta, body);
        self.seq += 1;
        frame
    }
}

impl<C: RecordCursor> SnapshotSource for ChunkStream<C> {
    fn meta(&self) -> &SnapshotMeta {
        &self.header.meta
    }

    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Header => {
                    self.phase = Phase::Kv(None);
                    let body = super::store::encode_row(&self.header);
                    return Ok(Some(self.frame(KIND_HEADER, &body)));
                }
                Phase::Kv(after) => {
                    let mut body = Vec::with_capacity(self.chunk_bytes + 4096);
                    let (count, last) =
                        self.cursor
                            .kv_records(after.as_deref(), self.chunk_bytes, &mut body)?;
                    self.kv_count += count;
                    self.phase = match last {
                        Some(key) => Phase::Kv(Some(key)),
                        None => Phase::Sessions(None),
                    };
                    if count > 0 {
                        return Ok(Some(self.frame(KIND_KV, &body)));
                    }
                }
                Phase::Sessions(after) => {
                    let mut body = Vec::new();
                    let (count, last) =
                        self.cursor
                            .session_records(after, self.chunk_bytes, &mut body)?;
                    self.session_count += count;
                    self.phase = match last {
                        Some(id) => Phase::Sessions(Some(id)),
                        None => Phase::Journal(None),
                    };
                    if count > 0 {
                        return Ok(Some(self.frame(KIND_SESSIONS, &body)));
                    }
                }
                Phase::Journal(after) => {
                    let mut body = Vec::new();
                    let (count, last) =
                        self.cursor
                            .journal_records(after, self.chunk_bytes, &mut body)?;
                    self.journal_count += count;
                    self.phase = match last {
                        Some(index) => Phase::Journal(Some(index)),
                        None => Phase::End,
                    };
                    if count > 0 {
                        return Ok(Some(self.frame(KIND_JOURNAL, &body)));
                    }
                }
                Phase::End => {
                    let end = SnapshotEnd {
                        kv_count: self.kv_count,
                        session_count: self.session_count,
                        journal_count: self.journal_count,
                        chunk_count: self.seq + 1,
                    };
                    let body = super::store::encode_row(&end);
                    return Ok(Some(self.frame(KIND_END, &body)));
                }
                Phase::Done => return Ok(None),
            }
        }
    }
}

pub(crate) fn encode_frame(kind: u8, seq: u32, meta: &SnapshotMeta, body: &[u8]) -> Vec<u8> {
    assert!(body.len() + FRAME_HEADER_BYTES + FRAME_TRAILER_BYTES <= SNAPSHOT_CHUNK_BYTES_MAX);
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body.len() + FRAME_TRAILER_BYTES);
    out.extend_from_slice(&MAGIC);
    out.push(SNAPSHOT_FORMAT_VERSION);
    out.push(kind);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&meta.last_included_index.0.to_le_bytes());
    out.extend_from_slice(&meta.last_included_term.0.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A checked frame.
pub(crate) struct Frame<'a> {
    pub kind: u8,
    pub seq: u32,
    pub index: u64,
    pub term: u64,
    pub body: &'a [u8],
}

/// Parses a frame and verifies its checksum. `expected_seq` names the chunk in errors.
/// Where an incoming chunk belongs: the header of a new install, or the next frame of the
/// install in progress.
pub(crate) enum Placed<'a> {
    Start(Box<Receiver>),
    Next(Frame<'a>),
}

/// Decodes a chunk against the install in progress (`next_seq` is `None` when there is none).
/// Both backends abandon their install on any error.
pub(crate) fn place_chunk(chunk: &[u8], next_seq: Option<u32>) -> Result<Placed<'_>, StorageError> {
    let frame = decode_frame(chunk, next_seq.unwrap_or(0))?;
    if frame.seq == 0 {
        return Ok(Placed::Start(Box::new(Receiver::start(&frame)?)));
    }
    if next_seq.is_none() {
        return Err(StorageError::SnapshotChunk {
            seq: frame.seq,
            reason: "no install in progress (the header chunk, seq 0, comes first)".into(),
        });
    }
    Ok(Placed::Next(frame))
}

pub(crate) fn decode_frame(bytes: &[u8], expected_seq: u32) -> Result<Frame<'_>, StorageError> {
    let fail = |reason: String| StorageError::SnapshotChunk {
        seq: expected_seq,
        reason,
    };
    if bytes.len() > SNAPSHOT_CHUNK_BYTES_MAX {
        return Err(fail(format!(
            "{} bytes, more than the limit {SNAPSHOT_CHUNK_BYTES_MAX}",
            bytes.len()
        )));
    }
    if bytes.len() < FRAME_HEADER_BYTES + FRAME_TRAILER_BYTES {
        return Err(fail(format!("truncated: only {} bytes", bytes.len())));
    }
    let (covered, trailer) = bytes.split_at(bytes.len() - FRAME_TRAILER_BYTES);
    let stored_crc = u32::from_le_bytes(trailer.try_into().unwrap());
    let crc = crc32c::crc32c(covered);
    if crc != stored_crc {
        return Err(fail(format!(
            "checksum mismatch (crc32c {crc:#010x}, frame says {stored_crc:#010x}): the chunk is corrupted"
        )));
    }
    if covered[..4] != MAGIC {
        return Err(fail("not a regent snapshot chunk (bad magic)".into()));
    }
    if covered[4] != SNAPSHOT_FORMAT_VERSION {
        return Err(fail(format!(
            "snapshot format version {} is not supported (this build reads {SNAPSHOT_FORMAT_VERSION})",
            covered[4]
        )));
    }
    let u32_at = |i: usize| u32::from_le_bytes(covered[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(covered[i..i + 8].try_into().unwrap());
    let body_len = u32_at(26) as usize;
    if FRAME_HEADER_BYTES + body_len != covered.len() {
        return Err(fail(format!(
            "body length {body_len} does not match the frame's {} bytes",
            bytes.len()
        )));
    }
    Ok(Frame {
        kind: covered[5],
        seq: u32_at(6),
        index: u64_at(10),
        term: u64_at(18),
        body: &covered[FRAME_HEADER_BYTES..],
    })
}

/// Splits a body into (key, value) records.
pub(crate) fn records(body: &[u8]) -> RecordIter<'_> {
    RecordIter { rest: body }
}

pub(crate) struct RecordIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut take = |what: &str| -> Result<&'a [u8], String> {
            let len_bytes: [u8; 4] = self
                .rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("record {what} length is truncated"))?;
            let len = u32::from_le_bytes(len_bytes) as usize;
            let field = self
                .rest
                .get(4..4 + len)
                .ok_or_else(|| format!("record {what} of {len} bytes is truncated"))?;
            self.rest = &self.rest[4 + len..];
            Ok(field)
        };
        let result = take("key").and_then(|key| Ok((key, take("value")?)));
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

/// The receiver's progress through one snapshot: everything it checks between chunks.
pub(crate) struct Receiver {
    pub header: SnapshotHeader,
    pub next_seq: u32,
    pub kv_count: u64,
    pub session_count: u64,
    pub journal_count: u64,
    journal_bytes: u64,
    last_key: Option<Vec<u8>>,
    last_session: Option<u64>,
    in_sessions: bool,
    in_journal: bool,
}

/// What a checked chunk asks the backend to do.
pub(crate) enum Step<'a> {
    Kv(Vec<(&'a [u8], &'a [u8])>),
    Sessions(Vec<(u64, &'a [u8])>),
    Journal(Vec<(u64, &'a [u8])>),
    End,
}

impl Receiver {
    /// Starts from a header frame (seq 0).
    pub fn start(frame: &Frame<'_>) -> Result<Receiver, StorageError> {
        let fail = |reason: String| StorageError::SnapshotChunk { seq: 0, reason };
        if frame.seq != 0 || frame.kind != KIND_HEADER {
            return Err(fail(format!(
                "a snapshot must start with its header (seq 0), got kind {} seq {}",
                frame.kind, frame.seq
            )));
        }
        let header: SnapshotHeader =
            decode_row(frame.body).map_err(|e| fail(format!("header: {e}")))?;
        if header.meta.last_included_index.0 != frame.index
            || header.meta.last_included_term.0 != frame.term
        {
            return Err(fail("header disagrees with its frame".into()));
        }
        if header.session_count > SESSIONS_MAX {
            return Err(fail(format!(
                "{} sessions, more than {SESSIONS_MAX}",
                header.session_count
            )));
        }
        if let Err(problem) = header.journal.check() {
            return Err(fail(format!("header: {problem}")));
        }
        Ok(Receiver {
            header,
            next_seq: 1,
            kv_count: 0,
            session_count: 0,
            journal_count: 0,
            journal_bytes: 0,
            last_key: None,
            last_session: None,
            in_sessions: false,
            in_journal: false,
        })
    }

    /// Checks the next frame and returns what to store.
    pub fn step<'a>(&mut self, frame: &Frame<'a>) -> Result<Step<'a>, StorageError> {
        let seq = self.next_seq;
        let fail = |reason: String| StorageError::SnapshotChunk { seq, reason };
        if frame.index != self.header.meta.last_included_index.0
            || frame.term != self.header.meta.last_included_term.0
        {
            return Err(fail(format!(
                "chunk of the snapshot at index {} term {}, but the install in progress is at index {} term {}",
                frame.index, frame.term,
                self.header.meta.last_included_index, self.header.meta.last_included_term
            )));
        }
        if frame.seq != seq {
            return Err(fail(format!(
                "out of order: chunk {} arrived where {seq} was expected",
                frame.seq
            )));
        }
        self.next_seq += 1;
        match frame.kind {
            KIND_KV if !self.in_sessions => {
                let mut out = Vec::new();
                for record in records(frame.body) {
                    let (key, value) = record.map_err(&fail)?;
                    if key.is_empty() || key.len() > super::KEY_BYTES_MAX {
                        return Err(fail(format!("key of {} bytes", key.len())));
                    }
                    if self.last_key.as_deref().is_some_and(|last| last >= key) {
                        return Err(fail("keys are not strictly increasing".into()));
                    }
                    let record = KvRecord::decode(value).map_err(&fail)?;
                    if record.mod_revision > self.header.revision {
                        return Err(fail(format!(
                            "key with mod revision {} above the snapshot's revision {}",
                            record.mod_revision, self.header.revision
                        )));
                    }
                    self.last_key = Some(key.to_vec());
                    out.push((key, value));
                }
                self.kv_count += out.len() as u64;
                Ok(Step::Kv(out))
            }
            KIND_SESSIONS if !self.in_journal => {
                self.in_sessions = true;
                let mut out = Vec::new();
                for record in records(frame.body) {
                    let (key, value) = record.map_err(&fail)?;
                    let id: [u8; 8] = key
                        .try_into()
                        .map_err(|_| fail(format!("session key of {} bytes", key.len())))?;
                    let id = u64::from_be_bytes(id);
                    if self.last_session.is_some_and(|last| last >= id) {
                        return Err(fail("session ids are not strictly increasing".into()));
                    }
                    let session: SessionRecord =
                        decode_row(value).map_err(|e| fail(format!("session {id}: {e}")))?;
                    session.check().map_err(&fail)?;
                    self.last_session = Some(id);
                    out.push((id, value));
                }
                self.session_count += out.len() as u64;
                if self.session_count > self.header.session_count {
                    return Err(fail("more sessions than the header announced".into()));
                }
                Ok(Step::Sessions(out))
            }
            KIND_JOURNAL => {
                self.in_sessions = true;
                self.in_journal = true;
                let journal = &self.header.journal;
                let mut out = Vec::new();
                for record in records(frame.body) {
                    let (key, value) = record.map_err(&fail)?;
                    let index: [u8; 8] = key
                        .try_into()
                        .map_err(|_| fail(format!("journal key of {} bytes", key.len())))?;
                    let index = u64::from_be_bytes(index);
                    let expected = journal.first + self.journal_count + out.len() as u64;
                    if index != expected || index > journal.last {
                        return Err(fail(format!(
                            "journal operation {index} where {expected} was expected (the header says {}..={})",
                            journal.first, journal.last
                        )));
                    }
                    let op = JournalRecord::decode(value).map_err(&fail)?;
                    if op.term > self.header.meta.last_included_term.0 {
                        return Err(fail(format!(
                            "journal operation {index} of term {} above the snapshot's term",
                            op.term
                        )));
                    }
                    self.journal_bytes += op.op.len() as u64;
                    out.push((index, value));
                }
                self.journal_count += out.len() as u64;
                Ok(Step::Journal(out))
            }
            KIND_END => {
                let end: SnapshotEnd =
                    decode_row(frame.body).map_err(|e| fail(format!("end: {e}")))?;
                let counted = SnapshotEnd {
                    kv_count: self.kv_count,
                    session_count: self.session_count,
                    journal_count: self.journal_count,
                    chunk_count: self.next_seq,
                };
                let journal = &self.header.journal;
                if end != counted
                    || self.session_count != self.header.session_count
                    || self.journal_count != journal.count()
                    || self.journal_bytes != journal.bytes
                {
                    return Err(fail(format!(
                        "the snapshot is incomplete: the end marker says {end:?}, received {counted:?} and {} journal bytes (header: {} sessions, journal {}..={} of {} bytes)",
                        self.journal_bytes, self.header.session_count, journal.first, journal.last, journal.bytes
                    )));
                }
                Ok(Step::End)
            }
            kind => Err(fail(format!("unexpected chunk kind {kind}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regent_raft::{LogIndex, Term};

    #[test]
    fn frames_round_trip_and_any_flipped_bit_is_caught() {
        let meta = SnapshotMeta {
            last_included_index: LogIndex(5),
            last_included_term: Term(2),
            membership: Default::default(),
        };
        let mut body = Vec::new();
        push_record(&mut body, b"key", b"value");
        let frame = encode_frame(KIND_KV, 3, &meta, &body);
        let decoded = decode_frame(&frame, 3).unwrap();
        assert_eq!(
            (decoded.kind, decoded.seq, decoded.index, decoded.term),
            (KIND_KV, 3, 5, 2)
        );
        let recs: Vec<_> = records(decoded.body).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs, vec![(&b"key"[..], &b"value"[..])]);
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            assert!(decode_frame(&bad, 3).is_err(), "flip at byte {i} is caught");
        }
        assert!(decode_frame(&frame[..frame.len() - 1], 3).is_err());
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut body = Vec::new();
        push_record(&mut body, b"k", b"v");
        for len in 1..body.len() {
            assert!(records(&body[..len]).any(|r| r.is_err()));
        }
    }
}

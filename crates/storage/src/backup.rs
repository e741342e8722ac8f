//! Backup files: a snapshot of the state machine (the frames of `snapshot.rs`) between a header
//! that says where and when it was taken and a trailer that carries its state digest and a
//! checksum of the whole file. Written by the daemon (`GET /v1/admin/backup`, the `backup:`
//! schedule), read by `regent backup verify` and `regent restore` without a running node.
//!
//! Invariant: a backup file is accepted only if its magic and format version are known, every
//! record's crc32c matches, its snapshot frames pass every check of a snapshot install (order,
//! counts, well-formed and strictly increasing records), the digest computed from its records
//! equals the trailer's, the trailer's file checksum covers exactly the bytes before it, and
//! the file ends right after the trailer. The writer runs the same checks on what it writes.
//!
//! Layout (little-endian): magic `RGBACKUP` (8), format version (1), then records: kind (1),
//! body length (4), body, crc32c of kind, length and body (4). The first record is the header
//! ([`BackupHeader`], postcard), then one record per snapshot frame (each with its own crc32c
//! too), then the trailer: the state digest, the number of frames, and the crc32c of every
//! byte of the file before the trailer record. The digest sits in the trailer because it is
//! computed from the records as they stream: a node never scans its state twice for a backup.

use super::error::StorageError;
use super::snapshot::{self, Receiver, SnapshotHeader, Step};
use super::state::{KvRecord, StateDigest};
use super::store::{decode_row, encode_row};
use super::{InstallProgress, LogStorage, SnapshotMeta};
use regent_raft::{Batch, HardState, LogIndex, Membership, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;

pub const BACKUP_FORMAT_VERSION: u8 = 1;
const MAGIC: [u8; 8] = *b"RGBACKUP";
const PREFIX_BYTES: usize = MAGIC.len() + 1;
const RECORD_HEAD_BYTES: usize = 5;
const RECORD_CRC_BYTES: usize = 4;
/// A header or trailer body larger than this is refused before it is read.
const META_BYTES_MAX: usize = 64 << 10;

const KIND_HEADER: u8 = 1;
const KIND_FRAME: u8 = 2;
const KIND_TRAILER: u8 = 3;

/// Where and when a backup was taken: the file's first record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub cluster_id: String,
    /// The node that served it.
    pub node_id: NodeId,
    /// The applied index of the image, and the term of the entry there.
    pub index: LogIndex,
    pub term: Term,
    pub taken_unix_ms: u64,
}

/// The file's last record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BackupTrailer {
    frame_count: u32,
    revision: u64,
    kv_count: u64,
    kv_crc: u32,
    session_count: u64,
    session_crc: u32,
    journal_count: u64,
    journal_crc: u32,
    /// crc32c of every byte before the trailer record.
    file_crc: u32,
}

impl BackupTrailer {
    fn new(frame_count: u32, digest: &StateDigest, file_crc: u32) -> BackupTrailer {
        BackupTrailer {
            frame_count,
            revision: digest.revision,
            kv_count: digest.kv_count,
            kv_crc: digest.kv_crc,
            session_count: digest.session_count,
            session_crc: digest.session_crc,
            journal_count: digest.journal_count,
            journal_crc: digest.journal_crc,
            file_crc,
        }
    }
}

/// What a checked backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    pub header: BackupHeader,
    /// Equal to what `StateReader::digest` (and `GET /v1/status?digest=true`) gives on a node
    /// whose state machine is this image.
    pub digest: StateDigest,
    /// The membership in force at the image's index on the cluster it came from.
    pub membership: Membership,
    pub frame_count: u32,
    pub bytes: u64,
}

fn fail(offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Backup {
        offset,
        reason: reason.into(),
    }
}

/// Runs a snapshot install's checks over the frames and computes the state digest from their
/// records, as `state::read::digest` computes it from the tables.
struct Checker {
    receiver: Option<Receiver>,
    ended: bool,
    kv: (u64, u32),
    sessions: (u64, u32),
    journal: (u64, u32),
}

impl Checker {
    fn new() -> Checker {
        Checker {
            receiver: None,
            ended: false,
            kv: (0, 0),
            sessions: (0, 0),
            journal: (0, 0),
        }
    }

    fn next_seq(&self) -> u32 {
        self.receiver.as_ref().map_or(0, |r| r.next_seq)
    }

    /// Checks one snapshot frame; returns its sequence number.
    fn feed(&mut self, bytes: &[u8]) -> Result<u32, StorageError> {
        if self.ended {
            return Err(StorageError::SnapshotChunk {
                seq: self.next_seq(),
                reason: "a frame after the snapshot's end marker".into(),
            });
        }
        let frame = snapshot::decode_frame(bytes, self.next_seq())?;
        let Some(receiver) = &mut self.receiver else {
            let receiver = Receiver::start(&frame)?;
            self.journal.1 = crc32c::crc32c(&encode_row(&receiver.header.journal));
            self.receiver = Some(receiver);
            return Ok(0);
        };
        match receiver.step(&frame)? {
            Step::Kv(records) => {
                for (key, value) in records {
                    let (count, crc) = &mut self.kv;
                    *count += 1;
                    *crc = crc32c::crc32c_append(*crc, &(key.len() as u32).to_le_bytes());
                    *crc = crc32c::crc32c_append(*crc, key);
                    *crc = crc32c::crc32c_append(*crc, value);
                }
            }
            Step::Sessions(records) => {
                for (id, value) in records {
                    let (count, crc) = &mut self.sessions;
                    *count += 1;
                    *crc = crc32c::crc32c_append(*crc, &id.to_be_bytes());
                    *crc = crc32c::crc32c_append(*crc, value);
                }
            }
            Step::Journal(records) => {
                for (index, value) in records {
                    let (count, crc) = &mut self.journal;
                    *count += 1;
                    *crc = crc32c::crc32c_append(*crc, &index.to_be_bytes());
                    *crc = crc32c::crc32c_append(*crc, value);
                }
            }
            Step::End => self.ended = true,
        }
        Ok(frame.seq)
    }

    /// The snapshot header, once the first frame was fed.
    fn header(&self) -> Option<&SnapshotHeader> {
        self.receiver.as_ref().map(|r| &r.header)
    }

    fn digest(&self) -> Option<StateDigest> {
        let header = self.header()?;
        Some(StateDigest {
            applied: header.meta.last_included_index,
            revision: header.revision,
            kv_count: self.kv.0,
            kv_crc: self.kv.1,
            session_count: self.sessions.0,
            session_crc: self.sessions.1,
            journal_count: self.journal.0,
            journal_crc: self.journal.1,
        })
    }
}

fn push_record(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Writes a backup file from a snapshot's frames, checking each as a restore will.
pub struct BackupWriter {
    header: BackupHeader,
    check: Checker,
    file_crc: u32,
    bytes: u64,
    frames: u32,
}

impl BackupWriter {
    /// Starts a backup; returns the writer and the file's first bytes.
    pub fn start(header: BackupHeader) -> (BackupWriter, Vec<u8>) {
        let mut out = MAGIC.to_vec();
        out.push(BACKUP_FORMAT_VERSION);
        push_record(&mut out, KIND_HEADER, &encode_row(&header));
        assert!(out.len() <= PREFIX_BYTES + RECORD_HEAD_BYTES + META_BYTES_MAX);
        let writer = BackupWriter {
            header,
            check: Checker::new(),
            file_crc: crc32c::crc32c(&out),
            bytes: out.len() as u64,
            frames: 0,
        };
        (writer, out)
    }

    /// One snapshot frame (`SnapshotSource::next_chunk`), checked, as the file's next bytes.
    pub fn frame(&mut self, frame: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.check.feed(frame)?;
        let meta = &self.check.header().expect("fed a frame").meta;
        if (meta.last_included_index, meta.last_included_term)
            != (self.header.index, self.header.term)
        {
            return Err(StorageError::Snapshot(format!(
                "the snapshot is at index {} term {}, the backup's header says index {} term {}",
                meta.last_included_index,
                meta.last_included_term,
                self.header.index,
                self.header.term
            )));
        }
        let mut out = Vec::with_capacity(frame.len() + RECORD_HEAD_BYTES + RECORD_CRC_BYTES);
        push_record(&mut out, KIND_FRAME, frame);
        self.file_crc = crc32c::crc32c_append(self.file_crc, &out);
        self.bytes += out.len() as u64;
        self.frames += 1;
        Ok(out)
    }

    /// The trailer, once the snapshot's end marker was written; and what the file holds.
    pub fn finish(self) -> Result<(Vec<u8>, BackupSummary), StorageError> {
        let (true, Some(digest), Some(snapshot)) =
            (self.check.ended, self.check.digest(), self.check.header())
        else {
            return Err(StorageError::Snapshot(
                "the snapshot ended before its end marker".into(),
            ));
        };
        let trailer = BackupTrailer::new(self.frames, &digest, self.file_crc);
        let mut out = Vec::new();
        push_record(&mut out, KIND_TRAILER, &encode_row(&trailer));
        let summary = BackupSummary {
            header: self.header,
            digest,
            membership: snapshot.meta.membership.clone(),
            frame_count: self.frames,
            bytes: self.bytes + out.len() as u64,
        };
        Ok((out, summary))
    }
}

/// Reads a backup file record by record, checking everything as it goes.
pub struct BackupReader<R: Read> {
    input: R,
    /// Bytes consumed so far (where the next record starts).
    offset: u64,
    header: BackupHeader,
    check: Checker,
    file_crc: u32,
    frames: u32,
    summary: Option<BackupSummary>,
}

impl<R: Read> BackupReader<R> {
    /// Reads and checks the magic, the format version and the header.
    pub fn open(mut input: R) -> Result<BackupReader<R>, StorageError> {
        let mut prefix = [0u8; PREFIX_BYTES];
        read_exact(
            &mut input,
            &mut prefix,
            0,
            "the file's magic and format version",
        )?;
        if prefix[..MAGIC.len()] != MAGIC {
            return Err(fail(
                0,
                "not a regent backup file (bad magic: it does not start with RGBACKUP)",
            ));
        }
        let version = prefix[MAGIC.len()];
        if version != BACKUP_FORMAT_VERSION {
            return Err(fail(
                MAGIC.len() as u64,
                format!(
                    "backup format version {version} is not supported (this build reads version {BACKUP_FORMAT_VERSION})"
                ),
            ));
        }
        let mut file_crc = crc32c::crc32c(&prefix);
        let offset = PREFIX_BYTES as u64;
        let (kind, body) = read_record(&mut input, offset, &mut file_crc)?;
        if kind != KIND_HEADER {
            return Err(fail(
                offset,
                format!("expected the header record, found a record of kind {kind}"),
            ));
        }
        let header: BackupHeader =
            decode_row(&body).map_err(|e| fail(offset, format!("the header: {e}")))?;
        Ok(BackupReader {
            input,
            offset: offset + (RECORD_HEAD_BYTES + body.len() + RECORD_CRC_BYTES) as u64,
            header,
            check: Checker::new(),
            file_crc,
            frames: 0,
            summary: None,
        })
    }

    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// The next snapshot frame, checked; `None` once the trailer was read and matched (then
    /// `summary` answers).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        if self.summary.is_some() {
            return Ok(None);
        }
        let offset = self.offset;
        let crc_before = self.file_crc;
        let (kind, body) = read_record(&mut self.input, offset, &mut self.file_crc)?;
        self.offset += (RECORD_HEAD_BYTES + body.len() + RECORD_CRC_BYTES) as u64;
        match kind {
            KIND_FRAME => {
                let seq = self
                    .check
                    .feed(&body)
                    .map_err(|e| fail(offset, format!("snapshot frame {}: {e}", self.frames)))?;
                self.frames += 1;
                if seq == 0 {
                    let meta = &self.check.header().expect("fed a frame").meta;
                    if (meta.last_included_index, meta.last_included_term)
                        != (self.header.index, self.header.term)
                    {
                        return Err(fail(
                            offset,
                            format!(
                                "the snapshot is at index {} term {} but the header says index {} term {}",
                                meta.last_included_index,
                                meta.last_included_term,
                                self.header.index,
                                self.header.term
                            ),
                        ));
                    }
                }
                Ok(Some(body))
            }
            KIND_TRAILER => {
                self.finish(offset, crc_before, &body)?;
                Ok(None)
            }
            kind => Err(fail(offset, format!("unknown record kind {kind}"))),
        }
    }

    fn finish(&mut self, offset: u64, file_crc: u32, body: &[u8]) -> Result<(), StorageError> {
        let trailer: BackupTrailer =
            decode_row(body).map_err(|e| fail(offset, format!("the trailer: {e}")))?;
        let (true, Some(digest), Some(snapshot)) =
            (self.check.ended, self.check.digest(), self.check.header())
        else {
            return Err(fail(
                offset,
                "the trailer comes before the snapshot's end marker: frames are missing",
            ));
        };
        if trailer.file_crc != file_crc {
            return Err(fail(
                offset,
                format!(
                    "file checksum mismatch (crc32c {file_crc:#010x}, the trailer says {:#010x})",
                    trailer.file_crc
                ),
            ));
        }
        let expected = BackupTrailer::new(self.frames, &digest, file_crc);
        if trailer != expected {
            return Err(fail(
                offset,
                format!(
                    "the trailer says {trailer:?} but the records give {expected:?}: the backup does not hold the state it describes"
                ),
            ));
        }
        let mut extra = [0u8; 1];
        match self.input.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(fail(
                    self.offset,
                    "bytes after the trailer (two files joined, or garbage appended)",
                ))
            }
            Err(e) => return Err(fail(self.offset, format!("reading: {e}"))),
        }
        self.summary = Some(BackupSummary {
            header: self.header.clone(),
            digest,
            membership: snapshot.meta.membership.clone(),
            frame_count: self.frames,
            bytes: self.offset,
        });
        Ok(())
    }

    /// What the file holds, once `next_frame` returned `None`.
    pub fn summary(&self) -> Option<&BackupSummary> {
        self.summary.as_ref()
    }
}

fn read_exact(
    input: &mut impl Read,
    buf: &mut [u8],
    offset: u64,
    what: &str,
) -> Result<(), StorageError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => fail(
            offset,
            format!("truncated: the file ends in {what} (an incomplete download or copy?)"),
        ),
        _ => fail(offset, format!("reading {what}: {e}")),
    })
}

/// Reads one record and checks its crc; adds its bytes to `file_crc`.
fn read_record(
    input: &mut impl Read,
    offset: u64,
    file_crc: &mut u32,
) -> Result<(u8, Vec<u8>), StorageError> {
    let mut head = [0u8; RECORD_HEAD_BYTES];
    read_exact(input, &mut head, offset, "a record's head")?;
    let kind = head[0];
    let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
    let len_max = match kind {
        KIND_FRAME => snapshot::SNAPSHOT_CHUNK_BYTES_MAX,
        _ => META_BYTES_MAX,
    };
    if len > len_max {
        return Err(fail(
            offset,
            format!("a record of kind {kind} claims {len} bytes, more than the limit {len_max} (the file is corrupted)"),
        ));
    }
    let mut body = vec![0u8; len];
    read_exact(input, &mut body, offset, "a record's body")?;
    let mut stored = [0u8; RECORD_CRC_BYTES];
    read_exact(input, &mut stored, offset, "a record's checksum")?;
    let stored = u32::from_le_bytes(stored);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), &body);
    if crc != stored {
        return Err(fail(
            offset,
            format!("checksum mismatch in a record of {len} bytes (crc32c {crc:#010x}, the record says {stored:#010x}): the file is corrupted"),
        ));
    }
    *file_crc = crc32c::crc32c_append(*file_crc, &head);
    *file_crc = crc32c::crc32c_append(*file_crc, &body);
    *file_crc = crc32c::crc32c_append(*file_crc, &stored.to_le_bytes());
    Ok((kind, body))
}

/// Reads a whole backup and checks everything; returns what it holds.
pub fn verify(input: impl Read) -> Result<BackupSummary, StorageError> {
    let mut reader = BackupReader::open(input)?;
    while reader.next_frame()?.is_some() {}
    Ok(reader.summary().expect("read to its end").clone())
}

/// What `restore` installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The backup as read (its digest is the image's as taken).
    pub backup: BackupSummary,
    /// The store's digest after the install: the backup's, unless values were replaced.
    pub digest: StateDigest,
    /// The keys whose values were replaced (those of `replace` the image holds).
    pub replaced: Vec<Vec<u8>>,
}

/// Installs a backup into an empty store of a new cluster: the image becomes the store's
/// snapshot at the backup's index, with `membership` in force there (the new cluster's voters
/// instead of the old), and the hard state's term raised to the image's term so that the new
/// cluster's terms follow the image's. The keys of `replace` that the image holds get the
/// given values (their revisions kept): the new cluster's own records, such as its members'
/// addresses. Checks the store's digest against the installed frames' after.
pub fn restore(
    input: impl Read,
    storage: &mut dyn LogStorage,
    membership: Membership,
    replace: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<Restored, StorageError> {
    let state = storage.state();
    if state.last_index.0 != 0 || state.applied.0 != 0 || state.hard_state.term.0 != 0 {
        return Err(StorageError::InvalidRequest(format!(
            "a backup is restored only into an empty store (this one holds the log through {}, applied {}, term {})",
            state.last_index, state.applied, state.hard_state.term
        )));
    }
    let mut reader = BackupReader::open(input)?;
    if reader.header().index.0 == 0 {
        return Err(StorageError::InvalidRequest(
            "the backup holds nothing applied (index 0): there is nothing to restore".into(),
        ));
    }
    let term = reader.header().term;
    storage.write_batch(&Batch {
        hard_state: Some(HardState {
            term,
            vote: None,
            commit: LogIndex(0),
        }),
        truncate_from: None,
        entries: Vec::new(),
        committed: Vec::new(),
    })?;
    // The frames as installed, checked again: their digest is what the store must hold.
    let mut installed_check = Checker::new();
    let mut replaced = Vec::new();
    let mut installed = false;
    while let Some(frame) = reader.next_frame()? {
        let frame = if reader.frames == 1 {
            // The first frame carries the membership: the new cluster's replaces the old.
            with_membership(&frame, &membership)?
        } else if replace.is_empty() {
            frame
        } else {
            with_values(&frame, replace, &mut replaced)?
        };
        installed_check.feed(&frame)?;
        match storage.install_chunk(&frame)? {
            InstallProgress::Continue { .. } => {}
            InstallProgress::Installed(_) => installed = true,
        }
    }
    let backup = reader.summary().expect("read to its end").clone();
    let expected = installed_check.digest().expect("fed every frame");
    if !installed || !installed_check.ended {
        return Err(StorageError::Snapshot(
            "the backup was read to its end but the store did not install it".into(),
        ));
    }
    assert!(!replaced.is_empty() || expected == backup.digest);
    // Pair check: the store now holds what was installed.
    let digest = storage.digest()?;
    if digest != expected {
        return Err(StorageError::Snapshot(format!(
            "restored, but the store's digest {digest:?} differs from the installed image's {expected:?}"
        )));
    }
    assert_eq!(storage.state().snapshot.membership, membership);
    Ok(Restored {
        backup,
        digest,
        replaced,
    })
}

/// A KV frame with the values of the keys in `replace` replaced (revisions kept).
fn with_values(
    frame: &[u8],
    replace: &BTreeMap<Vec<u8>, Vec<u8>>,
    replaced: &mut Vec<Vec<u8>>,
) -> Result<Vec<u8>, StorageError> {
    let decoded = snapshot::decode_frame(frame, 0)?;
    if decoded.kind != snapshot::KIND_KV {
        return Ok(frame.to_vec());
    }
    let fail = |reason: String| StorageError::SnapshotChunk {
        seq: decoded.seq,
        reason,
    };
    let mut body = Vec::with_capacity(decoded.body.len());
    let mut changed = false;
    for record in snapshot::records(decoded.body) {
        let (key, value) = record.map_err(&fail)?;
        match replace.get(key) {
            Some(new) => {
                let mut kv = KvRecord::decode(value).map_err(&fail)?;
                kv.value = new.clone();
                snapshot::push_record(&mut body, key, &kv.encode());
                replaced.push(key.to_vec());
                changed = true;
            }
            None => snapshot::push_record(&mut body, key, value),
        }
    }
    if !changed {
        return Ok(frame.to_vec());
    }
    let meta = SnapshotMeta {
        last_included_index: LogIndex(decoded.index),
        last_included_term: Term(decoded.term),
        membership: Membership::default(),
    };
    Ok(snapshot::encode_frame(
        decoded.kind,
        decoded.seq,
        &meta,
        &body,
    ))
}

/// The header frame (seq 0) with another membership in its metadata.
fn with_membership(frame: &[u8], membership: &Membership) -> Result<Vec<u8>, StorageError> {
    let decoded = snapshot::decode_frame(frame, 0)?;
    let mut header: SnapshotHeader =
        decode_row(decoded.body).map_err(|e| StorageError::SnapshotChunk {
            seq: 0,
            reason: format!("header: {e}"),
        })?;
    header.meta.membership = membership.clone();
    Ok(snapshot::encode_frame(
        decoded.kind,
        0,
        &header.meta,
        &encode_row(&header),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Command, Identity, JournalRetention, MemStorage, Proposal, StateReader, StorageOptions,
    };
    use regent_raft::{Entry, EntryPayload};

    fn store(node: u64) -> MemStorage {
        let identity = Identity {
            cluster_id: "t".into(),
            node_id: NodeId(node),
        };
        MemStorage::new(identity, StorageOptions::default())
            .unwrap()
            .0
    }

    /// A store with KV records, a session and journal operations applied through index 40.
    fn populated() -> MemStorage {
        let mut s = store(1);
        let mut entries = Vec::new();
        for i in 1..=40u64 {
            let command = match i {
                7 => Command::RegisterSession { ttl_ms: 60_000 },
                i if i % 5 == 0 => Command::JournalAppend {
                    ops: vec![format!("op{i}").into_bytes(), vec![i as u8; 100]],
                    retention: JournalRetention {
                        bytes_max: 1 << 20,
                        count_max: 1000,
                        age_max_ms: 3_600_000,
                    },
                },
                i => Command::Put {
                    key: format!("key{i:03}").into_bytes(),
                    value: vec![b'v'; i as usize * 50],
                },
            };
            let mut proposal = Proposal::new(command);
            proposal.time_ms = 1_000 + i;
            entries.push(Entry {
                term: Term(3),
                index: LogIndex(i),
                payload: EntryPayload::Normal(proposal.encode()),
            });
        }
        s.write_batch(&Batch {
            hard_state: Some(HardState {
                term: Term(3),
                vote: Some(NodeId(1)),
                commit: LogIndex(40),
            }),
            truncate_from: None,
            entries: entries.clone(),
            committed: entries,
        })
        .unwrap();
        s
    }

    /// The header of a backup of node 1 of cluster "old" at `meta`'s index.
    fn header(meta: &SnapshotMeta, taken_unix_ms: u64) -> BackupHeader {
        BackupHeader {
            cluster_id: "old".into(),
            node_id: NodeId(1),
            index: meta.last_included_index,
            term: meta.last_included_term,
            taken_unix_ms,
        }
    }

    fn backup_of(s: &MemStorage) -> Vec<u8> {
        let mut source = s.snapshot().unwrap();
        let meta = source.meta().clone();
        let (mut writer, mut file) = BackupWriter::start(header(&meta, 1_700_000_000_000));
        while let Some(frame) = source.next_chunk().unwrap() {
            file.extend(writer.frame(&frame).unwrap());
        }
        let (trailer, summary) = writer.finish().unwrap();
        file.extend(trailer);
        assert_eq!(summary.bytes, file.len() as u64);
        assert_eq!(summary.digest, s.digest().unwrap());
        file
    }

    #[test]
    fn a_backup_verifies_to_the_stores_digest_and_restores_to_it() {
        let s = populated();
        let digest = s.digest().unwrap();
        assert!(digest.kv_count > 0 && digest.session_count == 1 && digest.journal_count > 0);
        let file = backup_of(&s);
        let summary = verify(&file[..]).unwrap();
        assert_eq!(summary.digest, digest);
        assert_eq!(summary.header.index, LogIndex(40));
        assert_eq!(summary.header.term, Term(3));
        assert_eq!(summary.membership, s.state().snapshot.membership);

        let mut fresh = store(7);
        let membership = Membership::new([NodeId(7), NodeId(8)]);
        let restored =
            restore(&file[..], &mut fresh, membership.clone(), &BTreeMap::new()).unwrap();
        assert_eq!(restored.digest, digest);
        assert_eq!(restored.backup.digest, digest);
        assert!(restored.replaced.is_empty());
        assert_eq!(fresh.digest().unwrap(), digest);
        let state = fresh.state();
        assert_eq!(state.snapshot.last_included_index, LogIndex(40));
        assert_eq!(state.hard_state.term, Term(3));
        assert_eq!(state.membership, membership);
        let recovered = fresh.reload().unwrap();
        assert_eq!(recovered.state.applied, LogIndex(40));
        assert_eq!(fresh.digest().unwrap(), digest, "durable");
    }

    #[test]
    fn a_restore_replaces_the_values_asked_and_keeps_their_revisions() {
        let s = populated();
        let file = backup_of(&s);
        let before = s.kv_get(b"key002").unwrap().unwrap();
        let replace = BTreeMap::from([
            (b"key002".to_vec(), b"new".to_vec()),
            (b"absent".to_vec(), b"never".to_vec()),
        ]);
        let mut fresh = store(2);
        let restored = restore(
            &file[..],
            &mut fresh,
            Membership::new([NodeId(2)]),
            &replace,
        )
        .unwrap();
        assert_eq!(restored.replaced, vec![b"key002".to_vec()]);
        let after = fresh.kv_get(b"key002").unwrap().unwrap();
        assert_eq!(after.value, b"new");
        assert_eq!(
            (after.create_revision, after.mod_revision, after.version),
            (before.create_revision, before.mod_revision, before.version)
        );
        assert!(
            fresh.kv_get(b"absent").unwrap().is_none(),
            "nothing is added"
        );
        let digest = fresh.digest().unwrap();
        assert_eq!(restored.digest, digest);
        assert_ne!(digest.kv_crc, restored.backup.digest.kv_crc);
        assert_eq!(digest.kv_count, restored.backup.digest.kv_count);
    }

    #[test]
    fn a_restore_refuses_a_store_that_is_not_empty() {
        let file = backup_of(&populated());
        let mut used = populated();
        let err = restore(
            &file[..],
            &mut used,
            Membership::new([NodeId(1)]),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("only into an empty store"),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_refused_with_a_reason() {
        let file = backup_of(&populated());
        // Every cut: inside the prefix, a record's head, body or checksum, and the trailer.
        let step = (file.len() / 300).max(1);
        for len in (0..file.len()).step_by(step).chain([file.len() - 1]) {
            let err = verify(&file[..len]).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("backup file"), "cut at {len}: {text}");
            assert!(text.contains("truncated"), "cut at {len}: {text}");
        }
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let file = backup_of(&populated());
        let step = (file.len() / 500).max(1);
        for i in (0..file.len()).step_by(step) {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            let err = verify(&bad[..]).expect_err(&format!("flip at byte {i} is caught"));
            assert!(err.to_string().starts_with("backup file"), "{err}");
        }
    }

    #[test]
    fn bad_magic_version_and_garbage_after_are_named() {
        let file = backup_of(&populated());
        let mut other = file.clone();
        other[..8].copy_from_slice(b"NOTABACK");
        let err = verify(&other[..]).unwrap_err().to_string();
        assert!(err.contains("bad magic"), "{err}");
        let mut newer = file.clone();
        newer[8] = BACKUP_FORMAT_VERSION + 1;
        let err = verify(&newer[..]).unwrap_err().to_string();
        assert!(err.contains("format version 2 is not supported"), "{err}");
        let mut longer = file.clone();
        longer.push(0);
        let err = verify(&longer[..]).unwrap_err().to_string();
        assert!(err.contains("bytes after the trailer"), "{err}");
        let err = verify(&b""[..]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn a_frame_dropped_with_its_record_is_caught() {
        let s = populated();
        let mut source = s.snapshot().unwrap();
        let meta = source.meta().clone();
        let (mut writer, mut file) = BackupWriter::start(header(&meta, 0));
        let mut records = Vec::new();
        while let Some(frame) = source.next_chunk().unwrap() {
            records.push(writer.frame(&frame).unwrap());
        }
        let (trailer, _) = writer.finish().unwrap();
        assert!(records.len() >= 3);
        // Well-formed records, one of them missing: the order check names it.
        for (i, record) in records.iter().enumerate() {
            if i != 1 {
                file.extend(record);
            }
        }
        file.extend(trailer);
        let err = verify(&file[..]).unwrap_err().to_string();
        assert!(
            err.contains("out of order") || err.contains("frame"),
            "{err}"
        );
    }
}

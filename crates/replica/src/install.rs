//! Snapshot installs on a follower: the chunks of a leader's snapshot stream, queued and handed
//! to storage one at a time, never while a batch is being persisted, and the storage's verdict
//! on each turned into the stream's answer and the core's news.
//!
//! Invariants: a chunk goes to storage only while no batch and no layer of the state machine
//! is being persisted and every applied entry is persisted, and no batch is handed out (nor
//! entry applied) while a chunk is on the disk (a batch computed before the swap must not land
//! after it); every queued chunk is answered exactly once ([`Action::InstallAnswer`]) or handed
//! back by `abandon`.

use crate::{Action, Replica, Token};
use regent_raft::{LogIndex, Nanos, NodeId};
use regent_storage::{InstallProgress, SnapshotMeta, StorageError};
use std::collections::VecDeque;
use std::sync::Arc;

/// A snapshot chunk waiting for its turn on the disk.
#[derive(Debug)]
pub(crate) struct QueuedChunk {
    token: Token,
    from: NodeId,
    meta: SnapshotMeta,
    chunk: Vec<u8>,
}

/// The chunk on the disk now: what its answer needs.
#[derive(Debug)]
pub(crate) struct ChunkOnDisk {
    token: Token,
    from: NodeId,
    meta: SnapshotMeta,
}

/// The chunks of incoming snapshot streams.
#[derive(Debug, Default)]
pub(crate) struct Installs {
    queue: VecDeque<QueuedChunk>,
    on_disk: Option<ChunkOnDisk>,
}

/// What became of one chunk.
#[derive(Clone, Debug)]
pub enum InstallVerdict {
    /// Accepted; more chunks are expected.
    Continue,
    /// The last chunk: the snapshot is installed durably and the core knows it.
    Installed {
        index: LogIndex,
        term: regent_raft::Term,
    },
    /// Refused (stale, damaged, out of order): the stream ends. A stale snapshot (older than
    /// what this node applied) is reported to the core, which tells the leader where to
    /// resume.
    Refused(Arc<StorageError>),
    /// Storage refuses every write until it is reloaded (a full disk, an I/O error): stop as a
    /// failed batch does; the restart reloads what is durable (the committed state, untouched:
    /// an install writes only staging tables).
    Fatal(Arc<StorageError>),
}

impl Replica {
    /// One chunk of a snapshot stream from `from` (the authenticated peer), whose header said
    /// `meta`. It is answered with an [`Action::InstallAnswer`] under `token`.
    pub fn install_chunk(
        &mut self,
        token: Token,
        from: NodeId,
        meta: SnapshotMeta,
        chunk: Vec<u8>,
    ) {
        self.installs.queue.push_back(QueuedChunk {
            token,
            from,
            meta,
            chunk,
        });
    }

    /// Hands the next queued chunk to storage when no batch is being persisted, holding new
    /// batches back until it is done.
    pub(crate) fn next_chunk(&mut self, out: &mut Vec<Action>) {
        if self.installs.on_disk.is_some() || self.persisting.is_some() {
            return;
        }
        // Storage must hold everything applied first: an install checks staleness against it,
        // and replaces it (`maybe_flush` hands the rest out while chunks wait).
        if self.state.is_flushing() || self.state.unfrozen_records() > 0 {
            return;
        }
        let Some(q) = self.installs.queue.pop_front() else {
            return;
        };
        self.installs.on_disk = Some(ChunkOnDisk {
            token: q.token,
            from: q.from,
            meta: q.meta,
        });
        out.push(Action::InstallChunk {
            from: q.from,
            chunk: q.chunk,
        });
    }

    /// Whether a chunk is on the disk (no batch is handed out meanwhile).
    pub(crate) fn chunk_on_disk(&self) -> bool {
        self.installs.on_disk.is_some()
    }

    /// Whether the next chunk waits only for the state machine to reach storage: no batch is
    /// handed out meanwhile either, so that the chunk goes next.
    pub(crate) fn chunk_waits_for_state(&self) -> bool {
        !self.installs.queue.is_empty()
            && self.installs.on_disk.is_none()
            && (self.state.is_flushing() || self.state.unfrozen_records() > 0)
    }

    /// Chunks waiting behind a batch being persisted or another chunk.
    pub fn chunks_queued(&self) -> usize {
        self.installs.queue.len()
    }

    /// Storage's verdict on the chunk of the last [`Action::InstallChunk`]; `applied` is what
    /// storage holds as applied now. Appends the stream's answer.
    pub fn chunk_installed(
        &mut self,
        result: Result<InstallProgress, StorageError>,
        applied: LogIndex,
        now: Nanos,
        out: &mut Vec<Action>,
    ) {
        self.observe(now);
        let done = self
            .installs
            .on_disk
            .take()
            .expect("a chunk's verdict without a chunk on the disk");
        let verdict = match result {
            Ok(InstallProgress::Continue { .. }) => InstallVerdict::Continue,
            Ok(InstallProgress::Installed(state)) => {
                let meta = state.snapshot.clone();
                tracing::info!(
                    node = %self.id, leader = %done.from,
                    index = %meta.last_included_index, term = %meta.last_included_term,
                    "snapshot installed"
                );
                let verdict = InstallVerdict::Installed {
                    index: meta.last_included_index,
                    term: meta.last_included_term,
                };
                self.state_replaced(out);
                self.snapshot_installed(done.from, meta, now);
                verdict
            }
            Err(err) if err.requires_reload() => InstallVerdict::Fatal(Arc::new(err)),
            Err(err) => {
                if done.meta.last_included_index <= applied {
                    // Stale: the core tells the leader where to resume.
                    self.snapshot_installed(done.from, done.meta, now);
                }
                InstallVerdict::Refused(Arc::new(err))
            }
        };
        out.push(Action::InstallAnswer {
            token: done.token,
            verdict,
        });
    }

    /// The tokens of chunks still queued or on the disk (their streams' outcome is unknown).
    pub(crate) fn abandon_chunks(&mut self) -> Vec<Token> {
        let on_disk = self.installs.on_disk.take().map(|c| c.token);
        on_disk
            .into_iter()
            .chain(self.installs.queue.drain(..).map(|q| q.token))
            .collect()
    }
}

//! The disk thread: the only owner of the node's `RedbStorage`. Every storage call of the daemon
//! runs here, in the order the driver sent it, and its completion goes back to the driver.
//!
//! Invariants: one thread, requests in FIFO order, so a read sent after a batch sees that batch;
//! the driver has at most one batch in flight (the replica's group commit) and never sends a
//! snapshot chunk while a batch is in flight (nor a batch while a chunk is), so a snapshot swap
//! can never interleave with a write computed before it. A failed write is fatal for the
//! daemon: its outcome is unknown, and only a restart from what is durable is safe.

use crate::api::{BackupSource, ReadAnswer, ReadQuery, RequestError, StorageFailure};
use regent_raft::{LogIndex, NodeId};
use regent_replica::Persist;
use regent_storage::{
    FileCompaction, InstallProgress, LogStorage, RedbStorage, SnapshotSource, StateFlush,
    StateReader, StorageError,
};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// A disk request that takes this long is logged (the writes queued behind it waited too).
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_millis(100);

/// A journal page stops after the operation that passes this many bytes.
const JOURNAL_PAGE_BYTES_MAX: usize = 4 << 20;

/// Work for the disk thread.
pub enum DiskRequest {
    /// Write a batch durably (one redb transaction).
    Persist(Persist),
    /// Write a frozen layer of the state machine (not durable by itself).
    PersistState(StateFlush),
    /// Drop the log through this index.
    Compact(LogIndex),
    /// Open a snapshot of the state machine to stream to `to`.
    Snapshot { to: NodeId },
    /// Open a snapshot of the state machine for a backup; answered on `reply`.
    Backup {
        reply: oneshot::Sender<Result<BackupSource, RequestError>>,
    },
    /// One chunk of a snapshot arriving from `from`.
    InstallChunk { from: NodeId, chunk: Vec<u8> },
    /// Abandon an install in progress.
    InstallAbort,
    /// Compact the file when much of it is free (off the commit path: queued like any request,
    /// sent by the driver only when nothing is in flight).
    CompactFile,
    /// Compact the file now, whatever is free (`regent compact`); answered on `reply`.
    CompactFileNow {
        reply: oneshot::Sender<Result<FileCompaction, StorageError>>,
    },
}

impl DiskRequest {
    /// The request's name, for the log.
    fn kind(&self) -> &'static str {
        match self {
            DiskRequest::Persist(_) => "batch",
            DiskRequest::PersistState(_) => "state layer",
            DiskRequest::Compact(_) => "log compaction",
            DiskRequest::Snapshot { .. } => "snapshot open",
            DiskRequest::Backup { .. } => "backup open",
            DiskRequest::InstallChunk { .. } => "snapshot chunk",
            DiskRequest::InstallAbort => "install abort",
            DiskRequest::CompactFile | DiskRequest::CompactFileNow { .. } => "file compaction",
        }
    }
}

/// What the disk thread did.
pub enum DiskDone {
    Persisted {
        number: u64,
        result: Result<(), StorageError>,
        /// How long the durable write took.
        micros: u64,
    },
    StatePersisted {
        /// The applied index the layer brought storage to.
        applied: LogIndex,
        result: Result<(), StorageError>,
    },
    Compacted {
        index: LogIndex,
        result: Result<(), StorageError>,
    },
    Snapshot {
        to: NodeId,
        result: Result<Box<dyn SnapshotSource>, StorageError>,
    },
    Installed {
        from: NodeId,
        result: Result<InstallProgress, StorageError>,
        /// What the storage has applied after the chunk (to tell a stale snapshot).
        applied: LogIndex,
    },
    /// An install in progress was abandoned.
    InstallAborted,
    FileCompacted(Result<bool, StorageError>),
    /// A request answered on its own channel; nothing for the driver to do.
    Answered,
}

/// How the disk thread sends the messages that promise a batch's durability
/// (`Persist::then_send`), the moment the batch is durable.
pub type SendAfterWrite = Box<dyn FnMut(regent_raft::Message) + Send>;

/// The driver's handle on the disk thread.
pub struct Disk {
    requests: std_mpsc::Sender<DiskRequest>,
    thread: Option<JoinHandle<()>>,
}

impl Disk {
    /// Starts the thread; completions arrive on `done`, and the messages a durable batch
    /// releases leave through `send` first (one wake-up less on a follower's acknowledgement:
    /// it does not wait for the driver to hear of the write).
    pub fn start(
        mut storage: RedbStorage,
        done: mpsc::UnboundedSender<DiskDone>,
        mut send: SendAfterWrite,
    ) -> Disk {
        let (requests, inbox) = std_mpsc::channel::<DiskRequest>();
        let thread = std::thread::Builder::new()
            .name("regent-disk".into())
            .spawn(move || {
                while let Ok(request) = inbox.recv() {
                    let kind = request.kind();
                    let started = Instant::now();
                    let finished = carry_out(&mut storage, request, &mut send);
                    let took = started.elapsed();
                    if took >= SLOW_REQUEST {
                        // Everything queued behind it waited as long: say what it was.
                        tracing::warn!(
                            request = kind,
                            took_ms = took.as_millis() as u64,
                            "slow disk request"
                        );
                    }
                    if done.send(finished).is_err() {
                        break; // The driver is gone.
                    }
                }
                // Every request carried out: closed cleanly, so that the next start need not
                // check every page (`storage.verify_on_open: auto`).
                if let Err(err) = storage.close() {
                    tracing::warn!(error = %err, "the database closed, but its clean-close marker was not written: the next start checks every page");
                }
            })
            .expect("spawning the disk thread");
        Disk {
            requests,
            thread: Some(thread),
        }
    }

    pub fn send(&self, request: DiskRequest) {
        // The thread ends only when this handle is dropped or the driver is gone.
        let _ = self.requests.send(request);
    }

    /// Waits for every request sent so far to finish, then stops the thread.
    pub fn stop(mut self) {
        let (requests, _) = std_mpsc::channel();
        drop(std::mem::replace(&mut self.requests, requests));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn carry_out(
    storage: &mut RedbStorage,
    request: DiskRequest,
    send: &mut SendAfterWrite,
) -> DiskDone {
    match request {
        DiskRequest::Persist(persist) => {
            let started = Instant::now();
            let result = storage.write_batch(&persist.batch).map(|_| ());
            if result.is_ok() {
                // Durable: what promised it may go (never after a failed write).
                persist.then_send.into_iter().for_each(&mut *send);
            }
            DiskDone::Persisted {
                number: persist.number,
                result,
                micros: started.elapsed().as_micros() as u64,
            }
        }
        DiskRequest::PersistState(flush) => DiskDone::StatePersisted {
            applied: flush.applied(),
            result: storage.write_state(&flush),
        },
        DiskRequest::Compact(index) => DiskDone::Compacted {
            index,
            result: storage.compact_log(index),
        },
        DiskRequest::Snapshot { to } => DiskDone::Snapshot {
            to,
            result: storage.snapshot(),
        },
        DiskRequest::Backup { reply } => {
            let opened = storage.snapshot().map(|source| BackupSource {
                identity: storage.identity().clone(),
                source,
            });
            let _ = reply.send(opened.map_err(|e| RequestError::Storage(StorageFailure::Read(e))));
            DiskDone::Answered
        }
        DiskRequest::InstallChunk { from, chunk } => {
            let result = storage.install_chunk(&chunk);
            if result.is_err() {
                storage.install_abort();
            }
            DiskDone::Installed {
                from,
                result,
                applied: storage.state().applied,
            }
        }
        DiskRequest::InstallAbort => {
            storage.install_abort();
            DiskDone::InstallAborted
        }
        DiskRequest::CompactFile => DiskDone::FileCompacted(storage.maybe_compact_file()),
        DiskRequest::CompactFileNow { reply } => {
            let _ = reply.send(storage.compact_file());
            DiskDone::Answered
        }
    }
}

/// Answers a local query from the state machine as applied (in memory, over what storage
/// holds).
pub fn read(state: &dyn StateReader, query: ReadQuery) -> Result<ReadAnswer, StorageError> {
    Ok(match query {
        ReadQuery::Get { key } => ReadAnswer::Get(state.kv_get(&key)?),
        ReadQuery::Range { prefix, limit } => {
            let (kvs, more) = state.kv_range(&prefix, limit)?;
            ReadAnswer::Range { kvs, more }
        }
        // A compacted revision is an answer (the caller says which is the oldest), not a
        // storage failure.
        ReadQuery::Changes { revision, limit } => {
            ReadAnswer::Changes(state.changes_after(revision, limit))
        }
        // So is a truncated journal index (the caller says which is the first retained).
        ReadQuery::Journal { from, limit } => {
            ReadAnswer::Journal(state.journal_page(from, limit, JOURNAL_PAGE_BYTES_MAX))
        }
        ReadQuery::Digest => ReadAnswer::Digest(state.digest()?),
    })
}

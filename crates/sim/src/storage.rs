//! The storage simulator: each node's disk (the real storage contract, in memory), the one
//! batch it is writing, how long writes take (with stalls until the heal), and a crash that
//! loses the write in progress.
//!
//! Invariant: a batch is durable all at once when its write completes, never before; a crash
//! before then leaves the disk exactly as it was.

use super::time::MS;
use regent_raft::{Nanos, NodeId, SplitMix64};
use regent_replica::Persist;
use regent_storage::{Applied, Identity, LogStorage, MemStorage, StorageError, StorageOptions};

/// How long the disks take, drawn per seed.
#[derive(Clone, Debug)]
pub struct DiskFaults {
    min_ns: u64,
    max_ns: u64,
    /// Writes that hang for up to two seconds (before the heal).
    stall_ppm: u64,
}

impl DiskFaults {
    pub fn draw(rng: &mut SplitMix64) -> DiskFaults {
        DiskFaults {
            min_ns: 20_000 + rng.below(200_000),
            max_ns: 300_000 + rng.below(3 * MS),
            stall_ppm: [0, 0, 2_000, 20_000][rng.below(4) as usize],
        }
    }

    /// How long the next write takes.
    pub fn latency(&self, rng: &mut SplitMix64, healed: bool) -> Nanos {
        if rng.chance_ppm(self.stall_ppm) && !healed {
            200 * MS + rng.below(2000 * MS)
        } else {
            self.min_ns + rng.below(self.max_ns - self.min_ns)
        }
    }
}

/// One node's disk. It survives crashes; a write in progress when the node crashes never
/// reaches it.
pub struct SimDisk {
    /// The same storage contract as redb, in memory.
    pub store: MemStorage,
    /// The batch being written, if any.
    writing: Option<Persist>,
}

impl SimDisk {
    pub fn new(id: NodeId) -> SimDisk {
        let identity = Identity {
            cluster_id: "sim".into(),
            node_id: id,
        };
        let (store, _) = MemStorage::new(identity, StorageOptions::default())
            .expect("default storage options are valid");
        SimDisk {
            store,
            writing: None,
        }
    }

    /// The disk starts writing `persist`; it becomes durable at [`SimDisk::finish_write`].
    pub fn start_write(&mut self, persist: Persist) {
        assert!(self.writing.is_none(), "one write in flight at a time");
        self.writing = Some(persist);
    }

    /// The batch being written, if any.
    pub fn writing(&self) -> Option<&Persist> {
        self.writing.as_ref()
    }

    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The write in progress completes: the batch becomes durable all at once and its
    /// committed entries are applied.
    pub fn finish_write(&mut self) -> (Persist, Result<Vec<Applied>, StorageError>) {
        let persist = self.writing.take().expect("a write in progress");
        let results = self.store.write_batch(&persist.batch);
        (persist, results)
    }

    /// The node crashed: the write in progress is lost. Returns whether there was one.
    pub fn crash(&mut self) -> bool {
        self.writing.take().is_some()
    }

    /// Reopens the disk after a crash: exactly what was durable (an unfinished snapshot
    /// install is dropped).
    pub fn reopen(&mut self) {
        self.store.install_abort();
        self.store.reload().expect("the simulated disk reopens");
    }
}

//! Snapshot streams: a leader's storage snapshot sent to a follower chunk by chunk over the
//! faulty network, each chunk acknowledged before the next leaves.
//!
//! A chunk that arrives is handed to the receiver's replica, which queues it behind a batch
//! being written (the daemon's sequencing, run here) and hands it to the disk when the disk is
//! free; storage's verdict comes back through the replica as the chunk's answer.
//!
//! Invariant: a stream dies with either end (a crash changes the incarnation) and with any lost
//! chunk or acknowledgement; every acknowledged chunk is reported to the leader's core as
//! progress, the last one's acknowledgement (the install done) as `snapshot_sent`, a refused
//! install as `snapshot_failed`; the core asks again once its snapshot timeout passes without
//! progress.

use super::checker::{Finding, ViolationKind};
use super::env::Env;
use super::network::Network;
use super::node::SimNode;
use super::time::Event;
use regent_raft::LogIndex;
use regent_replica::{InstallVerdict, Token};
use regent_storage::{LogStorage, SnapshotMeta};
use std::collections::BTreeMap;

/// Tokens of snapshot chunks handed to a replica (apart from the clients' operations).
const CHUNK: Token = 1 << 59;

/// A snapshot being streamed from a leader to a follower.
struct SnapshotStream {
    from: usize,
    to: usize,
    /// The incarnations of both ends when it started: a crash of either ends it.
    incarnations: (u64, u64),
    chunks: Vec<Vec<u8>>,
    meta: SnapshotMeta,
}

impl SnapshotStream {
    fn ends_alive(&self, nodes: &[SimNode]) -> bool {
        (nodes[self.from].incarnation, nodes[self.to].incarnation) == self.incarnations
    }
}

/// What a chunk's arrival or answer did to its receiver.
pub enum ChunkArrival {
    /// Nothing the receiver needs.
    Nothing,
    /// The chunk is queued in the receiver's replica: drive it.
    Queued { to: usize },
    /// The receiver installed the snapshot, applied through `applied`, and its core was told.
    Installed { to: usize, applied: LogIndex },
}

#[derive(Default)]
pub struct SnapshotStreams {
    streams: BTreeMap<u64, SnapshotStream>,
    /// Streams started so far; the next gets this number plus one.
    started: u64,
    /// Snapshots installed on followers.
    pub installed: u64,
    /// Chunks that arrived while their receiver was writing a batch (queued behind it).
    pub installs_during_writes: u64,
    /// Chunks handed to a replica: token → (stream, chunk number).
    chunks: BTreeMap<Token, (u64, usize)>,
    next_chunk: Token,
}

impl SnapshotStreams {
    /// The leader's caller streams its latest snapshot to a follower that needs one.
    pub fn start(
        &mut self,
        env: &mut Env,
        network: &mut Network,
        nodes: &[SimNode],
        from: usize,
        to: usize,
    ) -> Result<(), Finding> {
        let mut source = nodes[from].disk.store.snapshot().map_err(|err| {
            let detail = format!("n{}: snapshot failed: {err}", from + 1);
            Finding::new(ViolationKind::Contract, detail)
        })?;
        let meta = source.meta().clone();
        let mut chunks = Vec::new();
        while let Some(chunk) = source.next_chunk().expect("in-memory snapshot reads") {
            chunks.push(chunk);
        }
        self.started += 1;
        let id = self.started;
        env.note(format!(
            "n{} streams a snapshot to n{} ({} chunks)",
            from + 1,
            to + 1,
            chunks.len()
        ));
        let stream = SnapshotStream {
            from,
            to,
            incarnations: (nodes[from].incarnation, nodes[to].incarnation),
            chunks,
            meta,
        };
        self.streams.insert(id, stream);
        self.ship(
            env,
            network,
            id,
            from,
            to,
            Event::SnapshotChunk { id, k: 0 },
        );
        Ok(())
    }

    /// The receiver acknowledged chunk `k`: the sender tells its core the stream made
    /// progress (its snapshot timeout starts again), and sends the next one.
    pub fn acknowledged(
        &mut self,
        env: &mut Env,
        network: &mut Network,
        nodes: &mut [SimNode],
        id: u64,
        k: usize,
    ) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        if !s.ends_alive(nodes) {
            self.streams.remove(&id);
            return;
        }
        let (from, to) = (s.from, s.to);
        let receiver = nodes[to].id;
        if k + 1 >= s.chunks.len() {
            // The last chunk's acknowledgement: the follower installed the snapshot (the
            // stream's own ack, which arrives even when its SnapshotInstalled message is lost).
            let index = s.meta.last_included_index;
            self.streams.remove(&id);
            if let Some(now) = nodes[from].local_now(env.now()) {
                nodes[from].live().snapshot_sent(receiver, index, now);
            }
            return;
        }
        if let Some(now) = nodes[from].local_now(env.now()) {
            nodes[from].live().snapshot_progress(receiver, now);
        }
        self.ship(
            env,
            network,
            id,
            from,
            to,
            Event::SnapshotChunk { id, k: k + 1 },
        );
    }

    /// Chunk `k` reaches the receiver, whose replica queues it for the disk.
    pub fn chunk_arrived(
        &mut self,
        env: &mut Env,
        nodes: &mut [SimNode],
        id: u64,
        k: usize,
    ) -> ChunkArrival {
        let Some(s) = self.streams.get(&id) else {
            return ChunkArrival::Nothing;
        };
        let (from, to) = (s.from, s.to);
        if !s.ends_alive(nodes) || nodes[to].replica.is_none() {
            self.streams.remove(&id);
            return ChunkArrival::Nothing;
        }
        let (chunk, meta) = (s.chunks[k].clone(), s.meta.clone());
        self.next_chunk += 1;
        let token = CHUNK | self.next_chunk;
        self.chunks.insert(token, (id, k));
        let leader = nodes[from].id;
        let replica = nodes[to].live();
        if replica.is_persisting() {
            self.installs_during_writes += 1;
            env.note(format!(
                "n{} queues snapshot chunk {k} behind a write",
                to + 1
            ));
        }
        replica.install_chunk(token, leader, meta, chunk);
        ChunkArrival::Queued { to }
    }

    /// The receiver's replica answered the chunk `token`: acknowledge it, or end the stream
    /// (a refused install is reported to the sender, which asks again soon; a stale one the
    /// receiver's core already reported to the leader).
    pub fn answered(
        &mut self,
        env: &mut Env,
        network: &mut Network,
        nodes: &mut [SimNode],
        to: usize,
        token: Token,
        verdict: InstallVerdict,
    ) -> ChunkArrival {
        let Some((id, k)) = self.chunks.remove(&token) else {
            return ChunkArrival::Nothing;
        };
        let Some(s) = self.streams.get(&id) else {
            return ChunkArrival::Nothing;
        };
        assert_eq!(s.to, to, "a chunk answered by a node it was not sent to");
        let from = s.from;
        match verdict {
            InstallVerdict::Continue => {
                self.ship(env, network, id, to, from, Event::SnapshotAck { id, k });
                ChunkArrival::Nothing
            }
            InstallVerdict::Installed { index, .. } => {
                // The stream stays for its last acknowledgement.
                self.ship(env, network, id, to, from, Event::SnapshotAck { id, k });
                self.installed += 1;
                env.note(format!("n{} installed a snapshot at {index}", to + 1));
                let applied = nodes[to].applied_index();
                ChunkArrival::Installed { to, applied }
            }
            InstallVerdict::Refused(err) | InstallVerdict::Fatal(err) => {
                env.note(format!("n{} refused a snapshot chunk: {err}", to + 1));
                let s = self.streams.remove(&id).expect("checked above");
                if s.meta.last_included_index > nodes[to].applied_index() && s.ends_alive(nodes) {
                    // Refused: the stream ends, which the sender sees (as the daemon's QUIC
                    // stream does) and reports, so that its core asks again soon.
                    let receiver = nodes[to].id;
                    if let Some(now) = nodes[from].local_now(env.now()) {
                        nodes[from].live().snapshot_failed(receiver, now);
                    }
                }
                ChunkArrival::Nothing
            }
        }
    }

    /// Ships a chunk or acknowledgement of stream `id`; a lost one ends the stream.
    fn ship(
        &mut self,
        env: &mut Env,
        network: &mut Network,
        id: u64,
        from: usize,
        to: usize,
        event: Event,
    ) {
        if !network.ship(env, from, to, event) {
            self.streams.remove(&id);
        }
    }
}

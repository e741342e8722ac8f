//! Snapshot streams: a leader's storage snapshot sent to a follower chunk by chunk over the
//! faulty network, each chunk acknowledged before the next leaves.
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
use regent_storage::{InstallProgress, LogStorage, SnapshotMeta};
use std::collections::BTreeMap;

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

/// What a chunk's arrival did to its receiver.
pub enum ChunkArrival {
    /// Nothing the receiver's core needs to hear of.
    Nothing,
    /// The receiver installed the snapshot, applied through `applied`, and its core was told:
    /// drive it.
    Installed { to: usize, applied: LogIndex },
    /// The receiver refused a stale snapshot and its core was told, so that it tells the
    /// leader where to resume: drive it.
    Stale { to: usize },
}

#[derive(Default)]
pub struct SnapshotStreams {
    streams: BTreeMap<u64, SnapshotStream>,
    /// Streams started so far; the next gets this number plus one.
    started: u64,
    /// Snapshots installed on followers.
    pub installed: u64,
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

    /// Chunk `k` reaches the receiver, which installs it (acknowledging it), completes the
    /// install, or refuses it.
    pub fn chunk_arrived(
        &mut self,
        env: &mut Env,
        network: &mut Network,
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
        if nodes[to].disk.is_writing() {
            // Installing under a write in progress would race it; drop this stream.
            nodes[to].disk.store.install_abort();
            self.streams.remove(&id);
            return ChunkArrival::Nothing;
        }
        let chunk = &self.streams[&id].chunks[k];
        match nodes[to].disk.store.install_chunk(chunk) {
            Ok(InstallProgress::Continue { .. }) => {
                self.ship(env, network, id, to, from, Event::SnapshotAck { id, k });
                ChunkArrival::Nothing
            }
            Ok(InstallProgress::Installed(state)) => {
                // The stream stays for its last acknowledgement.
                self.ship(env, network, id, to, from, Event::SnapshotAck { id, k });
                self.installed += 1;
                let meta = state.snapshot.clone();
                env.note(format!(
                    "n{} installed a snapshot at {}",
                    to + 1,
                    meta.last_included_index
                ));
                tell_installed(env, nodes, from, to, meta);
                ChunkArrival::Installed {
                    to,
                    applied: state.applied,
                }
            }
            Err(err) => {
                // A stale or refused snapshot (older than what the follower holds, a term it
                // has not durably seen yet, ...): the install is abandoned, the leader retries.
                env.note(format!("n{} refused a snapshot chunk: {err}", to + 1));
                nodes[to].disk.store.install_abort();
                let s = self.streams.remove(&id).expect("checked above");
                if s.meta.last_included_index > nodes[to].disk.store.state().applied {
                    // Refused: the stream ends, which the sender sees (as the daemon's QUIC
                    // stream does) and reports, so that its core asks again soon.
                    if s.ends_alive(nodes) {
                        let receiver = nodes[to].id;
                        if let Some(now) = nodes[from].local_now(env.now()) {
                            nodes[from].live().snapshot_failed(receiver, now);
                        }
                    }
                    return ChunkArrival::Nothing;
                }
                // Stale: the core tells the leader where to resume.
                tell_installed(env, nodes, from, to, s.meta);
                ChunkArrival::Stale { to }
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

/// Tells the receiver's core what its disk now holds.
fn tell_installed(env: &Env, nodes: &mut [SimNode], from: usize, to: usize, meta: SnapshotMeta) {
    let now = nodes[to].local_now(env.now()).expect("live");
    let leader = nodes[from].id;
    nodes[to].live().snapshot_installed(leader, meta, now);
}

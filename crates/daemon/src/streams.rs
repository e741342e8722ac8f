//! Snapshot streams over the transport: a leader's storage snapshot sent to a follower chunk
//! by chunk, and a follower's receiving task feeding each chunk to the driver (which hands it to
//! the replica, which sequences it against write batches) and waiting for its verdict.
//!
//! Invariant: a receiving task has at most one chunk waiting for its verdict; the stream is
//! acknowledged only once the snapshot is installed.

use crate::api::metrics::Metrics;
use crate::wire::PeerMessage;
use regent_raft::{LogIndex, NodeId};
use regent_storage::{SnapshotMeta, SnapshotSource, StorageError};
use regent_transport::{SnapshotReceiver, TransportHandle};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The storage's verdict on one snapshot chunk: `true` once the snapshot is installed. The
/// error is shared with the driver, which may stop on it.
pub type ChunkVerdict = Result<bool, Arc<StorageError>>;

/// What the snapshot streams' tasks tell the driver.
pub enum StreamEvent {
    /// One chunk of an incoming snapshot; answered with the storage's verdict (`Ok(true)` once
    /// the snapshot is installed).
    Chunk {
        from: NodeId,
        meta: SnapshotMeta,
        chunk: Vec<u8>,
        reply: oneshot::Sender<ChunkVerdict>,
    },
    /// A snapshot stream to `to` ended. `installed`: the index the follower acknowledged
    /// installing through (None: failed).
    Sent {
        to: NodeId,
        installed: Option<LogIndex>,
    },
    /// A snapshot stream to `to` is moving (chunks written within the flow-control window).
    Progress { to: NodeId },
}

/// The header of a snapshot stream: what the snapshot holds, so a receiver can tell a stale
/// one without reading it.
fn encode_header(meta: &SnapshotMeta) -> Vec<u8> {
    postcard::to_stdvec(meta).expect("a snapshot header encodes")
}

/// How often a snapshot stream that keeps moving tells the core so (which restarts its
/// snapshot timeout).
const SNAPSHOT_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Streams a storage snapshot to a follower over the transport's snapshot streams.
pub async fn send(
    transport: TransportHandle<PeerMessage>,
    to: NodeId,
    mut source: Box<dyn SnapshotSource>,
    events: mpsc::UnboundedSender<StreamEvent>,
    metrics: Arc<Metrics>,
) {
    let meta = source.meta().clone();
    let result = async {
        let mut sender = transport
            .open_snapshot(to, &encode_header(&meta))
            .await
            .map_err(|e| e.to_string())?;
        let mut reported = Instant::now();
        loop {
            // Reading a chunk is a bounded redb read (at most a chunk's worth of records).
            let chunk =
                tokio::task::block_in_place(|| source.next_chunk()).map_err(|e| e.to_string())?;
            let Some(chunk) = chunk else { break };
            sender
                .write_chunk(&chunk)
                .await
                .map_err(|e| e.to_string())?;
            // A chunk written means the receiver consumed the flow-control window: the stream
            // is alive, however long the whole snapshot takes (at most one report a second).
            if reported.elapsed() >= SNAPSHOT_PROGRESS_EVERY {
                reported = Instant::now();
                let _ = events.send(StreamEvent::Progress { to });
            }
        }
        sender.finish().await.map_err(|e| e.to_string())
    }
    .await;
    let installed = result.is_ok().then_some(meta.last_included_index);
    match result {
        Ok(bytes) => {
            metrics.snapshots_sent.fetch_add(1, Relaxed);
            metrics.snapshot_bytes_sent.fetch_add(bytes, Relaxed);
            tracing::info!(
                peer = %to, index = %meta.last_included_index, term = %meta.last_included_term, bytes,
                "snapshot sent"
            )
        }
        Err(err) => tracing::warn!(peer = %to, error = %err, "snapshot not sent"),
    }
    let _ = events.send(StreamEvent::Sent { to, installed });
}

/// Receives a snapshot stream and feeds its chunks, one at a time, to the driver.
pub async fn receive(mut receiver: SnapshotReceiver, events: mpsc::UnboundedSender<StreamEvent>) {
    let from = receiver.from();
    let meta: SnapshotMeta = match postcard::from_bytes(receiver.header()) {
        Ok(meta) => meta,
        Err(err) => {
            tracing::warn!(peer = %from, error = %err, "snapshot stream with an undecodable header; refused");
            return;
        }
    };
    loop {
        let chunk = match receiver.next_chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                tracing::warn!(peer = %from, "snapshot stream ended before the snapshot did");
                return;
            }
            Err(err) => {
                tracing::warn!(peer = %from, error = %err, "snapshot stream failed");
                return;
            }
        };
        let (reply, answer) = oneshot::channel();
        let sent = events.send(StreamEvent::Chunk {
            from,
            meta: meta.clone(),
            chunk,
            reply,
        });
        if sent.is_err() {
            return;
        }
        match answer.await {
            Ok(Ok(false)) => continue,
            Ok(Ok(true)) => break,
            Ok(Err(err)) => {
                tracing::info!(peer = %from, error = %err, "snapshot refused");
                return;
            }
            Err(_) => return,
        }
    }
    // Drain the end marker, then acknowledge.
    match receiver.next_chunk().await {
        Ok(None) => {
            if let Err(err) = receiver.accept().await {
                tracing::debug!(peer = %from, error = %err, "snapshot acknowledgement not delivered");
            }
        }
        Ok(Some(_)) => tracing::warn!(peer = %from, "snapshot stream continued past its end"),
        Err(err) => tracing::debug!(peer = %from, error = %err, "snapshot stream end"),
    }
}

//! Snapshot streams: a snapshot goes to a peer as a stream of its own on the link's
//! connection, so its bytes never sit in front of a heartbeat on the message stream (the
//! message stream also has the higher send priority).
//!
//! Stream protocol (frames of `frame`): sender → `SnapshotBegin(header)`, any number of
//! `SnapshotChunk(bytes)`, `SnapshotEnd { bytes, crc32c }`, then finishes; receiver →
//! `SnapshotAck { bytes }` once its caller accepted the whole snapshot.
//!
//! Invariants: the receiver hands out chunks in order and reports the end only when the byte
//! count and CRC-32C of everything received match the sender's `SnapshotEnd`; a snapshot is
//! acknowledged only by an explicit `accept`; a stream with no progress for
//! `snapshot_stall_timeout_ms` is aborted on both sides; dropping either half unfinished
//! resets the stream, so the other side sees an error rather than waiting forever.

use super::frame::{self, FrameDecoder, FrameKind};
use super::peer::Shared;
use super::{Inbound, TransportError};
use regent_raft::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Stream error code: the sender gave up on the snapshot.
pub const SNAPSHOT_ABORTED: u32 = 1;
/// Stream error code: the receiver did not accept the snapshot.
pub const SNAPSHOT_REFUSED: u32 = 2;
/// Send priority of snapshot streams, below the message stream's.
pub const SNAPSHOT_STREAM_PRIORITY: i32 = 0;

const READ_CHUNK_BYTES_MAX: usize = 64 << 10;

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotEnd {
    bytes: u64,
    crc32c: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotAck {
    bytes: u64,
}

fn snapshot_err(peer: NodeId, reason: impl std::fmt::Display) -> TransportError {
    TransportError::Snapshot {
        peer,
        reason: reason.to_string(),
    }
}

/// The sending half of a snapshot transfer.
pub struct SnapshotSender {
    /// One of the peer's `SNAPSHOT_STREAMS_MAX` slots, released when the sender is dropped.
    _slot: tokio::sync::OwnedSemaphorePermit,
    peer: NodeId,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    frame_bytes_max: usize,
    stall: Duration,
    bytes: u64,
    crc: u32,
    done: bool,
    buf: Vec<u8>,
}

/// Opens a snapshot stream on the live link to `peer`.
pub(super) async fn open<T>(
    shared: &Shared<T>,
    peer: NodeId,
    header: &[u8],
) -> Result<SnapshotSender, TransportError> {
    let link = shared.peer(peer).ok_or(TransportError::UnknownPeer(peer))?;
    let stall = Duration::from_millis(shared.config.snapshot_stall_timeout_ms);
    // Call streams share the connection's stream limit: snapshots keep their own bound.
    let slot = tokio::time::timeout(stall, link.snapshots.clone().acquire_owned())
        .await
        .map_err(|_| snapshot_err(peer, "no snapshot slot free in time"))?
        .map_err(|_| TransportError::Shutdown)?;
    let conn = link
        .connection()
        .ok_or(TransportError::NotConnected(peer))?;
    let (send, recv) = tokio::time::timeout(stall, conn.open_bi())
        .await
        .map_err(|_| snapshot_err(peer, "no stream available in time"))?
        .map_err(|e| snapshot_err(peer, e))?;
    let _ = send.set_priority(SNAPSHOT_STREAM_PRIORITY);
    let mut sender = SnapshotSender {
        _slot: slot,
        peer,
        send,
        recv,
        frame_bytes_max: shared.config.frame_bytes_max,
        stall,
        bytes: 0,
        crc: 0,
        done: false,
        buf: Vec::new(),
    };
    let mut out = Vec::new();
    frame::encode_raw(
        FrameKind::SnapshotBegin,
        header,
        sender.frame_bytes_max,
        &mut out,
    )
    .map_err(|e| snapshot_err(peer, format!("header: {e}")))?;
    sender.write(&out).await?;
    Ok(sender)
}

impl SnapshotSender {
    /// Sends the next bytes of the snapshot (split into frames as needed). Waits while the
    /// peer's receive window is full: that is the back-pressure of a slow receiver.
    pub async fn write_chunk(&mut self, data: &[u8]) -> Result<(), TransportError> {
        let chunk_max = self.frame_bytes_max - frame::HEADER_BYTES;
        for piece in data.chunks(chunk_max) {
            let mut out = std::mem::take(&mut self.buf);
            out.clear();
            frame::encode_raw(
                FrameKind::SnapshotChunk,
                piece,
                self.frame_bytes_max,
                &mut out,
            )
            .map_err(|e| snapshot_err(self.peer, e))?;
            self.write(&out).await?;
            self.buf = out;
            self.crc = crc32c::crc32c_append(self.crc, piece);
            self.bytes += piece.len() as u64;
        }
        Ok(())
    }

    /// Bytes of snapshot sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes
    }

    /// Ends the snapshot and waits until the receiver accepted it. Returns the byte count.
    pub async fn finish(mut self) -> Result<u64, TransportError> {
        let end = SnapshotEnd {
            bytes: self.bytes,
            crc32c: self.crc,
        };
        let mut out = Vec::new();
        frame::encode(FrameKind::SnapshotEnd, &end, self.frame_bytes_max, &mut out)
            .map_err(|e| snapshot_err(self.peer, e))?;
        self.write(&out).await?;
        self.send.finish().map_err(|e| snapshot_err(self.peer, e))?;
        let mut decoder = FrameDecoder::new(self.frame_bytes_max);
        let peer = self.peer;
        let frame = tokio::time::timeout(self.stall, read_frame(&mut self.recv, &mut decoder))
            .await
            .map_err(|_| snapshot_err(peer, "no acknowledgement in time"))?
            .map_err(|e| snapshot_err(peer, format!("not acknowledged: {e}")))?;
        let ack: SnapshotAck = frame::decode_expected(&frame, FrameKind::SnapshotAck)
            .map_err(|e| snapshot_err(peer, e))?;
        if ack.bytes != self.bytes {
            return Err(snapshot_err(
                peer,
                format!("acknowledged {} bytes of {}", ack.bytes, self.bytes),
            ));
        }
        self.done = true;
        Ok(self.bytes)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        tokio::time::timeout(self.stall, self.send.write_all(bytes))
            .await
            .map_err(|_| snapshot_err(self.peer, "stalled: the receiver stopped reading"))?
            .map_err(|e| snapshot_err(self.peer, e))
    }
}

impl Drop for SnapshotSender {
    fn drop(&mut self) {
        if !self.done {
            // Unfinished: tell the receiver instead of letting the stream look complete.
            let _ = self.send.reset(SNAPSHOT_ABORTED.into());
        }
    }
}

/// The receiving half of a snapshot transfer, handed out as `Inbound::Snapshot`.
pub struct SnapshotReceiver {
    from: NodeId,
    header: Vec<u8>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    frame_bytes_max: usize,
    stall: Duration,
    bytes_max: u64,
    bytes: u64,
    crc: u32,
    ended: bool,
    accepted: bool,
}

impl std::fmt::Debug for SnapshotReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReceiver")
            .field("from", &self.from)
            .field("header_bytes", &self.header.len())
            .field("bytes", &self.bytes)
            .field("ended", &self.ended)
            .finish()
    }
}

/// Reads the first frame of a stream opened by `from`: a snapshot (`SnapshotBegin`) is handed
/// to the caller as `Inbound::Snapshot`, a call (`Call`) goes on to `call::receive`.
pub(super) async fn receive<T>(
    shared: Arc<Shared<T>>,
    from: NodeId,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let stall = Duration::from_millis(shared.config.snapshot_stall_timeout_ms);
    let mut decoder = FrameDecoder::new(shared.config.frame_bytes_max);
    let first = tokio::time::timeout(stall, read_frame(&mut recv, &mut decoder)).await;
    let header = match first {
        Ok(Ok(frame)) if frame.kind == FrameKind::SnapshotBegin => frame.body,
        // A link of an older wire version has no calls: refused as that version's node would.
        Ok(Ok(frame))
            if frame.kind == FrameKind::Call
                && shared
                    .peer(from)
                    .and_then(|p| p.wire_version())
                    .is_none_or(|v| v >= super::call::CALL_WIRE_VERSION_MIN) =>
        {
            let call_stall = stall.min(super::call::CALL_STALL_MAX);
            super::call::receive(shared, from, send, recv, decoder, frame.body, call_stall).await;
            return;
        }
        Ok(Ok(frame)) => {
            tracing::warn!(peer = %from, kind = ?frame.kind, "stream did not begin with SnapshotBegin or Call");
            let _ = recv.stop(SNAPSHOT_REFUSED.into());
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(peer = %from, error = %e, "bad snapshot stream");
            let _ = recv.stop(SNAPSHOT_REFUSED.into());
            return;
        }
        Err(_) => {
            let _ = recv.stop(SNAPSHOT_REFUSED.into());
            return;
        }
    };
    let receiver = SnapshotReceiver {
        from,
        header,
        send,
        recv,
        decoder,
        frame_bytes_max: shared.config.frame_bytes_max,
        stall,
        bytes_max: shared.config.snapshot_bytes_max,
        bytes: 0,
        crc: 0,
        ended: false,
        accepted: false,
    };
    // If the caller is gone the receiver is dropped here, which refuses the snapshot.
    let _ = shared
        .inbound
        .send(Inbound::Snapshot(Box::new(receiver)))
        .await;
}

impl SnapshotReceiver {
    /// The node sending the snapshot.
    pub fn from(&self) -> NodeId {
        self.from
    }

    /// The sender's description of the snapshot.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }

    /// The next chunk, in order; `None` once the whole snapshot arrived and its byte count
    /// and CRC-32C matched. An error leaves the transfer unusable.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        if self.ended {
            return Ok(None);
        }
        let from = self.from;
        let frame = tokio::time::timeout(self.stall, read_frame(&mut self.recv, &mut self.decoder))
            .await
            .map_err(|_| snapshot_err(from, "stalled: no data in time"))?
            .map_err(|e| snapshot_err(from, e))?;
        match frame.kind {
            FrameKind::SnapshotChunk => {
                self.bytes += frame.body.len() as u64;
                if self.bytes > self.bytes_max {
                    return Err(snapshot_err(
                        from,
                        format!("more than snapshot_bytes_max {}", self.bytes_max),
                    ));
                }
                self.crc = crc32c::crc32c_append(self.crc, &frame.body);
                Ok(Some(frame.body))
            }
            FrameKind::SnapshotEnd => {
                let end: SnapshotEnd =
                    frame::decode_body(&frame).map_err(|e| snapshot_err(from, e))?;
                if end.bytes != self.bytes || end.crc32c != self.crc {
                    return Err(snapshot_err(
                        from,
                        format!(
                            "sender sent {} bytes with CRC {:08x}, received {} with {:08x}",
                            end.bytes, end.crc32c, self.bytes, self.crc
                        ),
                    ));
                }
                self.ended = true;
                Ok(None)
            }
            other => Err(snapshot_err(from, format!("unexpected {other:?} frame"))),
        }
    }

    /// Acknowledges the whole snapshot to the sender (call after it is stored). Fails if the
    /// end was not reached.
    pub async fn accept(mut self) -> Result<u64, TransportError> {
        if !self.ended {
            return Err(snapshot_err(
                self.from,
                "accept before the end of the snapshot",
            ));
        }
        let mut out = Vec::new();
        frame::encode(
            FrameKind::SnapshotAck,
            &SnapshotAck { bytes: self.bytes },
            self.frame_bytes_max,
            &mut out,
        )
        .map_err(|e| snapshot_err(self.from, e))?;
        let from = self.from;
        tokio::time::timeout(self.stall, self.send.write_all(&out))
            .await
            .map_err(|_| snapshot_err(from, "acknowledgement stalled"))?
            .map_err(|e| snapshot_err(from, e))?;
        let _ = self.send.finish();
        self.accepted = true;
        Ok(self.bytes)
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if !self.accepted {
            let _ = self.send.reset(SNAPSHOT_REFUSED.into());
            let _ = self.recv.stop(SNAPSHOT_REFUSED.into());
        }
    }
}

async fn read_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<frame::Frame, String> {
    let mut buf = [0u8; READ_CHUNK_BYTES_MAX];
    loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            return Ok(frame);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(&buf[..n]),
            Ok(None) => {
                decoder.finish().map_err(|e| e.to_string())?;
                return Err("the stream ended early".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

//! Calls: one request and its answer on a stream of their own on the link's connection (a
//! follower relays an operator's write to the leader this way). The message stream drops its
//! oldest frames when full, which suits Raft and not a request whose caller waits for an
//! answer; a stream per call is delivered whole or fails visibly.
//!
//! Stream protocol (frames of `frame`): caller → any number of `Call(bytes)` frames (the
//! request, split to fit `frame_bytes_max`), then finishes; callee → `CallReply(bytes)` frames
//! (the answer), then finishes. Either side resets the stream to give up.
//!
//! Invariants: a request or an answer is handed out only whole (the stream finished cleanly,
//! at most `CALL_BYTES_MAX` bytes); a call never waits longer than its timeout; the caller
//! learns whether the request may have reached the peer (`CallFailure::sent`), because a
//! request that may have been carried out must not be retried silently.

use super::frame::{self, FrameDecoder, FrameKind};
use super::peer::Shared;
use super::{Inbound, TransportError};
use regent_raft::NodeId;
use std::sync::Arc;
use std::time::Duration;

/// The largest request or answer of a call.
pub const CALL_BYTES_MAX: usize = 16 << 20;
/// Calls in flight to one peer at once (a caller beyond waits for a slot, within its timeout).
pub const CALL_STREAMS_MAX: u32 = 16;
/// Send priority of call streams: below the message stream (heartbeats first), above snapshots.
pub const CALL_STREAM_PRIORITY: i32 = 5;
/// Stream error code: the callee refused or gave up on the call.
pub const CALL_REFUSED: u32 = 3;

/// The oldest wire version that carries calls (`regent/3`).
pub const CALL_WIRE_VERSION_MIN: u8 = 3;

/// The longest a call's request may take to arrive whole once its stream is open.
pub const CALL_STALL_MAX: Duration = Duration::from_secs(10);

const READ_CHUNK_BYTES_MAX: usize = 64 << 10;

fn call_err(peer: NodeId, sent: bool, reason: impl std::fmt::Display) -> TransportError {
    TransportError::Call {
        peer,
        sent,
        reason: reason.to_string(),
    }
}

/// Sends `request` to `peer` on a new stream and waits at most `timeout` for the whole answer.
pub(super) async fn call<T>(
    shared: &Shared<T>,
    peer: NodeId,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, TransportError> {
    if request.len() > CALL_BYTES_MAX {
        return Err(call_err(
            peer,
            false,
            format!(
                "the request has {} bytes, over {CALL_BYTES_MAX}",
                request.len()
            ),
        ));
    }
    let link = shared.peer(peer).ok_or(TransportError::UnknownPeer(peer))?;
    // Call streams came with wire version 3: a peer on an older build would refuse the stream.
    if let Some(version) = link.wire_version().filter(|&v| v < CALL_WIRE_VERSION_MIN) {
        return Err(TransportError::WireVersion {
            peer,
            needed: CALL_WIRE_VERSION_MIN,
            link: version,
        });
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let _slot = tokio::time::timeout_at(deadline, link.calls.clone().acquire_owned())
        .await
        .map_err(|_| call_err(peer, false, "no call slot free in time"))?
        .map_err(|_| TransportError::Shutdown)?;
    let conn = link
        .connection()
        .ok_or(TransportError::NotConnected(peer))?;
    let (mut send, mut recv) = tokio::time::timeout_at(deadline, conn.open_bi())
        .await
        .map_err(|_| call_err(peer, false, "no stream opened in time"))?
        .map_err(|e| call_err(peer, false, e))?;
    let _ = send.set_priority(CALL_STREAM_PRIORITY);
    let frame_bytes_max = shared.config.frame_bytes_max;
    let mut out = Vec::with_capacity(request.len() + 16);
    encode_pieces(FrameKind::Call, request, frame_bytes_max, &mut out)
        .map_err(|e| call_err(peer, false, e))?;
    let sent = async {
        send.write_all(&out).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())
    };
    // From the first byte written on, the peer may carry the request out.
    tokio::time::timeout_at(deadline, sent)
        .await
        .map_err(|_| call_err(peer, true, "the request was not sent in time"))?
        .map_err(|e| call_err(peer, true, format!("sending the request: {e}")))?;
    let answer = read_whole(&mut recv, FrameKind::CallReply, frame_bytes_max);
    match tokio::time::timeout_at(deadline, answer).await {
        Err(_) => {
            let _ = recv.stop(CALL_REFUSED.into());
            Err(call_err(
                peer,
                true,
                format!("no answer within {} ms", timeout.as_millis()),
            ))
        }
        Ok(Err(e)) => Err(call_err(peer, true, format!("no whole answer: {e}"))),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// A call opened by a peer, handed out as `Inbound::Call`. Dropping it unanswered resets the
/// stream, so the caller sees an error at once rather than waiting for its timeout.
pub struct CallRequest {
    from: NodeId,
    request: Vec<u8>,
    send: Option<quinn::SendStream>,
    frame_bytes_max: usize,
}

impl std::fmt::Debug for CallRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRequest")
            .field("from", &self.from)
            .field("request_bytes", &self.request.len())
            .finish()
    }
}

impl CallRequest {
    /// The authenticated peer that made the call.
    pub fn from(&self) -> NodeId {
        self.from
    }

    /// The request's bytes.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Sends the answer and finishes the stream.
    pub async fn reply(mut self, answer: &[u8]) -> Result<(), TransportError> {
        let from = self.from;
        if answer.len() > CALL_BYTES_MAX {
            return Err(call_err(
                from,
                true,
                format!(
                    "the answer has {} bytes, over {CALL_BYTES_MAX}",
                    answer.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(answer.len() + 16);
        encode_pieces(FrameKind::CallReply, answer, self.frame_bytes_max, &mut out)
            .map_err(|e| call_err(from, true, e))?;
        let Some(mut send) = self.send.take() else {
            return Err(call_err(from, true, "already answered"));
        };
        send.write_all(&out)
            .await
            .map_err(|e| call_err(from, true, format!("answering: {e}")))?;
        let _ = send.finish();
        Ok(())
    }
}

impl Drop for CallRequest {
    fn drop(&mut self) {
        if let Some(mut send) = self.send.take() {
            let _ = send.reset(CALL_REFUSED.into());
        }
    }
}

/// Reads the rest of a call stream whose first frame, a `Call`, was already read, and hands the
/// whole request to the transport's caller. A stream that stalls for `stall` or grows past
/// `CALL_BYTES_MAX` is refused.
pub(super) async fn receive<T>(
    shared: Arc<Shared<T>>,
    from: NodeId,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut decoder: FrameDecoder,
    first: Vec<u8>,
    stall: Duration,
) {
    let rest = read_rest(&mut recv, &mut decoder, FrameKind::Call, first);
    let request = match tokio::time::timeout(stall, rest).await {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            tracing::warn!(peer = %from, error = %e, "bad call stream");
            let _ = recv.stop(CALL_REFUSED.into());
            return;
        }
        Err(_) => {
            tracing::warn!(peer = %from, "a call's request stalled");
            let _ = recv.stop(CALL_REFUSED.into());
            return;
        }
    };
    let call = CallRequest {
        from,
        request,
        send: Some(send),
        frame_bytes_max: shared.config.frame_bytes_max,
    };
    // If the caller is gone the request is dropped here, which resets the stream.
    let _ = shared.inbound.send(Inbound::Call(Box::new(call))).await;
}

/// Splits `bytes` into frames of `kind` (at least one, so an empty body still has a frame).
fn encode_pieces(
    kind: FrameKind,
    bytes: &[u8],
    frame_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), frame::FrameError> {
    let piece_max = frame_bytes_max - frame::HEADER_BYTES;
    if bytes.is_empty() {
        return frame::encode_raw(kind, bytes, frame_bytes_max, out);
    }
    for piece in bytes.chunks(piece_max) {
        frame::encode_raw(kind, piece, frame_bytes_max, out)?;
    }
    Ok(())
}

async fn read_whole(
    recv: &mut quinn::RecvStream,
    kind: FrameKind,
    frame_bytes_max: usize,
) -> Result<Vec<u8>, String> {
    let mut decoder = FrameDecoder::new(frame_bytes_max);
    read_rest(recv, &mut decoder, kind, Vec::new()).await
}

/// Appends every frame of `kind` to `body` until the stream ends cleanly.
async fn read_rest(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    kind: FrameKind,
    mut body: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; READ_CHUNK_BYTES_MAX];
    loop {
        while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            if frame.kind != kind {
                return Err(format!("unexpected {:?} frame in a call", frame.kind));
            }
            if body.len() + frame.body.len() > CALL_BYTES_MAX {
                return Err(format!("more than {CALL_BYTES_MAX} bytes"));
            }
            body.extend_from_slice(&frame.body);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(&buf[..n]),
            Ok(None) => {
                decoder.finish().map_err(|e| e.to_string())?;
                return Ok(body);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

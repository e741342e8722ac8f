//! Frames on a peer stream: `[len: u32 LE][version: u8][kind: u8][body: len - 2 bytes]`, the
//! body a postcard encoding.
//!
//! Invariants: an encoded frame is at most `frame_bytes_max` bytes after its length prefix
//! (the encoder refuses larger ones, the decoder refuses to buffer them); the decoder never
//! panics and never allocates more than one frame's worth beyond what it was given; every
//! malformed input — too large, too small, unknown version, unknown kind, a body that does not
//! decode or has bytes left over — is a `FrameError`.
//!
//! There is no checksum: QUIC authenticates every byte with the TLS AEAD, so a corrupted
//! frame can only come from a buggy or hostile peer, which the decoder handles as input.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The frame format this build speaks. A peer sending another version is refused, never
/// guessed at; a future version will be negotiated in the hello.
pub const FRAME_VERSION: u8 = 1;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Bytes after the length prefix that are not body: version and kind.
pub const HEADER_BYTES: usize = 2;
/// The smallest `frame_bytes_max` a configuration may set.
pub const FRAME_BYTES_MIN: usize = 1024;
/// The largest `frame_bytes_max` a configuration may set.
pub const FRAME_BYTES_LIMIT: usize = 64 << 20;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Dialer → acceptor, first frame of the message stream: who I am, whom I want.
    Hello = 1,
    /// Acceptor → dialer: the hello was accepted; only now is the link authenticated.
    HelloAck = 2,
    /// One Raft message.
    Message = 3,
    /// First frame of a snapshot stream: the caller's header bytes.
    SnapshotBegin = 4,
    /// Raw snapshot bytes.
    SnapshotChunk = 5,
    /// Last frame of a snapshot stream: total bytes and their CRC-32C.
    SnapshotEnd = 6,
    /// Receiver → sender: the snapshot was received whole and accepted.
    SnapshotAck = 7,
    /// Caller → callee on a call stream: (a piece of) the request.
    Call = 8,
    /// Callee → caller on a call stream: (a piece of) the answer.
    CallReply = 9,
}

impl FrameKind {
    pub fn from_u8(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Hello,
            2 => FrameKind::HelloAck,
            3 => FrameKind::Message,
            4 => FrameKind::SnapshotBegin,
            5 => FrameKind::SnapshotChunk,
            6 => FrameKind::SnapshotEnd,
            7 => FrameKind::SnapshotAck,
            8 => FrameKind::Call,
            9 => FrameKind::CallReply,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub body: Vec<u8>,
}

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds frame_bytes_max {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is shorter than its {HEADER_BYTES}-byte header")]
    TooShort { len: usize },
    #[error("unknown frame version {version} (this build speaks {FRAME_VERSION})")]
    UnknownVersion { version: u8 },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("{kind:?} frame body does not decode: {reason}")]
    BadBody { kind: FrameKind, reason: String },
    #[error("expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: FrameKind, got: FrameKind },
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

/// Appends one frame holding `body` to `out`.
pub fn encode_raw(
    kind: FrameKind,
    body: &[u8],
    frame_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let len = HEADER_BYTES + body.len();
    if len > frame_bytes_max {
        return Err(FrameError::TooLarge {
            len,
            max: frame_bytes_max,
        });
    }
    assert!(frame_bytes_max <= FRAME_BYTES_LIMIT);
    out.reserve(LEN_BYTES + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(FRAME_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(body);
    Ok(())
}

/// Appends one frame holding the postcard encoding of `value` to `out`.
pub fn encode<V: Serialize + ?Sized>(
    kind: FrameKind,
    value: &V,
    frame_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    out.push(FRAME_VERSION);
    out.push(kind as u8);
    let encoded = std::mem::take(out);
    let mut encoded = postcard::to_extend(value, encoded).map_err(|e| {
        // postcard only fails on types it cannot encode; report it as a body error.
        FrameError::BadBody {
            kind,
            reason: e.to_string(),
        }
    })?;
    let len = encoded.len() - start - LEN_BYTES;
    if len > frame_bytes_max {
        encoded.truncate(start);
        *out = encoded;
        return Err(FrameError::TooLarge {
            len,
            max: frame_bytes_max,
        });
    }
    encoded[start..start + LEN_BYTES].copy_from_slice(&(len as u32).to_le_bytes());
    *out = encoded;
    Ok(())
}

/// Decodes a frame body; every byte must be used.
pub fn decode_body<V: DeserializeOwned>(frame: &Frame) -> Result<V, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes::<V>(&frame.body).map_err(|e| FrameError::BadBody {
            kind: frame.kind,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(FrameError::BadBody {
            kind: frame.kind,
            reason: format!("{} bytes left over", rest.len()),
        });
    }
    Ok(value)
}

/// Checks the frame is of the kind expected, then decodes its body.
pub fn decode_expected<V: DeserializeOwned>(
    frame: &Frame,
    expected: FrameKind,
) -> Result<V, FrameError> {
    if frame.kind != expected {
        return Err(FrameError::Unexpected {
            expected,
            got: frame.kind,
        });
    }
    decode_body(frame)
}

/// An incremental decoder: bytes in, whole frames out, whatever the split of the stream.
#[derive(Debug)]
pub struct FrameDecoder {
    /// `buf[start..]` holds bytes received and not yet returned as frames.
    buf: Vec<u8>,
    start: usize,
    frame_bytes_max: usize,
    /// Once an error is returned the stream is unusable; every later call returns it again.
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new(frame_bytes_max: usize) -> FrameDecoder {
        assert!((1..=FRAME_BYTES_LIMIT).contains(&frame_bytes_max));
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            frame_bytes_max,
            failed: None,
        }
    }

    /// Bytes received and not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            // Compact so the buffer stays within about two frames.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` if more bytes are needed, or the first error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.parse() {
            Ok(frame) => Ok(frame),
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Called at the end of the stream: leftover bytes mean a truncated frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    fn parse(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < LEN_BYTES {
            return Ok(None);
        }
        let mut len_bytes = [0u8; LEN_BYTES];
        len_bytes.copy_from_slice(&avail[..LEN_BYTES]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        // Checked before waiting for the body, so a hostile length never makes us buffer it.
        if len > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                len,
                max: self.frame_bytes_max,
            });
        }
        if len < HEADER_BYTES {
            return Err(FrameError::TooShort { len });
        }
        // The header is checked as soon as it arrives, before the body.
        if avail.len() > LEN_BYTES && avail[LEN_BYTES] != FRAME_VERSION {
            return Err(FrameError::UnknownVersion {
                version: avail[LEN_BYTES],
            });
        }
        if avail.len() < LEN_BYTES + len {
            return Ok(None);
        }
        let kind_byte = avail[LEN_BYTES + 1];
        let kind =
            FrameKind::from_u8(kind_byte).ok_or(FrameError::UnknownKind { kind: kind_byte })?;
        let body = avail[LEN_BYTES + HEADER_BYTES..LEN_BYTES + len].to_vec();
        self.start += LEN_BYTES + len;
        assert!(self.start <= self.buf.len());
        Ok(Some(Frame { kind, body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_round_trips_byte_by_byte() {
        let mut out = Vec::new();
        encode(
            FrameKind::Message,
            &(7u64, "hi".to_string()),
            1024,
            &mut out,
        )
        .unwrap();
        let mut dec = FrameDecoder::new(1024);
        let mut frames = Vec::new();
        for b in &out {
            dec.push(std::slice::from_ref(b));
            while let Some(f) = dec.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 1);
        let v: (u64, String) = decode_expected(&frames[0], FrameKind::Message).unwrap();
        assert_eq!(v, (7, "hi".to_string()));
        dec.finish().unwrap();
    }

    #[test]
    fn encoder_refuses_oversized_and_leaves_buffer_intact() {
        let mut out = vec![9u8];
        let err = encode(FrameKind::Message, &vec![0u8; 2000], 1024, &mut out).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert_eq!(out, vec![9u8]);
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&[2, 0, 0, 0, 99, 3]);
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::UnknownVersion { version: 99 })
        );
        dec.push(&[0; 10]);
        assert!(dec.next_frame().is_err());
    }
}

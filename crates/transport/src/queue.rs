//! The bounded send queue of one peer: encoded frames waiting for the link.
//!
//! Policy when full (documented in docs/transport.md and on `TransportHandle::send`):
//! - a message with a coalesce key (heartbeats and their responses) replaces the queued
//!   message with the same key: only the newest heartbeat matters, and it goes to the back so
//!   the sender's order is kept;
//! - otherwise, when the queue holds `send_queue_max` frames or `send_queue_bytes_max` bytes,
//!   the OLDEST frames are dropped to make room. Raft tolerates lost messages (appends are
//!   retried, heartbeats repeat), and the newest message carries the newest term and commit
//!   index, so dropping the oldest loses the least.
//!
//! `send` never blocks: the Raft loop must not wait on a slow or dead peer.
//!
//! Invariants: `frames.len() <= send_queue_max`; `bytes` is the sum of the queued frame
//! lengths and stays `<= send_queue_bytes_max` (a single frame is never larger than that,
//! as the configuration is validated so); at most one queued frame per coalesce key.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Counters of what the queue did, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames queued now.
    pub queued: usize,
    /// Bytes queued now.
    pub queued_bytes: usize,
    /// Frames accepted by `push` since start.
    pub pushed: u64,
    /// Frames dropped because the queue was full (the oldest ones).
    pub dropped_oldest: u64,
    /// Frames replaced by a newer frame with the same coalesce key.
    pub coalesced: u64,
    /// Frames dropped because the link speaks an older wire version than they need.
    pub dropped_version: u64,
}

/// What `push` did with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; `dropped` older frames were discarded to make room.
    Queued { dropped: usize },
    /// Queued in place of an older frame with the same coalesce key.
    Coalesced,
}

struct Queued {
    frame: Vec<u8>,
    coalesce_key: Option<u64>,
    /// The oldest wire version whose peers understand the frame.
    wire_version_min: u8,
}

struct State {
    frames: VecDeque<Queued>,
    bytes: usize,
    stats: QueueStats,
}

/// A bounded multi-producer, single-consumer queue of encoded frames.
pub struct SendQueue {
    state: Mutex<State>,
    ready: Notify,
    send_queue_max: usize,
    send_queue_bytes_max: usize,
}

impl SendQueue {
    pub fn new(send_queue_max: usize, send_queue_bytes_max: usize) -> SendQueue {
        assert!(send_queue_max > 0 && send_queue_bytes_max > 0);
        SendQueue {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                stats: QueueStats::default(),
            }),
            ready: Notify::new(),
            send_queue_max,
            send_queue_bytes_max,
        }
    }

    /// Queues one encoded frame, applying the policy above. Never blocks on the network.
    pub fn push(&self, frame: Vec<u8>, coalesce_key: Option<u64>, wire_version_min: u8) -> Pushed {
        assert!(frame.len() <= self.send_queue_bytes_max);
        let mut state = self.lock();
        state.stats.pushed += 1;
        let mut outcome = Pushed::Queued { dropped: 0 };
        if let Some(key) = coalesce_key {
            if let Some(pos) = state
                .frames
                .iter()
                .position(|q| q.coalesce_key == Some(key))
            {
                let old = state.frames.remove(pos).expect("position is in range");
                state.bytes -= old.frame.len();
                state.stats.coalesced += 1;
                outcome = Pushed::Coalesced;
            }
        }
        let mut dropped = 0;
        while state.frames.len() >= self.send_queue_max
            || state.bytes + frame.len() > self.send_queue_bytes_max
        {
            let old = state.frames.pop_front().expect("a full queue is not empty");
            state.bytes -= old.frame.len();
            state.stats.dropped_oldest += 1;
            dropped += 1;
        }
        state.bytes += frame.len();
        state.frames.push_back(Queued {
            frame,
            coalesce_key,
            wire_version_min,
        });
        assert!(state.frames.len() <= self.send_queue_max);
        assert!(state.bytes <= self.send_queue_bytes_max);
        drop(state);
        self.ready.notify_one();
        if dropped > 0 {
            Pushed::Queued { dropped }
        } else {
            outcome
        }
    }

    /// Moves queued frames into `out` until it holds about `batch_bytes_max` bytes (at least
    /// one frame), for a link that speaks `wire_version`: a frame that needs a newer version is
    /// dropped instead (the peer would refuse it and close the link). Returns the number of
    /// frames moved or dropped.
    pub fn drain_into(&self, out: &mut Vec<u8>, batch_bytes_max: usize, wire_version: u8) -> usize {
        let mut state = self.lock();
        let mut moved = 0;
        while let Some(front) = state.frames.front() {
            if moved > 0 && out.len() + front.frame.len() > batch_bytes_max {
                break;
            }
            let q = state.frames.pop_front().expect("front exists");
            state.bytes -= q.frame.len();
            moved += 1;
            if q.wire_version_min > wire_version {
                state.stats.dropped_version += 1;
                continue;
            }
            out.extend_from_slice(&q.frame);
        }
        moved
    }

    /// Waits until a frame may be queued (spurious wake-ups are possible; drain and retry).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Wakes the consumer, for example after a new link took over.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    pub fn stats(&self) -> QueueStats {
        let state = self.lock();
        QueueStats {
            queued: state.frames.len(),
            queued_bytes: state.bytes,
            ..state.stats
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock is a bug elsewhere; the queue itself stays
        // consistent because every mutation completes before the guard drops.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_oldest() {
        let q = SendQueue::new(3, 1 << 20);
        for i in 0..5u8 {
            q.push(vec![i], None, 2);
        }
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 1 << 20, 3), 3);
        assert_eq!(out, vec![2, 3, 4]);
        assert_eq!(q.stats().dropped_oldest, 2);
    }

    #[test]
    fn byte_bound_drops_oldest() {
        let q = SendQueue::new(100, 10);
        q.push(vec![1; 6], None, 2);
        assert_eq!(q.push(vec![2; 6], None, 2), Pushed::Queued { dropped: 1 });
        assert_eq!(q.stats().queued_bytes, 6);
    }

    #[test]
    fn coalesced_frame_moves_to_the_back() {
        let q = SendQueue::new(10, 1 << 20);
        q.push(vec![1], Some(7), 2);
        q.push(vec![2], None, 2);
        assert_eq!(q.push(vec![3], Some(7), 2), Pushed::Coalesced);
        let mut out = Vec::new();
        q.drain_into(&mut out, 1 << 20, 3);
        assert_eq!(out, vec![2, 3]);
        assert_eq!(q.stats().coalesced, 1);
    }

    #[test]
    fn drain_respects_batch_size_but_moves_one_at_least() {
        let q = SendQueue::new(10, 1 << 20);
        q.push(vec![0; 100], None, 2);
        q.push(vec![0; 100], None, 2);
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 10, 3), 1);
        assert_eq!(q.drain_into(&mut out, 1000, 3), 1);
    }

    #[test]
    fn frames_newer_than_the_link_are_dropped() {
        let q = SendQueue::new(10, 1 << 20);
        q.push(vec![1], None, 2);
        q.push(vec![2], Some(4), 3);
        q.push(vec![3], None, 2);
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 1 << 20, 2), 3);
        assert_eq!(out, vec![1, 3]);
        assert_eq!(q.stats().dropped_version, 1);
        q.push(vec![4], None, 3);
        out.clear();
        q.drain_into(&mut out, 1 << 20, 3);
        assert_eq!(out, vec![4]);
    }
}

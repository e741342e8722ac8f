//! What a leader knows of each follower's log: how far it matches, what to send next, and
//! how much is in flight.
//!
//! Invariants: `match_index < next_index`; in the replicate state `inflight` holds the last
//! index of each unacknowledged append, ascending, at most `inflight_max` of them, all
//! `> match_index` and `< next_index`.

use super::types::{LogIndex, Nanos};
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches: one append at a time.
    Probe,
    /// The follower's log matches up to `match_index`: appends are pipelined.
    Replicate,
    /// The follower needs entries the leader compacted away: a snapshot covering at least
    /// `index` was asked for; appends wait for it until `retry_at` (the snapshot timeout after
    /// the request or the stream's last progress, sooner after a failed stream), when the
    /// leader probes and asks again.
    Snapshot { index: LogIndex, retry_at: Nanos },
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// In the probe state: an append is outstanding, wait for its answer or a heartbeat answer.
    pub probe_sent: bool,
    /// Each unacknowledged append: its last index and the heartbeat round it was sent in.
    pub inflight: VecDeque<(LogIndex, u64)>,
    /// When this follower last answered in the current term (CheckQuorum).
    pub last_heard: Nanos,
    /// The newest heartbeat round this follower has answered (the lease).
    pub acked_round: u64,
}

impl Progress {
    pub fn new(last_index: LogIndex, now: Nanos) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index: last_index.next(),
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            last_heard: now,
            acked_round: 0,
        }
    }

    /// Whether the leader should hold back appends to this follower.
    pub fn is_paused(&self, inflight_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= inflight_max,
            ProgressState::Snapshot { .. } => true,
        }
    }

    pub fn become_snapshot(&mut self, index: LogIndex, retry_at: Nanos) {
        self.state = ProgressState::Snapshot { index, retry_at };
        self.inflight.clear();
        self.probe_sent = false;
    }

    /// Records that an append ending at `last` was sent.
    pub fn sent(&mut self, last: LogIndex, had_entries: bool, round: u64) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {}
            ProgressState::Replicate => {
                if had_entries {
                    assert!(last >= self.next_index);
                    self.next_index = last.next();
                    self.inflight.push_back((last, round));
                }
            }
        }
    }

    /// A heartbeat of `round` was answered: an append sent in an earlier round and still not
    /// answered was most likely lost, so go back to probing from the match index.
    pub fn maybe_lost(&mut self, round: u64) -> bool {
        let lost = match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.front().is_some_and(|&(_, r)| r < round),
            ProgressState::Snapshot { .. } => false,
        };
        if lost {
            self.become_probe(self.match_index.next());
        }
        lost
    }

    /// The follower confirmed its log matches up to `index`. Returns whether that is news.
    pub fn acknowledge(&mut self, index: LogIndex) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index.next());
        while self.inflight.front().is_some_and(|&(i, _)| i <= index) {
            self.inflight.pop_front();
        }
        if !matches!(self.state, ProgressState::Replicate) {
            self.become_replicate();
        }
        self.probe_sent = false;
        news
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index.next();
        self.inflight.clear();
        self.probe_sent = false;
    }

    pub fn become_probe(&mut self, next: LogIndex) {
        self.state = ProgressState::Probe;
        self.inflight.clear();
        self.probe_sent = false;
        self.next_index = next.max(self.match_index.next());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_pauses_after_one_append_and_replicate_after_the_window() {
        let mut p = Progress::new(LogIndex(10), 0);
        assert!(!p.is_paused(2));
        p.sent(LogIndex(10), false, 1);
        assert!(p.is_paused(2));
        assert!(p.acknowledge(LogIndex(10)));
        assert_eq!(p.state, ProgressState::Replicate);
        assert_eq!(p.next_index, LogIndex(11));
        p.sent(LogIndex(12), true, 1);
        p.sent(LogIndex(14), true, 2);
        assert!(p.is_paused(2));
        p.acknowledge(LogIndex(12));
        assert!(!p.is_paused(2));
        assert_eq!(p.inflight, VecDeque::from([(LogIndex(14), 2)]));
        assert_eq!(p.next_index, LogIndex(15));
        // A heartbeat of round 2 answered says nothing about the append of round 2...
        assert!(!p.maybe_lost(2));
        // ...but one of round 3 means that append was lost: probe from the match index.
        assert!(p.maybe_lost(3));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next_index, LogIndex(13));
    }

    #[test]
    fn probe_never_goes_below_match() {
        let mut p = Progress::new(LogIndex(10), 0);
        p.acknowledge(LogIndex(7));
        p.become_probe(LogIndex(3));
        assert_eq!(p.next_index, LogIndex(8));
    }
}

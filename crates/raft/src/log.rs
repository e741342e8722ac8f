//! The in-memory Raft log of one node, with the watermarks that say how much of it is durable,
//! committed and applied.
//!
//! Invariants: `entries[i].index == snapshot_index + 1 + i`; terms never decrease along the log;
//! `applied <= applying <= committed <= last_index()`; `persisted <= last_index()` and every
//! entry up to `persisted` is durable exactly as it is in memory. A committed entry is never
//! truncated.

use super::types::{Entry, EntryPayload, LogIndex, Term};

#[derive(Clone, Debug)]
pub struct RaftLog {
    /// The last index and term covered by the snapshot the log starts after.
    snapshot_index: LogIndex,
    snapshot_term: Term,
    /// `entries[i]` is at index `snapshot_index + 1 + i`.
    entries: Vec<Entry>,
    pub(crate) committed: LogIndex,
    /// The last index handed to the caller to apply.
    pub(crate) applying: LogIndex,
    /// The last index the caller has confirmed applied.
    pub(crate) applied: LogIndex,
    /// Bytes of the entries in (snapshot_index, applied], kept as entries are applied and
    /// compacted so that the compaction policy never walks the log.
    applied_bytes: usize,
    /// The last index known durable and identical to the entry in memory.
    pub(crate) persisted: LogIndex,
    /// Entries from this index on have not been handed to the caller to persist.
    unstable_from: LogIndex,
    /// The lowest index from which the durable log must be truncated, not yet handed out.
    pending_truncate: Option<LogIndex>,
}

impl RaftLog {
    /// A log restored from durable state: everything given is persisted.
    pub fn restore(
        snapshot_index: LogIndex,
        snapshot_term: Term,
        entries: Vec<Entry>,
        committed: LogIndex,
        applied: LogIndex,
    ) -> RaftLog {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                snapshot_index.0 + 1 + i as u64,
                "log not contiguous"
            );
        }
        let last = LogIndex(snapshot_index.0 + entries.len() as u64);
        assert!(
            applied >= snapshot_index,
            "applied {applied} before snapshot {snapshot_index}"
        );
        let committed = committed.max(applied).min(last);
        assert!(applied <= committed);
        let mut log = RaftLog {
            snapshot_index,
            snapshot_term,
            entries,
            committed,
            applying: applied,
            applied,
            persisted: last,
            unstable_from: last.next(),
            pending_truncate: None,
            applied_bytes: 0,
        };
        log.applied_bytes = log.bytes_between(snapshot_index, applied);
        log
    }

    /// Bytes of the entries in (`after`, `upto`].
    fn bytes_between(&self, after: LogIndex, upto: LogIndex) -> usize {
        let mut bytes = 0;
        let mut i = after.next();
        while i <= upto {
            bytes += self.entry(i).map_or(0, Entry::size_bytes);
            i = i.next();
        }
        bytes
    }

    /// The caller applied everything handed out to apply.
    pub fn mark_applied(&mut self) {
        self.applied_bytes += self.bytes_between(self.applied, self.applying);
        self.applied = self.applying;
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot_index.0 + self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    /// The term of the entry at `index`, or `None` when it is beyond the log or compacted away.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index.0 - self.snapshot_index.0 - 1) as usize].term)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot_index || index > self.last_index() {
            return None;
        }
        Some(&self.entries[(index.0 - self.snapshot_index.0 - 1) as usize])
    }

    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours when its last term is
    /// greater, or equal with a last index at least ours.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries from `from` on, at most `count_max` and at most `bytes_max` bytes (but at least
    /// one entry when there is one).
    pub fn slice(&self, from: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = from;
        while index <= self.last_index() && out.len() < count_max {
            let e = self.entry(index).expect("slice starts inside the log");
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(e.clone());
            index = index.next();
        }
        out
    }

    /// Appends a new entry as leader and returns its index.
    pub fn append_new(&mut self, term: Term, payload: EntryPayload) -> LogIndex {
        assert!(term >= self.last_term(), "leader appends in an older term");
        let index = self.last_index().next();
        self.entries.push(Entry {
            term,
            index,
            payload,
        });
        index
    }

    /// The follower side of AppendEntries once `prev` matched: skips the entries already present,
    /// truncates from the first real conflict (never earlier), appends the rest. Returns the
    /// index of the last entry given, which now matches the leader's log, and the index of the
    /// first entry actually written (if any), from which the log changed.
    pub fn append_after(
        &mut self,
        prev: LogIndex,
        entries: &[Entry],
    ) -> (LogIndex, Option<LogIndex>) {
        assert!(self.term(prev).is_some() || prev < self.snapshot_index);
        let last_given = LogIndex(prev.0 + entries.len() as u64);
        for (offset, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                prev.0 + 1 + offset as u64,
                "entries are contiguous"
            );
            if e.index <= self.snapshot_index {
                continue; // Covered by our snapshot: committed, so it matches.
            }
            match self.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    self.truncate_from(e.index);
                    self.push_entries(&entries[offset..]);
                    return (last_given, Some(e.index));
                }
                None => {
                    self.push_entries(&entries[offset..]);
                    return (last_given, Some(e.index));
                }
            }
        }
        (last_given, None)
    }

    fn push_entries(&mut self, entries: &[Entry]) {
        for e in entries {
            assert_eq!(e.index, self.last_index().next());
            assert!(e.term >= self.last_term(), "terms decrease at {}", e.index);
            self.entries.push(e.clone());
        }
    }

    /// Drops every entry from `index` on. Truncating a committed entry is a bug.
    fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.committed,
            "truncating committed {index} (commit {})",
            self.committed
        );
        assert!(index > self.snapshot_index);
        self.entries
            .truncate((index.0 - self.snapshot_index.0 - 1) as usize);
        self.persisted = self.persisted.min(index.prev());
        if index < self.unstable_from {
            // Part of what was handed out (and maybe made durable) is gone: storage must drop it.
            self.pending_truncate = Some(self.pending_truncate.map_or(index, |p| p.min(index)));
            self.unstable_from = index;
        }
    }

    /// The first index of the term of the entry at `index`, searching back no further than the
    /// commit index (etcd's findConflictByTerm): the hint a follower gives on rejection.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let term = self.term(index).expect("index inside the log");
        let mut i = index;
        let floor = self.committed.max(self.snapshot_index);
        while i > floor.next() && self.term(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// The last index at or before `at` whose term is `term`, if the log has that term there.
    pub fn last_index_of_term(&self, term: Term, at: LogIndex) -> Option<LogIndex> {
        let mut i = at.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t > term && i > self.snapshot_index => i = i.prev(),
                _ => return None,
            }
        }
    }

    /// Drops every entry up to and including `index`, which a durable snapshot now covers.
    pub fn compact(&mut self, index: LogIndex) {
        assert!(
            index <= self.applied,
            "compacting {index} beyond applied {}",
            self.applied
        );
        assert!(
            index <= self.persisted,
            "compacting {index} beyond persisted {}",
            self.persisted
        );
        if index <= self.snapshot_index {
            return;
        }
        let term = self.term(index).expect("compaction point inside the log");
        self.applied_bytes -= self.bytes_between(self.snapshot_index, index);
        let drop = (index.0 - self.snapshot_index.0) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// A snapshot up to (`index`, `term`) replaced the state machine and was made durable by the
    /// caller, while no write of entries was in flight. Entries after it are kept when the log
    /// holds (`index`, `term`) (Raft §7): those that are durable are the suffix storage keeps,
    /// and those not written yet — appended while the write before the install was in flight —
    /// stay unstable and are written next, right after the snapshot (storage held no entry after
    /// `index` then). Otherwise the log starts empty after it. Returns whether the suffix was
    /// kept.
    pub fn install_snapshot(&mut self, index: LogIndex, term: Term) -> bool {
        assert!(
            index > self.applied,
            "a snapshot at {index} is not news (applied {})",
            self.applied
        );
        let keep = self.matches(index, term);
        if keep {
            let drop = (index.0 - self.snapshot_index.0) as usize;
            self.entries.drain(..drop);
            if self.persisted < index {
                // Storage's log ended before the snapshot, so the install left nothing after
                // it: every entry kept is written next, and nothing durable is left to truncate.
                self.unstable_from = self.unstable_from.max(index.next());
                self.pending_truncate = None;
            }
            // Unwritten entries after the durable suffix stay unstable and are written next.
        } else {
            self.entries.clear();
            self.persisted = index;
            self.unstable_from = index.next();
            self.pending_truncate = None;
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.persisted = self.persisted.max(index);
        self.committed = self.committed.max(index);
        self.applying = index;
        self.applied = index;
        self.applied_bytes = 0;
        keep
    }

    /// Bytes of the entries applied since the snapshot, for the compaction policy.
    pub fn applied_bytes_since_snapshot(&self) -> usize {
        self.applied_bytes
    }

    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "commit {index} beyond last {}",
            self.last_index()
        );
        self.committed = index;
        true
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index() || self.pending_truncate.is_some()
    }

    /// Hands out what must be persisted next: the truncation point and the new entries.
    pub fn take_unstable(&mut self) -> (Option<LogIndex>, Vec<Entry>) {
        let truncate = self.pending_truncate.take();
        let entries = if self.unstable_from <= self.last_index() {
            let start = (self.unstable_from.0 - self.snapshot_index.0 - 1) as usize;
            self.entries[start..].to_vec()
        } else {
            Vec::new()
        };
        self.unstable_from = self.last_index().next();
        (truncate, entries)
    }

    /// Called when the caller has made durable a batch whose last entry was (`index`, `term`).
    /// A truncation that happened since caps what still matches.
    pub fn persisted_to(&mut self, index: LogIndex, term: Term) {
        let mut upto = index;
        if let Some(t) = self.pending_truncate {
            upto = upto.min(t.prev());
        }
        if self.term(upto).is_none() {
            return;
        }
        if upto == index && self.term(index) != Some(term) {
            return;
        }
        self.persisted = self.persisted.max(upto);
    }

    /// Committed entries not yet handed out to apply, up to `limit` (the last index that is
    /// durable or in the batch being made durable).
    pub fn take_committed(&mut self, limit: LogIndex) -> Vec<Entry> {
        let upto = self.committed.min(limit);
        let mut out = Vec::new();
        let mut i = self.applying.next();
        while i <= upto {
            out.push(self.entry(i).expect("committed entry in the log").clone());
            i = i.next();
        }
        self.applying = self.applying.max(upto);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(term: u64, index: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Noop,
        }
    }

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| e(t, i as u64 + 1))
            .collect();
        RaftLog::restore(LogIndex(0), Term(0), entries, LogIndex(0), LogIndex(0))
    }

    #[test]
    fn append_after_keeps_matching_entries_and_truncates_at_first_conflict() {
        let mut log = log_of(&[1, 1, 2, 2]);
        // A stale, shorter append must not truncate entries 3 and 4 (openraft's fixed bug).
        assert_eq!(
            log.append_after(LogIndex(1), &[e(1, 2)]),
            (LogIndex(2), None)
        );
        assert_eq!(log.last_index(), LogIndex(4));
        // A real conflict at 3 truncates from 3 exactly.
        assert_eq!(
            log.append_after(LogIndex(2), &[e(3, 3)]),
            (LogIndex(3), Some(LogIndex(3)))
        );
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(log.term(LogIndex(3)), Some(Term(3)));
        assert_eq!(log.term(LogIndex(2)), Some(Term(1)));
    }

    /// Seed 11102/7: a follower appended 3 and 4 while its write of 1..2 was in flight; a
    /// snapshot at 3 was installed next. The suffix after 3 matches, so it is kept and written
    /// next — dropping it left the commit index (4) past the log.
    #[test]
    fn an_install_keeps_a_matching_suffix_not_yet_written_and_writes_it_next() {
        let mut log = log_of(&[1, 1]);
        log.append_after(LogIndex(2), &[e(1, 3), e(1, 4)]);
        log.commit_to(LogIndex(4));
        assert_eq!(log.persisted, LogIndex(2));
        assert!(log.install_snapshot(LogIndex(3), Term(1)));
        assert_eq!(
            (log.last_index(), log.committed),
            (LogIndex(4), LogIndex(4))
        );
        assert_eq!(log.take_unstable(), (None, vec![e(1, 4)]));
        // A snapshot the log disagrees with still starts it over.
        let mut log = log_of(&[1, 1]);
        log.append_after(LogIndex(2), &[e(1, 3)]);
        assert!(!log.install_snapshot(LogIndex(3), Term(2)));
        assert_eq!(log.last_index(), LogIndex(3));
        assert!(!log.has_unstable());
    }

    #[test]
    fn truncation_is_handed_to_storage_and_caps_persistence() {
        let mut log = log_of(&[1, 1, 1]);
        log.append_after(LogIndex(3), &[e(1, 4), e(1, 5)]);
        let (t, es) = log.take_unstable();
        assert_eq!((t, es.len()), (None, 2));
        // Before the batch is durable, a new leader overwrites index 5.
        log.append_after(LogIndex(4), &[e(2, 5)]);
        log.persisted_to(LogIndex(5), Term(1));
        assert_eq!(log.persisted, LogIndex(4), "the old entry 5 is gone");
        let (t, es) = log.take_unstable();
        assert_eq!(t, Some(LogIndex(5)));
        assert_eq!(es, vec![e(2, 5)]);
        log.persisted_to(LogIndex(5), Term(2));
        assert_eq!(log.persisted, LogIndex(5));
    }

    #[test]
    #[should_panic(expected = "truncating committed")]
    fn truncating_a_committed_entry_is_a_bug() {
        let mut log = log_of(&[1, 1]);
        log.commit_to(LogIndex(2));
        log.append_after(LogIndex(1), &[e(2, 2)]);
    }

    #[test]
    fn up_to_date_compares_last_term_then_last_index() {
        let log = log_of(&[1, 2, 2]);
        assert!(log.is_up_to_date(LogIndex(1), Term(3)));
        assert!(log.is_up_to_date(LogIndex(3), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(2), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(9), Term(1)));
    }

    #[test]
    fn conflict_hints() {
        let log = log_of(&[1, 1, 4, 4, 4]);
        assert_eq!(log.first_index_of_term_at(LogIndex(5)), LogIndex(3));
        assert_eq!(
            log.last_index_of_term(Term(1), LogIndex(5)),
            Some(LogIndex(2))
        );
        assert_eq!(log.last_index_of_term(Term(2), LogIndex(5)), None);
    }

    #[test]
    fn applied_bytes_follow_apply_and_compaction() {
        let mut log = log_of(&[1, 1, 1, 1]);
        assert_eq!(log.applied_bytes_since_snapshot(), 0);
        log.commit_to(LogIndex(3));
        log.take_committed(LogIndex(4));
        log.mark_applied();
        assert_eq!(log.applied_bytes_since_snapshot(), 3 * e(1, 1).size_bytes());
        log.compact(LogIndex(2));
        assert_eq!(log.applied_bytes_since_snapshot(), e(1, 3).size_bytes());
        log.install_snapshot(LogIndex(4), Term(1));
        assert_eq!(log.applied_bytes_since_snapshot(), 0);
    }

    #[test]
    fn slice_respects_the_byte_limit_but_sends_one_entry() {
        let log = log_of(&[1, 1, 1, 1]);
        assert_eq!(log.slice(LogIndex(1), 10, 1).len(), 1);
        assert_eq!(log.slice(LogIndex(1), 10, 48).len(), 2);
        assert_eq!(log.slice(LogIndex(2), 2, usize::MAX).len(), 2);
    }
}

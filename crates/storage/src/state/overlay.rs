//! The overlay: layers of state-machine changes held in memory above the last persisted state
//! (the base), so that committed entries can be applied without a disk transaction and the
//! changes written to the backend later, in large batches. An `Overlay` is one layer; a
//! `Layered` is the state half seen through a writable top layer, frozen layers below it and
//! the base, and implements the primitives (`StateRead`, `StateWrite`) like a backend.
//!
//! Invariant: every read of a `Layered` answers exactly what a backend holding the merged
//! contents would answer (same records, order, cut-offs, flags), and `Overlay::write_to` leaves
//! a backend holding exactly those merged contents; so what the state machine answers never
//! depends on how much of it is still in memory.

use super::{
    Change, JournalRecord, JournalState, KvRecord, MembershipRecord, SessionRecord, SmMeta,
};
use crate::error::StorageError;
use crate::store::{
    encode_row, kv_range_start, KvPage, RecordVisitor, StateRead, StateWrite, StorePath,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// Records asked of the base per page when a read merges it with the layers. Tests page by
/// three, so that their small tables cross page boundaries.
const BASE_PAGE_MAX: usize = if cfg!(test) { 3 } else { 256 };

/// One layer of changes to the state half. A record here overrides the layers below and the
/// base; a removal (`None`, or a removed-through watermark) hides what they hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    membership: Option<MembershipRecord>,
    sm_meta: Option<SmMeta>,
    journal_state: Option<JournalState>,
    /// `None`: the key is removed.
    kv: BTreeMap<Vec<u8>, Option<KvRecord>>,
    /// `None`: the session is removed.
    sessions: BTreeMap<u64, Option<SessionRecord>>,
    /// Keyed as the backends key them: (revision, sub).
    changes: BTreeMap<(u64, u32), Change>,
    /// Every change at or below this revision is removed from the layers below and the base.
    /// This layer's own changes at or below it were put after the removal, and stand.
    changes_removed_through: Option<u64>,
    journal: BTreeMap<u64, JournalRecord>,
    /// As `changes_removed_through`, for journal indexes.
    journal_removed_through: Option<u64>,
}

impl Overlay {
    /// Nothing to write: no record, no removal.
    pub(crate) fn is_empty(&self) -> bool {
        self.records() == 0
            && self.changes_removed_through.is_none()
            && self.journal_removed_through.is_none()
    }

    /// The records held (rows, keys and removals, sessions, changes, journal operations), for
    /// a flush policy. The removed-through watermarks are not counted.
    pub(crate) fn records(&self) -> usize {
        usize::from(self.membership.is_some())
            + usize::from(self.sm_meta.is_some())
            + usize::from(self.journal_state.is_some())
            + self.kv.len()
            + self.sessions.len()
            + self.changes.len()
            + self.journal.len()
    }

    /// Replays this layer into a backend transaction over what lies below it, so that the
    /// backend then holds exactly what reading through the layer gave.
    pub(crate) fn write_to(&self, store: &mut dyn StateWrite) -> Result<(), StorageError> {
        // The removals through a watermark first: this layer's own changes and operations at
        // or below it were put after the removal.
        if let Some(revision) = self.changes_removed_through {
            store.changes_remove_through(revision)?;
        }
        if let Some(index) = self.journal_removed_through {
            store.journal_remove_through(index)?;
        }
        for (key, record) in &self.kv {
            match record {
                Some(record) => store.kv_put(key, record)?,
                None => store.kv_remove(key)?,
            }
        }
        for (client_id, record) in &self.sessions {
            match record {
                Some(record) => store.session_put(*client_id, record)?,
                None => store.session_remove(*client_id)?,
            }
        }
        for (key, change) in &self.changes {
            assert_eq!(
                *key,
                (change.revision, change.sub),
                "changes keyed as stored"
            );
            store.change_put(change)?;
        }
        for (index, record) in &self.journal {
            store.journal_put(*index, record)?;
        }
        if let Some(record) = &self.membership {
            store.set_membership(record)?;
        }
        if let Some(meta) = &self.sm_meta {
            store.set_sm_meta(meta)?;
        }
        if let Some(state) = &self.journal_state {
            store.set_journal_state(state)?;
        }
        Ok(())
    }
}

/// The state half through layers: writes go to `top`; reads look in `top`, then in `below`
/// from its last layer to its first, then in `base`.
pub(crate) struct Layered<'a> {
    top: &'a mut Overlay,
    /// Puts and removes of keys under [`crate::RESERVED_PREFIX`] through this view.
    reserved_writes: u64,
    /// Oldest first: each layer was frozen after the ones before it, and hides what they hold.
    below: &'a [Arc<Overlay>],
    base: &'a mut dyn StateRead,
}

impl<'a> Layered<'a> {
    pub(crate) fn new(
        top: &'a mut Overlay,
        below: &'a [Arc<Overlay>],
        base: &'a mut dyn StateRead,
    ) -> Layered<'a> {
        Layered {
            top,
            reserved_writes: 0,
            below,
            base,
        }
    }

    /// How many puts and removes of keys under [`crate::RESERVED_PREFIX`] went through this
    /// view: regent's own records (maintenance, elections, history) changed if any did.
    pub(crate) fn reserved_writes(&self) -> u64 {
        self.reserved_writes
    }

    /// The layers newest first, and the base.
    fn split(&mut self) -> (Vec<&Overlay>, &mut dyn StateRead) {
        let layers = std::iter::once(&*self.top)
            .chain(self.below.iter().rev().map(|layer| &**layer))
            .collect();
        (layers, &mut *self.base)
    }

    /// The newest layer's word on something, if any layer has one.
    fn newest<T>(&self, pick: impl Fn(&Overlay) -> Option<&T>) -> Option<&T> {
        std::iter::once(&*self.top)
            .chain(self.below.iter().rev().map(|layer| &**layer))
            .find_map(pick)
    }
}

/// The lowest index a layer shows after the removals of the layers above it (`None`: it
/// shows nothing), from the lowest index the read asks for.
fn raise(low: Option<u64>, removed_through: Option<u64>) -> Option<u64> {
    match removed_through {
        None => low,
        Some(through) => Some(low?.max(through.checked_add(1)?)),
    }
}

type Entries<'m, K, V> = Box<dyn Iterator<Item = (&'m K, &'m V)> + 'm>;

/// The layers' entries of one table in key order, each key once, as the newest layer that
/// holds it has it.
struct Merge<'m, K, V> {
    /// Newest first.
    sources: Vec<Peekable<Entries<'m, K, V>>>,
}

impl<'m, K: Ord, V> Merge<'m, K, V> {
    fn new(sources: impl IntoIterator<Item = Entries<'m, K, V>>) -> Merge<'m, K, V> {
        Merge {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
        }
    }
}

impl<'m, K: Ord, V> Iterator for Merge<'m, K, V> {
    type Item = (&'m K, &'m V);

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(&'m K, &'m V)> = None;
        for source in &mut self.sources {
            if let Some(&(key, value)) = source.peek() {
                // Strictly less: on a tie the newer layer, met first, keeps it.
                if best.is_none_or(|(best_key, _)| key < best_key) {
                    best = Some((key, value));
                }
            }
        }
        let (key, value) = best?;
        for source in &mut self.sources {
            source.next_if(|(k, _)| *k == key);
        }
        Some((key, value))
    }
}

/// The base's keys under a prefix, read a page at a time.
struct KvPager<'p> {
    prefix: &'p [u8],
    /// The last key read, the next page starts above it.
    after: Option<Vec<u8>>,
    limit: usize,
    bytes_max: usize,
    page: VecDeque<(Vec<u8>, KvRecord)>,
    more: bool,
}

impl KvPager<'_> {
    fn peek(
        &mut self,
        base: &mut dyn StateRead,
    ) -> Result<Option<&(Vec<u8>, KvRecord)>, StorageError> {
        if self.page.is_empty() && self.more {
            let (page, more) = base.kv_range(
                self.prefix,
                self.after.as_deref(),
                self.limit,
                self.bytes_max,
            )?;
            assert!(self.limit > 0);
            assert!(
                !more || !page.is_empty(),
                "a page with more after it has keys"
            );
            for (key, _) in &page {
                assert!(key.starts_with(self.prefix));
                assert!(
                    self.after
                        .as_deref()
                        .is_none_or(|after| after < key.as_slice()),
                    "pages come in key order"
                );
                self.after = Some(key.clone());
            }
            self.more = more;
            self.page = page.into();
        }
        Ok(self.page.front())
    }
}

/// The base's journal operations from an index on, read a page at a time.
struct JournalPager {
    /// `None`: the base has nothing more to show.
    from: Option<u64>,
    limit: usize,
    bytes_max: usize,
    page: VecDeque<(u64, JournalRecord)>,
}

impl JournalPager {
    fn peek(
        &mut self,
        base: &mut dyn StateRead,
    ) -> Result<Option<&(u64, JournalRecord)>, StorageError> {
        if self.page.is_empty() {
            if let Some(from) = self.from {
                let page = base.journal_range(from, self.limit, self.bytes_max)?;
                // An empty page is the end: the base's first operation is always returned.
                self.from = None;
                for (index, _) in &page {
                    assert!(
                        self.from.unwrap_or(from) <= *index,
                        "pages come in index order"
                    );
                    self.from = index.checked_add(1);
                }
                self.page = page.into();
            }
        }
        Ok(self.page.front())
    }
}

/// Which comes first: the layers' next entry or the base's (`Less`: the layers').
fn first_of<K: Ord>(layer: Option<K>, base: Option<K>) -> Option<Ordering> {
    match (layer, base) {
        (None, None) => None,
        (Some(_), None) => Some(Ordering::Less),
        (None, Some(_)) => Some(Ordering::Greater),
        (Some(layer), Some(base)) => Some(layer.cmp(&base)),
    }
}

impl StorePath for Layered<'_> {
    fn path(&self) -> &Path {
        self.base.path()
    }
}

impl StateRead for Layered<'_> {
    fn membership(&mut self) -> Result<MembershipRecord, StorageError> {
        match self.newest(|layer| layer.membership.as_ref()) {
            Some(record) => Ok(record.clone()),
            None => self.base.membership(),
        }
    }

    fn sm_meta(&mut self) -> Result<SmMeta, StorageError> {
        match self.newest(|layer| layer.sm_meta.as_ref()) {
            Some(meta) => Ok(meta.clone()),
            None => self.base.sm_meta(),
        }
    }

    fn kv_get(&mut self, key: &[u8]) -> Result<Option<KvRecord>, StorageError> {
        match self.newest(|layer| layer.kv.get(key)) {
            Some(record) => Ok(record.clone()),
            None => self.base.kv_get(key),
        }
    }

    fn kv_range(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        bytes_max: usize,
    ) -> Result<KvPage, StorageError> {
        let (layers, base) = self.split();
        let start = kv_range_start(prefix, after);
        let mut merged = Merge::new(layers.iter().map(|layer| {
            let entries = layer
                .kv
                .range::<[u8], _>((start, Bound::Unbounded))
                .take_while(move |(key, _)| key.starts_with(prefix));
            Box::new(entries) as Entries<'_, Vec<u8>, Option<KvRecord>>
        }))
        .peekable();
        let mut pager = KvPager {
            prefix,
            after: after.map(<[u8]>::to_vec),
            // Enough for the page and the key that tells whether more follow, when the layers
            // hide nothing.
            limit: limit.saturating_add(1).min(BASE_PAGE_MAX),
            bytes_max,
            page: VecDeque::new(),
            more: true,
        };
        // The backends' rule, on the merged keys: a key is taken while fewer than `limit` are
        // and their bytes have not passed `bytes_max`; `more` tells whether a key was left.
        let mut out: Vec<(Vec<u8>, KvRecord)> = Vec::new();
        let mut bytes = 0;
        loop {
            let order = first_of(
                merged.peek().map(|(key, _)| key.as_slice()),
                pager.peek(base)?.map(|(key, _)| key.as_slice()),
            );
            let next = match order {
                None => return Ok((out, false)),
                Some(Ordering::Greater) => pager.page.pop_front(),
                Some(order) => {
                    if order == Ordering::Equal {
                        pager.page.pop_front();
                    }
                    let (key, record) = merged.next().expect("peeked");
                    // A removal hides the base's key and shows nothing.
                    record.as_ref().map(|record| (key.clone(), record.clone()))
                }
            };
            let Some((key, record)) = next else {
                continue;
            };
            if out.len() >= limit || bytes > bytes_max {
                return Ok((out, true));
            }
            bytes += key.len() + record.value.len();
            out.push((key, record));
        }
    }

    fn kv_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let (layers, base) = self.split();
        let mut merged = Merge::new(
            layers
                .iter()
                .map(|layer| Box::new(layer.kv.iter()) as Entries<'_, Vec<u8>, Option<KvRecord>>),
        )
        .peekable();
        base.kv_scan(&mut |key, value| {
            while let Some((k, record)) = merged.next_if(|(k, _)| k.as_slice() < key) {
                if let Some(record) = record {
                    visit(k, &record.encode())?;
                }
            }
            match merged.next_if(|(k, _)| k.as_slice() == key) {
                Some((k, Some(record))) => visit(k, &record.encode()),
                Some((_, None)) => Ok(()),
                None => visit(key, value),
            }
        })?;
        for (key, record) in merged {
            if let Some(record) = record {
                visit(key, &record.encode())?;
            }
        }
        Ok(())
    }

    fn session(&mut self, client_id: u64) -> Result<Option<SessionRecord>, StorageError> {
        match self.newest(|layer| layer.sessions.get(&client_id)) {
            Some(record) => Ok(record.clone()),
            None => self.base.session(client_id),
        }
    }

    fn session_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let (layers, base) = self.split();
        let mut merged = Merge::new(layers.iter().map(|layer| {
            Box::new(layer.sessions.iter()) as Entries<'_, u64, Option<SessionRecord>>
        }))
        .peekable();
        base.session_scan(&mut |key, value| {
            let client_id = u64::from_be_bytes(key.try_into().expect("session ids are 8 bytes"));
            while let Some((id, record)) = merged.next_if(|(id, _)| **id < client_id) {
                if let Some(record) = record {
                    visit(&id.to_be_bytes(), &encode_row(record))?;
                }
            }
            match merged.next_if(|(id, _)| **id == client_id) {
                Some((id, Some(record))) => visit(&id.to_be_bytes(), &encode_row(record)),
                Some((_, None)) => Ok(()),
                None => visit(key, value),
            }
        })?;
        for (id, record) in merged {
            if let Some(record) = record {
                visit(&id.to_be_bytes(), &encode_row(record))?;
            }
        }
        Ok(())
    }

    fn changes_after(
        &mut self,
        revision: u64,
        limit: usize,
    ) -> Result<(Vec<Change>, bool), StorageError> {
        let (layers, base) = self.split();
        // Each layer shows its changes above the revision asked for and above the removals of
        // the layers above it; the base, above all of them.
        let mut floor = revision;
        let mut sources = Vec::new();
        for layer in &layers {
            if let Some(from) = floor.checked_add(1) {
                sources
                    .push(Box::new(layer.changes.range((from, 0)..))
                        as Entries<'_, (u64, u32), Change>);
            }
            floor = floor.max(layer.changes_removed_through.unwrap_or(0));
        }
        let mut merged = Merge::new(sources).peekable();
        // The merged changes number at least as many as the base's, so `limit + 1` of the
        // base's are enough to fill the page and tell whether more follow.
        let wanted = limit.saturating_add(1);
        let (from_base, base_more) = base.changes_after(floor, wanted)?;
        assert!(!base_more || from_base.len() == wanted);
        let mut from_base = from_base.into_iter().peekable();
        let mut out = Vec::new();
        while out.len() < wanted {
            let order = first_of(
                merged.peek().map(|(key, _)| **key),
                from_base.peek().map(|change| (change.revision, change.sub)),
            );
            match order {
                None => break,
                Some(Ordering::Greater) => out.extend(from_base.next()),
                Some(order) => {
                    if order == Ordering::Equal {
                        from_base.next();
                    }
                    out.push(merged.next().expect("peeked").1.clone());
                }
            }
        }
        assert!(
            !base_more || out.len() == wanted,
            "the base's page fills ours"
        );
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }

    fn journal_state(&mut self) -> Result<JournalState, StorageError> {
        match self.newest(|layer| layer.journal_state.as_ref()) {
            Some(state) => Ok(state.clone()),
            None => self.base.journal_state(),
        }
    }

    fn journal_range(
        &mut self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<(u64, JournalRecord)>, StorageError> {
        let (layers, base) = self.split();
        let mut low = Some(from);
        let mut sources = Vec::new();
        for layer in &layers {
            if let Some(low) = low {
                sources
                    .push(Box::new(layer.journal.range(low..)) as Entries<'_, u64, JournalRecord>);
            }
            low = raise(low, layer.journal_removed_through);
        }
        let mut merged = Merge::new(sources).peekable();
        let mut pager = JournalPager {
            from: low,
            limit: limit.clamp(1, BASE_PAGE_MAX),
            bytes_max,
            page: VecDeque::new(),
        };
        // The backends' rule, on the merged operations: at most `limit`, and an operation that
        // would take the bytes past `bytes_max` is left out unless it is the first.
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < limit {
            let order = first_of(
                merged.peek().map(|(index, _)| **index),
                pager.peek(base)?.map(|(index, _)| *index),
            );
            let (index, record) = match order {
                None => break,
                Some(Ordering::Greater) => pager.page.pop_front().expect("peeked"),
                Some(order) => {
                    if order == Ordering::Equal {
                        pager.page.pop_front();
                    }
                    let (index, record) = merged.next().expect("peeked");
                    (*index, record.clone())
                }
            };
            if !out.is_empty() && bytes + record.op.len() > bytes_max {
                break;
            }
            bytes += record.op.len();
            out.push((index, record));
        }
        Ok(out)
    }

    fn journal_bounds(&mut self) -> Result<Option<(u64, u64)>, StorageError> {
        let (layers, base) = self.split();
        let mut low = Some(0);
        let mut bounds: Option<(u64, u64)> = None;
        let mut widen = |first: u64, last: u64| {
            bounds = Some(bounds.map_or((first, last), |(f, l)| (f.min(first), l.max(last))));
        };
        for layer in &layers {
            if let Some(low) = low {
                let mut shown = layer.journal.range(low..).map(|(index, _)| *index);
                if let Some(first) = shown.next() {
                    widen(first, shown.next_back().unwrap_or(first));
                }
            }
            low = raise(low, layer.journal_removed_through);
        }
        if let (Some(low), Some((first, last))) = (low, base.journal_bounds()?) {
            if last >= low {
                let first = if first >= low {
                    first
                } else {
                    let page = base.journal_range(low, 1, 0)?;
                    let shown = page.first().map(|(index, _)| *index);
                    assert!(shown.is_some_and(|index| (low..=last).contains(&index)));
                    shown.expect("asserted")
                };
                widen(first, last);
            }
        }
        Ok(bounds)
    }

    fn journal_scan(&mut self, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let (layers, base) = self.split();
        let mut low = Some(0);
        let mut sources = Vec::new();
        for layer in &layers {
            if let Some(low) = low {
                sources
                    .push(Box::new(layer.journal.range(low..)) as Entries<'_, u64, JournalRecord>);
            }
            low = raise(low, layer.journal_removed_through);
        }
        let mut merged = Merge::new(sources).peekable();
        base.journal_scan(&mut |key, value| {
            let index = u64::from_be_bytes(key.try_into().expect("journal indexes are 8 bytes"));
            if low.is_none_or(|low| index < low) {
                return Ok(());
            }
            while let Some((i, record)) = merged.next_if(|(i, _)| **i < index) {
                visit(&i.to_be_bytes(), &record.encode())?;
            }
            match merged.next_if(|(i, _)| **i == index) {
                Some((i, record)) => visit(&i.to_be_bytes(), &record.encode()),
                None => visit(key, value),
            }
        })?;
        for (index, record) in merged {
            visit(&index.to_be_bytes(), &record.encode())?;
        }
        Ok(())
    }
}

impl StateWrite for Layered<'_> {
    fn set_membership(&mut self, record: &MembershipRecord) -> Result<(), StorageError> {
        self.top.membership = Some(record.clone());
        Ok(())
    }

    fn set_sm_meta(&mut self, meta: &SmMeta) -> Result<(), StorageError> {
        self.top.sm_meta = Some(meta.clone());
        Ok(())
    }

    fn kv_put(&mut self, key: &[u8], record: &KvRecord) -> Result<(), StorageError> {
        self.reserved_writes += u64::from(key.starts_with(crate::RESERVED_PREFIX));
        self.top.kv.insert(key.to_vec(), Some(record.clone()));
        Ok(())
    }

    fn kv_remove(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.reserved_writes += u64::from(key.starts_with(crate::RESERVED_PREFIX));
        self.top.kv.insert(key.to_vec(), None);
        Ok(())
    }

    fn session_put(&mut self, client_id: u64, record: &SessionRecord) -> Result<(), StorageError> {
        self.top.sessions.insert(client_id, Some(record.clone()));
        Ok(())
    }

    fn session_remove(&mut self, client_id: u64) -> Result<(), StorageError> {
        self.top.sessions.insert(client_id, None);
        Ok(())
    }

    fn change_put(&mut self, change: &Change) -> Result<(), StorageError> {
        self.top
            .changes
            .insert((change.revision, change.sub), change.clone());
        Ok(())
    }

    fn changes_remove_through(&mut self, revision: u64) -> Result<(), StorageError> {
        let top = &mut *self.top;
        top.changes_removed_through = Some(
            top.changes_removed_through
                .map_or(revision, |r| r.max(revision)),
        );
        top.changes = match revision.checked_add(1) {
            Some(from) => top.changes.split_off(&(from, 0)),
            None => BTreeMap::new(),
        };
        Ok(())
    }

    fn set_journal_state(&mut self, state: &JournalState) -> Result<(), StorageError> {
        self.top.journal_state = Some(state.clone());
        Ok(())
    }

    fn journal_put(&mut self, index: u64, record: &JournalRecord) -> Result<(), StorageError> {
        self.top.journal.insert(index, record.clone());
        Ok(())
    }

    fn journal_remove_through(&mut self, index: u64) -> Result<(), StorageError> {
        let top = &mut *self.top;
        top.journal_removed_through =
            Some(top.journal_removed_through.map_or(index, |i| i.max(index)));
        top.journal = match index.checked_add(1) {
            Some(from) => top.journal.split_off(&from),
            None => BTreeMap::new(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemTables;
    use crate::state::{
        apply, digest, ChangeKind, Command, Compare, CompareOp, CompareTarget, JournalRetention,
        Op, Proposal, SessionSeq, Txn,
    };
    use crate::{LogState, StorageOptions};
    use regent_raft::{Entry, EntryPayload, LogIndex, Membership, NodeId, SplitMix64, Term};

    /// Seeds per test; a failure names its seed and step.
    const SEEDS: u64 = 64;

    /// A node under test: layers over a base, frozen and flushed at random points.
    #[derive(Default)]
    struct Stack {
        top: Overlay,
        below: Vec<Arc<Overlay>>,
        base: MemTables,
    }

    impl Stack {
        fn with<T>(&mut self, body: impl FnOnce(&mut Layered<'_>) -> T) -> T {
            let mut base = self.base.read();
            body(&mut Layered::new(&mut self.top, &self.below, &mut *base))
        }

        fn freeze(&mut self) {
            self.below.push(Arc::new(std::mem::take(&mut self.top)));
        }

        fn flush_oldest(&mut self) {
            if !self.below.is_empty() {
                let layer = self.below.remove(0);
                layer.write_to(&mut *self.base.write()).unwrap();
            }
        }

        fn flush_all(&mut self) {
            self.freeze();
            while !self.below.is_empty() {
                self.flush_oldest();
            }
            assert!(self.top.is_empty() && self.top.records() == 0);
        }

        /// Freezes the top layer or flushes the oldest ones, now and then.
        fn churn(&mut self, rng: &mut SplitMix64) {
            match rng.below(100) {
                0..=11 => self.freeze(),
                12..=19 => self.flush_oldest(),
                20..=22 => self.flush_all(),
                _ => {}
            }
            if self.below.len() > 4 {
                self.flush_oldest();
            }
        }
    }

    /// One primitive write, made alike on the reference and through the layers.
    #[derive(Clone, Debug)]
    enum Write {
        Membership(MembershipRecord),
        SmMeta(SmMeta),
        JournalState(JournalState),
        KvPut(Vec<u8>, KvRecord),
        KvRemove(Vec<u8>),
        SessionPut(u64, SessionRecord),
        SessionRemove(u64),
        ChangePut(Change),
        ChangesRemoveThrough(u64),
        JournalPut(u64, JournalRecord),
        JournalRemoveThrough(u64),
    }

    fn write(store: &mut dyn StateWrite, write: &Write) {
        match write {
            Write::Membership(record) => store.set_membership(record),
            Write::SmMeta(meta) => store.set_sm_meta(meta),
            Write::JournalState(state) => store.set_journal_state(state),
            Write::KvPut(key, record) => store.kv_put(key, record),
            Write::KvRemove(key) => store.kv_remove(key),
            Write::SessionPut(id, record) => store.session_put(*id, record),
            Write::SessionRemove(id) => store.session_remove(*id),
            Write::ChangePut(change) => store.change_put(change),
            Write::ChangesRemoveThrough(revision) => store.changes_remove_through(*revision),
            Write::JournalPut(index, record) => store.journal_put(*index, record),
            Write::JournalRemoveThrough(index) => store.journal_remove_through(*index),
        }
        .unwrap();
    }

    /// Every key of up to three letters of "ab" (the empty key too), and "c": keys that share
    /// prefixes.
    fn key_space() -> Vec<Vec<u8>> {
        let mut keys = vec![Vec::new(), b"c".to_vec()];
        for len in 1..=3 {
            for bits in 0..1u32 << len {
                keys.push((0..len).map(|i| b"ab"[(bits >> i & 1) as usize]).collect());
            }
        }
        keys
    }

    fn bytes(rng: &mut SplitMix64, len_max: u64) -> Vec<u8> {
        (0..rng.below(len_max + 1))
            .map(|_| b'v' + rng.below(3) as u8)
            .collect()
    }

    fn pick<'k>(rng: &mut SplitMix64, keys: &'k [Vec<u8>]) -> &'k [u8] {
        &keys[rng.below(keys.len() as u64) as usize]
    }

    /// Random primitive writes over a small key space: changes with mostly increasing
    /// revisions, journal operations with mostly increasing indexes, removals through both.
    struct Writes {
        rng: SplitMix64,
        keys: Vec<Vec<u8>>,
        revision: u64,
        journal: u64,
    }

    impl Writes {
        fn next(&mut self) -> Write {
            let rng = &mut self.rng;
            let n = rng.below(1000) + 1;
            match rng.below(100) {
                0..=29 => Write::KvPut(
                    pick(rng, &self.keys).to_vec(),
                    KvRecord {
                        value: bytes(rng, 4),
                        create_revision: n,
                        mod_revision: n + rng.below(3),
                        version: 1 + rng.below(3),
                    },
                ),
                30..=44 => Write::KvRemove(pick(rng, &self.keys).to_vec()),
                45..=52 => Write::SessionPut(
                    rng.below(8),
                    SessionRecord {
                        ttl_ms: n,
                        last_active_ms: rng.below(100),
                        floor_seq: rng.below(4),
                        results: Vec::new(),
                    },
                ),
                53..=57 => Write::SessionRemove(rng.below(8)),
                58..=72 => {
                    self.revision += rng.below(2);
                    let revision = match rng.below(10) {
                        0 => rng.below(self.revision + 3),
                        _ => self.revision,
                    };
                    let kind = match rng.below(2) {
                        0 => ChangeKind::Delete,
                        _ => ChangeKind::Put {
                            value: bytes(rng, 3),
                            create_revision: n,
                            version: 1,
                        },
                    };
                    Write::ChangePut(Change {
                        revision,
                        sub: rng.below(3) as u32,
                        key: pick(rng, &self.keys).to_vec(),
                        kind,
                    })
                }
                73..=77 => Write::ChangesRemoveThrough(match rng.below(20) {
                    0 => u64::MAX,
                    _ => rng.below(self.revision + 2),
                }),
                78..=88 => {
                    let index = match rng.below(10) {
                        0 => rng.below(self.journal + 3),
                        _ => {
                            self.journal += 1;
                            self.journal
                        }
                    };
                    let record = JournalRecord {
                        term: rng.below(4),
                        time_ms: n,
                        op: bytes(rng, 5),
                    };
                    Write::JournalPut(index, record)
                }
                89..=92 => Write::JournalRemoveThrough(match rng.below(20) {
                    0 => u64::MAX,
                    _ => rng.below(self.journal + 2),
                }),
                93..=95 => Write::Membership(MembershipRecord {
                    membership: Membership::new((1..=rng.below(3) + 1).map(NodeId)),
                    index: LogIndex(n),
                }),
                96..=97 => Write::SmMeta(SmMeta {
                    applied: LogIndex(n),
                    revision: self.revision,
                    session_count: rng.below(8),
                    ..SmMeta::default()
                }),
                _ => Write::JournalState(JournalState {
                    first: rng.below(self.journal + 2),
                    last: self.journal,
                    bytes: n,
                    ..JournalState::default()
                }),
            }
        }
    }

    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    fn scan(
        store: &mut dyn StateRead,
        table: fn(&mut dyn StateRead, &mut RecordVisitor<'_>) -> Result<(), StorageError>,
    ) -> Records {
        let mut out = Vec::new();
        table(store, &mut |key, value| {
            out.push((key.to_vec(), value.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    /// Every query of the state half, with the limits and byte bounds that cut pages at every
    /// place, asked of both stores: the answers must be equal.
    fn assert_same_reads(
        expected: &mut dyn StateRead,
        actual: &mut dyn StateRead,
        keys: &[Vec<u8>],
        what: &str,
    ) {
        const PREFIXES: [&[u8]; 7] = [b"", b"a", b"ab", b"aab", b"b", b"ba", b"c"];
        const AFTERS: [Option<&[u8]>; 4] = [None, Some(b""), Some(b"ab"), Some(b"b")];
        const LIMITS: [usize; 5] = [0, 1, 2, 4, usize::MAX];
        const BYTES: [usize; 5] = [0, 1, 4, 9, usize::MAX];
        assert_eq!(
            expected.membership().unwrap(),
            actual.membership().unwrap(),
            "{what}"
        );
        assert_eq!(
            expected.sm_meta().unwrap(),
            actual.sm_meta().unwrap(),
            "{what}"
        );
        assert_eq!(
            expected.journal_state().unwrap(),
            actual.journal_state().unwrap(),
            "{what}"
        );
        for key in keys {
            assert_eq!(
                expected.kv_get(key).unwrap(),
                actual.kv_get(key).unwrap(),
                "{what}: kv_get {key:?}"
            );
        }
        for prefix in PREFIXES {
            for after in AFTERS {
                for limit in LIMITS {
                    for bytes_max in BYTES {
                        assert_eq!(
                            expected.kv_range(prefix, after, limit, bytes_max).unwrap(),
                            actual.kv_range(prefix, after, limit, bytes_max).unwrap(),
                            "{what}: kv_range {prefix:?} after {after:?} limit {limit} \
                             bytes_max {bytes_max}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            scan(expected, |s, v| s.kv_scan(v)),
            scan(actual, |s, v| s.kv_scan(v)),
            "{what}: kv_scan"
        );
        for id in 0..9 {
            assert_eq!(
                expected.session(id).unwrap(),
                actual.session(id).unwrap(),
                "{what}: session {id}"
            );
        }
        assert_eq!(
            scan(expected, |s, v| s.session_scan(v)),
            scan(actual, |s, v| s.session_scan(v)),
            "{what}: session_scan"
        );
        let (all, _) = expected.changes_after(0, usize::MAX).unwrap();
        let top = all.iter().map(|c| c.revision).max().unwrap_or(0);
        for revision in (0..=top + 1).chain([u64::MAX - 1, u64::MAX]) {
            for limit in LIMITS {
                assert_eq!(
                    expected.changes_after(revision, limit).unwrap(),
                    actual.changes_after(revision, limit).unwrap(),
                    "{what}: changes_after {revision} limit {limit}"
                );
            }
        }
        let bounds = expected.journal_bounds().unwrap();
        assert_eq!(
            bounds,
            actual.journal_bounds().unwrap(),
            "{what}: journal_bounds"
        );
        let last = bounds.map_or(0, |(_, last)| last);
        for from in (0..=last + 1).chain([u64::MAX]) {
            for limit in LIMITS {
                for bytes_max in BYTES {
                    assert_eq!(
                        expected.journal_range(from, limit, bytes_max).unwrap(),
                        actual.journal_range(from, limit, bytes_max).unwrap(),
                        "{what}: journal_range {from} limit {limit} bytes_max {bytes_max}"
                    );
                }
            }
        }
        assert_eq!(
            scan(expected, |s, v| s.journal_scan(v)),
            scan(actual, |s, v| s.journal_scan(v)),
            "{what}: journal_scan"
        );
    }

    /// The layers read and write like one backend: random writes are made on a reference
    /// memory store and through layers frozen and flushed at random, and after every write
    /// every query answers the same on both.
    #[test]
    fn layers_answer_every_query_as_the_merged_backend_would() {
        for seed in 0..SEEDS {
            let mut writes = Writes {
                rng: SplitMix64::new(seed),
                keys: key_space(),
                revision: 1,
                journal: 0,
            };
            let mut churn = SplitMix64::new(!seed);
            let mut reference = MemTables::default();
            let mut stack = Stack::default();
            for step in 0..200 {
                let next = writes.next();
                write(&mut *reference.write(), &next);
                stack.with(|layered| write(layered, &next));
                stack.churn(&mut churn);
                let what = format!("seed {seed} step {step} after {next:?}");
                let keys = &writes.keys;
                stack.with(|layered| {
                    assert_same_reads(&mut *reference.read(), layered, keys, &what)
                });
            }
            stack.flush_all();
            let what = format!("seed {seed}: the base after flushing every layer");
            assert_same_reads(
                &mut *reference.read(),
                &mut *stack.base.read(),
                &writes.keys,
                &what,
            );
        }
    }

    /// Random committed entries: KV commands and transactions over keys with shared prefixes,
    /// sessions that expire, fenced writes, journal appends and reports with tight retention,
    /// configuration changes.
    struct Entries {
        rng: SplitMix64,
        keys: Vec<Vec<u8>>,
        index: u64,
        term: u64,
        time_ms: u64,
        registered: Vec<u64>,
        appended: u64,
    }

    impl Entries {
        fn next(&mut self) -> Entry {
            let rng = &mut self.rng;
            self.index += 1;
            if rng.below(30) == 0 {
                self.term += 1;
            }
            self.time_ms += rng.below(400);
            let payload = match rng.below(100) {
                0..=2 => EntryPayload::Noop,
                3..=6 => EntryPayload::Config(Membership::new(
                    (1..=3).filter(|_| rng.below(3) > 0).map(NodeId),
                )),
                _ => EntryPayload::Normal(self.proposal().encode()),
            };
            Entry {
                term: Term(self.term),
                index: LogIndex(self.index),
                payload,
            }
        }

        fn key(&mut self) -> Vec<u8> {
            // Not the empty key: commands refuse it.
            let at = 1 + self.rng.below(self.keys.len() as u64 - 1);
            self.keys[at as usize].clone()
        }

        fn op(&mut self) -> Op {
            match self.rng.below(4) {
                0 => Op::Get { key: self.key() },
                1 => Op::Range {
                    prefix: self.key()[..1].to_vec(),
                    limit: self.rng.below(4) as u32,
                },
                2 => Op::Put {
                    key: self.key(),
                    value: bytes(&mut self.rng, 4),
                },
                _ => Op::Delete { key: self.key() },
            }
        }

        fn retention(&mut self) -> JournalRetention {
            JournalRetention {
                bytes_max: 10 + self.rng.below(30),
                count_max: 2 + self.rng.below(6),
                age_max_ms: 1000 + self.rng.below(3000),
            }
        }

        fn command(&mut self) -> Command {
            match self.rng.below(100) {
                0..=24 => Command::Put {
                    key: self.key(),
                    value: bytes(&mut self.rng, 4),
                },
                25..=34 => Command::Delete { key: self.key() },
                35..=39 => Command::Get { key: self.key() },
                40..=46 => Command::Range {
                    prefix: match self.rng.below(3) {
                        0 => Vec::new(),
                        n => {
                            let key = self.key();
                            key[..key.len().min(n as usize)].to_vec()
                        }
                    },
                    limit: self.rng.below(6) as u32,
                },
                47..=66 => {
                    let targets = [
                        CompareTarget::Exists(true),
                        CompareTarget::Version(1),
                        CompareTarget::ModRevision(self.rng.below(20)),
                        CompareTarget::CreateRevision(self.rng.below(20)),
                        CompareTarget::Value(b"v".to_vec()),
                    ];
                    let ops = [
                        CompareOp::Equal,
                        CompareOp::NotEqual,
                        CompareOp::Less,
                        CompareOp::Greater,
                    ];
                    let compares = (0..self.rng.below(3))
                        .map(|_| Compare {
                            key: self.key(),
                            op: ops[self.rng.below(4) as usize],
                            target: targets[self.rng.below(5) as usize].clone(),
                        })
                        .collect();
                    Command::Txn(Txn {
                        compares,
                        success: (0..self.rng.below(4)).map(|_| self.op()).collect(),
                        failure: (0..self.rng.below(3)).map(|_| self.op()).collect(),
                    })
                }
                67..=74 => {
                    self.registered.push(self.index);
                    Command::RegisterSession {
                        ttl_ms: 1000 + self.rng.below(5000),
                    }
                }
                75..=89 => {
                    // Operations are 1 to 6 bytes: commands refuse empty ones.
                    let ops: Vec<Vec<u8>> = (0..1 + self.rng.below(3))
                        .map(|_| [b"o".as_slice(), &bytes(&mut self.rng, 5)].concat())
                        .collect();
                    self.appended += ops.len() as u64;
                    Command::JournalAppend {
                        ops,
                        retention: self.retention(),
                    }
                }
                _ => {
                    // A report names at least one of the two indexes.
                    let which = self.rng.below(3);
                    Command::JournalReport {
                        node: 1 + self.rng.below(3),
                        applied: (which != 0).then(|| self.rng.below(self.appended + 2)),
                        checkpoint: (which != 1).then(|| self.rng.below(self.appended + 2)),
                        retention: self.retention(),
                    }
                }
            }
        }

        fn proposal(&mut self) -> Proposal {
            let mut proposal = Proposal::new(self.command());
            proposal.time_ms = self.time_ms;
            // Mostly the latest sessions, which may still be open, with few seqs, so that
            // retries are answered from their records.
            let registers = matches!(proposal.command, Command::RegisterSession { .. });
            if !registers && !self.registered.is_empty() && self.rng.below(2) == 0 {
                let back = self.rng.below(self.registered.len().min(3) as u64) as usize;
                proposal.session = Some(SessionSeq {
                    client_id: self.registered[self.registered.len() - 1 - back],
                    seq: self.rng.below(5),
                    acked_below: self.rng.below(2),
                });
            }
            if self.rng.below(10) == 0 {
                proposal.expected_term = Some(self.term + self.rng.below(2));
            }
            proposal
        }
    }

    /// The state machine applied through layers flushed at random gives the same results,
    /// entry by entry, and the same state as applied on a memory store directly.
    #[test]
    fn the_state_machine_applies_alike_through_the_layers() {
        let options = StorageOptions {
            changes_retained_max: 6,
            ..StorageOptions::default()
        };
        for seed in 0..SEEDS {
            let mut entries = Entries {
                rng: SplitMix64::new(seed),
                keys: key_space(),
                index: 0,
                term: 1,
                time_ms: 0,
                registered: Vec::new(),
                appended: 0,
            };
            let mut churn = SplitMix64::new(!seed);
            let mut reference = MemTables::default();
            let (mut state, mut layered_state) = (LogState::default(), LogState::default());
            let mut stack = Stack::default();
            for batch in 0..40 {
                let committed: Vec<Entry> =
                    (0..1 + churn.below(6)).map(|_| entries.next()).collect();
                let (expected, next) =
                    apply(&mut *reference.write(), &state, &committed, &options).unwrap();
                let (actual, layered_next) = stack
                    .with(|layered| apply(layered, &layered_state, &committed, &options))
                    .unwrap();
                assert_eq!(expected.len(), committed.len());
                for (expected, actual) in expected.iter().zip(&actual) {
                    assert_eq!(expected, actual, "seed {seed} batch {batch}");
                }
                assert_eq!(next, layered_next, "seed {seed} batch {batch}");
                (state, layered_state) = (next, layered_next);
                stack.churn(&mut churn);
                let what = format!("seed {seed} batch {batch}");
                let keys = &entries.keys;
                stack.with(|layered| {
                    assert_same_reads(&mut *reference.read(), layered, keys, &what);
                    assert_eq!(
                        digest(&mut *reference.read()).unwrap(),
                        digest(layered).unwrap(),
                        "{what}"
                    );
                });
            }
            stack.flush_all();
            assert_eq!(
                digest(&mut *reference.read()).unwrap(),
                digest(&mut *stack.base.read()).unwrap(),
                "seed {seed}: the base after flushing every layer"
            );
        }
    }
}

//! The simulator's safety oracle: facts about the whole cluster's history (committed entries,
//! leaders per term, durable and applied entries) against which every node's step is checked.
//!
//! Invariant: a fact once recorded is never revised; a node contradicting one is a violation.

use super::{Finding, ViolationKind};
use regent_raft::{Entry, LogIndex, NodeId, Term};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

#[derive(Default)]
pub struct Facts {
    /// Election safety: the leader of each term.
    leaders: HashMap<Term, NodeId>,
    /// Log matching: for every (index, term) ever made durable, its payload hash and the term
    /// of the entry before it.
    entries: HashMap<(LogIndex, Term), (u64, Term)>,
    /// `committed[i]` is the term of the committed entry at index i + 1.
    committed: Vec<Term>,
    /// State machine safety: `applied[i]` is the (term, payload hash) applied at index i + 1.
    applied: Vec<(Term, u64)>,
}

fn hash_of(e: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    e.payload.hash(&mut h);
    h.finish()
}

impl Facts {
    /// A node reports leadership of `term`: at most one leader per term, and its log must hold
    /// every entry committed so far (leader completeness).
    pub fn on_leader(
        &mut self,
        id: NodeId,
        term: Term,
        log_term: impl Fn(LogIndex) -> Option<Term>,
    ) -> Result<(), Finding> {
        if let Some(&other) = self.leaders.get(&term) {
            if other != id {
                return Err(Finding::new(
                    ViolationKind::ElectionSafety,
                    format!("{other} and {id} both lead {term}"),
                ));
            }
        }
        self.leaders.insert(term, id);
        if let Some(&last) = self.committed.last() {
            let index = LogIndex(self.committed.len() as u64);
            if log_term(index) != Some(last) {
                return Err(Finding::new(
                    ViolationKind::LeaderCompleteness,
                    format!("{id} leads {term} without committed entry {index} ({last})"),
                ));
            }
        }
        Ok(())
    }

    /// The node seen leading `term`, if any.
    pub fn leader_of(&self, term: Term) -> Option<NodeId> {
        self.leaders.get(&term).copied()
    }

    /// Whether `id` was seen leading a term before `term`.
    pub fn led_before(&self, id: NodeId, term: Term) -> bool {
        self.leaders.iter().any(|(&t, &l)| l == id && t < term)
    }

    /// A node's durable log grew by `new`: each new entry must agree with every other copy of
    /// the same (index, term), down to the term of its predecessor (log matching).
    pub fn on_durable_entries(
        &mut self,
        id: NodeId,
        durable_term: impl Fn(LogIndex) -> Option<Term>,
        new: &[Entry],
    ) -> Result<(), Finding> {
        for e in new {
            let Some(prev_term) = durable_term(e.index.prev()) else {
                return Err(Finding::new(
                    ViolationKind::LogMatching,
                    format!("{id} made {} durable without the entry before it", e.index),
                ));
            };
            let fact = (hash_of(e), prev_term);
            match self.entries.get(&(e.index, e.term)) {
                Some(&known) if known != fact => {
                    return Err(Finding::new(
                        ViolationKind::LogMatching,
                        format!(
                            "{id} holds {} {} with payload/prev term {:?}, another node {:?}",
                            e.index, e.term, fact, known
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    self.entries.insert((e.index, e.term), fact);
                }
            }
        }
        Ok(())
    }

    /// A node's commit index moved from `from` to `to`: the entries it now calls committed must
    /// be the ones every other node called committed.
    pub fn on_commit(
        &mut self,
        id: NodeId,
        from: LogIndex,
        to: LogIndex,
        log_term: impl Fn(LogIndex) -> Option<Term>,
    ) -> Result<(), Finding> {
        let mut index = from.next();
        while index <= to {
            let Some(term) = log_term(index) else {
                return Err(Finding::new(
                    ViolationKind::CommittedEntryChanged,
                    format!("{id} commits {index} which it does not hold"),
                ));
            };
            let slot = index.0 as usize - 1;
            if slot < self.committed.len() {
                if self.committed[slot] != term {
                    return Err(Finding::new(
                        ViolationKind::CommittedEntryChanged,
                        format!(
                            "{index} was {} and {id} commits {term}",
                            self.committed[slot]
                        ),
                    ));
                }
            } else {
                assert_eq!(slot, self.committed.len());
                self.committed.push(term);
            }
            index = index.next();
        }
        Ok(())
    }

    /// A node applied `e`: every node applies the same entry at the same index.
    pub fn on_apply(&mut self, id: NodeId, e: &Entry) -> Result<(), Finding> {
        let slot = e.index.0 as usize - 1;
        let fact = (e.term, hash_of(e));
        if slot < self.applied.len() {
            if self.applied[slot] != fact {
                return Err(Finding::new(
                    ViolationKind::StateMachineSafety,
                    format!(
                        "{id} applies {} {} but {} was applied there before",
                        e.index, e.term, self.applied[slot].0
                    ),
                ));
            }
        } else if slot == self.applied.len() {
            self.applied.push(fact);
        } else {
            return Err(Finding::new(
                ViolationKind::StateMachineSafety,
                format!(
                    "{id} applies {} before any node applied {}",
                    e.index,
                    self.applied.len() + 1
                ),
            ));
        }
        if let Some(&term) = self.committed.get(slot) {
            if term != e.term {
                return Err(Finding::new(
                    ViolationKind::StateMachineSafety,
                    format!(
                        "{id} applies {} {} but {term} was committed there",
                        e.index, e.term
                    ),
                ));
            }
        }
        Ok(())
    }
}

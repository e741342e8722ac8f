//! Membership changes: the configurations found in the log, newest last, and the changes a
//! leader may propose.
//!
//! Invariants: a configuration takes effect as soon as it is appended (not when committed);
//! `configs` holds the configuration in force at the start of the log (index 0 or the snapshot
//! index) and then every configuration entry of the log in index order; truncating the log
//! forgets the configurations it removes. A leader proposes one change at a time, and every
//! voter change goes through a joint configuration (C_old,new), which the leader leaves on its
//! own (C_new) once the joint entry is committed.

use super::types::{LogIndex, Membership, NodeId};
use std::collections::BTreeSet;
use thiserror::Error;

/// A change a leader may propose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// A new non-voting member that receives the log.
    AddLearner(NodeId),
    /// A learner becomes a voter (through a joint configuration).
    Promote(NodeId),
    /// A learner or voter leaves (a voter through a joint configuration). Removing the leader
    /// is allowed: it steps down once the change is committed.
    Remove(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfChangeError {
    #[error("not the leader; the leader is {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    #[error("a membership change is in progress (configuration at {index} not yet final); retry when it is committed, or abort it")]
    ChangeInProgress { index: LogIndex },
    #[error("{id} is already a member")]
    AlreadyMember { id: NodeId },
    #[error("{id} is not a member")]
    NotMember { id: NodeId },
    #[error("{id} is not a learner")]
    NotLearner { id: NodeId },
    #[error("learner {id} is not caught up yet (it has {matched}, the leader {last}); a learner is promoted once it has acknowledged entries and is at most promote_lag_max = {lag_max} entries behind")]
    LearnerBehind {
        id: NodeId,
        matched: LogIndex,
        last: LogIndex,
        lag_max: u64,
    },
    #[error("removing {id} would leave no voter")]
    LastVoter { id: NodeId },
    #[error("no joint configuration to abort")]
    NothingToAbort,
    #[error("leadership is being transferred; retry on the next leader")]
    Transferring,
    #[error("the target configuration has no voter")]
    NoVoters,
    /// Refused by the caller, not the core: every voter of the target configuration is a
    /// `nofailover` node, a `witness` or drained.
    #[error("no voter of the target configuration {voters:?} may lead (each is nofailover, a witness or drained)")]
    NoEligibleVoter { voters: Vec<NodeId> },
    #[error("{id} is named both as a voter and as a learner")]
    VoterAndLearner { id: NodeId },
    #[error("voter {id} cannot become a learner in the same change; remove it, then add it back as a learner")]
    VoterToLearner { id: NodeId },
    #[error("the target configuration is the current one")]
    NoChange,
}

/// The configurations of one node's log.
#[derive(Clone, Debug)]
pub struct ConfigLog {
    /// (index of the entry, configuration); the first is the base at the log's start.
    configs: Vec<(LogIndex, Membership)>,
}

impl ConfigLog {
    pub fn new(base_index: LogIndex, base: Membership) -> ConfigLog {
        ConfigLog {
            configs: vec![(base_index, base)],
        }
    }

    /// The configuration in force: the newest one in the log.
    pub fn current(&self) -> &Membership {
        &self.configs.last().expect("a base configuration").1
    }

    /// The index of the newest configuration entry (the base index when there is none).
    pub fn current_index(&self) -> LogIndex {
        self.configs.last().expect("a base configuration").0
    }

    /// The newest configuration at or before `index`.
    pub fn at(&self, index: LogIndex) -> &Membership {
        let position = self.configs.partition_point(|(i, _)| *i <= index);
        &self.configs[position.max(1) - 1].1
    }

    /// Whether `id` votes in the configuration in force at `committed` or in any newer one of
    /// the log: the configurations the cluster may still be running under, as far as this
    /// node knows.
    pub fn votes_since(&self, committed: LogIndex, id: NodeId) -> bool {
        let position = self.configs.partition_point(|(i, _)| *i <= committed);
        self.configs[position.max(1) - 1..]
            .iter()
            .any(|(_, m)| m.is_voter(id))
    }

    pub fn push(&mut self, index: LogIndex, m: Membership) {
        assert!(
            index > self.current_index(),
            "configurations are appended in index order"
        );
        self.configs.push((index, m));
    }

    /// The log now starts after `index`: the configuration in force there becomes the base.
    pub fn compact(&mut self, index: LogIndex) {
        let base = self.at(index).clone();
        self.configs.retain(|(i, _)| *i > index);
        self.configs.insert(0, (index, base));
    }

    /// A snapshot at `index` with `membership` replaced the state; configurations after it are
    /// kept only if the log suffix after it was.
    pub fn install(&mut self, index: LogIndex, membership: Membership, keep_suffix: bool) {
        self.configs.retain(|(i, _)| keep_suffix && *i > index);
        self.configs.insert(0, (index, membership));
    }

    /// The log lost every entry from `index` on.
    pub fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.configs[0].0,
            "truncating below the base configuration"
        );
        self.configs.retain(|(i, _)| *i < index);
    }
}

/// The configuration that `change` leads to from `current` (not joint), or why it is refused.
pub fn apply_change(
    current: &Membership,
    change: ConfChange,
) -> Result<Membership, ConfChangeError> {
    assert!(!current.is_joint());
    let mut next = current.clone();
    match change {
        ConfChange::AddLearner(id) => {
            if current.members().contains(&id) {
                return Err(ConfChangeError::AlreadyMember { id });
            }
            next.learners.insert(id);
        }
        ConfChange::Promote(id) => {
            if !current.learners.contains(&id) {
                return Err(ConfChangeError::NotLearner { id });
            }
            next.learners.remove(&id);
            next.voters.insert(id);
        }
        ConfChange::Remove(id) => {
            if !current.members().contains(&id) {
                return Err(ConfChangeError::NotMember { id });
            }
            if current.voters.len() == 1 && current.voters.contains(&id) {
                return Err(ConfChangeError::LastVoter { id });
            }
            next.learners.remove(&id);
            next.voters.remove(&id);
        }
    }
    Ok(next)
}

/// The configuration with `voters` and `learners` that a multi-member change from `current`
/// (not joint) leads to, or why it is refused: every new voter must be a learner of `current`
/// (it has been receiving the log), a voter may not turn learner in the same step, and the
/// target must have a voter and differ from `current`.
pub fn reconfigure(
    current: &Membership,
    voters: &BTreeSet<NodeId>,
    learners: &BTreeSet<NodeId>,
) -> Result<Membership, ConfChangeError> {
    assert!(!current.is_joint());
    if voters.is_empty() {
        return Err(ConfChangeError::NoVoters);
    }
    if let Some(&id) = voters.intersection(learners).next() {
        return Err(ConfChangeError::VoterAndLearner { id });
    }
    if let Some(&id) = voters
        .iter()
        .find(|id| !current.voters.contains(id) && !current.learners.contains(id))
    {
        return Err(ConfChangeError::NotLearner { id });
    }
    if let Some(&id) = learners.iter().find(|id| current.voters.contains(id)) {
        return Err(ConfChangeError::VoterToLearner { id });
    }
    let target = Membership {
        voters: voters.clone(),
        voters_outgoing: BTreeSet::new(),
        learners: learners.clone(),
    };
    if &target == current {
        return Err(ConfChangeError::NoChange);
    }
    Ok(target)
}

/// The entry to append for a change from `current` to `target`: the joint configuration when
/// the voters differ, else `target` itself (learners alone need no joint step).
pub fn next_entry(current: &Membership, target: &Membership) -> Membership {
    if current.voters == target.voters {
        return target.clone();
    }
    Membership {
        voters: target.voters.clone(),
        voters_outgoing: current.voters.clone(),
        learners: target.learners.clone(),
    }
}

/// The configuration that leaves a joint one: its incoming half.
pub fn leave_joint(joint: &Membership) -> Membership {
    assert!(joint.is_joint());
    Membership {
        voters: joint.voters.clone(),
        voters_outgoing: Default::default(),
        learners: joint.learners.clone(),
    }
}

/// The configuration that aborts a joint one: back to its outgoing half, with the learners the
/// old configuration had (a promoted learner goes back to being a learner).
pub fn abort_joint(joint: &Membership) -> Membership {
    assert!(joint.is_joint());
    let mut learners = joint.learners.clone();
    for id in &joint.voters {
        if !joint.voters_outgoing.contains(id) {
            learners.insert(*id);
        }
    }
    Membership {
        voters: joint.voters_outgoing.clone(),
        voters_outgoing: Default::default(),
        learners,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(voters: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: voters.iter().map(|&i| NodeId(i)).collect(),
            voters_outgoing: Default::default(),
            learners: learners.iter().map(|&i| NodeId(i)).collect(),
        }
    }

    #[test]
    fn a_learner_change_needs_no_joint_step_but_a_voter_change_does() {
        let c = m(&[1, 2, 3], &[]);
        let target = apply_change(&c, ConfChange::AddLearner(NodeId(4))).unwrap();
        assert_eq!(next_entry(&c, &target), m(&[1, 2, 3], &[4]));
        let c = m(&[1, 2, 3], &[4]);
        let target = apply_change(&c, ConfChange::Promote(NodeId(4))).unwrap();
        let joint = next_entry(&c, &target);
        assert!(joint.is_joint());
        assert_eq!(leave_joint(&joint), m(&[1, 2, 3, 4], &[]));
        assert_eq!(abort_joint(&joint), m(&[1, 2, 3], &[4]));
    }

    #[test]
    fn refused_changes_say_why() {
        let c = m(&[1], &[2]);
        assert_eq!(
            apply_change(&c, ConfChange::Remove(NodeId(1))),
            Err(ConfChangeError::LastVoter { id: NodeId(1) })
        );
        assert_eq!(
            apply_change(&c, ConfChange::Promote(NodeId(1))),
            Err(ConfChangeError::NotLearner { id: NodeId(1) })
        );
        assert_eq!(
            apply_change(&c, ConfChange::AddLearner(NodeId(2))),
            Err(ConfChangeError::AlreadyMember { id: NodeId(2) })
        );
    }

    #[test]
    fn truncation_forgets_configurations_and_at_finds_the_one_in_force() {
        let mut log = ConfigLog::new(LogIndex(0), m(&[1, 2, 3], &[]));
        log.push(LogIndex(5), m(&[1, 2, 3], &[4]));
        log.push(LogIndex(9), m(&[1, 2], &[4]));
        assert_eq!(log.at(LogIndex(7)), &m(&[1, 2, 3], &[4]));
        assert_eq!(log.at(LogIndex(2)), &m(&[1, 2, 3], &[]));
        log.truncate_from(LogIndex(9));
        assert_eq!(log.current(), &m(&[1, 2, 3], &[4]));
        assert_eq!(log.current_index(), LogIndex(5));
    }
}

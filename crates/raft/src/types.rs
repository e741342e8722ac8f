//! The vocabulary of the core: node ids, terms, log indexes, entries and the hard state.
//!
//! Invariant kept by every user of these types: an `Entry` at `index` i was created by the
//! leader of `term`, and two entries with the same index and term are the same entry.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// A member of the cluster. `0` is never a valid id: it is the "nobody" of etcd's raft.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct NodeId(pub u64);

/// A Raft term: a logical clock that only moves forward on every node.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

/// A position in the replicated log. Index 0 is the empty prefix; the first entry is at 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogIndex(pub u64);

/// Monotonic time in nanoseconds, as handed to the core by its caller. The core never reads a
/// clock: every input that needs time carries it.
pub type Nanos = u64;

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}
impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl Term {
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The index before this one; `LogIndex(0).prev()` is a bug.
    pub fn prev(self) -> LogIndex {
        assert!(self.0 > 0, "no index before 0");
        LogIndex(self.0 - 1)
    }
    pub fn saturating_sub(self, n: u64) -> LogIndex {
        LogIndex(self.0.saturating_sub(n))
    }
}

/// The voters and learners of the cluster. During a joint change `voters_outgoing` holds the
/// old voters and a decision needs a majority of both sets; otherwise it is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub voters_outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            voters_outgoing: BTreeSet::new(),
            learners: BTreeSet::new(),
        }
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether the nodes for which `yes(id)` holds form a quorum: a majority of the voters, and
    /// in a joint configuration a majority of the outgoing voters as well. Learners never count.
    pub fn is_quorum(&self, yes: impl Fn(NodeId) -> bool) -> bool {
        super::quorum::is_quorum(self, yes)
    }

    /// Every node the leader replicates to, itself included.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader: committing it commits everything before it.
    Noop,
    /// An opaque command for the state machine. Serialized as bytes (`serde_bytes`): postcard
    /// writes exactly what it writes for a sequence of `u8` (a varint length, then the bytes),
    /// in one copy instead of one call per byte.
    Normal(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A membership configuration; it takes effect as soon as it is appended.
    Config(Membership),
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: EntryPayload,
}

impl Entry {
    /// A rough size in bytes, used for the per-message byte limit and backpressure.
    pub fn size_bytes(&self) -> usize {
        let payload = match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Normal(data) => data.len(),
            EntryPayload::Config(m) => 8 * m.members().len(),
        };
        24 + payload
    }
}

/// The state a node must make durable before it answers anyone: its term and its vote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    /// Persisting the commit index is optional for safety; it lets a restarted node apply
    /// entries it already knows are committed without waiting for a leader.
    pub commit: LogIndex,
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    /// A learner receives the log but never votes or campaigns.
    Learner,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        };
        f.write_str(s)
    }
}

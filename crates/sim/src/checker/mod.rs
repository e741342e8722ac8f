//! The checkers: what the simulator checks, and what a failed check reports.
//!
//! - [`facts`]: the history of the whole cluster (leaders per term, durable entries, commits,
//!   applied entries) against which every node's step is checked;
//! - [`step`]: each node's state after each input (indexes never go back, the commit rule);
//! - [`quorum`]: a leader's commit is durable on a quorum (counted here, not by the core);
//! - [`votes`]: one durable vote per node and term, across restarts; leaders elected by a
//!   quorum of durable votes;
//! - [`terms`]: a message of a stale term is never acted on;
//! - [`lease`]: never two writable nodes, and a writable leader's quorum would refuse a vote;
//! - [`durability`]: nothing that promises durability is sent before it is durable;
//! - [`liveness`]: after healing, a writable leader and a settled cluster;
//! - [`final_state`]: acknowledged writes kept, identical state machines, exactly-once writes;
//! - [`journal`]: the host's journal tailed on every node: one order, acknowledged appends
//!   exactly once;
//! - [`linearizability`]: the clients' history.
//!
//! Invariant: every violation says whether it broke safety or liveness, and carries the
//! command that replays its seed.

pub mod durability;
pub mod facts;
pub mod final_state;
pub mod history;
pub mod journal;
pub mod lease;
pub mod linearizability;
pub mod liveness;
pub mod quorum;
pub mod step;
pub mod terms;
pub mod votes;

use std::fmt;

/// Whether a violation broke a safety property (something bad happened) or a liveness one
/// (something good did not happen in time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Safety,
    Liveness,
}

/// What was violated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// Two leaders in one term.
    ElectionSafety,
    /// A leader without an entry committed before its election.
    LeaderCompleteness,
    /// Two copies of one (index, term) that differ, or an entry made durable without its
    /// predecessor.
    LogMatching,
    /// A committed index that holds another entry than before, or that the node lacks.
    CommittedEntryChanged,
    /// Two different entries applied at one index.
    StateMachineSafety,
    /// A leader committed an earlier term's entry by counting replicas (Raft §5.4.2).
    CommitRule,
    /// A commit or applied index went back.
    IndexWentBack,
    /// A leader committed an entry that a quorum of its voters does not hold durably.
    CommitQuorum,
    /// A leader without a quorum of durable votes for it in its term.
    ElectionQuorum,
    /// A node voted twice in one term, or forgot a durable vote (across restarts).
    DoubleVote,
    /// A node acted on a message whose term was below its own.
    StaleTermActedOn,
    /// A vote, vote request or append acknowledgement sent before what it promises was
    /// durable.
    DurableBeforeSend,
    /// Two writable nodes, or a writable leader without a quorum that would refuse a vote.
    LeaseSafety,
    /// A read released before the state machine applied its index.
    StaleRead,
    /// An acknowledged write missing on a member after settling.
    AcknowledgedWriteLost,
    /// Members whose state machines differ after settling.
    StateMachinesDiffer,
    /// A write applied twice.
    ExactlyOnce,
    /// The clients' history has no linearization.
    Linearizability,
    /// Two nodes' journals hold different operations at one index.
    JournalOrder,
    /// A panic: an assertion in the core, the replica, storage or the simulator failed.
    Panic,
    /// The core, the replica or storage refused what the simulator handed it (a step error,
    /// a refused batch, a failed compaction or snapshot).
    Contract,
    /// A learner promoted while lagging, or refused while caught up (the promotion rule).
    PromotionRule,
    /// A write outside a session reached the log with a stale expected term, was refused
    /// early with a current one, or was applied from another term than it expected.
    Fencing,
    /// A journal report logged in the name of a node whose host never made it.
    HostReport,
    /// A failover history record that is not true: it names another leader than the term's,
    /// a hand-over from another node than the previous term's leader, or more than `keep`
    /// records are kept, or out of term order.
    History,
    /// A hand-over answered done while not done, kept past its deadline, or a leader with one
    /// in progress not transferring to its target.
    Handover,
    /// No writable leader within the liveness bound after healing.
    NoLeaderAfterHeal,
    /// The cluster did not settle within the liveness bound after healing.
    NotSettled,
    /// The run took more events than its limit.
    StepLimit,
}

impl ViolationKind {
    pub fn class(self) -> Class {
        match self {
            ViolationKind::NoLeaderAfterHeal
            | ViolationKind::Handover
            | ViolationKind::NotSettled
            | ViolationKind::StepLimit => Class::Liveness,
            _ => Class::Safety,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ViolationKind::ElectionSafety => "election safety",
            ViolationKind::LeaderCompleteness => "leader completeness",
            ViolationKind::LogMatching => "log matching",
            ViolationKind::CommittedEntryChanged => "committed entry changed",
            ViolationKind::StateMachineSafety => "state machine safety",
            ViolationKind::CommitRule => "commit rule (Raft §5.4.2)",
            ViolationKind::IndexWentBack => "index went back",
            ViolationKind::CommitQuorum => "commit without a durable quorum",
            ViolationKind::ElectionQuorum => "leader without a quorum of votes",
            ViolationKind::DoubleVote => "one vote per term",
            ViolationKind::StaleTermActedOn => "stale term acted on",
            ViolationKind::Panic => "panic",
            ViolationKind::DurableBeforeSend => "sent before durable",
            ViolationKind::LeaseSafety => "lease safety",
            ViolationKind::StaleRead => "stale read",
            ViolationKind::AcknowledgedWriteLost => "acknowledged write lost",
            ViolationKind::StateMachinesDiffer => "state machines differ",
            ViolationKind::ExactlyOnce => "exactly-once",
            ViolationKind::Linearizability => "linearizability",
            ViolationKind::JournalOrder => "journal order",
            ViolationKind::Contract => "contract",
            ViolationKind::PromotionRule => "promotion rule",
            ViolationKind::Fencing => "fencing",
            ViolationKind::HostReport => "host report",
            ViolationKind::History => "failover history",
            ViolationKind::Handover => "hand-over",
            ViolationKind::NoLeaderAfterHeal => "no leader after heal",
            ViolationKind::NotSettled => "not settled",
            ViolationKind::StepLimit => "step limit",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Safety => "safety",
            Class::Liveness => "liveness",
        })
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a check found, before the run adds its replay command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: ViolationKind,
    pub detail: String,
}

impl Finding {
    pub fn new(kind: ViolationKind, detail: String) -> Finding {
        Finding { kind, detail }
    }
}

/// What replays a seed: the command's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replay {
    pub seed: u64,
    pub nodes: usize,
}

impl fmt::Display for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cargo run --release -- sim --seed {} --nodes {}",
            self.seed, self.nodes
        )
    }
}

/// A violation found in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub detail: String,
    pub replay: Replay,
}

impl Violation {
    pub fn new(finding: Finding, replay: Replay) -> Violation {
        Violation {
            kind: finding.kind,
            detail: finding.detail,
            replay,
        }
    }

    pub fn class(&self) -> Class {
        self.kind.class()
    }
}

impl fmt::Display for Violation {
    /// E.g. `safety (election safety): n1 and n2 both lead t4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.class(), self.kind, self.detail)
    }
}

//! The node's status as the driver publishes it after every turn of its loop: what the API
//! answers without asking the driver (a `watch` channel, read lock-free by any task).

use regent_raft::{LogIndex, Nanos, NodeId, Role, Term};
use regent_replica::{Candidacy, ClockStatus, ElectionSettings, Pause};
use regent_storage::JournalState;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One member of the configuration in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: NodeId,
    pub address: Option<SocketAddr>,
    pub voter: bool,
    /// On the leader: how far the member's log matches (its lag is last index − this).
    pub match_index: Option<LogIndex>,
    /// Its election role and priority, as this node knows them (the committed record, else
    /// its last clock stamp, else a default candidate).
    pub election: Candidacy,
    /// Whether it may lead: a candidate, not drained.
    pub eligible: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader_id: Option<NodeId>,
    pub leader_address: Option<SocketAddr>,
    pub commit_index: LogIndex,
    pub applied_index: LogIndex,
    pub last_index: LogIndex,
    /// The KV store's revision as of the last applied batch.
    pub revision: u64,
    /// Leader, lease valid, this term's no-op applied: the host may write.
    pub writable: bool,
    /// The lease's end on this machine's CLOCK_MONOTONIC (leader only).
    pub lease_deadline_ns: Option<Nanos>,
    /// Leading and caught up, but not writable until the promotion (fencing, `pre_promote`)
    /// is done.
    pub promotion_pending: bool,
    /// The promotion waits for a fence method to succeed (`fencing.required`).
    pub fence_pending: bool,
    pub members: Vec<MemberStatus>,
    /// Whether the QUIC link to each peer is up.
    pub links: BTreeMap<NodeId, bool>,
    /// The host beside this node passes its health probe (always true without one).
    pub host_healthy: bool,
    /// When this node's certificate expires (Unix seconds).
    pub certificate_not_after_unix: Option<i64>,
    /// The host's journal as of the last applied batch.
    pub journal: JournalState,
    /// While this node leads and its host has not yet said (`POST /v1/journal/applied`) that it
    /// applied the journal up to it: the last journal index committed before this term. The
    /// host applies everything up to it before writing.
    pub catch_up_index: Option<u64>,
    /// The journal index this node's host last reported as applied.
    pub host_applied_index: u64,
    /// The peers' clock rates against this node's, and the verdicts drawn from them.
    pub clock: ClockStatus,
    /// Why this leader does not claim its lease (`clock_drift`, `clock_unmeasured`), if it is
    /// for its clocks.
    pub clock_reason: Option<&'static str>,
    /// The operator's pause in force, as applied here (replicated).
    pub pause: Option<Pause>,
    /// The drained nodes, as applied here (replicated).
    pub drained: Vec<NodeId>,
    /// This node's election settings (`election:`).
    pub election: ElectionSettings,
    /// This node would campaign now if no leader held it back (a candidate, not drained,
    /// its host healthy, nothing holding its campaigns).
    pub ready_to_lead: bool,
    /// The newest wire and command version this node speaks (the oldest is
    /// `regent_replica::VERSION_MIN`).
    pub version_max: u8,
    /// The cluster version as applied here (replicated; never above `version_max`).
    pub cluster_version: u8,
    /// The version a request proposed here now would be applied under
    /// (`Replica::log_version`): on a leader that just raised the cluster version, the new
    /// one. What the API's gates check.
    pub log_version: u8,
    /// The wire version each live peer link speaks.
    pub link_versions: BTreeMap<NodeId, u8>,
    /// The version every voter speaks, as this node's links show (`Replica::voters_version`):
    /// what the leader commits next. `None` while a voter's link is down.
    pub voters_version: Option<u8>,
}

impl NodeStatus {
    /// Before the driver's first turn.
    pub fn starting(node_id: NodeId) -> NodeStatus {
        NodeStatus {
            node_id,
            role: Role::Follower,
            term: Term(0),
            leader_id: None,
            leader_address: None,
            commit_index: LogIndex(0),
            applied_index: LogIndex(0),
            last_index: LogIndex(0),
            revision: 0,
            writable: false,
            lease_deadline_ns: None,
            promotion_pending: false,
            fence_pending: false,
            members: Vec::new(),
            links: BTreeMap::new(),
            host_healthy: true,
            certificate_not_after_unix: None,
            journal: JournalState::default(),
            catch_up_index: None,
            host_applied_index: 0,
            clock: ClockStatus::default(),
            clock_reason: None,
            pause: None,
            drained: Vec::new(),
            election: ElectionSettings::default(),
            ready_to_lead: false,
            version_max: regent_replica::VERSION_MAX,
            cluster_version: regent_replica::VERSION_MIN,
            log_version: regent_replica::VERSION_MIN,
            link_versions: BTreeMap::new(),
            voters_version: None,
        }
    }

    /// The role as the API names it.
    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::PreCandidate | Role::Candidate => "candidate",
            Role::Learner => "learner",
        }
    }

    /// `Ok` when the cluster version is at least `needed` (as `log_version` says): a request
    /// that needs a newer one is refused (409 `cluster_version_too_old`).
    pub fn require_version(&self, needed: u8) -> Result<(), regent_replica::VersionRefusal> {
        if self.log_version >= needed {
            Ok(())
        } else {
            Err(regent_replica::VersionRefusal {
                needed,
                cluster: self.log_version,
            })
        }
    }

    /// Milliseconds of lease left at `now` (0 without one).
    pub fn lease_remaining_ms(&self, now: Nanos) -> u64 {
        self.lease_deadline_ns
            .map_or(0, |d| d.saturating_sub(now) / 1_000_000)
    }

    /// Why the host may not write at `now`, when that is the clocks' doing (`None` while
    /// writable).
    pub fn reason_at(&self, now: Nanos) -> Option<&'static str> {
        if self.role == Role::Leader && !self.election.own.role.may_lead() {
            return Some("not_a_candidate");
        }
        self.clock_reason.filter(|_| !self.writable_at(now))
    }

    /// Whether the host may write at `now`: writable when published and the lease not yet
    /// over (the published value may be a few microseconds old).
    pub fn writable_at(&self, now: Nanos) -> bool {
        self.writable && self.lease_deadline_ns.is_some_and(|d| now < d)
    }
}

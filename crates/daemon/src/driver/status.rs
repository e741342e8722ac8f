//! The node's published status: what the API's `GET /v1/status`, the leadership watch and the
//! metrics read, rebuilt after every loop turn and sent only when it changed; and the log
//! lines and notifications that go with a change of role or a stalled disk.
//!
//! Invariant: the status is published from the driver's thread only, after the turn's actions
//! were carried out, so it never shows a state the replica has not reached.

use super::Driver;
use crate::api::status::{MemberStatus, NodeStatus};
use regent_raft::{Nanos, NodeId, Role, SoftState};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::watch;

/// What the status shows beyond the replica's own state.
pub(super) struct Publisher {
    sender: watch::Sender<NodeStatus>,
    pub(super) link_up: BTreeMap<NodeId, bool>,
    /// The wire version each live link speaks.
    pub(super) link_versions: BTreeMap<NodeId, u8>,
    pub(super) certificate_not_after_unix: Option<i64>,
    /// When the batch on the disk was sent there (None when the disk is idle of batches).
    persist_started: Option<Nanos>,
    persist_stall_max: Duration,
    stall_warned: bool,
    last_leader: Option<NodeId>,
}

impl Publisher {
    pub(super) fn new(
        sender: watch::Sender<NodeStatus>,
        persist_stall_max: Duration,
        not_after_unix: i64,
    ) -> Publisher {
        Publisher {
            sender,
            link_up: BTreeMap::new(),
            link_versions: BTreeMap::new(),
            certificate_not_after_unix: Some(not_after_unix),
            persist_started: None,
            persist_stall_max,
            stall_warned: false,
            last_leader: None,
        }
    }

    /// The status as last published.
    pub(super) fn current(&self) -> NodeStatus {
        self.sender.borrow().clone()
    }

    pub(super) fn persist_started(&mut self, now: Nanos) {
        self.persist_started = Some(now);
    }

    /// A batch is durable.
    pub(super) fn persisted(&mut self) {
        self.persist_started = None;
        self.stall_warned = false;
    }

    /// The core steps down on its own when its durable write stalls past the bound; this says
    /// why in the log.
    pub(super) fn watch_stall(&mut self, id: NodeId, now: Nanos) {
        let Some(started) = self.persist_started else {
            return;
        };
        let outstanding = Duration::from_nanos(now.saturating_sub(started));
        if outstanding > self.persist_stall_max && !self.stall_warned {
            self.stall_warned = true;
            tracing::error!(
                node = %id,
                outstanding_ms = outstanding.as_millis() as u64,
                "the durable write is stalled past persist_stall_max_ms; a leader steps down"
            );
        }
    }

    /// The role, term or leader changed: counted, told to systemd, logged.
    pub(super) fn role_changed(&mut self, driver_id: NodeId, soft: &SoftState) -> bool {
        let leader_changed = soft.leader != self.last_leader;
        self.last_leader = soft.leader;
        tracing::info!(
            node = %driver_id,
            role = ?soft.role,
            term = soft.term.0,
            leader = ?soft.leader.map(|l| l.0),
            "role or leader changed"
        );
        leader_changed
    }
}

impl Driver {
    /// The role, term or leader changed.
    pub(super) fn on_soft_state(&mut self, soft: &SoftState) {
        crate::logging::set_term(soft.term.0);
        if self.status.role_changed(self.id, soft) {
            self.metrics.leader_changes.fetch_add(1, Relaxed);
        }
        if matches!(soft.role, Role::PreCandidate | Role::Candidate) {
            self.metrics.elections.fetch_add(1, Relaxed);
        }
        let role = match soft.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::PreCandidate | Role::Candidate => "candidate",
            Role::Learner => "learner",
        };
        let leader = soft
            .leader
            .map_or("unknown".to_string(), |l| l.0.to_string());
        self.notifier.notify(&format!(
            "STATUS={role} in term {}, leader {leader}",
            soft.term.0
        ));
    }

    pub(super) fn publish(&mut self, now: Nanos) {
        let core = self.replica.core();
        let s = core.status(now);
        let membership = core.membership();
        let members = membership
            .members()
            .into_iter()
            .map(|id| MemberStatus {
                id,
                address: self.peers.address(id),
                voter: membership.is_voter(id),
                match_index: core.match_index(id),
                election: self.replica.candidacy(id),
                eligible: self.replica.may_lead(id),
            })
            .collect();
        let p = &self.status;
        let next = NodeStatus {
            node_id: s.id,
            role: s.role,
            term: s.term,
            leader_id: s.leader,
            leader_address: s.leader.and_then(|l| self.peers.address(l)),
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_index: s.last_index,
            revision: self.replica.state().revision(),
            // The core's lease and catch-up, and the promotion (hooks, fencing) done.
            writable: self.replica.writable(now),
            promotion_pending: matches!(
                self.replica.promotion(),
                regent_replica::Promotion::Pending { .. }
            ),
            fence_pending: self.hooks.view.fence_pending.load(Relaxed),
            lease_deadline_ns: s.lease_deadline.filter(|_| s.role == Role::Leader),
            members,
            links: p.link_up.clone(),
            host_healthy: self.replica.host_healthy(),
            certificate_not_after_unix: p.certificate_not_after_unix,
            catch_up_index: self
                .replica
                .catch_up_index(self.replica.state().journal(), now),
            journal: self.replica.state().journal().clone(),
            host_applied_index: self.replica.host_applied_index(),
            clock: self.replica.clock_status().clone(),
            clock_reason: self.replica.clock_reason(),
            pause: self.replica.pause().cloned(),
            drained: self.replica.drained().iter().copied().collect(),
            election: self.replica.election_settings(),
            ready_to_lead: self.replica.ready_to_lead(),
            version_max: self.replica.version_max(),
            cluster_version: self.replica.cluster_version(),
            log_version: self.replica.log_version(),
            link_versions: p.link_versions.clone(),
            voters_version: self.replica.voters_version(),
        };
        p.sender.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
    }
}

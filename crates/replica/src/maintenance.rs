//! Maintenance: an operator's pause (Patroni's pause) and the drained nodes (Pacemaker's
//! standby), both replicated state, decided here so that the simulator runs them.
//!
//! Both live in the state machine as regent's own records (ordinary puts under the reserved
//! prefix `\0regent/`, which clients may not write): `\0regent/maintenance/pause` holds the
//! pause, `\0regent/maintenance/drained/<id>` one record per drained node. Every node reads them
//! back after an apply that wrote any reserved record (the state machine counts those writes:
//! `StateMachine::reserved_writes`), after a snapshot install and at start, so every node sees
//! the same pause and the same drained set at the same index.
//!
//! While paused nothing moves leadership behind the operator's back: an unhealthy host, a
//! stalled disk and a stop (SIGTERM) hand nothing over, and only the pause's *holder* (the
//! leader that was leading when the pause was set, or the target of a forced switchover) may be
//! writable; any other leader (elected after the holder died) leads without claiming
//! writability and without promoting its host, until a forced switchover or a resume. A pause
//! with a TTL ends when the log time (the leaders' wall clocks stamped on applied entries)
//! passes `at_ms + ttl`: the leader proposes the end itself when its wall clock gets there, so
//! that an idle cluster ends it too.
//!
//! A drained node does not campaign (the single campaign-hold rule) and hands leadership away
//! if it leads, unless no other voter of its configuration is eligible (then draining it would
//! leave the cluster without a leader), or it has heard from no leader for
//! `DRAIN_GRACE_ELECTION_TIMEOUTS`: the eligible voters may then be unable to win without it
//! (its log is the most complete, and Raft's election restriction makes it refuse them its
//! vote), so it campaigns, and as leader hands over to the best eligible voter at once.
//!
//! Invariants: the pause only ever takes writability away (`Replica::writable` is the core's
//! and the gate's AND the pause's), so it cannot make two nodes writable; the lease rules are
//! unchanged. A record that does not parse is ignored with a warning, never trusted halfway.

use crate::{Replica, Token};
use regent_raft::{Entry, EntryPayload, LogIndex, Nanos, NodeId, ProposeError, Role, Term};
use regent_storage::{Command, Compare, CompareOp, CompareTarget, Op, Proposal, StateReader, Txn};
use std::collections::BTreeSet;

/// The prefix of every maintenance record.
pub const MAINTENANCE_PREFIX: &[u8] = b"\0regent/maintenance/";
/// The pause record's key.
pub const PAUSE_KEY: &[u8] = b"\0regent/maintenance/pause";
/// The prefix of the drained nodes' records: `\0regent/maintenance/drained/<id>`.
pub const DRAINED_PREFIX: &[u8] = b"\0regent/maintenance/drained/";
/// A pause's TTL is at most this long (a week); without one it lasts until resumed.
pub const PAUSE_TTL_MAX_MS: u64 = 7 * 24 * 3600 * 1000;
/// A pause's reason is at most this many bytes.
pub const PAUSE_REASON_BYTES_MAX: usize = 256;
/// The most drained records read back (far above any cluster's size).
const DRAINED_RECORDS_MAX: u32 = 1000;
/// A drained follower that has heard from no leader for this many minimum election timeouts
/// campaigns after all (and, leading, hands over at once): the eligible voters may be unable to
/// win without it, when its log is the most complete (Raft's election restriction).
pub const DRAIN_GRACE_ELECTION_TIMEOUTS: u64 = 4;
/// A leader proposes a pause's end again after this long without seeing it applied.
const EXPIRY_RETRY_NS: Nanos = 1_000_000_000;

/// An operator's pause, as replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    /// The leader's wall clock when the pause was set (log time).
    pub at_ms: u64,
    /// The log time at which the pause ends by itself (`None`: only a resume ends it).
    pub until_ms: Option<u64>,
    pub reason: String,
    /// The leader that set it.
    pub by: NodeId,
    /// The only node that may be writable while paused.
    pub holder: NodeId,
}

impl Pause {
    /// One line per field: `v1`, at, until (`-` for none), by, holder, then the reason.
    pub fn encode(&self) -> Vec<u8> {
        let until = self.until_ms.map_or("-".to_string(), |u| u.to_string());
        format!(
            "v1\n{}\n{}\n{}\n{}\n{}",
            self.at_ms, until, self.by.0, self.holder.0, self.reason
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Pause> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.splitn(6, '\n');
        if lines.next()? != "v1" {
            return None;
        }
        let at_ms = lines.next()?.parse().ok()?;
        let until_ms = match lines.next()? {
            "-" => None,
            u => Some(u.parse().ok()?),
        };
        let by = NodeId(lines.next()?.parse().ok()?);
        let holder = NodeId(lines.next()?.parse().ok()?);
        let reason = lines.next()?.to_string();
        Some(Pause {
            at_ms,
            until_ms,
            reason,
            by,
            holder,
        })
    }
}

/// What an operator asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaintenanceChange {
    /// Pause for `ttl_ms` of log time (`None`: until resumed). Pausing again while paused
    /// replaces the TTL and the reason and keeps the holder.
    Pause {
        ttl_ms: Option<u64>,
        reason: String,
    },
    Resume,
    Drain(NodeId),
    Undrain(NodeId),
}

/// Why a maintenance change (or a switchover) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceRefusal {
    #[error("ttl_s must be within 1..={} s", PAUSE_TTL_MAX_MS / 1000)]
    Ttl,
    #[error("the reason is longer than {PAUSE_REASON_BYTES_MAX} bytes")]
    Reason,
    #[error("{node} is not a member of the configuration")]
    NotMember { node: NodeId },
    #[error("draining {node} would leave no voter eligible to lead (the others are drained, nofailover or witnesses)")]
    LastEligible { node: NodeId },
    #[error(
        "the cluster is paused (holder {holder}): a switchover needs --force, or resume first"
    )]
    Paused { holder: NodeId },
    #[error("{node} is drained: undrain it first")]
    Drained { node: NodeId },
    #[error("{node} is a {role} node (election.role): it never leads")]
    NotCandidate {
        node: NodeId,
        role: crate::ElectionRole,
    },
    #[error("a forced switchover names its target (--to ID)")]
    NoTarget,
    #[error(transparent)]
    Version(#[from] crate::VersionRefusal),
    #[error(transparent)]
    Core(#[from] ProposeError),
    #[error(transparent)]
    Transfer(#[from] regent_raft::TransferError),
}

/// The replica's view of the maintenance records, as applied here.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    pub(crate) pause: Option<Pause>,
    pub(crate) drained: BTreeSet<NodeId>,
    /// The largest leader time seen on an entry applied here while a pause with a TTL was in
    /// force (or the pause's own time): the log time its end is measured by.
    pub(crate) log_time_ms: u64,
    /// The caller's wall clock, in ms, and the monotonic time it was read at.
    pub(crate) wall: Option<(Nanos, u64)>,
    /// When this node, leading, last proposed the end of an expired pause.
    pub(crate) expiry_proposed_at: Option<Nanos>,
    /// Whether the drain rule holds this node's campaigns now.
    pub(crate) drain_holds: bool,
    /// When this node last heard from a leader (or led): a drained node campaigns after all
    /// once `drain_grace_ns` passed without one.
    pub(crate) leader_heard_at: Nanos,
    pub(crate) drain_grace_ns: Nanos,
    /// Pauses and drains applied here (for the simulator's summary).
    pub(crate) pauses_applied: u64,
    pub(crate) drains_applied: u64,
}

/// The key of `node`'s drained record.
pub fn drained_key(node: NodeId) -> Vec<u8> {
    let mut key = DRAINED_PREFIX.to_vec();
    key.extend_from_slice(node.0.to_string().as_bytes());
    key
}

impl Replica {
    /// The pause in force as applied here (`None`: not paused, or its TTL passed in log time).
    pub fn pause(&self) -> Option<&Pause> {
        let m = &self.maint;
        m.pause
            .as_ref()
            .filter(|p| p.until_ms.is_none_or(|u| m.log_time_ms < u))
    }

    /// Whether the cluster is paused, as applied here.
    pub fn paused(&self) -> bool {
        self.pause().is_some()
    }

    /// The drained nodes, as applied here.
    pub fn drained(&self) -> &BTreeSet<NodeId> {
        &self.maint.drained
    }

    /// Pauses and drains applied here since the replica was built.
    pub fn maintenance_counts(&self) -> (u64, u64) {
        (self.maint.pauses_applied, self.maint.drains_applied)
    }

    /// Whether the pause lets this node be writable: not paused, or this node holds it.
    pub(crate) fn pause_allows_writable(&self) -> bool {
        self.pause().is_none_or(|p| p.holder == self.id)
    }

    /// The caller's wall clock (ms since the epoch) read at `now`: a leader ends a pause whose
    /// TTL its wall clock passed. Call it with every turn's clock reading.
    pub fn set_wall_clock(&mut self, now: Nanos, wall_ms: u64) {
        self.observe(now);
        self.maint.wall = Some((now, wall_ms));
    }

    /// The wall clock now, extrapolated from the last reading.
    fn wall_ms_now(&self) -> Option<u64> {
        let (at, wall) = self.maint.wall?;
        Some(wall + self.now.saturating_sub(at) / 1_000_000)
    }

    /// When a leader must wake to end a pause by its TTL.
    pub(crate) fn maintenance_deadline(&self) -> Option<Nanos> {
        let until = self.pause()?.until_ms?;
        let (at, wall) = self.maint.wall?;
        if self.core.status(self.now).role != Role::Leader {
            return None;
        }
        let due = at + until.saturating_sub(wall) * 1_000_000;
        match self.maint.expiry_proposed_at {
            Some(p) => Some(due.max(p + EXPIRY_RETRY_NS)),
            None => Some(due),
        }
    }

    /// Proposes an operator's maintenance change for the request `token` (answered with an
    /// [`Action::Proposal`] once applied). `wall_ms` is the leader's wall clock.
    pub fn propose_maintenance(
        &mut self,
        token: Token,
        change: MaintenanceChange,
        now: Nanos,
        wall_ms: u64,
    ) -> Result<(LogIndex, Term), MaintenanceRefusal> {
        self.observe(now);
        let status = self.core.status(now);
        if status.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: status.leader,
            }
            .into());
        }
        // Maintenance records came with version 3: a version-2 node would apply them as plain
        // keys and never act on them.
        self.require_version(crate::VERSION_OPERATIONS)?;
        let command = match change {
            MaintenanceChange::Pause { ttl_ms, reason } => {
                if ttl_ms.is_some_and(|t| t == 0 || t > PAUSE_TTL_MAX_MS) {
                    return Err(MaintenanceRefusal::Ttl);
                }
                if reason.len() > PAUSE_REASON_BYTES_MAX || reason.contains('\n') {
                    return Err(MaintenanceRefusal::Reason);
                }
                let holder = self.pause().map_or(self.id, |p| p.holder);
                let pause = Pause {
                    at_ms: wall_ms,
                    until_ms: ttl_ms.map(|t| wall_ms + t),
                    reason,
                    by: self.id,
                    holder,
                };
                Command::Put {
                    key: PAUSE_KEY.to_vec(),
                    value: pause.encode(),
                }
            }
            MaintenanceChange::Resume => Command::Delete {
                key: PAUSE_KEY.to_vec(),
            },
            MaintenanceChange::Drain(node) => {
                let membership = self.core.membership();
                if !membership.members().contains(&node) {
                    return Err(MaintenanceRefusal::NotMember { node });
                }
                let eligible_left = membership
                    .voters
                    .iter()
                    .any(|&v| v != node && self.may_lead(v));
                if membership.is_voter(node) && !eligible_left {
                    return Err(MaintenanceRefusal::LastEligible { node });
                }
                Command::Put {
                    key: drained_key(node),
                    value: wall_ms.to_string().into_bytes(),
                }
            }
            MaintenanceChange::Undrain(node) => Command::Delete {
                key: drained_key(node),
            },
        };
        let mut proposal = Proposal::new(command);
        proposal.time_ms = wall_ms;
        Ok(self.propose(token, proposal.encode(), now)?)
    }

    /// A switchover with `force`: allowed while paused, it makes `target` the pause's holder
    /// (a replicated record, appended before the hand-over, so the target has applied it before
    /// it can be writable) and then hands leadership to it. The target may be this node (a
    /// leader elected while paused is made writable). Without a pause it is a plain
    /// switchover. Answered like one, with an [`Action::Handover`], except when the target is
    /// this node: nothing is handed over, and the caller answers at once (`Ok(self)`).
    pub fn force_switchover(
        &mut self,
        token: Token,
        target: Option<NodeId>,
        now: Nanos,
        wall_ms: u64,
    ) -> Result<NodeId, MaintenanceRefusal> {
        self.observe(now);
        let Some(pause) = self.pause().cloned() else {
            return self.switchover(token, target, now);
        };
        let target = target.ok_or(MaintenanceRefusal::NoTarget)?;
        self.require_version(crate::VERSION_OPERATIONS)?;
        let status = self.core.status(now);
        if status.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: status.leader,
            }
            .into());
        }
        if !self.core.membership().is_voter(target) {
            return Err(regent_raft::TransferError::NotVoter { target }.into());
        }
        if self.maint.drained.contains(&target) {
            return Err(MaintenanceRefusal::Drained { node: target });
        }
        if !self.candidacy(target).role.may_lead() {
            let role = self.candidacy(target).role;
            return Err(MaintenanceRefusal::NotCandidate { node: target, role });
        }
        if pause.holder != target {
            let moved = Pause {
                holder: target,
                ..pause.clone()
            };
            let mut proposal = Proposal::new(Command::Txn(Txn {
                compares: vec![Compare {
                    key: PAUSE_KEY.to_vec(),
                    op: CompareOp::Equal,
                    target: CompareTarget::Value(pause.encode()),
                }],
                success: vec![Op::Put {
                    key: PAUSE_KEY.to_vec(),
                    value: moved.encode(),
                }],
                failure: vec![],
            }));
            proposal.time_ms = wall_ms;
            self.core.propose(proposal.encode(), now)?;
            tracing::info!(node = %self.id, %target, "forced switchover while paused: the pause's holder moves");
        }
        if target == self.id {
            return Ok(target);
        }
        Ok(self.start_handover_because(
            Some(target),
            Some(token),
            crate::Cause::ForcedSwitchover,
            now,
        )?)
    }

    /// After entries were applied: reads the records back if the apply wrote any of regent's
    /// own records (`records_written`), and moves the log time while a pause with a TTL is in
    /// force.
    pub(crate) fn maintenance_applied(&mut self, entries: &[Entry], records_written: bool) {
        let timed = self
            .maint
            .pause
            .as_ref()
            .is_some_and(|p| p.until_ms.is_some());
        let was_paused = self.paused();
        if timed {
            for entry in entries {
                if let EntryPayload::Normal(data) = &entry.payload {
                    if let Ok(p) = Proposal::decode(data) {
                        self.maint.log_time_ms = self.maint.log_time_ms.max(p.time_ms);
                    }
                }
            }
        }
        if records_written {
            self.reread_maintenance(was_paused);
        } else if was_paused && !self.paused() {
            tracing::info!(node = %self.id, log_time_ms = self.maint.log_time_ms, "pause ended: its TTL passed in log time");
            self.maintenance_changed(was_paused);
        }
    }

    /// Reads the maintenance records from the state machine (at start, after an install, after
    /// an entry that touched them), and acts on what changed.
    pub(crate) fn reload_maintenance(&mut self) {
        let was_paused = self.paused();
        self.reread_maintenance(was_paused);
    }

    /// As `reload_maintenance`, for a caller that knew whether the cluster was paused before
    /// the entries it applied (their log time may have ended the pause already).
    fn reread_maintenance(&mut self, was_paused: bool) {
        let old_pause = self.maint.pause.clone();
        let old_drained = self.maint.drained.clone();
        let pause = match self.state.kv_get(PAUSE_KEY) {
            Ok(Some(kv)) => {
                let p = Pause::decode(&kv.value);
                if p.is_none() {
                    tracing::warn!(node = %self.id, "the pause record does not parse: ignored");
                }
                p
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "the pause record could not be read");
                old_pause.clone()
            }
        };
        let drained = match self.state.kv_range(DRAINED_PREFIX, DRAINED_RECORDS_MAX) {
            Ok((kvs, _)) => kvs
                .iter()
                .filter_map(|kv| {
                    let id = kv.key.strip_prefix(DRAINED_PREFIX)?;
                    let id: u64 = std::str::from_utf8(id).ok()?.parse().ok()?;
                    (id > 0).then_some(NodeId(id))
                })
                .collect(),
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "the drained records could not be read");
                old_drained.clone()
            }
        };
        if let Some(p) = &pause {
            self.maint.log_time_ms = self.maint.log_time_ms.max(p.at_ms);
            if old_pause.as_ref() != Some(p) {
                self.maint.pauses_applied += 1;
                tracing::info!(node = %self.id, holder = %p.holder, until_ms = ?p.until_ms, reason = %p.reason, "paused");
            }
        } else if old_pause.is_some() {
            tracing::info!(node = %self.id, "resumed");
        }
        if drained != old_drained {
            self.maint.drains_applied += drained.difference(&old_drained).count() as u64;
            tracing::info!(node = %self.id, drained = ?drained, "drained nodes changed");
        }
        self.maint.pause = pause;
        self.maint.drained = drained;
        self.maintenance_changed(was_paused);
    }

    /// Whether the drain rule holds this node's campaigns: it is drained, another voter of
    /// its configuration is not, and a leader was heard from within the grace (or this node
    /// leads).
    fn drain_rule(&self) -> bool {
        if self.may_lead(self.id) {
            return false;
        }
        let leading = self.core.status(self.now).role == Role::Leader;
        // A candidate that may lead asked for a vote this node had to refuse (its log is
        // behind ours) since a leader was last heard: it cannot win without this node leading
        // first.
        let blocking = self
            .roles
            .refused_candidate_at
            .is_some_and(|at| at >= self.maint.leader_heard_at);
        if !leading
            && (blocking
                || self.now.saturating_sub(self.maint.leader_heard_at) > self.maint.drain_grace_ns)
        {
            return false;
        }
        let membership = self.core.membership();
        membership
            .voters
            .iter()
            .chain(membership.voters_outgoing.iter())
            .any(|&v| v != self.id && self.may_lead(v))
    }

    /// Re-evaluates the drain rule (the configuration may have changed): cheap unless this
    /// node is drained.
    pub(crate) fn check_drain(&mut self, now: Nanos) {
        if !self.maint.drain_holds && self.may_lead(self.id) {
            return;
        }
        if self.core.status(now).role == Role::Leader {
            self.maint.leader_heard_at = now;
        }
        let holds = self.drain_rule();
        if holds != self.maint.drain_holds {
            self.maint.drain_holds = holds;
            self.update_campaign_hold();
        }
        // While paused nothing but a forced switchover moves leadership: the drained leader
        // hands over once resumed.
        if holds
            && !self.paused()
            && self.core.status(now).role == Role::Leader
            && !self.handing_over()
        {
            let cause = if self.maint.drained.contains(&self.id) {
                crate::Cause::Drain
            } else {
                crate::Cause::NotCandidate
            };
            match self.start_handover_because(None, None, cause, now) {
                Ok(to) => {
                    tracing::info!(node = %self.id, %to, role = %self.roles.settings.own.role, "drained or not a candidate: handing leadership over")
                }
                Err(err) => {
                    tracing::debug!(node = %self.id, reason = %err, "drained or not a candidate, but no hand-over is possible yet")
                }
            }
        }
    }

    /// Acts on a change of the records: the drain rule, the stall step-down, and what a pause
    /// held back (an unhealthy host's hand-over) once it ends.
    fn maintenance_changed(&mut self, was_paused: bool) {
        let paused = self.paused();
        self.core.hold_stall_step_down(paused);
        if paused {
            self.maint.expiry_proposed_at = None;
        }
        self.check_drain(self.now);
        if was_paused && !paused {
            let now = self.now;
            if !self.host_healthy
                && self.core.status(now).role == Role::Leader
                && !self.handing_over()
            {
                match self.start_handover_because(None, None, crate::Cause::Health, now) {
                    Ok(to) => {
                        tracing::warn!(node = %self.id, %to, "resumed with an unhealthy host: handing leadership over")
                    }
                    Err(err) => {
                        tracing::warn!(node = %self.id, reason = %err, "resumed with an unhealthy host, but no hand-over is possible")
                    }
                }
            }
        }
    }

    /// A leader whose wall clock passed a pause's end proposes it (a compare-and-delete of the
    /// very record, stamped with that time), so that the log time passes it even on an idle
    /// cluster. Retried while not applied.
    pub(crate) fn maybe_end_pause(&mut self, now: Nanos) {
        let Some(pause) = self.pause().cloned() else {
            return;
        };
        let (Some(until), Some(wall)) = (pause.until_ms, self.wall_ms_now()) else {
            return;
        };
        if wall < until
            || self
                .maint
                .expiry_proposed_at
                .is_some_and(|p| now < p + EXPIRY_RETRY_NS)
            || self.core.status(now).role != Role::Leader
        {
            return;
        }
        let mut proposal = Proposal::new(Command::Txn(Txn {
            compares: vec![Compare {
                key: PAUSE_KEY.to_vec(),
                op: CompareOp::Equal,
                target: CompareTarget::Value(pause.encode()),
            }],
            success: vec![Op::Delete {
                key: PAUSE_KEY.to_vec(),
            }],
            failure: vec![],
        }));
        proposal.time_ms = wall;
        self.maint.expiry_proposed_at = Some(now);
        match self.core.propose(proposal.encode(), now) {
            Ok(_) => {
                tracing::info!(node = %self.id, until_ms = until, "the pause's TTL passed: proposing its end")
            }
            Err(err) => {
                tracing::debug!(node = %self.id, error = %err, "the pause's end not proposed yet")
            }
        }
    }

    /// The best voter to hand leadership to: one that may lead (a candidate, not drained),
    /// ready to lead by its last stamp, of the highest priority, caught up the furthest
    /// (`None`: none, or not leading).
    pub(crate) fn best_eligible_voter(&self) -> Option<NodeId> {
        let membership = self.core.membership();
        membership
            .voters
            .iter()
            .filter(|&&v| v != self.id && self.may_lead(v))
            .filter_map(|&v| self.core.match_index(v).map(|m| (m, v)))
            .max_by_key(|&(m, v)| (self.handover_rank(v), m, std::cmp::Reverse(v)))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::{Net, MS};
    use crate::{Action, Stop};

    #[test]
    fn a_pause_keeps_the_leader_through_an_unhealthy_host_and_a_stop_then_resume_hands_over() {
        let mut net = Net::new();
        let l = net.until_leader();
        net.change(
            l,
            MaintenanceChange::Pause {
                ttl_ms: None,
                reason: "upgrade".into(),
            },
        );
        for id in 1..=3 {
            let pause = net.r(id).pause().expect("paused on every node").clone();
            assert_eq!((pause.holder, pause.by), (NodeId(l), NodeId(l)));
            assert_eq!(pause.reason, "upgrade");
        }
        assert!(net.r(l).writable(net.now), "the holder keeps serving");
        let now = net.now;
        net.r_mut(l).set_host_healthy(false, now);
        assert!(!net.r(l).handing_over(), "no hand-over while paused");
        net.run_ms(1000);
        assert_eq!(net.leader(), Some(l), "leadership stays while paused");
        assert!(net.r(l).writable(net.now));
        // A switchover other than to the holder, without force, is refused.
        let other = if l == 1 { 2 } else { 1 };
        let now = net.now;
        assert_eq!(
            net.r_mut(l).switchover(5, Some(NodeId(other)), now),
            Err(MaintenanceRefusal::Paused { holder: NodeId(l) })
        );
        net.change(l, MaintenanceChange::Resume);
        assert!(!net.r(l).paused());
        net.run_ms(1000);
        let new = net.until_leader();
        assert_ne!(new, l, "resumed with an unhealthy host: leadership moved");
    }

    #[test]
    fn a_stop_while_paused_hands_nothing_over() {
        let mut net = Net::new();
        let l = net.until_leader();
        net.change(
            l,
            MaintenanceChange::Pause {
                ttl_ms: None,
                reason: String::new(),
            },
        );
        let now = net.now;
        assert_eq!(net.r_mut(l).begin_stop(now), Stop::Now);
        assert!(!net.r(l).handing_over());
    }

    #[test]
    fn a_leader_elected_while_paused_is_not_writable_until_forced() {
        let mut net = Net::new();
        let l = net.until_leader();
        net.change(
            l,
            MaintenanceChange::Pause {
                ttl_ms: None,
                reason: String::new(),
            },
        );
        net.down[(l - 1) as usize] = true;
        let new = net.until_leader();
        assert_ne!(new, l);
        assert!(net.r(new).paused());
        net.run_ms(500);
        assert!(
            net.r(new).core().status(net.now).writable,
            "the core's lease holds"
        );
        assert!(
            !net.r(new).writable(net.now),
            "but it does not claim writability"
        );
        // A forced switchover to itself makes it the holder, then writable.
        let (now, wall) = (net.now, net.now / MS);
        net.r_mut(new)
            .force_switchover(7, Some(NodeId(new)), now, wall)
            .unwrap();
        net.run_ms(100);
        assert_eq!(net.r(new).pause().map(|p| p.holder), Some(NodeId(new)));
        assert!(net.r(new).writable(net.now));
        assert!(
            !net.answered
                .iter()
                .any(|(_, a)| matches!(a, Action::Handover { .. })),
            "nothing was handed over"
        );
    }

    #[test]
    fn a_resume_makes_a_leader_elected_while_paused_writable() {
        let mut net = Net::new();
        let l = net.until_leader();
        net.change(
            l,
            MaintenanceChange::Pause {
                ttl_ms: None,
                reason: String::new(),
            },
        );
        net.down[(l - 1) as usize] = true;
        let new = net.until_leader();
        net.run_ms(300);
        assert!(!net.r(new).writable(net.now));
        net.change(new, MaintenanceChange::Resume);
        assert!(net.r(new).writable(net.now));
    }

    #[test]
    fn a_pause_ends_when_the_log_time_passes_its_ttl_even_on_an_idle_cluster() {
        let mut net = Net::new();
        let l = net.until_leader();
        net.change(
            l,
            MaintenanceChange::Pause {
                ttl_ms: Some(2_000),
                reason: String::new(),
            },
        );
        let until = net.r(l).pause().unwrap().until_ms.unwrap();
        net.run_ms(1_000);
        assert!(
            (1..=3).all(|id| net.r(id).paused()),
            "still paused before the TTL"
        );
        net.run_ms(1_500);
        assert!(net.now / MS > until);
        assert!(
            (1..=3).all(|id| !net.r(id).paused()),
            "the leader proposed the end and every node applied it"
        );
    }

    #[test]
    fn a_drained_leader_hands_over_and_the_drained_node_does_not_lead_until_undrained() {
        let mut net = Net::new();
        let l = net.until_leader();
        net.change(l, MaintenanceChange::Drain(NodeId(l)));
        net.run_ms(500);
        let new = net.until_leader();
        assert_ne!(new, l, "the drained leader handed over");
        assert!((1..=3).all(|id| net.r(id).drained().contains(&NodeId(l))));
        // The drained node never campaigns, even with the leader gone.
        let now = net.now;
        assert_eq!(
            net.r_mut(new).switchover(8, Some(NodeId(l)), now),
            Err(MaintenanceRefusal::Drained { node: NodeId(l) })
        );
        net.down[(new - 1) as usize] = true;
        net.run_ms(2_000);
        let third = (1..=3).find(|&id| id != l && id != new).unwrap();
        assert_ne!(net.leader(), Some(l));
        assert_eq!(net.leader(), Some(third));
        net.down[(new - 1) as usize] = false;
        net.change(third, MaintenanceChange::Undrain(NodeId(l)));
        assert!(net.r(l).drained().is_empty());
        let now = net.now;
        net.r_mut(third)
            .switchover(9, Some(NodeId(l)), now)
            .unwrap();
        net.run_ms(1_000);
        assert_eq!(net.until_leader(), l, "undrained, it may lead again");
    }

    #[test]
    fn a_drained_node_with_the_most_complete_log_campaigns_and_hands_over() {
        let mut net = Net::new();
        let l = net.until_leader();
        let others: Vec<u64> = (1..=3).filter(|&id| id != l).collect();
        let (d, e) = (others[0], others[1]);
        net.change(l, MaintenanceChange::Drain(NodeId(d)));
        assert!((1..=3).all(|id| net.r(id).drained().contains(&NodeId(d))));
        // e misses entries that l and d commit; then l dies and e comes back: e's log is behind
        // d's, so d refuses it its vote, and only the drained d can win.
        net.down[(e - 1) as usize] = true;
        for i in 0..5u64 {
            let put = Proposal::new(Command::Put {
                key: format!("k{i}").into_bytes(),
                value: b"v".to_vec(),
            });
            let now = net.now;
            net.r_mut(l).propose(100 + i, put.encode(), now).unwrap();
            net.run_ms(20);
        }
        net.down[(l - 1) as usize] = true;
        net.down[(e - 1) as usize] = false;
        // Only the drained d, with the most complete log, can win; it leads only to hand over
        // (at once: it had to refuse e its vote), possibly within one step of this harness.
        // The history of e's term says who led before it and why it handed over.
        net.until_leader();
        net.run_ms(2_000);
        assert_eq!(net.until_leader(), e, "d led only to hand over");
        let record = net.record_of_current_term(e);
        assert_eq!(record.previous_leader, Some(NodeId(d)), "{record:?}");
        assert_eq!(record.cause, crate::Cause::Drain, "{record:?}");
        assert!(net.r(e).drained().contains(&NodeId(d)));
    }

    #[test]
    fn draining_the_last_eligible_voter_is_refused() {
        let mut net = Net::new();
        let l = net.until_leader();
        let others: Vec<u64> = (1..=3).filter(|&id| id != l).collect();
        net.change(l, MaintenanceChange::Drain(NodeId(others[0])));
        net.change(l, MaintenanceChange::Drain(NodeId(others[1])));
        let (now, wall) = (net.now, net.now / MS);
        assert_eq!(
            net.r_mut(l)
                .propose_maintenance(1, MaintenanceChange::Drain(NodeId(l)), now, wall),
            Err(MaintenanceRefusal::LastEligible { node: NodeId(l) })
        );
        assert_eq!(
            net.r_mut(l)
                .propose_maintenance(1, MaintenanceChange::Drain(NodeId(9)), now, wall),
            Err(MaintenanceRefusal::NotMember { node: NodeId(9) })
        );
    }

    #[test]
    fn a_pause_record_round_trips_and_a_bad_one_is_refused() {
        let pause = Pause {
            at_ms: 1_700_000_000_000,
            until_ms: Some(1_700_000_060_000),
            reason: "kernel upgrade: db1 then db2".into(),
            by: NodeId(2),
            holder: NodeId(3),
        };
        assert_eq!(Pause::decode(&pause.encode()), Some(pause.clone()));
        let forever = Pause {
            until_ms: None,
            reason: String::new(),
            ..pause
        };
        assert_eq!(Pause::decode(&forever.encode()), Some(forever));
        assert_eq!(Pause::decode(b"v2\n1\n-\n1\n1\n"), None);
        assert_eq!(Pause::decode(b"v1\nx\n-\n1\n1\n"), None);
        assert_eq!(Pause::decode(b"v1\n1\n-\n1"), None);
    }

    /// Mixed versions (`versions`): maintenance records are version 3. While a voter's links
    /// speak version 2 the cluster version stays 2 on every node and a pause is refused; once
    /// every voter speaks 3 the leader commits 3 and the pause goes through; a voter back on
    /// version 2 (a downgrade) makes the leader commit 2 again.
    #[test]
    fn maintenance_waits_for_the_cluster_version() {
        let mut net = Net::new();
        let speak = |net: &mut Net, id: u64, version: u8| {
            let now = net.now;
            net.r_mut(id).set_version_max(version);
            for other in (1..=3).filter(|&o| o != id) {
                net.r_mut(other)
                    .peer_wire_version(NodeId(id), Some(version), now);
                net.r_mut(id)
                    .peer_wire_version(NodeId(other), Some(version), now);
            }
        };
        speak(&mut net, 3, 2);
        net.run_ms(1000);
        let leader = net.leader().expect("a leader");
        for id in 1..=3 {
            assert_eq!(net.r(id).cluster_version(), 2, "n{id}");
        }
        let pause = || MaintenanceChange::Pause {
            ttl_ms: None,
            reason: "upgrade".into(),
        };
        let now = net.now;
        assert_eq!(
            net.r_mut(leader)
                .propose_maintenance(1, pause(), now, now / MS),
            Err(MaintenanceRefusal::Version(crate::VersionRefusal {
                needed: 3,
                cluster: 2
            }))
        );

        speak(&mut net, 3, 3);
        net.run_ms(200);
        for id in 1..=3 {
            assert_eq!(net.r(id).cluster_version(), 3, "n{id}");
        }
        let leader = net.leader().expect("a leader");
        let now = net.now;
        assert!(net
            .r_mut(leader)
            .propose_maintenance(2, pause(), now, now / MS)
            .is_ok());
        net.run_ms(100);
        assert!((1..=3).all(|id| net.r(id).paused()));

        let other = (1..=3).find(|&id| id != leader).unwrap();
        speak(&mut net, other, 2);
        net.run_ms(200);
        for id in 1..=3 {
            assert_eq!(net.r(id).cluster_version(), 2, "n{id}");
        }
    }

    /// A leader that appended a new cluster version gates its next proposals on it at once
    /// (`Replica::log_version`), before the record commits: after a lowering nothing of version
    /// 3 is appended behind it, even while the record cannot commit.
    #[test]
    fn a_lowering_gates_the_leader_before_it_commits() {
        let mut net = Net::new();
        net.run_ms(1000);
        let leader = net.leader().expect("a leader");
        assert_eq!(net.r(leader).cluster_version(), 3);
        // The followers are cut off, then one is seen speaking version 2 (its link came back
        // on an older build): the lowering cannot commit without them.
        let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        for &f in &followers {
            net.down[(f - 1) as usize] = true;
        }
        let now = net.now;
        net.r_mut(leader)
            .peer_wire_version(NodeId(followers[0]), Some(2), now);
        net.run_ms(50);
        assert_eq!(net.r(leader).cluster_version(), 3, "not committed yet");
        assert_eq!(net.r(leader).log_version(), 2, "appended");
        let now = net.now;
        let refused = net.r_mut(leader).propose_maintenance(
            1,
            MaintenanceChange::Pause {
                ttl_ms: None,
                reason: String::new(),
            },
            now,
            now / MS,
        );
        assert_eq!(
            refused,
            Err(MaintenanceRefusal::Version(crate::VersionRefusal {
                needed: 3,
                cluster: 2
            }))
        );
    }
}

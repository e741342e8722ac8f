//! Hand-overs: a leader's bounded, retried sequence of leadership transfers, started by a
//! switchover, a SIGTERM (stop) or an unhealthy host, and answered once leadership has moved or
//! the hand-over's deadline has passed.
//!
//! The core abandons a transfer whose target has not campaigned within a minimum election
//! timeout (a target slowed by a loaded machine, a lost `TimeoutNow`) and resumes leading; until
//! the hand-over's own deadline the replica then asks again, so one slow round does not fail a
//! switchover or turn a clean stop into an election.
//!
//! Invariants: every hand-over started with a token is answered exactly once (completed,
//! lost to another leader, or timed out), or handed back by `abandon`; a retry is asked only of
//! a leader with no transfer in progress, and only before the hand-over's deadline.

use crate::{Action, Cause, MaintenanceRefusal, Replica, Token};
use regent_raft::{Nanos, NodeId, Role, TransferError};

/// A hand-over may take this many minimum election timeouts before it is given up.
pub const HANDOVER_ELECTION_TIMEOUTS: u64 = 3;

/// A hand-over this node started as leader.
#[derive(Debug)]
pub(crate) struct Handover {
    pub(crate) to: NodeId,
    pub(crate) started: Nanos,
    pub(crate) deadline: Nanos,
    /// The request to answer (a switchover), or `None` (a stop, an unhealthy host).
    pub(crate) token: Option<Token>,
    /// Why: sent to the target with every TimeoutNow, recorded in the history by it.
    pub(crate) cause: Cause,
}

/// How a hand-over ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoverOutcome {
    /// `to` leads now; the cluster had no writable leader for at most `pause_ms`.
    Done {
        from: NodeId,
        to: NodeId,
        pause_ms: u64,
    },
    /// `to` did not take over within `waited_ms`: another node leads, or the deadline passed.
    NotDone {
        to: NodeId,
        waited_ms: u64,
        leader: Option<NodeId>,
    },
}

/// What a stop asked of a node does first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Stop now: this node does not lead, or no hand-over is possible.
    Now,
    /// A leader hands leadership to this node first; stop once `handing_over` is false.
    AfterHandover(NodeId),
}

impl Replica {
    /// A switchover: hand leadership to `target` (or the best caught-up voter), answering
    /// `token` with an [`Action::Handover`] once it is done or given up.
    ///
    /// While paused only a switchover to the pause's holder is allowed (a forced one,
    /// [`Replica::force_switchover`], moves the holder); a drained target is refused.
    pub fn switchover(
        &mut self,
        token: Token,
        target: Option<NodeId>,
        now: Nanos,
    ) -> Result<NodeId, MaintenanceRefusal> {
        self.observe(now);
        if let Some(pause) = self.pause() {
            if target != Some(pause.holder) {
                return Err(MaintenanceRefusal::Paused {
                    holder: pause.holder,
                });
            }
        }
        if let Some(node) = target.filter(|t| self.drained().contains(t)) {
            return Err(MaintenanceRefusal::Drained { node });
        }
        if let Some(node) = target.filter(|&t| !self.candidacy(t).role.may_lead()) {
            let role = self.candidacy(node).role;
            return Err(MaintenanceRefusal::NotCandidate { node, role });
        }
        let to = self.start_handover_because(target, Some(token), Cause::Switchover, now)?;
        tracing::info!(node = %self.id, %to, "switchover asked");
        Ok(to)
    }

    /// Shutdown was asked: a leader first hands leadership to the most caught-up voter, so the
    /// hosts see a clean hand-over rather than an election.
    /// While paused a stop hands nothing over: the node stops, and a leader elected after it
    /// is not writable until the operator says so.
    pub fn begin_stop(&mut self, now: Nanos) -> Stop {
        self.observe(now);
        self.stopping = true;
        if self.core.status(now).role != Role::Leader {
            return Stop::Now;
        }
        if self.paused() {
            tracing::warn!(node = %self.id, "stopping while paused: no hand-over");
            return Stop::Now;
        }
        match self.start_handover_because(None, None, Cause::Sigterm, now) {
            Ok(to) => {
                tracing::info!(node = %self.id, %to, "stopping: handing leadership over first");
                Stop::AfterHandover(to)
            }
            Err(err) => {
                tracing::info!(node = %self.id, reason = %err, "stopping without a hand-over");
                Stop::Now
            }
        }
    }

    /// Whether a stop was asked ([`begin_stop`](Self::begin_stop)).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The host beside this node turned unhealthy (`false`) or healthy again (`true`): an
    /// unhealthy host's node does not campaign, and a leader beside an unhealthy host hands
    /// leadership over (as ZKFC and Patroni do).
    pub fn set_host_healthy(&mut self, healthy: bool, now: Nanos) {
        self.observe(now);
        if healthy == self.host_healthy {
            return;
        }
        self.host_healthy = healthy;
        self.update_campaign_hold();
        if healthy {
            tracing::info!(node = %self.id, "host healthy: campaigning allowed again");
            return;
        }
        tracing::warn!(node = %self.id, "host unhealthy: no campaigns");
        if self.core.status(now).role != Role::Leader || self.handing_over() {
            return;
        }
        if self.paused() {
            tracing::warn!(node = %self.id, "host unhealthy while paused: leadership stays");
            return;
        }
        match self.start_handover_because(None, None, Cause::Health, now) {
            Ok(to) => {
                tracing::warn!(node = %self.id, %to, "host unhealthy: handing leadership over")
            }
            Err(err) => {
                tracing::warn!(node = %self.id, reason = %err, "host unhealthy, but no hand-over is possible")
            }
        }
    }

    /// Whether the host beside this node counts as healthy.
    pub fn host_healthy(&self) -> bool {
        self.host_healthy
    }

    /// Whether a hand-over is in progress.
    pub fn handing_over(&self) -> bool {
        !self.handovers.is_empty()
    }

    /// Starts a hand-over to `target` (or the best eligible voter); `cause` goes to the
    /// target, which records it in the failover history.
    pub(crate) fn start_handover_because(
        &mut self,
        target: Option<NodeId>,
        token: Option<Token>,
        cause: Cause,
        now: Nanos,
    ) -> Result<NodeId, TransferError> {
        self.observe(now);
        // Left to the replica, the target is the best voter that is not drained.
        let target = match target {
            Some(t) => Some(t),
            None if self.core.status(now).role == Role::Leader => Some(
                self.best_eligible_voter()
                    .ok_or(TransferError::NoCandidate)?,
            ),
            None => None,
        };
        let to = self
            .core
            .transfer_leadership_for(target, cause.code(), now)?;
        self.handovers.push(Handover {
            to,
            started: now,
            deadline: now + self.handover_max_ns,
            token,
            cause,
        });
        Ok(to)
    }

    /// The earliest hand-over deadline, if any: the caller wakes then to give it up.
    pub fn handover_deadline(&self) -> Option<Nanos> {
        self.handovers.iter().map(|h| h.deadline).min()
    }

    /// The targets of the hand-overs in progress.
    pub fn handover_targets(&self) -> Vec<NodeId> {
        self.handovers.iter().map(|h| h.to).collect()
    }

    /// Whether the core refused the last retry of a hand-over (its target is no longer a
    /// voter, say): the hand-over then waits for its deadline without a transfer in progress.
    pub fn handover_retry_refused(&self) -> bool {
        self.handover_retry_refused
    }

    /// Asks again for hand-overs whose transfer round the core abandoned, and answers those that
    /// completed (this node sees the target lead), were lost to another leader, or ran out of
    /// time.
    pub(crate) fn check_handovers(&mut self, now: Nanos, out: &mut Vec<Action>) {
        if self.handovers.is_empty() {
            return;
        }
        let status = self.core.status(now);
        if status.role == Role::Leader && self.core.transfer_target().is_none() {
            let retry = self
                .handovers
                .iter()
                .find(|h| now < h.deadline)
                .map(|h| (h.to, h.cause));
            if let Some((to, cause)) = retry {
                match self
                    .core
                    .transfer_leadership_for(Some(to), cause.code(), now)
                {
                    Ok(_) => {
                        self.handover_retry_refused = false;
                        tracing::info!(node = %self.id, %to, "hand-over round timed out; asking again")
                    }
                    Err(err) => {
                        self.handover_retry_refused = true;
                        tracing::warn!(node = %self.id, %to, reason = %err, "hand-over cannot be asked again")
                    }
                }
            }
        }
        let id = self.id;
        self.handovers.retain(|h| {
            let done = status.role != Role::Leader && status.leader == Some(h.to);
            let lost = status.role != Role::Leader && status.leader.is_some() && !done;
            if !(done || lost || now >= h.deadline) {
                return true;
            }
            let waited_ms = now.saturating_sub(h.started) / 1_000_000;
            let outcome = if done {
                tracing::info!(node = %id, to = %h.to, pause_ms = waited_ms, "handed leadership over");
                HandoverOutcome::Done {
                    from: id,
                    to: h.to,
                    pause_ms: waited_ms,
                }
            } else {
                tracing::warn!(node = %id, to = %h.to, "hand-over not completed");
                HandoverOutcome::NotDone {
                    to: h.to,
                    waited_ms,
                    leader: status.leader,
                }
            };
            out.push(Action::Handover {
                token: h.token,
                outcome,
            });
            false
        });
        if self.handovers.is_empty() {
            self.handover_retry_refused = false;
        }
    }
}

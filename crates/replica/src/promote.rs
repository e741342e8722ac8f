//! The promotion gate: with hooks or fencing configured, a new leader becomes writable only
//! once its caller has carried out what must happen first (fence the previous leader after a
//! failover, run `pre_promote`). A failed promotion hands leadership away and holds this
//! node's campaigns for a back-off, so that a node whose host cannot take over does not win
//! again and again.
//!
//! Invariants: with the gate on, `writable` is never true in a term whose promotion the
//! caller has not reported done (`promotion_done` with `Ok` for that term); a promotion is
//! asked at most once per term; a failed promotion's back-off ends by itself.
//!
//! The gate adds nothing to lease safety: a new leader is elected only after the voters'
//! election timeouts, so its `pre_promote` (and its fencing) starts after the previous
//! leader's lease has lapsed, except after an acknowledged hand-over, where the previous
//! leader gave its lease up first.

use crate::{Action, Replica};
use regent_raft::{Message, MessageBody, Nanos, NodeId, Role, Term};

/// Where this term's promotion stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promotion {
    /// The gate is off: the core's writability is the node's.
    Ungated,
    /// Not leading, or leading but not yet writable by the core.
    Idle,
    /// Asked of the caller at `since` for `term`; not writable until it is done.
    Pending { term: Term, since: Nanos },
    /// Done for `term`: writable whenever the core is.
    Passed { term: Term },
    /// Failed in `term`; campaigns are held until `until`.
    Failed { term: Term, until: Nanos },
}

/// The gate's state in the replica.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) enabled: bool,
    pub(crate) state: Promotion,
    pub(crate) backoff_ns: Nanos,
    /// The last leader other than this node, and its term: the one to fence after a failover.
    pub(crate) last_other_leader: Option<(NodeId, Term)>,
    /// The leader that told this node to campaign (TimeoutNow), and in which term.
    pub(crate) handed_over_by: Option<(NodeId, Term)>,
    /// Set when something this node needs to lead safely is missing (a required watchdog
    /// device): it never campaigns.
    pub(crate) ineligible: bool,
    /// A hand-over's TimeoutNow, held until the caller has demoted this node's host
    /// (`on_demote`): the next leader's host must not start while this one still serves.
    pub(crate) held: Vec<Message>,
    /// The term whose demotion was asked, and the one whose demotion is done.
    pub(crate) demote_asked: Option<Term>,
    pub(crate) demoted: Option<Term>,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            enabled: false,
            state: Promotion::Ungated,
            backoff_ns: 0,
            last_other_leader: None,
            handed_over_by: None,
            ineligible: false,
            held: Vec::new(),
            demote_asked: None,
            demoted: None,
        }
    }
}

impl Replica {
    /// Turns the promotion gate on (`backoff` is how long campaigns are held after a failed
    /// promotion) or off. The daemon turns it on when `pre_promote` or fencing methods are
    /// configured.
    pub fn set_promotion_gate(&mut self, enabled: bool, backoff_ns: Nanos) {
        self.gate.enabled = enabled;
        self.gate.backoff_ns = backoff_ns;
        if !enabled {
            self.gate.state = Promotion::Ungated;
        } else if self.gate.state == Promotion::Ungated {
            self.gate.state = Promotion::Idle;
        }
    }

    /// Where the promotion stands (for the status).
    pub fn promotion(&self) -> Promotion {
        self.gate.state
    }

    /// Whether the host may write at `now`: the core's lease and catch-up, and, with the gate
    /// on, this term's promotion done.
    pub fn writable(&self, now: Nanos) -> bool {
        let status = self.core.status(now);
        status.writable
            && self.pause_allows_writable()
            && self.role_allows_writable()
            && match self.gate.state {
                Promotion::Ungated => true,
                Promotion::Passed { term } => term == status.term,
                _ => false,
            }
    }

    /// The caller carried out the promotion asked for `term` (fencing, `pre_promote`): `Ok`
    /// makes the node writable (if it still leads that term); an error hands leadership away
    /// and holds campaigns for the back-off.
    pub fn promotion_done(&mut self, term: Term, result: Result<(), String>, now: Nanos) {
        self.observe(now);
        let Promotion::Pending { term: asked, .. } = self.gate.state else {
            return;
        };
        if asked != term {
            return;
        }
        match result {
            Ok(()) => {
                tracing::info!(node = %self.id, term = term.0, "promotion done: writable");
                self.gate.state = Promotion::Passed { term };
            }
            Err(reason) => {
                let until = now + self.gate.backoff_ns;
                tracing::warn!(
                    node = %self.id, term = term.0, %reason,
                    backoff_ms = self.gate.backoff_ns / 1_000_000,
                    "promotion failed: handing leadership away, no campaigns during the back-off"
                );
                self.gate.state = Promotion::Failed { term, until };
                self.update_campaign_hold();
                if self.core.status(now).role == Role::Leader && !self.handing_over() {
                    if let Err(err) =
                        self.start_handover_because(None, None, crate::Cause::PromotionFailed, now)
                    {
                        tracing::warn!(node = %self.id, reason = %err, "no hand-over possible after a failed promotion");
                    }
                }
            }
        }
    }

    /// Campaigns are held while the host is unhealthy, a failed promotion's back-off runs, a
    /// required device is missing, the clock is outvoted, or the drain rule holds them (this
    /// node is drained, or not a candidate: `roles`).
    pub(crate) fn update_campaign_hold(&mut self) {
        let held = self.held_for_this_node() || self.maint.drain_holds;
        self.core.hold_campaigns(held);
    }

    /// Whether something of this node's own holds its campaigns: an unhealthy host, a failed
    /// promotion's back-off, a missing required device, an outvoted clock.
    pub(crate) fn held_for_this_node(&self) -> bool {
        !self.host_healthy
            || self.promotion_deadline().is_some()
            || self.gate.ineligible
            || self.clock_status().outvoted
    }

    /// Whether this node may campaign at all (false: a required watchdog device does not
    /// work). A leader that becomes ineligible hands leadership away.
    pub fn set_campaign_eligible(&mut self, eligible: bool, now: Nanos) {
        self.observe(now);
        self.gate.ineligible = !eligible;
        self.update_campaign_hold();
        if !eligible && self.core.status(now).role == Role::Leader && !self.handing_over() {
            let _ = self.start_handover_because(None, None, crate::Cause::Ineligible, now);
        }
    }

    /// When a failed promotion's back-off ends (the caller ticks then).
    pub(crate) fn promotion_deadline(&self) -> Option<Nanos> {
        match self.gate.state {
            Promotion::Failed { until, .. } if self.now < until => Some(until),
            _ => None,
        }
    }

    /// Hands out the core's messages, holding a hand-over's TimeoutNow (with the gate on) until
    /// the caller reports the host demoted ([`Replica::demote_done`]): a graceful hand-over
    /// stops the old master before the new one is asked to take over (ZKFC's graceful
    /// failover).
    pub(crate) fn route_messages(&mut self, messages: Vec<Message>, out: &mut Vec<Action>) {
        if !self.gate.enabled {
            out.extend(messages.into_iter().map(Action::Send));
            return;
        }
        for m in messages {
            let hold = m.body.is_timeout_now() && self.gate.demoted != Some(m.term);
            if !hold {
                out.push(Action::Send(m));
                continue;
            }
            if self.gate.demote_asked != Some(m.term) {
                self.gate.demote_asked = Some(m.term);
                tracing::info!(node = %self.id, term = m.term.0, "handing over: demoting the host first");
                out.push(Action::Demote { term: m.term });
            }
            self.gate.held.retain(|h| h.term == m.term && h.to != m.to);
            self.gate.held.push(m);
        }
    }

    /// The caller demoted this node's host (ran `on_demote`) for `term`: a held hand-over goes
    /// out.
    pub fn demote_done(&mut self, term: Term, now: Nanos) {
        self.observe(now);
        self.gate.demoted = Some(term);
        let held = std::mem::take(&mut self.gate.held);
        let still_leading = self.core.status(now).term == term;
        for m in held {
            if m.term == term && still_leading {
                self.queued.push(Action::Send(m));
            }
        }
    }

    /// Notes who told this node to campaign: a hand-over, not a failover.
    pub(crate) fn note_message(&mut self, body: &MessageBody, from: NodeId, term: Term) {
        if body.is_timeout_now() {
            self.gate.handed_over_by = Some((from, term));
        }
        if matches!(body, MessageBody::RequestVote { .. }) {
            self.note_vote_request(body, from);
        }
        if matches!(
            body,
            MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. }
        ) {
            self.maint.leader_heard_at = self.now;
        }
    }

    /// Asks for the promotion once the core would make this node writable in a new term, and
    /// ends a back-off that has run out.
    pub(crate) fn check_promotion(&mut self, now: Nanos, out: &mut Vec<Action>) {
        // Off the hot path without a gate: nothing to ask and no back-off to end.
        if !self.gate.enabled {
            return;
        }
        let status = self.core.status(now);
        if let Some(leader) = status.leader.filter(|&l| l != self.id) {
            self.gate.last_other_leader = Some((leader, status.term));
        }
        if let Promotion::Failed { until, .. } = self.gate.state {
            if now >= until {
                tracing::info!(node = %self.id, "promotion back-off over: campaigning allowed again");
                self.gate.state = Promotion::Idle;
                self.update_campaign_hold();
            }
        }
        let this_term = match self.gate.state {
            Promotion::Pending { term, .. }
            | Promotion::Passed { term }
            | Promotion::Failed { term, .. } => Some(term),
            Promotion::Idle | Promotion::Ungated => None,
        };
        if status.role != Role::Leader {
            if matches!(
                self.gate.state,
                Promotion::Pending { .. } | Promotion::Passed { .. }
            ) {
                self.gate.state = Promotion::Idle;
            }
            return;
        }
        // While paused, a leader other than the pause's holder does not promote its host.
        if !status.writable
            || this_term == Some(status.term)
            || self.handing_over()
            || !self.pause_allows_writable()
        {
            return;
        }
        let previous = self.gate.last_other_leader.map(|(id, _)| id);
        let handover = matches!(
            (self.gate.handed_over_by, self.gate.last_other_leader),
            (Some((by, by_term)), Some((last, _))) if by == last && by_term < status.term
        );
        self.gate.state = Promotion::Pending {
            term: status.term,
            since: now,
        };
        tracing::info!(
            node = %self.id, term = status.term.0, previous = ?previous.map(|p| p.0), handover,
            "leading and caught up: promotion asked (not writable until it is done)"
        );
        out.push(Action::Promote {
            term: status.term,
            previous_leader: previous,
            handover,
        });
    }
}

//! The host's view of this node's leadership as a sequence of events: what the leadership
//! watch (`GET /v1/leadership/watch`) streams and what the hooks react to, computed once.
//!
//! Invariant: a change is seen as soon as the driver publishes it (the watcher waits on the
//! status channel, no polling), and the lease is judged on this process's clock: when the
//! published deadline passes unrenewed, the node is reported not writable even if the driver
//! has published nothing since; `lease_warning_ms` before such a deadline, one warning.

use crate::api::status::NodeStatus;
use crate::api::LiveOptions;
use crate::clock;
use regent_raft::{Nanos, NodeId, Role, Term};
use tokio::sync::watch;

/// What a leadership event is about; a new event comes when any of it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub writable: bool,
    /// Why not writable, when the clocks are why (`clock_drift`).
    pub reason: Option<&'static str>,
    pub host_healthy: bool,
    pub catch_up_index: Option<u64>,
    /// The cluster is paused (an operator's maintenance).
    pub paused: bool,
}

impl Leadership {
    pub fn of(s: &NodeStatus, now: Nanos) -> Leadership {
        Leadership {
            role: s.role,
            term: s.term,
            leader: s.leader_id,
            writable: s.writable_at(now),
            reason: s.reason_at(now),
            host_healthy: s.host_healthy,
            catch_up_index: s.catch_up_index,
            paused: s.pause.is_some(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The first event: how things stand.
    State,
    /// Something of [`Leadership`] changed.
    Change,
    /// The lease will lapse in `lease_warning_ms` unless renewed.
    LeaseWarning,
    /// Nothing changed but the lease's deadline: renewed. Sent while writable once half of the
    /// time to the deadline last sent has passed, so a host that judges the lease on its own
    /// clock always holds a deadline still ahead of it (every ~lease/2, not every heartbeat).
    Renewed,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::State => "state",
            EventKind::Change => "change",
            EventKind::LeaseWarning => "lease_warning",
            EventKind::Renewed => "renewed",
        }
    }
}

/// One event: its kind, the status it is about, and when (CLOCK_MONOTONIC).
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub status: NodeStatus,
    pub now: Nanos,
    /// The leadership before this event (None for the first).
    pub before: Option<Leadership>,
    pub after: Leadership,
}

/// Turns the published status into leadership events.
pub struct Watcher {
    status: watch::Receiver<NodeStatus>,
    live: watch::Receiver<LiveOptions>,
    last: Option<Leadership>,
    /// The lease deadline already warned about (one warning per deadline).
    warned: Option<Nanos>,
    /// The deadline the last event carried, and when that event was made.
    sent: Option<(Nanos, Nanos)>,
}

impl Watcher {
    pub fn new(status: watch::Receiver<NodeStatus>, live: watch::Receiver<LiveOptions>) -> Watcher {
        Watcher {
            status,
            live,
            last: None,
            warned: None,
            sent: None,
        }
    }

    /// The next event; the first call answers at once with the state. None once the driver is
    /// gone.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let s = self.status.borrow_and_update().clone();
            let now = clock::now();
            let current = Leadership::of(&s, now);
            if self.last != Some(current) {
                let kind = if self.last.is_none() {
                    EventKind::State
                } else {
                    EventKind::Change
                };
                let before = self.last.replace(current);
                self.sent = s.lease_deadline_ns.map(|d| (d, now));
                return Some(Event {
                    kind,
                    status: s,
                    now,
                    before,
                    after: current,
                });
            }
            // While writable and half-way to the deadline last sent: a renewal, if there was one.
            let renew_at = self
                .sent
                .filter(|_| current.writable)
                .map(|(deadline, at)| at + deadline.saturating_sub(at) / 2);
            if let (Some(renew_at), Some(deadline), Some((sent, _))) =
                (renew_at, s.lease_deadline_ns, self.sent)
            {
                if now >= renew_at && deadline > sent {
                    self.sent = Some((deadline, now));
                    return Some(Event {
                        kind: EventKind::Renewed,
                        status: s,
                        now,
                        before: Some(current),
                        after: current,
                    });
                }
            }
            // While writable: wake at the warning point and at the deadline itself. The warning
            // period is read each time: a reload may change it.
            let warning_ns = self.live.borrow().lease_warning_ms * 1_000_000;
            let wake = match s.lease_deadline_ns.filter(|_| current.writable) {
                Some(deadline) if self.warned != Some(deadline) => {
                    Some((deadline.saturating_sub(warning_ns), Some(deadline)))
                }
                Some(deadline) => Some((deadline, None)),
                None => None,
            };
            // The renewal point comes first when it is sooner (a timer only: no event unless the
            // deadline moved).
            let wake = match (wake, renew_at.filter(|&r| r > now)) {
                (Some((at, _)), Some(r)) if r < at => Some((r, None)),
                (wake, _) => wake,
            };
            let sleep = async {
                match wake {
                    Some((at, _)) => tokio::time::sleep(clock::until(at, clock::now())).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.status.changed() => if changed.is_err() { return None },
                _ = sleep => {
                    if let Some((_, Some(deadline))) = wake {
                        self.warned = Some(deadline);
                        let s = self.status.borrow().clone();
                        if s.lease_deadline_ns == Some(deadline) {
                            let now = clock::now();
                            return Some(Event {
                                kind: EventKind::LeaseWarning,
                                after: Leadership::of(&s, now),
                                status: s,
                                now,
                                before: Some(current),
                            });
                        }
                    }
                }
            }
        }
    }
}

//! `RaftNode`: one member's consensus state machine — elections, replication, commit and the
//! leader lease — driven by `tick`, `step` and `propose`, drained through `ready`/`advance`.
//!
//! Invariants kept here: at most one vote per term, made durable before it is announced or
//! counted (a candidate's own vote included); a leader counts its own entries toward a quorum
//! only once they are durable; only entries of
//! the current term are committed by counting replicas; `writable` implies leader, a valid lease
//! and this term's no-op applied.

mod config_change;
mod election;
mod lease;
mod read;
mod replication;
mod term;

use super::config::{Config, ConfigError};
use super::log::RaftLog;
use super::membership::{self, ConfChange, ConfChangeError, ConfigLog};
use super::message::{ConflictHint, Message, MessageBody};
use super::progress::{Progress, ProgressState};
use super::quorum::{self, VoteResult};
use super::ready::{Batch, Ready, SoftState};
use super::rng::RaftRng;
use super::types::{
    Entry, EntryPayload, HardState, LogIndex, Membership, Nanos, NodeId, Role, Term,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use term::TermVerdict;
use thiserror::Error;

/// Rounds remembered for the lease; older ones can no longer extend it in practice.
const ROUNDS_REMEMBERED_MAX: usize = 1024;

/// What a node restarts from: exactly what its storage made durable.
#[derive(Clone, Debug, Default)]
pub struct RestoredState {
    pub hard_state: HardState,
    /// The configuration in force at the start of the log (the snapshot's, or the cluster's
    /// initial one); configuration entries in `entries` are applied on top of it.
    pub membership: Membership,
    /// The log starts after this index and term (both 0 without a snapshot).
    pub snapshot_index: LogIndex,
    pub snapshot_term: Term,
    pub entries: Vec<Entry>,
    /// The last entry the state machine has applied durably.
    pub applied: LogIndex,
}

/// Why a proposal was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProposeError {
    #[error("not the leader; the leader is {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    #[error("too many uncommitted bytes ({bytes}, uncommitted_bytes_max {max}); retry later")]
    Backpressure { bytes: usize, max: usize },
    #[error("leadership is being transferred to {target}; retry on the next leader")]
    Transferring { target: NodeId },
}

/// Why a leadership transfer was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TransferError {
    #[error("not the leader; the leader is {leader:?}")]
    NotLeader { leader: Option<NodeId> },
    #[error("{target} is not a voter of the current configuration")]
    NotVoter { target: NodeId },
    #[error("{target} is already the leader")]
    AlreadyLeader { target: NodeId },
    #[error("no other voter to transfer leadership to")]
    NoCandidate,
}

/// Why a linearizable read could not be started.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReadError {
    #[error("no known leader to confirm the read with")]
    NoLeader,
    #[error("the leader is handing over leadership; retry on the next leader")]
    Transferring,
    #[error("the leader lost leadership before confirming the read")]
    NotLeader,
    #[error("too many reads pending ({pending}, reads_pending_max {max}); retry later")]
    Backpressure { pending: usize, max: usize },
}

/// The outcome of a [`RaftNode::read_index`] call, delivered by
/// [`RaftNode::take_read_states`]. On `Ok(index)` this node has applied at least `index`, and a
/// read of its state machine now is linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: u64,
    pub result: Result<LogIndex, ReadError>,
}

/// The leader asks its caller to send a follower a snapshot: the follower needs entries up to
/// at least `at_least`, which the leader compacted away. The caller streams its latest snapshot
/// (chunks, each acknowledged) to `to`, whose caller installs it durably and calls
/// [`RaftNode::snapshot_installed`]. The leader's caller reports each acknowledged chunk with
/// [`RaftNode::snapshot_progress`]. A transfer that fails is simply dropped: the leader asks
/// again once `snapshot_timeout_ms` has passed without progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub to: NodeId,
    pub at_least: LogIndex,
}

/// Why a message was refused. The message came from the network: never a panic.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StepError {
    #[error("message for {to} delivered to {me}")]
    WrongRecipient { to: NodeId, me: NodeId },
    #[error("a message delivered to {me} claims to come from {me} itself")]
    FromSelf { me: NodeId },
    #[error("{from} claims to lead {term}, which {me} already leads")]
    SecondLeader {
        from: NodeId,
        term: Term,
        me: NodeId,
    },
    #[error("{from} sent entries that are not contiguous after {prev}")]
    MalformedEntries { from: NodeId, prev: LogIndex },
}

/// A snapshot of a node's view, for the control socket and the simulator's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit_index: LogIndex,
    pub applied_index: LogIndex,
    pub last_index: LogIndex,
    /// Until when (caller's clock) this leader is sure no other node can be leader.
    pub lease_deadline: Option<Nanos>,
    /// Leader, lease valid, and this term's no-op applied: the host may write.
    pub writable: bool,
}

/// A leadership hand-over in progress.
#[derive(Clone, Copy, Debug)]
struct Transfer {
    target: NodeId,
    /// The caller's reason, sent to the target with TimeoutNow.
    cause: u8,
    /// The hand-over is abandoned (and the leader resumes) after this.
    deadline: Nanos,
}

/// A read the leader is confirming: it needs this term's no-op committed (to know an index
/// that covers every earlier write) and a heartbeat round started after it acknowledged by a
/// quorum (to know no newer leader exists).
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    /// The node whose client asked: this node or a follower.
    from: NodeId,
    round: u64,
    index: Option<LogIndex>,
}

/// The durable work handed out in the outstanding `Ready`.
#[derive(Clone, Debug)]
struct InflightReady {
    number: u64,
    last_entry: Option<(LogIndex, Term)>,
    hard_state: Option<HardState>,
    issued_at: Nanos,
}

/// A campaign this node started because its leader handed over to it (TimeoutNow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferCampaign {
    /// The term this node campaigned in.
    pub term: Term,
    /// The leader that handed over.
    pub from: NodeId,
    /// The caller's reason, as the old leader's caller gave it to `transfer_leadership_for`.
    pub cause: u8,
}

/// What only a leader keeps, for the term it leads: created when it wins, dropped when it steps
/// down. (What a deposed leader must remember — that it keeps refusing votes for a minimum
/// election timeout, `last_leader_contact` — lives on the node, since it outlives leadership.)
#[derive(Debug)]
struct LeaderState {
    /// What the leader knows of every other member of the configuration in force.
    progress: BTreeMap<NodeId, Progress>,
    /// The current heartbeat round and when each recent round started, oldest first.
    round: u64,
    round_starts: VecDeque<(u64, Nanos)>,
    next_heartbeat_at: Nanos,
    /// Until when no other node can be leader (0: no lease).
    lease_until: Nanos,
    /// The newest round a quorum has acknowledged.
    quorum_round: u64,
    /// Rounds at or below this never extend the lease again: a hand-over started then, and a
    /// voter that saw no newer round may vote for the target despite stickiness.
    lease_round_floor: u64,
    /// This term's no-op; the node is writable only once it is applied.
    noop_index: LogIndex,
    /// Bytes of this term's proposals not yet committed (`uncommitted_bytes_max`).
    uncommitted_bytes: usize,
    transfer: Option<Transfer>,
    /// Reads being confirmed, in the order they arrived.
    reads: VecDeque<PendingRead>,
    /// When the current joint configuration was first seen as leader (for the abort timeout).
    joint_since: Option<Nanos>,
}

pub struct RaftNode {
    id: NodeId,
    config: Config,
    rng: Box<dyn RaftRng>,
    now: Nanos,

    // Persistent state (durable once handed out and acknowledged).
    term: Term,
    vote: Option<NodeId>,
    log: RaftLog,
    /// The configurations of the log; the one in force is `configs.current()`.
    configs: ConfigLog,

    // Volatile state.
    role: Role,
    leader: Option<NodeId>,
    election_deadline: Nanos,
    /// When we last heard from a leader of our term (or restarted): until
    /// `last_leader_contact + election_timeout_min` this node refuses to vote (stickiness),
    /// which is what the leader's lease relies on.
    last_leader_contact: Nanos,
    /// The newest heartbeat round seen from the current leader (0 when unknown, e.g. after a
    /// restart): a transfer vote of an older round is refused.
    leader_round_seen: u64,
    /// A restarted node forgot which rounds it acknowledged before it went down, so until this
    /// time it refuses every vote, hand-over campaigns included.
    restart_refusal_until: Nanos,
    votes: BTreeMap<NodeId, bool>,
    /// Reads forwarded to the leader, and reads confirmed but waiting for the apply index.
    reads_forwarded: BTreeSet<u64>,
    reads_awaiting_apply: VecDeque<(u64, LogIndex)>,
    read_states: Vec<ReadState>,
    snapshot_sends: Vec<SnapshotRequest>,

    /// `Some` exactly while `role` is `Leader`.
    leader_state: Option<LeaderState>,
    /// The last campaign a TimeoutNow started here: its term is this node's term while that
    /// campaign (or the leadership it won) lasts.
    transfer_campaign: Option<TransferCampaign>,

    // Output.
    messages: Vec<Message>,
    messages_after_persist: Vec<Message>,
    /// The hard state last handed out, and the term and vote known durable.
    handed_hard_state: HardState,
    durable_term_vote: (Term, Option<NodeId>),
    inflight: Option<InflightReady>,
    /// The number of the last `Ready` handed out (0 before the first).
    readies_handed_out: u64,
    reported_soft_state: SoftState,
    /// The caller's host is unhealthy: this node does not campaign (not on its timer, not on a
    /// hand-over) until it is let go again.
    campaigns_held: bool,
    /// Timer campaigns wait (a better candidate's election should come first); a TimeoutNow
    /// is still obeyed.
    elections_delayed: bool,
    /// The caller holds the disk-stall step-down (an operator's pause): a leader whose disk
    /// stalls keeps leading. Liveness only: a stalled leader commits nothing, and its lease
    /// rests on its followers' acknowledgements, not on its disk.
    stall_step_down_held: bool,
    /// The voters whose clocks the caller measured to run within the lease's drift bound of
    /// this node's (`None`: no measurement, every voter counts). Only their acknowledgements
    /// extend the lease, so a lease always rests on a quorum of clocks known to agree.
    lease_clocks: Option<BTreeSet<NodeId>>,
}

impl RaftNode {
    /// Builds a node from what its storage holds. `now` starts the stickiness window: a node
    /// that just restarted refuses votes for one minimum election timeout, since it may have
    /// acknowledged a leader's heartbeat just before it went down.
    pub fn new(
        config: Config,
        restored: RestoredState,
        rng: Box<dyn RaftRng>,
        now: Nanos,
    ) -> Result<RaftNode, ConfigError> {
        config.validate()?;
        let restart_refusal_ns = config.election_timeout_min_ns();
        let RestoredState {
            hard_state,
            membership,
            snapshot_index,
            snapshot_term,
            entries,
            applied,
        } = restored;
        let found: Vec<(LogIndex, Membership)> = entries
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Config(m) => Some((e.index, m.clone())),
                _ => None,
            })
            .collect();
        let log = RaftLog::restore(
            snapshot_index,
            snapshot_term,
            entries,
            hard_state.commit,
            applied,
        );
        let mut configs = ConfigLog::new(snapshot_index, membership);
        for (index, m) in found {
            configs.push(index, m);
        }
        let role = if configs.current().is_voter(config.id) {
            Role::Follower
        } else {
            Role::Learner
        };
        let mut node = RaftNode {
            id: config.id,
            config,
            rng,
            now,
            term: hard_state.term,
            vote: hard_state.vote,
            log,
            configs,
            role,
            leader: None,
            election_deadline: now,
            last_leader_contact: now,
            leader_round_seen: 0,
            restart_refusal_until: now + restart_refusal_ns,
            votes: BTreeMap::new(),
            reads_forwarded: BTreeSet::new(),
            reads_awaiting_apply: VecDeque::new(),
            read_states: Vec::new(),
            snapshot_sends: Vec::new(),
            leader_state: None,
            transfer_campaign: None,
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            handed_hard_state: hard_state,
            durable_term_vote: (hard_state.term, hard_state.vote),
            inflight: None,
            readies_handed_out: 0,
            reported_soft_state: SoftState {
                role,
                term: hard_state.term,
                leader: None,
            },
            campaigns_held: false,
            elections_delayed: false,
            stall_step_down_held: false,
            lease_clocks: None,
        };
        node.reset_election_timer();
        Ok(node)
    }

    // ----- Inputs -----

    /// Advances time: campaigns when the election timer fires, sends heartbeats, checks quorum.
    /// Does nothing before [`next_deadline`](Self::next_deadline).
    pub fn tick(&mut self, now: Nanos) {
        self.observe(now);
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Learner if !self.may_campaign() => {}
            Role::Learner | Role::Follower | Role::PreCandidate | Role::Candidate => {
                if now >= self.election_deadline {
                    if self.campaigns_held || self.elections_delayed {
                        self.reset_election_timer();
                    } else {
                        self.campaign(self.config.pre_vote, None);
                    }
                }
            }
        }
    }

    /// Holds this node's campaigns (`true`) while the host beside it is unhealthy, so that it
    /// never becomes the leader of a host that cannot serve; `false` lets it campaign again.
    /// A leader is not deposed by this: its caller hands leadership over.
    pub fn hold_campaigns(&mut self, held: bool) {
        self.campaigns_held = held;
    }

    /// Delays this node's campaigns when its election timer fires (`true`) while a better
    /// candidate's election should come first; unlike [`hold_campaigns`](Self::hold_campaigns),
    /// a leader's TimeoutNow is still obeyed.
    pub fn delay_elections(&mut self, delayed: bool) {
        self.elections_delayed = delayed;
    }

    /// Holds (or releases) the leader's step-down when its disk stalls past
    /// `persist_stall_max_ms`: while held, a leader with a stalled disk keeps leading (it commits
    /// nothing new until the disk answers). Releasing it lets the next tick step down.
    pub fn hold_stall_step_down(&mut self, held: bool) {
        self.stall_step_down_held = held;
    }

    /// The voters whose clocks run within the drift bound of this node's, as the caller
    /// measured them (`None`: unmeasured, every voter counts, as before any measurement). Only
    /// those voters' acknowledgements extend the lease: a voter whose clock runs fast may stop
    /// refusing votes before the lease ends, so the lease must not rest on its promise. A
    /// change recomputes the lease at once (it may end it: the leader then stops claiming it).
    pub fn set_lease_clocks(&mut self, agreeing: Option<BTreeSet<NodeId>>) {
        if agreeing == self.lease_clocks {
            return;
        }
        self.lease_clocks = agreeing;
        if let Some(lead) = self.leader_state.as_mut() {
            lead.lease_until = 0;
            self.update_lease();
        }
    }

    /// Whether the lease counts `id`'s acknowledgements (its clock agrees with this node's).
    pub fn lease_counts(&self, id: NodeId) -> bool {
        id == self.id || self.lease_clocks.as_ref().is_none_or(|a| a.contains(&id))
    }

    /// The earliest time (the caller's clock) at which [`tick`](Self::tick) could do anything,
    /// like quinn-proto's `poll_timeout`: ticking before it sends nothing and changes nothing,
    /// so a driver may sleep until then. Every other input (`step`, `propose`, `ready`,
    /// `advance`, …) may move it, so read it again after each. It may lie in the past: then
    /// tick at once.
    ///
    /// A follower, pre-candidate or candidate: its election deadline. A leader: the earliest
    /// of its next heartbeat, the instant check-quorum would find no quorum heard from, the
    /// persist-stall limit of its outstanding `Ready`, the end of a hand-over, the joint
    /// configuration timeout and any follower's snapshot timeout. A learner: `Nanos::MAX`, it
    /// needs no tick — unless it votes in a configuration the cluster may still be running
    /// under (left out only by its newest, uncommitted one): then it campaigns like a
    /// follower, on its election deadline.
    pub fn next_deadline(&self) -> Nanos {
        match self.role {
            Role::Leader => self.next_leader_deadline(),
            Role::Learner if !self.may_campaign() => Nanos::MAX,
            Role::Learner | Role::Follower | Role::PreCandidate | Role::Candidate => {
                self.election_deadline
            }
        }
    }

    /// Handles one message from a peer.
    pub fn step(&mut self, m: Message, now: Nanos) -> Result<(), StepError> {
        self.observe(now);
        if m.to != self.id {
            return Err(StepError::WrongRecipient {
                to: m.to,
                me: self.id,
            });
        }
        if m.from == self.id {
            return Err(StepError::FromSelf { me: self.id });
        }
        let TermVerdict::Handle { vote_refused } = self.step_term(&m) else {
            return Ok(());
        };
        match m.body {
            MessageBody::RequestVote {
                pre_vote,
                last_log_index,
                last_log_term,
                transfer_round: _,
            } => {
                self.handle_request_vote(
                    m.from,
                    m.term,
                    pre_vote,
                    last_log_index,
                    last_log_term,
                    vote_refused,
                );
            }
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                self.handle_vote_response(m.from, m.term, pre_vote, granted);
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            } => {
                self.accept_leader(m.from, m.term, round)?;
                self.handle_append(
                    m.from,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                    round,
                )?;
            }
            MessageBody::Heartbeat { commit, round } => {
                self.accept_leader(m.from, m.term, round)?;
                let commit = commit.min(self.log.last_index());
                self.log.commit_to(commit);
                self.send(m.from, self.term, MessageBody::HeartbeatResponse { round });
            }
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                conflict,
                round,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(m.from, success, match_index, conflict, round);
                }
            }
            MessageBody::HeartbeatResponse { round } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(m.from, round);
                }
            }
            MessageBody::SnapshotInstalled { last_index } => {
                if self.role == Role::Leader && last_index <= self.log.last_index() {
                    self.heard_from(m.from, 0);
                    let lead = self.leader_state.as_mut();
                    if let Some(p) = lead.and_then(|l| l.progress.get_mut(&m.from)) {
                        if p.acknowledge(last_index) {
                            self.maybe_commit();
                        }
                        self.send_append(m.from);
                    }
                }
            }
            MessageBody::TimeoutNow { .. } | MessageBody::TimeoutNowBecause { .. } => {
                let (round, cause) = match m.body {
                    MessageBody::TimeoutNowBecause { round, cause } => (round, cause),
                    MessageBody::TimeoutNow { round } => (round, 0),
                    _ => unreachable!("matched above"),
                };
                // Only our leader of this term may hand over to us; campaign at once.
                if self.leader == Some(m.from)
                    && self.configs.current().is_voter(self.id)
                    && !self.campaigns_held
                {
                    self.campaign(false, Some(round));
                    if self.role == Role::Candidate {
                        self.transfer_campaign = Some(TransferCampaign {
                            term: self.term,
                            from: m.from,
                            cause,
                        });
                    }
                }
            }
            MessageBody::ReadIndex { ctx } => {
                if self.role == Role::Leader && self.lead().transfer.is_none() {
                    self.start_read(ctx, m.from);
                } else {
                    let body = MessageBody::ReadIndexResponse { ctx, index: None };
                    self.send(m.from, self.term, body);
                }
            }
            // Information for the caller (why the leader went quiet), nothing for the core.
            MessageBody::StallStepDown => {}
            MessageBody::ReadIndexResponse { ctx, index } => {
                if self.reads_forwarded.remove(&ctx) {
                    match index {
                        Some(index) => self.reads_awaiting_apply.push_back((ctx, index)),
                        None => self.read_states.push(ReadState {
                            ctx,
                            result: Err(ReadError::NotLeader),
                        }),
                    }
                    self.release_reads();
                }
            }
        }
        Ok(())
    }

    /// Hands leadership to `target`, or to the most caught-up voter when `None`. The leader
    /// stops accepting proposals and gives up its lease at once, brings the target up to date,
    /// then tells it to campaign (TimeoutNow). If the target has not taken over within a
    /// minimum election timeout, this node resumes as leader.
    pub fn transfer_leadership(
        &mut self,
        target: Option<NodeId>,
        now: Nanos,
    ) -> Result<NodeId, TransferError> {
        self.transfer_leadership_for(target, 0, now)
    }

    /// As [`transfer_leadership`](Self::transfer_leadership), with the caller's reason: an
    /// opaque code carried to the target in TimeoutNow, which its caller reads back with
    /// [`transfer_campaign`](Self::transfer_campaign).
    pub fn transfer_leadership_for(
        &mut self,
        target: Option<NodeId>,
        cause: u8,
        now: Nanos,
    ) -> Result<NodeId, TransferError> {
        self.observe(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        let target = match target {
            Some(t) if t == self.id => return Err(TransferError::AlreadyLeader { target: t }),
            Some(t) if !self.configs.current().is_voter(t) => {
                return Err(TransferError::NotVoter { target: t })
            }
            Some(t) => t,
            None => self
                .lead()
                .progress
                .iter()
                .filter(|(id, _)| self.configs.current().is_voter(**id))
                .max_by_key(|(id, p)| (p.match_index, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id)
                .ok_or(TransferError::NoCandidate)?,
        };
        let deadline = self.now + self.config.election_timeout_min_ns();
        let lead = self.lead_mut();
        lead.transfer = Some(Transfer {
            target,
            cause,
            deadline,
        });
        // Give up the lease now: the target's campaign may bypass stickiness.
        lead.lease_until = 0;
        lead.lease_round_floor = lead.round;
        self.fail_reads(ReadError::Transferring);
        self.maybe_send_timeout_now();
        Ok(target)
    }

    /// Proposes a membership change. Voter changes go through a joint configuration that the
    /// leader leaves on its own once committed; one change at a time.
    pub fn change_membership(
        &mut self,
        change: ConfChange,
        now: Nanos,
    ) -> Result<LogIndex, ConfChangeError> {
        self.observe(now);
        self.check_can_change()?;
        if let ConfChange::Promote(id) = change {
            if self.configs.current().learners.contains(&id) {
                self.check_caught_up(id)?;
            }
        }
        let target = membership::apply_change(self.configs.current(), change)?;
        Ok(self.propose_config(&target))
    }

    /// Proposes a change to the configuration with exactly `voters` and `learners`, however
    /// many members it adds, promotes or removes at once ({1,2,3} → {1,4,5}, 3 → 5 voters,
    /// 5 → 3): one joint configuration C_old,new, in which every decision needs a majority of
    /// the old voters and a majority of the new ones, then C_new, which the leader appends on
    /// its own once the joint entry is committed. Only the learners changing needs no joint
    /// step. Every new voter must be a learner of the current configuration within
    /// `promote_lag_max` entries of the leader's log, as for [`ConfChange::Promote`]; a voter
    /// may not become a learner in the same change. The same rules as `change_membership`
    /// hold otherwise: leader only, one change at a time, and
    /// [`abort_membership_change`](Self::abort_membership_change) goes back to the old voters.
    pub fn reconfigure(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        now: Nanos,
    ) -> Result<LogIndex, ConfChangeError> {
        self.observe(now);
        self.check_can_change()?;
        let target = membership::reconfigure(self.configs.current(), &voters, &learners)?;
        let promoted: Vec<NodeId> = voters
            .difference(&self.configs.current().voters)
            .copied()
            .collect();
        for id in promoted {
            self.check_caught_up(id)?;
        }
        Ok(self.propose_config(&target))
    }

    /// The promotion rule, the only one (as etcd's `member promote`): a learner is promoted only
    /// once caught up, because a voter that lags would count toward the quorum without being
    /// able to help it commit, and with a member down it could stall the cluster. Caught up:
    /// it has acknowledged entries (a match index above 0), and it lags at most
    /// `promote_lag_max` entries behind the leader's last index.
    fn check_caught_up(&self, id: NodeId) -> Result<(), ConfChangeError> {
        let matched = self
            .lead()
            .progress
            .get(&id)
            .map_or(LogIndex(0), |p| p.match_index);
        let last = self.log.last_index();
        let lag_max = self.config.promote_lag_max;
        if matched.0 == 0 || matched.0 + lag_max < last.0 {
            return Err(ConfChangeError::LearnerBehind {
                id,
                matched,
                last,
                lag_max,
            });
        }
        Ok(())
    }

    /// Appends the entry leading to `target` (the joint configuration when the voters change)
    /// and replicates it.
    fn propose_config(&mut self, target: &Membership) -> LogIndex {
        let entry = membership::next_entry(self.configs.current(), target);
        let index = self.append_entry(EntryPayload::Config(entry));
        self.broadcast_append();
        self.maybe_commit();
        index
    }

    /// Aborts a joint configuration, going back to the old voters. Safe whether or not the
    /// joint entry is committed: every configuration involved needs a majority of the old
    /// voters.
    pub fn abort_membership_change(&mut self, now: Nanos) -> Result<LogIndex, ConfChangeError> {
        self.observe(now);
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if !self.configs.current().is_joint() {
            return Err(ConfChangeError::NothingToAbort);
        }
        let back = membership::abort_joint(self.configs.current());
        let index = self.append_entry(EntryPayload::Config(back));
        self.broadcast_append();
        self.maybe_commit();
        Ok(index)
    }

    /// Starts a linearizable read identified by `ctx` (chosen by the caller, unique among its
    /// pending reads). The outcome comes out of [`take_read_states`](Self::take_read_states).
    pub fn read_index(&mut self, ctx: u64, now: Nanos) -> Result<(), ReadError> {
        self.observe(now);
        let confirming = self.leader_state.as_ref().map_or(0, |l| l.reads.len());
        let pending = confirming + self.reads_forwarded.len() + self.reads_awaiting_apply.len();
        if pending >= self.config.reads_pending_max {
            return Err(ReadError::Backpressure {
                pending,
                max: self.config.reads_pending_max,
            });
        }
        match (self.role, self.leader) {
            (Role::Leader, _) if self.lead().transfer.is_some() => Err(ReadError::Transferring),
            (Role::Leader, _) => {
                self.start_read(ctx, self.id);
                Ok(())
            }
            (Role::Follower | Role::Learner, Some(leader)) => {
                self.reads_forwarded.insert(ctx);
                self.send(leader, self.term, MessageBody::ReadIndex { ctx });
                Ok(())
            }
            _ => Err(ReadError::NoLeader),
        }
    }

    /// A lease read: while this node is writable, a read needs no round trip, only this node's
    /// apply index to reach the current commit index (a follower may already have applied
    /// writes this leader committed but not yet applied). The outcome comes out of
    /// [`take_read_states`](Self::take_read_states), at once when nothing is left to apply.
    pub fn lease_read(&mut self, ctx: u64, now: Nanos) -> Result<(), ReadError> {
        self.observe(now);
        if !self.is_writable(now) {
            return Err(match self.role {
                Role::Leader if self.lead().transfer.is_some() => ReadError::Transferring,
                _ => ReadError::NotLeader,
            });
        }
        self.reads_awaiting_apply
            .push_back((ctx, self.log.committed));
        self.release_reads();
        Ok(())
    }

    /// Snapshots the leader needs sent, available at any time.
    pub fn take_snapshot_requests(&mut self) -> Vec<SnapshotRequest> {
        std::mem::take(&mut self.snapshot_sends)
    }

    /// The caller's snapshot stream to `to` made progress (a chunk was acknowledged): the
    /// snapshot timeout starts again from `now`. The timeout thus bounds a stall, not the
    /// whole transfer: a large snapshot over a slow link completes as long as its chunks keep
    /// being acknowledged, and the leader does not start another stream over it. Does nothing
    /// unless this node leads and waits for a snapshot to reach `to`.
    pub fn snapshot_progress(&mut self, to: NodeId, now: Nanos) {
        self.observe(now);
        let now = self.now;
        let timeout = self.config.snapshot_timeout_ns();
        let Some(p) = self.progress_mut(to) else {
            return;
        };
        if let ProgressState::Snapshot { retry_at, .. } = &mut p.state {
            *retry_at = now.saturating_add(timeout);
        }
    }

    /// The snapshot stream to `to` ended with the follower's acknowledgement that it installed
    /// the snapshot through `index` durably (the stream's own ack, which the caller sees even
    /// when the follower's `SnapshotInstalled` message is lost). Appends resume with a probe
    /// just after `index` instead of waiting for the snapshot timeout. Does nothing unless
    /// this node leads and waits for a snapshot to reach `to`.
    pub fn snapshot_sent(&mut self, to: NodeId, index: LogIndex, now: Nanos) {
        self.observe(now);
        let Some(p) = self.progress_mut(to) else {
            return;
        };
        if matches!(p.state, ProgressState::Snapshot { .. }) {
            // A probe, not an acknowledgement: the follower's answer confirms the match.
            p.become_probe(index.next());
            self.send_append(to);
        }
    }

    /// The snapshot stream to `to` failed (the link dropped, the follower refused the install):
    /// a new one is asked for one minimum election timeout from now (raft-rs'
    /// `report_snapshot(Failure)`), not a whole snapshot timeout after the last progress.
    /// The delay keeps a follower that refuses every install (a full disk) from being sent a
    /// snapshot in a loop. Does nothing unless this node leads and waits for a snapshot to
    /// reach `to`.
    pub fn snapshot_failed(&mut self, to: NodeId, now: Nanos) {
        self.observe(now);
        let now = self.now;
        let retry = now.saturating_add(self.config.election_timeout_min_ns());
        let Some(p) = self.progress_mut(to) else {
            return;
        };
        if let ProgressState::Snapshot { retry_at, .. } = &mut p.state {
            *retry_at = (*retry_at).min(retry);
        }
    }

    /// The compaction policy: `Some(applied index)` once enough entries (or bytes) were applied
    /// since the last snapshot. The caller then snapshots its state machine at that index,
    /// makes it durable, and calls [`compact`](Self::compact).
    pub fn snapshot_due(&self) -> Option<LogIndex> {
        let applied = self.log.applied;
        let entries = applied.0.saturating_sub(self.log.snapshot_index().0);
        if entries == 0 {
            return None;
        }
        let due = entries >= self.config.compaction_entries_max
            || self.log.applied_bytes_since_snapshot() as u64 >= self.config.compaction_bytes_max;
        due.then_some(applied)
    }

    /// The caller holds a durable snapshot up to `index` (at most the applied index): the log
    /// prefix it covers is dropped.
    pub fn compact(&mut self, index: LogIndex) {
        let index = index.min(self.log.applied).min(self.log.persisted);
        if index <= self.log.snapshot_index() {
            return;
        }
        self.log.compact(index);
        self.configs.compact(index);
    }

    /// This node's caller installed, durably, a snapshot from `from` up to (`index`, `term`)
    /// with `membership`: the state machine and the log prefix are replaced. Tells the leader.
    /// Also call it when storage refused the snapshot as older than what it applied: the leader
    /// then learns where to resume.
    pub fn snapshot_installed(
        &mut self,
        from: NodeId,
        index: LogIndex,
        term: Term,
        membership: Membership,
        now: Nanos,
    ) {
        self.observe(now);
        if index <= self.log.applied {
            // Older than what we hold (storage refuses it too): tell the leader how far our log
            // is known to match its own — our commit index — so it resumes appending from
            // there instead of sending snapshots forever (etcd answers a stale snapshot so).
            let body = MessageBody::SnapshotInstalled {
                last_index: self.log.committed,
            };
            self.send(from, self.term, body);
            return;
        }
        let keep = self.log.install_snapshot(index, term);
        self.configs.install(index, membership, keep);
        self.on_membership_changed();
        self.release_reads();
        if self.term > Term(0) {
            let body = MessageBody::SnapshotInstalled { last_index: index };
            self.send(from, self.term, body);
        }
    }

    /// The log starts after this index (0 without a snapshot).
    pub fn snapshot_index(&self) -> LogIndex {
        self.log.snapshot_index()
    }

    /// Outcomes of reads started with [`read_index`](Self::read_index), available at any time.
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// Proposes a command. On the leader it is appended and replicated, and its index returned;
    /// the command is decided when an entry with that index and the current term is applied.
    pub fn propose(&mut self, data: Vec<u8>, now: Nanos) -> Result<(LogIndex, Term), ProposeError> {
        self.observe(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let max = self.config.uncommitted_bytes_max;
        let lead = self.lead_mut();
        if let Some(t) = lead.transfer {
            return Err(ProposeError::Transferring { target: t.target });
        }
        let size = entry_bytes(data.len());
        if lead.uncommitted_bytes + size > max {
            return Err(ProposeError::Backpressure {
                bytes: lead.uncommitted_bytes,
                max,
            });
        }
        lead.uncommitted_bytes += size;
        let index = self.append_entry(EntryPayload::Normal(data));
        self.broadcast_append();
        self.maybe_commit();
        Ok((index, self.term))
    }

    // ----- Outputs -----

    /// Messages that can be sent now, available even while a `Ready` is outstanding.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }

    /// Whether [`ready`](Self::ready) would return something.
    pub fn has_ready(&self) -> bool {
        if self.inflight.is_some() {
            return false;
        }
        !self.messages.is_empty()
            || !self.messages_after_persist.is_empty()
            || self.log.has_unstable()
            || self.hard_state() != self.handed_hard_state
            || self.log.applying < self.log.committed
            || self.soft_state() != self.reported_soft_state
    }

    /// The next batch of work; `None` while the previous one awaits [`advance`](Self::advance)
    /// or when there is nothing to do. See [`Ready`] for the caller's duties.
    pub fn ready(&mut self) -> Option<Ready> {
        assert_eq!(self.leader_state.is_some(), self.role == Role::Leader);
        if !self.has_ready() {
            return None;
        }
        let hard_state = self.hard_state();
        let hard_state = (hard_state != self.handed_hard_state).then(|| {
            self.handed_hard_state = hard_state;
            hard_state
        });
        let (truncate_from, entries) = self.log.take_unstable();
        let committed = self.log.take_committed(self.log.last_index());
        let soft_state = self.soft_state();
        let soft_state = (soft_state != self.reported_soft_state).then(|| {
            self.reported_soft_state = soft_state;
            soft_state
        });
        // A message held for durability that was written in an older term may promise what is
        // no longer true (its entries truncated by a newer leader before they were written): it
        // is stale, and dropping it is always safe.
        let term = self.term;
        self.messages_after_persist.retain(|m| m.term >= term);
        self.readies_handed_out += 1;
        let must_sync = !entries.is_empty()
            || truncate_from.is_some()
            || hard_state.is_some_and(|hs| (hs.term, hs.vote) != self.durable_term_vote);
        let ready = Ready {
            number: self.readies_handed_out,
            messages: self.take_messages(),
            batch: Batch {
                hard_state,
                truncate_from,
                entries,
                committed,
            },
            persisted_messages: std::mem::take(&mut self.messages_after_persist),
            soft_state,
            must_sync,
        };
        self.inflight = Some(InflightReady {
            number: ready.number,
            last_entry: ready.batch.entries.last().map(|e| (e.index, e.term)),
            hard_state: ready.batch.hard_state,
            issued_at: self.now,
        });
        Some(ready)
    }

    /// Committed entries that are durable here and not yet handed out, for a caller that
    /// applies them at once, outside the `Ready` cycle (in memory, on its own thread): they
    /// count as applied when this returns, and the reads waiting for them are released. It
    /// hands out nothing while the outstanding `Ready` still carries committed entries (they
    /// apply first, in order), and never an entry above the persisted index, so whatever the
    /// caller persists of its state machine lies within its durable log. The leader commits
    /// only what it has persisted, so on a leader this is every committed entry.
    pub fn take_applicable(&mut self) -> Vec<Entry> {
        if self.log.applying != self.log.applied {
            return Vec::new();
        }
        let entries = self.log.take_committed(self.log.persisted);
        if !entries.is_empty() {
            self.log.mark_applied();
            self.release_reads();
        }
        entries
    }

    /// Acknowledges the outstanding `Ready`, by its [`number`](Ready::number): its batch is
    /// durable, its committed entries applied, its persisted messages sent. Acknowledging any
    /// other number (or none outstanding) is a bug in the caller, and panics.
    pub fn advance(&mut self, number: u64) {
        let done = self
            .inflight
            .take()
            .expect("advance without an outstanding Ready");
        assert!(
            done.number == number,
            "advance({number}) while Ready {} is outstanding",
            done.number
        );
        if let Some((index, term)) = done.last_entry {
            self.log.persisted_to(index, term);
        }
        if let Some(hs) = done.hard_state {
            self.durable_term_vote = (hs.term, hs.vote);
        }
        self.log.mark_applied();
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.release_reads();
        self.count_own_vote();
    }

    /// The target of the leadership hand-over in progress, if this node leads and is handing
    /// over. `None` again once the target took over or the hand-over was abandoned.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.leader_state
            .as_ref()
            .and_then(|l| l.transfer)
            .map(|t| t.target)
    }

    /// The term and vote made durable by the last acknowledged `Ready` (what storage holds):
    /// a batch that keeps them need not write the hard state again for a moved commit index.
    pub fn durable_term_vote(&self) -> (Term, Option<NodeId>) {
        self.durable_term_vote
    }

    /// The hand-over that made this node campaign in its current term, if one did (`None`
    /// after an election of its own timer, or once the term moved on).
    pub fn transfer_campaign(&self) -> Option<TransferCampaign> {
        self.transfer_campaign.filter(|c| c.term == self.term)
    }

    pub fn status(&self, now: Nanos) -> Status {
        let lease = self
            .leader_state
            .as_ref()
            .map(|l| l.lease_until)
            .filter(|&until| until > 0);
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.log.committed,
            applied_index: self.log.applied,
            last_index: self.log.last_index(),
            lease_deadline: lease,
            writable: self.is_writable(now),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn membership(&self) -> &Membership {
        self.configs.current()
    }

    /// The term of the entry at `index` in this node's log, if it holds one there.
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// Rounds at or below this one no longer extend this leader's lease: the newest round
    /// carried by a TimeoutNow it sent in this term (0 if none).
    pub fn lease_round_floor(&self) -> u64 {
        self.leader_state
            .as_ref()
            .map_or(0, |l| l.lease_round_floor)
    }

    /// The last index known durable on this node.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }

    /// On a leader, how far `id`'s log is known to match its own (`None` on a follower, or for
    /// a node it does not replicate to).
    pub fn match_index(&self, id: NodeId) -> Option<LogIndex> {
        if id == self.id {
            return (self.role == Role::Leader).then_some(self.log.persisted);
        }
        let leader = self.leader_state.as_ref()?;
        leader.progress.get(&id).map(|p| p.match_index)
    }

    /// Every field but the clock reading, the configuration and the random generator, for
    /// tests that check an input changed nothing.
    #[cfg(test)]
    pub(crate) fn debug_state(&self) -> String {
        format!(
            "term {:?} vote {:?} log {:?} configs {:?} role {:?} leader {:?} \
             election_deadline {} last_leader_contact {} leader_round_seen {} \
             restart_refusal_until {} votes {:?} reads_forwarded {:?} reads_awaiting_apply {:?} \
             read_states {:?} snapshot_sends {:?} leader_state {:?} transfer_campaign {:?} messages {:?} \
             messages_after_persist {:?} handed_hard_state {:?} durable_term_vote {:?} \
             inflight {:?} readies_handed_out {} reported_soft_state {:?}",
            self.term,
            self.vote,
            self.log,
            self.configs,
            self.role,
            self.leader,
            self.election_deadline,
            self.last_leader_contact,
            self.leader_round_seen,
            self.restart_refusal_until,
            self.votes,
            self.reads_forwarded,
            self.reads_awaiting_apply,
            self.read_states,
            self.snapshot_sends,
            self.leader_state,
            self.transfer_campaign,
            self.messages,
            self.messages_after_persist,
            self.handed_hard_state,
            self.durable_term_vote,
            self.inflight,
            self.readies_handed_out,
            self.reported_soft_state,
        )
    }

    // ----- Plumbing -----

    /// The replication progress of `id`, while this node leads.
    fn progress_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.leader_state
            .as_mut()
            .and_then(|l| l.progress.get_mut(&id))
    }

    fn observe(&mut self, now: Nanos) {
        // The caller's clock is monotonic; tolerate equal readings.
        self.now = self.now.max(now);
    }

    /// The leader's state; only called where this node is known to lead.
    fn lead(&self) -> &LeaderState {
        self.leader_state.as_ref().expect("only a leader gets here")
    }

    fn lead_mut(&mut self) -> &mut LeaderState {
        self.leader_state.as_mut().expect("only a leader gets here")
    }

    fn voters_except_me(&self) -> Vec<NodeId> {
        let mut voters: Vec<NodeId> = self.configs.current().voters.iter().copied().collect();
        voters.extend(self.configs.current().voters_outgoing.iter().copied());
        voters.sort();
        voters.dedup();
        voters.retain(|&id| id != self.id);
        voters
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            term: self.term,
            leader: self.leader,
        }
    }

    /// Queues a message, holding it until the next durable write when it promises durability:
    /// a vote request or grant, an append acknowledgement beyond what is durable, or anything
    /// sent while our term or vote is not yet durable.
    fn send(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let needs_durability = match &body {
            MessageBody::RequestVote { pre_vote, .. } => !pre_vote,
            MessageBody::RequestVoteResponse { pre_vote, granted } => !pre_vote && *granted,
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                ..
            } => *success && *match_index > self.log.persisted,
            _ => false,
        };
        let term_vote_durable = self.durable_term_vote == (self.term, self.vote);
        let m = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if needs_durability || !term_vote_durable {
            self.messages_after_persist.push(m);
        } else {
            self.messages.push(m);
        }
    }
}

/// The bytes a proposal of `data_len` bytes counts for against `uncommitted_bytes_max`.
fn entry_bytes(data_len: usize) -> usize {
    data_len + 24
}

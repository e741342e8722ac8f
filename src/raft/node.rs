//! `RaftNode`: one member's consensus state machine — elections, replication, commit and the
//! leader lease — driven by `tick`, `step` and `propose`, drained through `ready`/`advance`.
//!
//! Invariants kept here: at most one vote per term, made durable before it is announced; a
//! leader counts its own entries toward a quorum only once they are durable; only entries of
//! the current term are committed by counting replicas; `writable` implies leader, a valid lease
//! and this term's no-op applied.

use super::config::{Config, ConfigError};
use super::log::RaftLog;
use super::membership::{self, ConfChange, ConfChangeError, ConfigLog};
use super::message::{ConflictHint, Message, MessageBody};
use super::progress::{Progress, ProgressState};
use super::quorum::{self, VoteResult};
use super::ready::{Ready, SoftState};
use super::rng::RaftRng;
use super::types::{
    Entry, EntryPayload, HardState, LogIndex, Membership, Nanos, NodeId, Role, Term,
};
use std::collections::{BTreeMap, VecDeque};
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

/// Why a message was refused. The message came from the network: never a panic.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StepError {
    #[error("message for {to} delivered to {me}")]
    WrongRecipient { to: NodeId, me: NodeId },
    #[error("message from {from}, which is not a member")]
    UnknownSender { from: NodeId },
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
    last_entry: Option<(LogIndex, Term)>,
    hard_state: Option<HardState>,
    issued_at: Nanos,
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
    configs: ConfigLog,
    /// `configs.current()`, cached.
    membership: Membership,

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
    reads_forwarded: BTreeMap<u64, ()>,
    reads_awaiting_apply: VecDeque<(u64, LogIndex)>,
    read_states: Vec<ReadState>,

    // Leader state.
    progress: BTreeMap<NodeId, Progress>,
    /// The current heartbeat round and when each recent round started, oldest first.
    round: u64,
    round_starts: VecDeque<(u64, Nanos)>,
    next_heartbeat_at: Nanos,
    lease_until: Nanos,
    /// The newest round a quorum has acknowledged.
    quorum_round: u64,
    /// Rounds at or below this never extend the lease again: a hand-over started then, and a
    /// voter that saw no newer round may vote for the target despite stickiness.
    lease_round_floor: u64,
    /// This term's no-op; the node is writable only once it is applied.
    noop_index: LogIndex,
    uncommitted_bytes: usize,
    transfer: Option<Transfer>,
    reads: VecDeque<PendingRead>,
    /// When the current joint configuration was first seen as leader (for the abort timeout).
    joint_since: Option<Nanos>,

    // Output.
    messages: Vec<Message>,
    messages_after_persist: Vec<Message>,
    /// The hard state last handed out, and the term and vote known durable.
    handed_hard_state: HardState,
    durable_term_vote: (Term, Option<NodeId>),
    inflight: Option<InflightReady>,
    reported_soft_state: SoftState,
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
        let membership = configs.current().clone();
        let role = if membership.is_voter(config.id) {
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
            membership,
            role,
            leader: None,
            election_deadline: now,
            last_leader_contact: now,
            leader_round_seen: 0,
            restart_refusal_until: now + restart_refusal_ns,
            votes: BTreeMap::new(),
            reads_forwarded: BTreeMap::new(),
            reads_awaiting_apply: VecDeque::new(),
            read_states: Vec::new(),
            progress: BTreeMap::new(),
            round: 0,
            round_starts: VecDeque::new(),
            next_heartbeat_at: now,
            lease_until: 0,
            quorum_round: 0,
            lease_round_floor: 0,
            noop_index: LogIndex(0),
            uncommitted_bytes: 0,
            transfer: None,
            reads: VecDeque::new(),
            joint_since: None,
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            handed_hard_state: hard_state,
            durable_term_vote: (hard_state.term, hard_state.vote),
            inflight: None,
            reported_soft_state: SoftState {
                role,
                term: hard_state.term,
                leader: None,
            },
        };
        node.reset_election_timer();
        Ok(node)
    }

    // ----- Inputs -----

    /// Advances time: campaigns when the election timer fires, sends heartbeats, checks quorum.
    pub fn tick(&mut self, now: Nanos) {
        self.observe(now);
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Learner => {}
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if now >= self.election_deadline {
                    self.campaign(self.config.pre_vote);
                }
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
            return Err(StepError::UnknownSender { from: m.from });
        }
        if matches!(m.body, MessageBody::RequestVote { .. }) && !self.membership.is_voter(m.from) {
            // A removed node that does not know it yet must not disrupt the cluster.
            return Ok(());
        }
        // Decided on the state before this message changes it: adopting a hand-over's term
        // forgets the leader whose round the decision compares against.
        let vote_refused = match &m.body {
            MessageBody::RequestVote { transfer_round, .. } => {
                self.refuses_vote(m.from, m.term, *transfer_round)
            }
            _ => false,
        };
        if m.term > self.term {
            match &m.body {
                MessageBody::RequestVote { .. } if vote_refused => {
                    // Stickiness: we heard from a live leader within the minimum election
                    // timeout (or we are the leader). Refuse without even adopting the term, so
                    // a disruptive node cannot depose a healthy leader; the lease relies on it.
                    return Ok(());
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match &m.body {
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                    // A deposed leader: tell it our term so it steps down.
                    self.send(
                        m.from,
                        self.term,
                        MessageBody::HeartbeatResponse { round: 0 },
                    );
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    self.send(
                        m.from,
                        self.term,
                        MessageBody::RequestVoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return Ok(());
        }

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
            MessageBody::TimeoutNow { round } => {
                // Only our leader of this term may hand over to us; campaign at once.
                if self.leader == Some(m.from) && self.membership.is_voter(self.id) {
                    self.campaign_now(Some(round));
                }
            }
            MessageBody::ReadIndex { ctx } => {
                if self.role == Role::Leader && self.transfer.is_none() {
                    self.start_read(ctx, m.from);
                } else {
                    let body = MessageBody::ReadIndexResponse { ctx, index: None };
                    self.send(m.from, self.term, body);
                }
            }
            MessageBody::ReadIndexResponse { ctx, index } => {
                if self.reads_forwarded.remove(&ctx).is_some() {
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
        self.observe(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        let target = match target {
            Some(t) if t == self.id => return Err(TransferError::AlreadyLeader { target: t }),
            Some(t) if !self.membership.is_voter(t) => {
                return Err(TransferError::NotVoter { target: t })
            }
            Some(t) => t,
            None => self
                .progress
                .iter()
                .filter(|(id, _)| self.membership.is_voter(**id))
                .max_by_key(|(id, p)| (p.match_index, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id)
                .ok_or(TransferError::NoCandidate)?,
        };
        self.transfer = Some(Transfer {
            target,
            deadline: self.now + self.config.election_timeout_min_ns(),
        });
        // Give up the lease now: the target's campaign may bypass stickiness.
        self.lease_until = 0;
        self.lease_round_floor = self.round;
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
            let matched = self
                .progress
                .get(&id)
                .map_or(LogIndex(0), |p| p.match_index);
            let last = self.log.last_index();
            let lag_max = self.config.promote_lag_max;
            if self.membership.learners.contains(&id) && matched.0 + lag_max < last.0 {
                return Err(ConfChangeError::LearnerBehind {
                    id,
                    matched,
                    last,
                    lag_max,
                });
            }
        }
        let target = membership::apply_change(&self.membership, change)?;
        let entry = membership::next_entry(&self.membership, &target);
        let index = self.append_entry(EntryPayload::Config(entry));
        self.broadcast_append();
        self.maybe_commit();
        Ok(index)
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
        if !self.membership.is_joint() {
            return Err(ConfChangeError::NothingToAbort);
        }
        let back = membership::abort_joint(&self.membership);
        let index = self.append_entry(EntryPayload::Config(back));
        self.broadcast_append();
        self.maybe_commit();
        Ok(index)
    }

    fn check_can_change(&self) -> Result<(), ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(ConfChangeError::Transferring);
        }
        let index = self.configs.current_index();
        if index > self.log.committed || self.membership.is_joint() {
            return Err(ConfChangeError::ChangeInProgress { index });
        }
        Ok(())
    }

    /// Starts a linearizable read identified by `ctx` (chosen by the caller, unique among its
    /// pending reads). The outcome comes out of [`take_read_states`](Self::take_read_states).
    pub fn read_index(&mut self, ctx: u64, now: Nanos) -> Result<(), ReadError> {
        self.observe(now);
        let pending =
            self.reads.len() + self.reads_forwarded.len() + self.reads_awaiting_apply.len();
        if pending >= self.config.reads_pending_max {
            return Err(ReadError::Backpressure {
                pending,
                max: self.config.reads_pending_max,
            });
        }
        match (self.role, self.leader) {
            (Role::Leader, _) if self.transfer.is_some() => Err(ReadError::Transferring),
            (Role::Leader, _) => {
                self.start_read(ctx, self.id);
                Ok(())
            }
            (Role::Follower | Role::Learner, Some(leader)) => {
                self.reads_forwarded.insert(ctx, ());
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
                Role::Leader if self.transfer.is_some() => ReadError::Transferring,
                _ => ReadError::NotLeader,
            });
        }
        self.reads_awaiting_apply
            .push_back((ctx, self.log.committed));
        self.release_reads();
        Ok(())
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
        if let Some(t) = self.transfer {
            return Err(ProposeError::Transferring { target: t.target });
        }
        let max = self.config.uncommitted_bytes_max;
        let size = entry_bytes(data.len());
        if self.uncommitted_bytes + size > max {
            return Err(ProposeError::Backpressure {
                bytes: self.uncommitted_bytes,
                max,
            });
        }
        self.uncommitted_bytes += size;
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
        if !self.has_ready() {
            return None;
        }
        let hard_state = self.hard_state();
        let hard_state = (hard_state != self.handed_hard_state).then(|| {
            self.handed_hard_state = hard_state;
            hard_state
        });
        let (truncate_from, entries) = self.log.take_unstable();
        let committed_entries = self.log.take_committed(self.log.last_index());
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
        let ready = Ready {
            messages: self.take_messages(),
            hard_state,
            truncate_from,
            entries,
            committed_entries,
            persisted_messages: std::mem::take(&mut self.messages_after_persist),
            soft_state,
        };
        self.inflight = Some(InflightReady {
            last_entry: ready.entries.last().map(|e| (e.index, e.term)),
            hard_state: ready.hard_state,
            issued_at: self.now,
        });
        Some(ready)
    }

    /// Acknowledges the outstanding `Ready`: its writes are durable, its committed entries
    /// applied, its persisted messages sent.
    pub fn advance(&mut self) {
        let done = self
            .inflight
            .take()
            .expect("advance without an outstanding Ready");
        if let Some((index, term)) = done.last_entry {
            self.log.persisted_to(index, term);
        }
        if let Some(hs) = done.hard_state {
            self.durable_term_vote = (hs.term, hs.vote);
        }
        self.log.applied = self.log.applying;
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.release_reads();
    }

    pub fn status(&self, now: Nanos) -> Status {
        let lease = (self.role == Role::Leader && self.lease_until > 0).then_some(self.lease_until);
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
        &self.membership
    }

    /// The term of the entry at `index` in this node's log, if it holds one there.
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// Rounds at or below this one no longer extend this leader's lease: the newest round
    /// carried by a TimeoutNow it sent in this term (0 if none).
    pub fn lease_round_floor(&self) -> u64 {
        self.lease_round_floor
    }

    /// The last index known durable on this node.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }

    // ----- Elections (Raft §5.2, §9.6 pre-vote, §6.4 check-quorum) -----

    /// Whether to refuse `candidate`'s vote (or pre-vote) for `term` on stickiness grounds. A
    /// hand-over campaign is accepted despite stickiness only when it comes right after our
    /// leader's term and this node has seen no newer round from that leader than the hand-over.
    fn refuses_vote(&self, candidate: NodeId, term: Term, transfer_round: Option<u64>) -> bool {
        self.would_refuse_vote(self.now, candidate, term, transfer_round)
    }

    /// Whether a vote request from `candidate` for `term` arriving at `now` would be refused on
    /// stickiness grounds; `transfer_round` as in `RequestVote`. For checks and tests.
    pub fn would_refuse_vote(
        &self,
        now: Nanos,
        candidate: NodeId,
        term: Term,
        transfer_round: Option<u64>,
    ) -> bool {
        if !self.refuses_votes(now) {
            return false;
        }
        if now < self.restart_refusal_until {
            return true;
        }
        let Some(round) = transfer_round else {
            return true;
        };
        if self.role == Role::Leader {
            // Our own hand-over: let the target win.
            return self.transfer.is_none_or(|t| t.target != candidate);
        }
        !(self.leader.is_some() && term == self.term.next() && round >= self.leader_round_seen)
    }

    /// Whether this node would refuse any vote at `now`: it leads, or heard from a leader (or
    /// restarted) less than a minimum election timeout ago. A leader's lease rests on a quorum
    /// of such refusals.
    pub fn refuses_votes(&self, now: Nanos) -> bool {
        self.role == Role::Leader
            || now.saturating_sub(self.last_leader_contact) < self.config.election_timeout_min_ns()
    }

    fn campaign(&mut self, pre_vote: bool) {
        self.campaign_with(pre_vote, None);
    }

    /// A hand-over campaign: no pre-vote, and voters may accept despite stickiness.
    fn campaign_now(&mut self, transfer_round: Option<u64>) {
        self.campaign_with(false, transfer_round);
    }

    fn campaign_with(&mut self, pre_vote: bool, transfer_round: Option<u64>) {
        if !self.membership.is_voter(self.id) {
            return;
        }
        self.reset_election_timer();
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.id, true);
        let term = if pre_vote {
            self.role = Role::PreCandidate;
            self.term.next()
        } else {
            self.role = Role::Candidate;
            self.term = self.term.next();
            self.vote = Some(self.id);
            self.term
        };
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voters_except_me() {
            self.send(
                peer,
                term,
                MessageBody::RequestVote {
                    pre_vote,
                    last_log_index,
                    last_log_term,
                    transfer_round,
                },
            );
        }
        // Reads forwarded to the old leader will not be answered by it any more.
        self.fail_forwarded_reads();
        self.count_votes(pre_vote);
    }

    fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
        refused: bool,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let granted = can_vote && !refused && self.log.is_up_to_date(last_log_index, last_log_term);
        if granted && !pre_vote {
            self.vote = Some(from);
            self.reset_election_timer();
        }
        let reply_term = if granted { term } else { self.term };
        self.send(
            from,
            reply_term,
            MessageBody::RequestVoteResponse { pre_vote, granted },
        );
    }

    fn handle_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        let expected = match (pre_vote, self.role) {
            (true, Role::PreCandidate) => {
                term == self.term.next() || (!granted && term == self.term)
            }
            (false, Role::Candidate) => term == self.term,
            _ => false,
        };
        if !expected || !self.membership.is_voter(from) {
            return;
        }
        self.votes.insert(from, granted);
        self.count_votes(pre_vote);
    }

    fn count_votes(&mut self, pre_vote: bool) {
        match quorum::vote_result(&self.membership, |id| self.votes.get(&id).copied()) {
            VoteResult::Won if pre_vote => self.campaign(false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if self.role == Role::Leader {
            // We counted ourselves in every round of our lease: keep refusing votes until the
            // lease we advertised is certainly over.
            self.last_leader_contact = self.now;
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = if self.membership.is_voter(self.id) {
            Role::Follower
        } else {
            Role::Learner
        };
        if self.leader != leader {
            self.leader_round_seen = 0;
            self.fail_forwarded_reads();
        }
        self.fail_reads(ReadError::NotLeader);
        self.transfer = None;
        self.quorum_round = 0;
        self.lease_round_floor = 0;
        self.leader = leader;
        if leader.is_some() {
            self.last_leader_contact = self.now;
        }
        self.votes.clear();
        self.progress.clear();
        self.round_starts.clear();
        self.lease_until = 0;
        self.uncommitted_bytes = 0;
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        assert_eq!(self.vote, Some(self.id));
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        let last = self.log.last_index();
        self.progress = self
            .membership
            .members()
            .into_iter()
            .filter(|&id| id != self.id)
            .map(|id| (id, Progress::new(last, self.now)))
            .collect();
        self.round = 0;
        self.round_starts.clear();
        self.lease_until = 0;
        self.quorum_round = 0;
        self.lease_round_floor = 0;
        self.transfer = None;
        self.uncommitted_bytes = 0;
        // Raft §8: a new leader commits an entry of its own term, which commits everything
        // before it; until it is applied the host must not write.
        self.joint_since = self.membership.is_joint().then_some(self.now);
        self.noop_index = self.append_entry(EntryPayload::Noop);
        self.start_round();
        self.broadcast_append();
        self.maybe_commit();
    }

    /// A message from the leader of our term: follow it, and remember the contact.
    fn accept_leader(&mut self, from: NodeId, term: Term, round: u64) -> Result<(), StepError> {
        assert_eq!(term, self.term);
        if self.role == Role::Leader {
            return Err(StepError::SecondLeader {
                from,
                term,
                me: self.id,
            });
        }
        if self.role != Role::Follower && self.role != Role::Learner || self.leader != Some(from) {
            self.become_follower(term, Some(from));
        }
        self.last_leader_contact = self.now;
        self.leader_round_seen = self.leader_round_seen.max(round);
        self.reset_election_timer();
        Ok(())
    }

    /// Appends an entry of the current term as leader; a configuration takes effect at once.
    fn append_entry(&mut self, payload: EntryPayload) -> LogIndex {
        let config = match &payload {
            EntryPayload::Config(m) => Some(m.clone()),
            _ => None,
        };
        let index = self.log.append_new(self.term, payload);
        if let Some(m) = config {
            self.configs.push(index, m);
            self.on_membership_changed();
        }
        index
    }

    /// Brings role and replication in line with the configuration in force.
    fn on_membership_changed(&mut self) {
        self.membership = self.configs.current().clone();
        let voter = self.membership.is_voter(self.id);
        match self.role {
            Role::Leader => {
                let members = self.membership.members();
                self.progress.retain(|id, _| members.contains(id));
                let last = self.log.last_index();
                for id in members {
                    if id != self.id && !self.progress.contains_key(&id) {
                        self.progress.insert(id, Progress::new(last, self.now));
                    }
                }
                self.joint_since = match (self.membership.is_joint(), self.joint_since) {
                    (true, None) => Some(self.now),
                    (true, since) => since,
                    (false, _) => None,
                };
                // The lease must rest on a quorum of the configuration in force (both halves
                // of a joint one): recompute it from the rounds each member acknowledged.
                self.lease_until = 0;
                self.quorum_round = 0;
                self.update_lease();
            }
            Role::Follower | Role::Learner => {
                self.role = if voter { Role::Follower } else { Role::Learner };
            }
            Role::Candidate | Role::PreCandidate => {
                if !voter {
                    self.become_follower(self.term, None);
                }
            }
        }
    }

    fn reset_election_timer(&mut self) {
        let min = self.config.election_timeout_min_ns();
        let jitter = ((self.rng.next_u64() as u128 * min as u128) >> 64) as u64;
        self.election_deadline = self.now + min + jitter;
    }

    // ----- Replication (Raft §5.3) -----

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        round: u64,
    ) -> Result<(), StepError> {
        for (i, e) in entries.iter().enumerate() {
            let ok = e.index.0 == prev_log_index.0 + 1 + i as u64
                && e.term <= self.term
                && (i == 0 || e.term >= entries[i - 1].term)
                && e.term >= prev_log_term;
            if !ok {
                return Err(StepError::MalformedEntries {
                    from,
                    prev: prev_log_index,
                });
            }
        }
        let (mut prev, mut prev_term, mut entries) = (prev_log_index, prev_log_term, &entries[..]);
        let committed = self.log.committed;
        if prev < committed {
            // Everything up to our commit index matches the leader's log (leader completeness):
            // skip the part of the message it covers.
            let skip = ((committed.0 - prev.0) as usize).min(entries.len());
            entries = &entries[skip..];
            prev = committed;
            prev_term = self
                .log
                .term(committed)
                .expect("commit index inside the log");
        }
        if !self.log.matches(prev, prev_term) {
            let conflict = if prev > self.log.last_index() {
                ConflictHint {
                    term: None,
                    first_index: self.log.last_index().next(),
                }
            } else {
                ConflictHint {
                    term: self.log.term(prev),
                    first_index: self.log.first_index_of_term_at(prev),
                }
            };
            let body = MessageBody::AppendEntriesResponse {
                success: false,
                match_index: prev_log_index,
                conflict: Some(conflict),
                round,
            };
            self.send(from, self.term, body);
            return Ok(());
        }
        let (last_new, changed_from) = self.log.append_after(prev, entries);
        if let Some(from) = changed_from {
            // Configurations take effect when appended, and are forgotten when truncated.
            self.configs.truncate_from(from);
            for e in entries.iter().filter(|e| e.index >= from) {
                if let EntryPayload::Config(m) = &e.payload {
                    self.configs.push(e.index, m.clone());
                }
            }
            self.on_membership_changed();
        }
        self.log.commit_to(leader_commit.min(last_new));
        let body = MessageBody::AppendEntriesResponse {
            success: true,
            match_index: last_new,
            conflict: None,
            round,
        };
        self.send(from, self.term, body);
        Ok(())
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        match_index: LogIndex,
        conflict: Option<ConflictHint>,
        round: u64,
    ) {
        self.heard_from(from, round);
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        if success {
            if match_index > self.log.last_index() {
                return; // Not an index we ever sent: ignore rather than trust it.
            }
            if p.acknowledge(match_index) {
                self.maybe_commit();
            }
            if self.transfer.is_some_and(|t| t.target == from) {
                self.maybe_send_timeout_now();
            }
            self.send_append(from);
            return;
        }
        // A rejection of `match_index` as prev: find where to probe next.
        let rejected = match_index;
        let stale = match p.state {
            ProgressState::Replicate => rejected <= p.match_index,
            ProgressState::Probe => rejected != p.next_index.prev(),
        };
        if stale || rejected == LogIndex(0) {
            return;
        }
        let next = match conflict {
            None => rejected,
            Some(ConflictHint {
                term: None,
                first_index,
            }) => first_index,
            Some(ConflictHint {
                term: Some(term),
                first_index,
            }) => match self.log.last_index_of_term(term, rejected) {
                Some(i) => i.next(),
                None => first_index,
            },
        };
        let p = self.progress.get_mut(&from).expect("checked above");
        p.become_probe(next.min(rejected));
        self.send_append(from);
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        self.heard_from(from, round);
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        if p.match_index < last {
            p.maybe_lost(round);
            self.send_append(from);
        }
    }

    /// Records that `from` answered in our term, which counts for CheckQuorum and the lease.
    fn heard_from(&mut self, from: NodeId, round: u64) {
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.last_heard = self.now;
        if round > p.acked_round && round <= self.round {
            p.acked_round = round;
            self.update_lease();
        }
    }

    fn send_append(&mut self, to: NodeId) {
        let Some(p) = self.progress.get(&to) else {
            return;
        };
        if p.is_paused(self.config.inflight_max) {
            return;
        }
        if p.state == ProgressState::Replicate && p.next_index > self.log.last_index() {
            return; // Nothing new; heartbeats carry the commit index.
        }
        let prev = p.next_index.prev();
        let prev_term = self
            .log
            .term(prev)
            .expect("prev inside the log (no compaction yet)");
        let entries = self.log.slice(
            p.next_index,
            self.config.append_entries_max,
            self.config.append_bytes_max,
        );
        let last = entries.last().map_or(prev, |e| e.index);
        let had_entries = !entries.is_empty();
        let round = self.round;
        self.progress
            .get_mut(&to)
            .expect("checked above")
            .sent(last, had_entries, round);
        let body = MessageBody::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.log.committed,
            round,
        };
        self.send(to, self.term, body);
    }

    fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer);
        }
    }

    /// Commits the highest index a quorum holds durably, if it is of the current term (§5.4.2).
    fn maybe_commit(&mut self) -> bool {
        let me = self.id;
        let persisted = self.log.persisted;
        let progress = &self.progress;
        let index = quorum::quorum_value(
            &self.membership,
            |id| {
                if id == me {
                    persisted
                } else {
                    progress.get(&id).map_or(LogIndex(0), |p| p.match_index)
                }
            },
            LogIndex(u64::MAX),
        );
        if index <= self.log.committed || self.log.term(index) != Some(self.term) {
            return false;
        }
        let mut i = self.log.committed.next();
        while i <= index {
            if let Some(Entry {
                term,
                payload: EntryPayload::Normal(data),
                ..
            }) = self.log.entry(i)
            {
                if *term == self.term {
                    self.uncommitted_bytes = self
                        .uncommitted_bytes
                        .saturating_sub(entry_bytes(data.len()));
                }
            }
            i = i.next();
        }
        self.log.commit_to(index);
        self.advance_reads();
        self.after_config_commit();
        true
    }

    /// Once the newest configuration is committed: leave a joint configuration (C_new), or, if
    /// this leader is no longer a voter, step down.
    fn after_config_commit(&mut self) {
        if self.role != Role::Leader || self.configs.current_index() > self.log.committed {
            return;
        }
        if self.membership.is_joint() {
            let next = membership::leave_joint(&self.membership);
            self.append_entry(EntryPayload::Config(next));
            self.broadcast_append();
            self.maybe_commit();
        } else if !self.membership.is_voter(self.id) {
            self.become_follower(self.term, None);
        }
    }

    // ----- Heartbeats, CheckQuorum and the lease -----

    fn tick_leader(&mut self) {
        if self.config.check_quorum {
            let window = self.config.election_timeout_min_ns();
            let now = self.now;
            let progress = &self.progress;
            let me = self.id;
            let active = quorum::is_quorum(&self.membership, |id| {
                id == me
                    || progress
                        .get(&id)
                        .is_some_and(|p| now.saturating_sub(p.last_heard) < window)
            });
            if !active {
                self.become_follower(self.term, None);
                return;
            }
        }
        if let Some(r) = &self.inflight {
            // A leader whose disk stalls must not keep leading (etcd #13527): its followers
            // would never elect anyone else while it answers heartbeats.
            if self.now.saturating_sub(r.issued_at) > self.config.persist_stall_max_ms * 1_000_000 {
                self.become_follower(self.term, None);
                return;
            }
        }
        if let Some(since) = self.joint_since {
            let timeout = self.config.conf_change_timeout_ms * 1_000_000;
            if self.membership.is_joint() && self.now.saturating_sub(since) > timeout {
                // The new voters could not form a quorum in time (raft-rs #192): go back.
                let _ = self.abort_membership_change(self.now);
            }
        }
        if let Some(t) = self.transfer {
            if self.now >= t.deadline {
                // The target did not take over in time: resume. The lease comes back only with
                // rounds newer than any TimeoutNow we sent (see `lease_round_floor`).
                self.transfer = None;
            }
        }
        if self.now >= self.next_heartbeat_at {
            self.broadcast_heartbeat();
        }
    }

    /// Starts a new round and sends every follower a heartbeat carrying it.
    fn broadcast_heartbeat(&mut self) {
        self.start_round();
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            let p = &self.progress[&peer];
            let commit = self.log.committed.min(p.match_index);
            let round = self.round;
            self.send(peer, self.term, MessageBody::Heartbeat { commit, round });
        }
    }

    /// Sends TimeoutNow to the transfer target once its log matches ours; until then keeps
    /// replicating to it.
    fn maybe_send_timeout_now(&mut self) {
        let Some(t) = self.transfer else { return };
        let caught_up = self
            .progress
            .get(&t.target)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            // Voters that saw a round newer than this one refuse the hand-over campaign, and
            // no round up to this one may extend our lease any more.
            self.lease_round_floor = self.lease_round_floor.max(self.round);
            let round = self.round;
            self.send(t.target, self.term, MessageBody::TimeoutNow { round });
        } else {
            self.send_append(t.target);
        }
    }

    // ----- Linearizable reads (Raft thesis §6.4) -----

    fn start_read(&mut self, ctx: u64, from: NodeId) {
        // A round started after the request: its acknowledgement by a quorum proves no newer
        // leader existed when the read arrived.
        self.broadcast_heartbeat();
        self.reads.push_back(PendingRead {
            ctx,
            from,
            round: self.round,
            index: None,
        });
        self.advance_reads();
    }

    /// Gives pending reads their index once this term's no-op is committed (the commit index
    /// then covers every write acknowledged by any leader), and answers those whose round a
    /// quorum has acknowledged.
    fn advance_reads(&mut self) {
        let term_committed = self.noop_index > LogIndex(0) && self.log.committed >= self.noop_index;
        let committed = self.log.committed;
        for r in self.reads.iter_mut() {
            if r.index.is_none() && term_committed {
                r.index = Some(committed);
            }
        }
        while let Some(&r) = self.reads.front() {
            let Some(index) = r.index else { break };
            if r.round > self.quorum_round {
                break;
            }
            self.reads.pop_front();
            if r.from == self.id {
                self.reads_awaiting_apply.push_back((r.ctx, index));
            } else {
                let body = MessageBody::ReadIndexResponse {
                    ctx: r.ctx,
                    index: Some(index),
                };
                self.send(r.from, self.term, body);
            }
        }
        self.release_reads();
    }

    /// Delivers confirmed reads once this node has applied their index.
    fn release_reads(&mut self) {
        let applied = self.log.applied;
        let states = &mut self.read_states;
        self.reads_awaiting_apply.retain(|&(ctx, index)| {
            let ready = index <= applied;
            if ready {
                states.push(ReadState {
                    ctx,
                    result: Ok(index),
                });
            }
            !ready
        });
    }

    /// Fails the reads this node was confirming as leader.
    fn fail_reads(&mut self, err: ReadError) {
        for r in std::mem::take(&mut self.reads) {
            if r.from == self.id {
                self.read_states.push(ReadState {
                    ctx: r.ctx,
                    result: Err(err.clone()),
                });
            } else {
                let body = MessageBody::ReadIndexResponse {
                    ctx: r.ctx,
                    index: None,
                };
                self.send(r.from, self.term, body);
            }
        }
    }

    fn fail_forwarded_reads(&mut self) {
        for (ctx, ()) in std::mem::take(&mut self.reads_forwarded) {
            self.read_states.push(ReadState {
                ctx,
                result: Err(ReadError::NotLeader),
            });
        }
    }

    fn start_round(&mut self) {
        self.round += 1;
        self.round_starts.push_back((self.round, self.now));
        if self.round_starts.len() > ROUNDS_REMEMBERED_MAX {
            self.round_starts.pop_front();
        }
        self.next_heartbeat_at = self.now + self.config.heartbeat_interval_ns();
        // A lone voter is its own quorum.
        self.update_lease();
    }

    /// lease = start of the newest round a quorum answered + min election timeout × (1 − drift).
    /// Every voter that answered round r heard from us after it started, so it refuses votes
    /// until at least min election timeout after that on its own clock.
    fn update_lease(&mut self) {
        let me = self.id;
        let (round, progress) = (self.round, &self.progress);
        let acked = quorum::quorum_value(
            &self.membership,
            |id| {
                if id == me {
                    round
                } else {
                    progress.get(&id).map_or(0, |p| p.acked_round)
                }
            },
            u64::MAX,
        );
        let news = acked > self.quorum_round;
        self.quorum_round = self.quorum_round.max(acked);
        // Rounds too old to extend the lease are of no further use. (Older acknowledged
        // rounds are kept otherwise: a configuration change recomputes the lease from them.)
        let lease_ns = self.config.lease_ns();
        let now = self.now;
        while self
            .round_starts
            .front()
            .is_some_and(|&(r, started)| r < self.round && started + lease_ns <= now)
        {
            self.round_starts.pop_front();
        }
        let lease_allowed = self.transfer.is_none() && acked > self.lease_round_floor;
        let started = self
            .round_starts
            .iter()
            .find(|&&(r, _)| r == acked)
            .map(|&(_, started)| started);
        if let (Some(started), true) = (started, lease_allowed) {
            self.lease_until = self.lease_until.max(started + lease_ns);
        }
        if news {
            self.advance_reads();
        }
    }

    fn is_writable(&self, now: Nanos) -> bool {
        self.role == Role::Leader
            && self.transfer.is_none()
            && now < self.lease_until
            && self.noop_index > LogIndex(0)
            && self.log.applied >= self.noop_index
    }

    // ----- Plumbing -----

    fn observe(&mut self, now: Nanos) {
        // The caller's clock is monotonic; tolerate equal readings.
        self.now = self.now.max(now);
    }

    fn voters_except_me(&self) -> Vec<NodeId> {
        let mut voters: Vec<NodeId> = self.membership.voters.iter().copied().collect();
        voters.extend(self.membership.voters_outgoing.iter().copied());
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

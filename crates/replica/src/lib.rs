//! The replica: a `RaftNode` plus its caller's duties, sans I/O. The simulator and the daemon
//! drive the same `Replica`, so the glue between the consensus core and the state machine —
//! carrying out each `Ready`, answering proposals by (index, term), read contexts, the
//! compaction policy, snapshot installs — is written once and checked by every simulated seed.
//!
//! The caller adds only I/O. It feeds inputs (`tick`, `step`, `propose`, `read`, …), then drains
//! [`Action`]s with [`Replica::poll`] and carries each out: send a message, write a batch
//! durably and report it with [`Replica::persisted`], stream a snapshot, compact the log and
//! report it with [`Replica::compacted`], answer a client.
//!
//! Every decision the daemon makes about Raft lives here too, in a file per concept, so that
//! the simulator runs it: hand-overs and their retries (`handover`), early fencing and the
//! host's journal reports (`propose`), and the sequencing of snapshot chunks against batches
//! (`install`). Promotions have one rule, the core's (`promote_lag_max`).
//!
//! Invariants: at most one batch is being persisted at a time (group commit: everything the
//! core produces meanwhile goes into the next one); a proposal is answered only once an entry
//! at its index is applied — `Applied` if that entry carries the proposal's term, `Superseded`
//! if another leader's entry took the index; messages that promise durability leave only after
//! `persisted`.

mod apply;
mod clock;
mod handover;
mod history;
mod install;
mod maintenance;
mod promote;
mod propose;
mod roles;
#[cfg(test)]
mod testnet;
mod versions;

pub use apply::{COMPACT_STEP_ENTRIES, FLUSH_INTERVAL_NS, FLUSH_RECORDS_MAX};
pub use clock::{
    ClockCheck, ClockStamp, ClockStatus, Estimate, PeerClockStatus, Verdict, CLOCK_BUCKETS,
    CLOCK_POINTS_MIN, CLOCK_SPAN_ELECTION_TIMEOUTS, CLOCK_WINDOW_ELECTION_TIMEOUTS,
};
pub use handover::{HandoverOutcome, Stop, HANDOVER_ELECTION_TIMEOUTS};
pub use history::{
    history_key, Cause, HistoryRecord, HISTORY_KEEP_DEFAULT, HISTORY_KEEP_MAX, HISTORY_PREFIX,
};
pub use install::InstallVerdict;
pub use maintenance::{
    drained_key, MaintenanceChange, MaintenanceRefusal, Pause, DRAINED_PREFIX, MAINTENANCE_PREFIX,
    PAUSE_KEY, PAUSE_REASON_BYTES_MAX, PAUSE_TTL_MAX_MS,
};
pub use promote::Promotion;
pub use propose::ProposeRefusal;
pub use roles::{
    election_key, Candidacy, ElectionRole, ElectionSettings, DEFAULT_PRIORITY, ELECTION_PREFIX,
};
pub use versions::{
    cluster_version_target, decode_cluster_version, VersionRefusal, CLUSTER_VERSION_KEY,
    VERSION_MAX, VERSION_MIN, VERSION_OPERATIONS,
};

use regent_raft::Entry;
use regent_raft::{
    ConfChange, ConfChangeError, Config, ConfigError, LogIndex, Membership, Message, Nanos, NodeId,
    ProposeError, RaftNode, RaftRng, ReadError, RestoredState, SoftState, Term,
};
use regent_storage::{
    ApplyResult, Batch, LogStorage, SnapshotMeta, StateFlush, StateMachine, StorageError,
};
use std::collections::{BTreeMap, BTreeSet};

/// The caller's name for a request (a client operation, an API call): echoed in its answer.
pub type Token = u64;

/// How a read is confirmed before the local state machine is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: a heartbeat round confirms leadership (on a follower, the leader's).
    Index,
    /// While the lease holds, no round trip (leader only).
    Lease,
}

/// What became of a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// The proposal's entry was applied, with this result.
    Applied {
        index: LogIndex,
        term: Term,
        result: ApplyResult,
    },
    /// Another leader's entry took the index: this proposal was not applied there (it may still
    /// have been applied at another index if it was proposed more than once).
    Superseded { index: LogIndex },
}

/// Passes of one [`Replica::poll`] (each carries out at most one `Ready` with nothing durable
/// in it, and hands out what that released).
const POLL_PASSES_MAX: usize = 4;

/// One batch to write durably, then report with [`Replica::persisted`] under its number.
#[derive(Debug)]
pub struct Persist {
    pub number: u64,
    pub batch: Batch,
    /// The messages that promise the batch's durability (append acknowledgements, vote grants
    /// and requests): the caller sends them the moment the write is durable, before it reports
    /// it, and never if the write failed. `persisted` does not hand them out again. (The
    /// daemon's disk thread sends them itself, so that a follower's acknowledgement leaves
    /// without a round trip through the driver.)
    pub then_send: Vec<Message>,
}

/// What [`Replica::compact_now`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactNow {
    /// An `Action::Compact` through this index was appended.
    Started(LogIndex),
    /// A compaction through this index is already in flight.
    InFlight(LogIndex),
    /// Nothing was applied since the snapshot at this index.
    UpToDate(LogIndex),
}

/// A side effect the caller carries out, in the order given.
#[derive(Debug)]
pub enum Action {
    /// Send the message to `message.to`.
    Send(Message),
    /// Write the batch in one atomic, durable transaction (`LogStorage::write_batch`), then call
    /// [`Replica::persisted`] with its number. The messages that must wait for durability are
    /// held by the replica until then. The batch carries no committed entries: the replica
    /// applies them itself, in memory, once they are durable here.
    Persist(Persist),
    /// Write this frozen layer of the state machine (`LogStorage::write_state`; not durable by
    /// itself), then call [`Replica::state_persisted`] with its applied index. Off the commit
    /// path: the answers it covers went out when the entries were applied.
    PersistState(StateFlush),
    /// These committed entries were applied, in order (for observers such as the simulator's
    /// checkers; nothing to carry out).
    Applied(Vec<Entry>),
    /// The state machine could not be read: stop, as for a failed batch; a restart rebuilds
    /// from what is durable.
    Fatal(StorageError),
    /// A follower needs entries the log no longer holds: stream the storage snapshot to it.
    /// Report each chunk `to` acknowledges with [`Replica::snapshot_progress`] (the core gives
    /// up on a stream only after `snapshot_timeout_ms` without progress). When its install
    /// completes the follower's caller calls [`Replica::snapshot_installed`].
    SendSnapshot { to: NodeId },
    /// The proposal `token` is decided.
    Proposal {
        token: Token,
        outcome: ProposalOutcome,
    },
    /// The read `token` is confirmed: the local state machine has applied at least `index` and
    /// reading it now is linearizable. Or the read failed.
    Read {
        token: Token,
        result: Result<LogIndex, ReadError>,
    },
    /// The compaction policy: drop the storage log through this index (the state machine is the
    /// snapshot), then call [`Replica::compacted`]. Off the commit path where the caller can.
    Compact(LogIndex),
    /// The role, term or leader changed.
    SoftState(SoftState),
    /// A hand-over ended; `token` is the switchover's request, if one asked for it.
    Handover {
        token: Option<Token>,
        outcome: HandoverOutcome,
    },
    /// Forward this node's host's journal report to the leader `to`, which logs it in this
    /// node's name ([`Replica::host_report`] there).
    ForwardHostReport {
        to: NodeId,
        applied: Option<u64>,
        checkpoint: Option<u64>,
    },
    /// Feed one snapshot chunk to storage (`LogStorage::install_chunk`; on an error, abort the
    /// install), then report the verdict with [`Replica::chunk_installed`]. No batch is handed
    /// out meanwhile.
    InstallChunk { from: NodeId, chunk: Vec<u8> },
    /// The chunk queued under `token` ([`Replica::install_chunk`]) is decided.
    InstallAnswer {
        token: Token,
        verdict: InstallVerdict,
    },
    /// With the promotion gate on: this node leads `term` and is caught up; carry out what
    /// must come before it is writable (fence `previous_leader` unless this is an acknowledged
    /// `handover`, run `pre_promote`), then call [`Replica::promotion_done`].
    Promote {
        term: Term,
        previous_leader: Option<NodeId>,
        handover: bool,
    },
    /// With the promotion gate on, a hand-over is starting: stop this node's host (run
    /// `on_demote`), then call [`Replica::demote_done`]; the hand-over waits for it.
    Demote { term: Term },
    /// Send this node's clock stamp to `to`, which feeds it to [`Replica::clock_stamp`]: a
    /// request at most once per heartbeat interval, an answer as soon as a request arrived (a
    /// stamp may be lost or late, never re-sent).
    ClockStamp { to: NodeId, stamp: ClockStamp },
}

/// The requests still unanswered when a replica is dropped (a crash, a shutdown): their outcome
/// is unknown to the client.
#[derive(Debug, Default)]
pub struct Abandoned {
    /// Reads, in the order they were started.
    pub reads: Vec<Token>,
    /// Proposals, in index order.
    pub proposals: Vec<Token>,
    /// Switchovers in progress.
    pub handovers: Vec<Token>,
    /// Snapshot chunks queued or on the disk.
    pub chunks: Vec<Token>,
}

/// The batch being persisted: what the replica needs back when it is durable.
#[derive(Debug)]
struct Persisting {
    number: u64,
    /// The committed entries the core handed out with the batch: applied once it is durable.
    committed: Vec<Entry>,
}

pub struct Replica {
    id: NodeId,
    core: RaftNode,
    /// The latest time any input carried: outputs computed in `poll` (hand-over checks) use
    /// it. Never goes back.
    now: Nanos,
    /// The configuration the cluster started with: in force until a snapshot or a `Config`
    /// entry says otherwise.
    bootstrap: Membership,
    /// Proposals waiting for their index to be applied: index → (token, term proposed in).
    waiting: BTreeMap<LogIndex, Vec<(Token, Term)>>,
    /// Reads started here: the core's read context → token.
    reads: BTreeMap<u64, Token>,
    /// Read contexts never repeat, not even across restarts: a late or duplicated answer to an
    /// earlier incarnation's read would otherwise confirm a new read with an old index. They
    /// start at the (monotonic) time the replica was built and count up, one per read.
    next_read_ctx: u64,
    persisting: Option<Persisting>,
    /// A compaction handed out and not yet reported.
    compacting: Option<LogIndex>,
    /// Where the storage log's compacted prefix ends: at or below the core's (a restarted
    /// core is given only the newest applied entries); compaction steps start from here.
    storage_snapshot: LogIndex,
    /// Actions produced by inputs, handed out by the next `poll`.
    queued: Vec<Action>,
    /// Hand-overs in progress, and how long one may take.
    handovers: Vec<handover::Handover>,
    handover_max_ns: Nanos,
    handover_retry_refused: bool,
    /// A stop was asked: the caller ends once no hand-over is in progress.
    stopping: bool,
    host_healthy: bool,
    /// What this node's host last reported as applied in the journal, with the term it was
    /// reported in (the hand-over acknowledgement is per term).
    host_applied: (Term, u64),
    /// Commands refused by the early fencing check.
    fenced: u64,
    /// Snapshot chunks from leaders, queued for the disk.
    installs: install::Installs,
    /// The state machine, applied in memory and persisted in layers (`apply`).
    state: StateMachine,
    /// When the oldest record not yet handed out to be persisted was applied.
    unflushed_since: Option<Nanos>,
    /// An operator's compaction (`compacting`) waits for the state machine to reach storage.
    compact_after_flush: bool,
    /// Where the compaction in steps is going (`apply::COMPACT_STEP_ENTRIES`).
    compact_goal: Option<LogIndex>,
    /// The promotion gate (`promote`).
    gate: promote::Gate,
    /// Every peer's clock rate against ours, and the verdicts the lease rests on (`clock`).
    clocks: clock::Clocks,
    /// The operator's pause and drained nodes, as applied here (`maintenance`).
    maint: maintenance::Maintenance,
    /// Every member's election role and priority, and this node's (`roles`).
    roles: roles::Roles,
    /// The links' versions and the cluster version (`versions`).
    versions: versions::Versions,
    /// This node's part of the failover history (`history`).
    history: history::History,
}

impl Replica {
    /// Builds the replica from what its storage holds. `bootstrap` is the cluster's initial
    /// configuration (used until a snapshot or a `Config` entry replaces it).
    pub fn new(
        config: Config,
        storage: &dyn LogStorage,
        bootstrap: Membership,
        rng: Box<dyn RaftRng>,
        now: Nanos,
    ) -> Result<Replica, ReplicaError> {
        let restored = restored_state(storage, &bootstrap, config.restore_entries_max)?;
        let storage_snapshot = storage.state().snapshot.last_included_index;
        let state = storage.state_machine();
        let handover_max_ns =
            HANDOVER_ELECTION_TIMEOUTS * config.election_timeout_min_ms * 1_000_000;
        let drain_grace_ns =
            maintenance::DRAIN_GRACE_ELECTION_TIMEOUTS * config.election_timeout_min_ms * 1_000_000;
        let clocks = clock::Clocks::new(ClockCheck::for_config(&config, 500_000), now);
        let roles = roles::Roles::new(2 * config.election_timeout_min_ns());
        let core = RaftNode::new(config, restored, rng, now)?;
        let mut replica = Replica {
            id: core.id(),
            core,
            now,
            bootstrap,
            waiting: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read_ctx: now.max(1),
            persisting: None,
            compacting: None,
            storage_snapshot,
            queued: Vec::new(),
            handovers: Vec::new(),
            handover_max_ns,
            handover_retry_refused: false,
            stopping: false,
            host_healthy: true,
            host_applied: (Term(0), 0),
            fenced: 0,
            installs: install::Installs::default(),
            state,
            unflushed_since: None,
            compact_after_flush: false,
            compact_goal: None,
            gate: promote::Gate::new(),
            clocks,
            maint: maintenance::Maintenance {
                drain_grace_ns,
                leader_heard_at: now,
                ..maintenance::Maintenance::default()
            },
            roles,
            versions: versions::Versions::default(),
            history: history::History::default(),
        };
        replica.check_clocks(now);
        replica.reload_maintenance();
        replica.reload_roles();
        replica.reload_versions();
        Ok(replica)
    }

    /// The consensus core, for status and checks. Inputs go through the replica.
    pub fn core(&self) -> &RaftNode {
        &self.core
    }

    /// The state machine as applied here: local reads (after a confirmed read, or stale ones)
    /// answer from it.
    pub fn state(&self) -> &StateMachine {
        &self.state
    }

    /// When the caller must call `tick` next (the core's next timer or a hand-over's
    /// deadline).
    pub fn next_deadline(&self) -> Nanos {
        let core = self.core.next_deadline().min(self.clocks.next_stamp_at());
        let core = self.flush_deadline().map_or(core, |f| core.min(f));
        let core = self.promotion_deadline().map_or(core, |p| core.min(p));
        let core = self.maintenance_deadline().map_or(core, |m| core.min(m));
        let core = self.roles_deadline().map_or(core, |r| core.min(r));
        self.handover_deadline().map_or(core, |h| core.min(h))
    }

    /// The latest time an input carried: what the replica's outputs are computed at.
    pub fn latest_input_time(&self) -> Nanos {
        self.now
    }

    /// Records the time an input carried (it never goes back).
    fn observe(&mut self, now: Nanos) {
        self.now = self.now.max(now);
    }

    // ----- Inputs -----

    pub fn tick(&mut self, now: Nanos) {
        self.observe(now);
        self.core.tick(now);
        self.maybe_record_leadership(self.now);
        self.check_clocks(self.now);
        self.check_drain(self.now);
        self.check_roles(self.now);
        self.maybe_end_pause(self.now);
        self.maybe_commit_version(self.now);
    }

    /// Handles a message from a peer. An error names what was wrong with it (it came from the
    /// network: never a panic).
    pub fn step(&mut self, m: Message, now: Nanos) -> Result<(), regent_raft::StepError> {
        self.observe(now);
        self.note_message(&m.body, m.from, m.term);
        self.note_stall_step_down(&m);
        self.core.step(m, now)?;
        // A vote that made this node leader: the cluster version goes out with its no-op.
        self.maybe_commit_version(self.now);
        Ok(())
    }

    /// Proposes a command; `token` is answered with a [`Action::Proposal`] once an entry at the
    /// returned index is applied.
    pub fn propose(
        &mut self,
        token: Token,
        data: Vec<u8>,
        now: Nanos,
    ) -> Result<(LogIndex, Term), ProposeError> {
        self.observe(now);
        let (index, term) = self.core.propose(data, now)?;
        self.waiting.entry(index).or_default().push((token, term));
        Ok((index, term))
    }

    /// Starts a linearizable read; `token` is answered with an [`Action::Read`].
    pub fn read(&mut self, token: Token, mode: ReadMode, now: Nanos) -> Result<(), ReadError> {
        self.observe(now);
        let ctx = self.next_read_ctx;
        match mode {
            // A leader that may not claim the lease for its clocks confirms by a round trip.
            ReadMode::Lease if self.clocks_withhold_lease() => self.core.read_index(ctx, now)?,
            ReadMode::Index => self.core.read_index(ctx, now)?,
            ReadMode::Lease => self.core.lease_read(ctx, now)?,
        }
        self.next_read_ctx += 1;
        self.reads.insert(ctx, token);
        Ok(())
    }

    pub fn change_membership(
        &mut self,
        change: ConfChange,
        now: Nanos,
    ) -> Result<LogIndex, ConfChangeError> {
        self.observe(now);
        let mut voters = self.core.membership().voters.clone();
        match change {
            ConfChange::AddLearner(_) => {}
            ConfChange::Promote(id) => {
                voters.insert(id);
            }
            ConfChange::Remove(id) => {
                voters.remove(&id);
            }
        }
        self.check_some_voter_may_lead(&voters)?;
        self.core.change_membership(change, now)
    }

    /// Refuses a change of the voters that would leave none allowed to lead (`roles`).
    fn check_some_voter_may_lead(&self, voters: &BTreeSet<NodeId>) -> Result<(), ConfChangeError> {
        if voters == &self.core.membership().voters
            || voters.is_empty()
            || self.any_may_lead(voters)
        {
            return Ok(());
        }
        Err(ConfChangeError::NoEligibleVoter {
            voters: voters.iter().copied().collect(),
        })
    }

    /// A change to exactly `voters` and `learners` in one joint step, however many voters it
    /// adds, promotes or removes (see [`RaftNode::reconfigure`]).
    pub fn reconfigure(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        now: Nanos,
    ) -> Result<LogIndex, ConfChangeError> {
        self.observe(now);
        self.check_some_voter_may_lead(&voters)?;
        self.core.reconfigure(voters, learners, now)
    }

    pub fn abort_membership_change(&mut self, now: Nanos) -> Result<LogIndex, ConfChangeError> {
        self.observe(now);
        self.core.abort_membership_change(now)
    }

    /// The snapshot stream to `to` made progress: a chunk was acknowledged (see
    /// [`RaftNode::snapshot_progress`]).
    pub fn snapshot_progress(&mut self, to: NodeId, now: Nanos) {
        self.observe(now);
        self.core.snapshot_progress(to, now);
    }

    /// The snapshot stream to `to` ended with the follower's acknowledgement of an install
    /// through `index` (see [`RaftNode::snapshot_sent`]).
    pub fn snapshot_sent(&mut self, to: NodeId, index: LogIndex, now: Nanos) {
        self.observe(now);
        self.core.snapshot_sent(to, index, now);
    }

    /// The snapshot stream to `to` failed: a new one is asked for soon (see
    /// [`RaftNode::snapshot_failed`]).
    pub fn snapshot_failed(&mut self, to: NodeId, now: Nanos) {
        self.observe(now);
        self.core.snapshot_failed(to, now);
    }

    // ----- Outputs -----

    /// Appends the actions due now to `out`, in the order to carry them out: read answers,
    /// snapshot streams, messages, the actions inputs produced (forwarded reports), hand-overs
    /// ended, then the next snapshot chunk for the disk, and (when neither a batch nor a chunk
    /// is on the disk) the role change, the next batch's messages and the batch itself.
    ///
    /// A `Ready` with nothing durable in it is carried out here, at once; what it released
    /// (reads, applicable entries, the next `Ready`) is handed out by the same call.
    pub fn poll(&mut self, out: &mut Vec<Action>) {
        // Bounded: each pass that carried out a `Ready` consumed one; whatever a last pass
        // leaves is handed out by the caller's next poll, as anything produced after a poll.
        for _ in 0..POLL_PASSES_MAX {
            if !self.poll_once(out) {
                return;
            }
        }
    }

    /// One pass of [`poll`](Self::poll). Returns true when it carried out a `Ready` in line,
    /// after which another pass has more to hand out.
    fn poll_once(&mut self, out: &mut Vec<Action>) -> bool {
        self.apply_committed(out);
        // A node that became leader when its vote became durable proposes the cluster version
        // at once, so that it commits with the term's no-op.
        self.maybe_commit_version(self.now);
        self.note_leader();
        self.maybe_record_leadership(self.now);
        for state in self.core.take_read_states() {
            if let Some(token) = self.reads.remove(&state.ctx) {
                out.push(Action::Read {
                    token,
                    result: state.result,
                });
            }
        }
        for request in self.core.take_snapshot_requests() {
            out.push(Action::SendSnapshot { to: request.to });
        }
        let messages = self.core.take_messages();
        self.route_messages(messages, out);
        self.maybe_stamp(out);
        out.append(&mut self.queued);
        self.check_handovers(self.now, out);
        self.check_promotion(self.now, out);
        self.next_chunk(out);
        self.maybe_flush(out);
        self.maybe_compact(out);
        if self.persisting.is_some() || self.chunk_on_disk() || self.chunk_waits_for_state() {
            return false;
        }
        let Some(ready) = self.core.ready() else {
            return false;
        };
        let number = ready.number;
        if let Some(soft) = ready.soft_state {
            out.push(Action::SoftState(soft));
        }
        self.route_messages(ready.messages, out);
        let mut batch = ready.batch;
        self.persisting = Some(Persisting {
            number,
            committed: std::mem::take(&mut batch.committed),
        });
        if ready.must_sync {
            // The commit index is volatile (a restarted node takes the larger of the stored one
            // and its applied index, and learns the rest from the leader): a batch that keeps
            // the term and vote leaves the hard state out, and its page out of the commit.
            let durable = self.core.durable_term_vote();
            if batch
                .hard_state
                .is_some_and(|hs| (hs.term, hs.vote) == durable)
            {
                batch.hard_state = None;
            }
            out.push(Action::Persist(Persist {
                number,
                batch,
                then_send: ready.persisted_messages,
            }));
            return false;
        }
        // Nothing durable to write (a commit index moved, entries already durable here became
        // applicable): carried out at once, without a round trip to the disk. The state
        // machine reaches storage in its layers, the commit index is volatile.
        out.extend(ready.persisted_messages.into_iter().map(Action::Send));
        self.persisted(number, out);
        true
    }

    /// The batch `number` is durable (and its [`Persist::then_send`] sent). Applies the
    /// committed entries the core handed out with it, and appends the answers to proposals and
    /// a compaction when one is due.
    pub fn persisted(&mut self, number: u64, out: &mut Vec<Action>) {
        let done = self
            .persisting
            .take()
            .expect("persisted without a batch in flight");
        assert_eq!(
            done.number, number,
            "persisted a batch other than the one in flight"
        );
        self.apply_entries(done.committed, out);
        self.core.advance(number);
        self.maybe_compact(out);
    }

    /// The storage log is compacted through `index` (after an [`Action::Compact`]).
    pub fn compacted(&mut self, index: LogIndex) {
        assert_eq!(
            self.compacting.take(),
            Some(index),
            "an unrequested compaction"
        );
        self.storage_snapshot = self.storage_snapshot.max(index);
        self.core.compact(index);
    }

    /// An operator's `regent snapshot`: compact the log through the applied (and durable)
    /// index now, rather than when the policy says. Appends the `Action::Compact` it starts;
    /// answers the index a compaction in flight will reach, or the snapshot's index when
    /// nothing was applied since.
    pub fn compact_now(&mut self, now: Nanos, out: &mut Vec<Action>) -> CompactNow {
        if let Some(index) = self.compacting {
            return CompactNow::InFlight(index);
        }
        let applied = self.core.status(now).applied_index;
        let index = applied.min(self.core.persisted_index());
        if index <= self.core.snapshot_index() {
            return CompactNow::UpToDate(self.core.snapshot_index());
        }
        self.compacting = Some(index);
        if self.state.persisted() >= index {
            out.push(Action::Compact(index));
        } else {
            // The state the compacted prefix leaves behind must be in storage first.
            self.compact_after_flush = true;
            self.maybe_flush(out);
        }
        CompactNow::Started(index)
    }

    /// A compaction failed in storage: the core keeps its log, and the policy may ask again.
    pub fn compaction_failed(&mut self) {
        self.compacting = None;
    }

    /// Whether a batch is being persisted (a snapshot chunk then waits for it).
    pub fn is_persisting(&self) -> bool {
        self.persisting.is_some()
    }

    /// A snapshot from `from` was installed durably by storage (`meta` is what it holds now),
    /// or refused as stale (older than what this node applied): either way the core learns of
    /// it and tells the leader where to resume.
    fn snapshot_installed(&mut self, from: NodeId, meta: SnapshotMeta, now: Nanos) {
        self.storage_snapshot = self.storage_snapshot.max(meta.last_included_index);
        let membership = if meta.membership.voters.is_empty() {
            self.bootstrap.clone()
        } else {
            meta.membership
        };
        self.core.snapshot_installed(
            from,
            meta.last_included_index,
            meta.last_included_term,
            membership,
            now,
        );
    }

    /// Gives up the replica (a crash, a shutdown), returning the requests left unanswered.
    pub fn abandon(mut self) -> Abandoned {
        Abandoned {
            handovers: self.handovers.iter().filter_map(|h| h.token).collect(),
            chunks: self.abandon_chunks(),
            reads: self.reads.into_values().collect(),
            proposals: self
                .waiting
                .into_values()
                .flat_map(|waiters| waiters.into_iter().map(|(token, _)| token))
                .collect(),
        }
    }

    fn answer(&mut self, index: LogIndex, term: Term, result: ApplyResult, out: &mut Vec<Action>) {
        let Some(waiters) = self.waiting.remove(&index) else {
            return;
        };
        for (token, proposed_in) in waiters {
            let outcome = if proposed_in == term {
                ProposalOutcome::Applied {
                    index,
                    term,
                    result: result.clone(),
                }
            } else {
                ProposalOutcome::Superseded { index }
            };
            out.push(Action::Proposal { token, outcome });
        }
    }
}

/// What a node restarts from: exactly what its storage made durable. Storage records a
/// configuration only once a `Config` entry was applied (or a snapshot installed); before that
/// the cluster runs on its `bootstrap` configuration.
pub fn restored_state(
    storage: &dyn LogStorage,
    bootstrap: &Membership,
    applied_entries_max: u64,
) -> Result<RestoredState, StorageError> {
    let state = storage.state();
    let mut membership = if state.snapshot.membership.voters.is_empty() {
        bootstrap.clone()
    } else {
        state.snapshot.membership.clone()
    };
    let (mut snapshot_index, mut snapshot_term) = (
        state.snapshot.last_included_index,
        state.snapshot.last_included_term,
    );
    // Of the applied entries, the core gets the newest `applied_entries_max`, and none before
    // the last applied membership change: what lies before it is in the state machine, and
    // the applied membership is the configuration in force there (no change between it and
    // the applied index). A follower that needs an older entry gets a snapshot.
    let start = LogIndex((state.applied.0 + 1).saturating_sub(applied_entries_max))
        .max(state.membership_index.next())
        .min(state.applied.next());
    if start > state.first_index {
        snapshot_index = start.prev();
        snapshot_term = storage.term(snapshot_index)?;
        // No membership applied yet: the bootstrap one is in force, as for a snapshot's.
        if !state.membership.voters.is_empty() {
            membership = state.membership.clone();
        }
    }
    let entries = storage.entries(snapshot_index.next(), state.last_index.next(), usize::MAX)?;
    Ok(RestoredState {
        hard_state: state.hard_state,
        membership,
        snapshot_index,
        snapshot_term,
        entries,
        applied: state.applied,
    })
}

/// The first durable write of a new cluster's node: the initial configuration as entry 1 of
/// term 1, committed and applied. Every founding node writes the same entry, so their logs agree
/// from the start, and from then on the membership lives in the log (and in snapshots), never
/// again in the configuration file.
pub fn bootstrap_batch(voters: &Membership) -> Batch {
    let entry = Entry {
        index: LogIndex(1),
        term: Term(1),
        payload: regent_raft::EntryPayload::Config(voters.clone()),
    };
    Batch {
        hard_state: Some(regent_raft::HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(1),
        }),
        truncate_from: None,
        entries: vec![entry.clone()],
        committed: vec![entry],
    }
}

/// Why a replica could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("reading the durable state: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Config(#[from] ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use regent_raft::{MessageBody, SplitMix64};
    use regent_storage::{Command, Identity, MemStorage, Proposal, Response, StorageOptions};

    const MS: u64 = 1_000_000;

    fn storage(id: u64) -> MemStorage {
        let identity = Identity {
            cluster_id: "replica-test".into(),
            node_id: NodeId(id),
        };
        MemStorage::new(identity, StorageOptions::default())
            .unwrap()
            .0
    }

    fn replica(id: u64, voters: &[u64], disk: &MemStorage, now: Nanos) -> Replica {
        let mut config = Config::new(NodeId(id));
        config.election_timeout_min_ms = 100;
        config.heartbeat_interval_ms = 10;
        let voters = Membership::new(voters.iter().map(|&v| NodeId(v)));
        let rng = Box::new(SplitMix64::new(id));
        Replica::new(config, disk, voters, rng, now).unwrap()
    }

    /// Carries out every action the way the daemon does, with a synchronous disk; returns the
    /// actions other than persisting (sends, answers).
    fn run(r: &mut Replica, disk: &mut MemStorage) -> Vec<Action> {
        let mut seen = Vec::new();
        loop {
            let mut out = Vec::new();
            r.poll(&mut out);
            if out.is_empty() {
                return seen;
            }
            for action in out {
                match action {
                    Action::Persist(p) => {
                        disk.write_batch(&p.batch).unwrap();
                        let mut more: Vec<Action> =
                            p.then_send.into_iter().map(Action::Send).collect();
                        r.persisted(p.number, &mut more);
                        seen.extend(more);
                    }
                    Action::PersistState(flush) => {
                        disk.write_state(&flush).unwrap();
                        let mut more = Vec::new();
                        r.state_persisted(flush.applied(), &mut more);
                        seen.extend(more);
                    }
                    other => seen.push(other),
                }
            }
        }
    }

    #[test]
    fn a_single_node_answers_a_proposal_once_applied() {
        let (mut r, mut disk, now) = single_leader();
        let put = Proposal::new(Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        let (index, term) = r.propose(7, put.encode(), now).unwrap();
        let answers: Vec<Action> = run(&mut r, &mut disk)
            .into_iter()
            .filter(|a| matches!(a, Action::Proposal { .. }))
            .collect();
        assert_eq!(answers.len(), 1, "{answers:?}");
        let Action::Proposal { token, outcome } = &answers[0] else {
            unreachable!()
        };
        assert_eq!(*token, 7);
        let ProposalOutcome::Applied {
            index: i,
            term: t,
            result,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!((*i, *t), (index, term));
        assert!(matches!(
            result,
            ApplyResult::Command(Ok(Response::Put { .. }))
        ));
        // Applied in memory and answered; storage gets the layer later, off the commit path.
        assert_eq!(r.state().applied(), index);
        assert!(disk.state().applied < index, "persisted lazily");
        r.tick(now + FLUSH_INTERVAL_NS);
        run(&mut r, &mut disk);
        assert_eq!(
            disk.state().applied,
            index,
            "persisted once the interval passed"
        );
    }

    /// A single-node replica that leads, with its disk.
    fn single_leader() -> (Replica, MemStorage, Nanos) {
        let mut disk = storage(1);
        let mut r = replica(1, &[1], &disk, MS);
        let mut now = MS;
        while r.core().status(now).role != regent_raft::Role::Leader {
            now += 10 * MS;
            r.tick(now);
            run(&mut r, &mut disk);
        }
        run(&mut r, &mut disk);
        (r, disk, now)
    }

    fn put(expected_term: Option<u64>) -> Proposal {
        let mut p = Proposal::new(Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        p.expected_term = expected_term;
        p
    }

    #[test]
    fn a_write_expecting_another_term_is_fenced_before_the_log_but_not_in_a_session() {
        let (mut r, mut disk, now) = single_leader();
        let term = r.core().status(now).term.0;
        let last = r.core().status(now).last_index;
        for stale in [term - 1, term + 1] {
            assert_eq!(
                r.propose_command(1, put(Some(stale)), now, 0),
                Err(ProposeRefusal::TermMismatch {
                    expected: stale,
                    current: term
                })
            );
        }
        assert_eq!(
            r.core().status(now).last_index,
            last,
            "nothing reached the log"
        );
        assert_eq!(r.fenced(), 2);
        // The current term goes through, and so does a stale one in a session: only the state
        // machine has a retried write's recorded answer.
        r.propose_command(2, put(Some(term)), now, 0).unwrap();
        let mut in_session = put(Some(term - 1));
        in_session.session = Some(regent_storage::SessionSeq {
            client_id: 1,
            seq: 1,
            acked_below: 1,
        });
        r.propose_command(3, in_session, now, 0).unwrap();
        let answered: Vec<Token> = run(&mut r, &mut disk)
            .into_iter()
            .filter_map(|a| match a {
                Action::Proposal { token, .. } => Some(token),
                _ => None,
            })
            .collect();
        assert_eq!(answered, [2, 3]);
    }

    #[test]
    fn a_ready_that_only_moves_the_commit_index_never_goes_to_the_disk() {
        let (mut r, mut disk, now) = single_leader();
        r.propose_command(1, put(None), now, 0).unwrap();
        let mut out = Vec::new();
        r.poll(&mut out);
        let persists: Vec<Persist> = out
            .into_iter()
            .filter_map(|a| match a {
                Action::Persist(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(persists.len(), 1, "the entry's batch");
        let entry = persists[0].batch.entries.last().expect("the entry").index;
        disk.write_batch(&persists[0].batch).unwrap();
        let mut out = Vec::new();
        r.persisted(persists[0].number, &mut out);
        r.poll(&mut out);
        // Durable here, so committed (one voter): the commit index moves, and the Ready that
        // carries it is carried out in line.
        assert!(
            !out.iter().any(|a| matches!(a, Action::Persist(_))),
            "nothing to write for a commit index: {out:?}"
        );
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::Proposal { token: 1, .. })),
            "the write is answered: {out:?}"
        );
        let status = r.core().status(now);
        assert_eq!(status.commit_index, entry);
        assert_eq!(status.applied_index, entry);
        assert!(
            disk.state().hard_state.commit < entry,
            "storage was never asked to write the commit index"
        );
        assert!(!r.core().has_ready(), "no Ready left outstanding");
    }

    #[test]
    fn a_batch_that_keeps_the_term_and_vote_leaves_the_hard_state_out() {
        let mut net = testnet::Net::new();
        let leader = net.until_leader();
        let follower = (1..=3).find(|&id| id != leader).unwrap();
        let stored = |net: &testnet::Net| net.nodes[(follower - 1) as usize].1.state().hard_state;
        let before = stored(&net);
        // Writes commit one after the other: each of the follower's batches brings entries and
        // a commit index that moved, with the same term and vote.
        net.stalled[(follower - 1) as usize] = Some(Vec::new());
        for token in 1..=3 {
            let now = net.now;
            net.r_mut(leader)
                .propose_command(token, put(None), now, 0)
                .unwrap();
            net.pump();
            let held = net.stalled[(follower - 1) as usize]
                .replace(Vec::new())
                .unwrap();
            assert!(!held.is_empty(), "the follower's batch");
            for p in held {
                assert!(!p.batch.entries.is_empty());
                assert_eq!(p.batch.hard_state, None, "the term and vote did not change");
                net.carry_out((follower - 1) as usize, vec![Action::Persist(p)]);
            }
            net.pump();
        }
        let after = stored(&net);
        assert_eq!((after.term, after.vote), (before.term, before.vote));
        let status = net.r(follower).core().status(net.now);
        assert!(
            status.commit_index > after.commit,
            "the commit index moved in memory ({}), not in storage ({})",
            status.commit_index,
            after.commit
        );
        net.stalled[(follower - 1) as usize] = None;
    }

    #[test]
    fn a_snapshot_chunk_waits_for_the_batch_being_written_and_holds_the_next_one() {
        let (mut r, mut disk, now) = single_leader();
        r.propose_command(1, put(None), now, 0).unwrap();
        let mut out = Vec::new();
        r.poll(&mut out);
        let persist = out
            .into_iter()
            .find_map(|a| match a {
                Action::Persist(p) => Some(p),
                _ => None,
            })
            .expect("a batch to write");
        let meta = disk.state().snapshot.clone();
        r.install_chunk(9, NodeId(2), meta, b"not a chunk".to_vec());
        r.propose_command(2, put(None), now, 0).unwrap();
        let mut out = Vec::new();
        r.poll(&mut out);
        assert!(
            !out.iter()
                .any(|a| matches!(a, Action::InstallChunk { .. } | Action::Persist(_))),
            "nothing goes to the disk while a batch is being written: {out:?}"
        );
        // What was applied goes to storage first: the install checks staleness against it.
        let flush = out
            .iter()
            .find_map(|a| match a {
                Action::PersistState(flush) => Some(flush.clone()),
                _ => None,
            })
            .expect("the applied state is persisted before the chunk goes to the disk");
        assert_eq!(r.chunks_queued(), 1);
        disk.write_batch(&persist.batch).unwrap();
        let mut out = Vec::new();
        r.persisted(persist.number, &mut out);
        r.poll(&mut out);
        assert!(
            !out.iter().any(|a| matches!(a, Action::InstallChunk { .. })),
            "no chunk while a state layer is on its way: {out:?}"
        );
        disk.write_state(&flush).unwrap();
        let mut out = Vec::new();
        r.state_persisted(flush.applied(), &mut out);
        r.poll(&mut out);
        let chunk = out
            .iter()
            .find_map(|a| match a {
                Action::InstallChunk { chunk, .. } => Some(chunk.clone()),
                _ => None,
            })
            .expect("the chunk goes to the disk once the batch is written");
        assert!(
            !out.iter().any(|a| matches!(a, Action::Persist(_))),
            "no batch while the chunk is on the disk: {out:?}"
        );
        let result = disk.install_chunk(&chunk);
        disk.install_abort();
        let mut out = Vec::new();
        r.chunk_installed(result, disk.state().applied, now, &mut out);
        assert!(
            matches!(
                &out[..],
                [Action::InstallAnswer {
                    token: 9,
                    verdict: InstallVerdict::Refused(_)
                }]
            ),
            "{out:?}"
        );
        let mut out = Vec::new();
        r.poll(&mut out);
        assert!(
            out.iter().any(|a| matches!(a, Action::Persist(_))),
            "the held batch goes out after the chunk: {out:?}"
        );
    }

    #[test]
    fn a_stop_without_anyone_to_hand_over_to_stops_at_once() {
        let (mut r, _disk, now) = single_leader();
        assert_eq!(r.begin_stop(now), Stop::Now);
        assert!(r.is_stopping() && !r.handing_over());
        let follower_disk = storage(2);
        let mut follower = replica(2, &[1, 2, 3], &follower_disk, MS);
        assert_eq!(follower.begin_stop(MS), Stop::Now);
    }

    #[test]
    fn the_hand_over_deadline_is_part_of_the_next_deadline() {
        let (r, _disk, _now) = single_leader();
        assert_eq!(r.handover_deadline(), None);
        assert_eq!(r.next_deadline(), r.core().next_deadline());
    }

    /// A late or duplicated ReadIndex answer meant for an earlier incarnation must never match a
    /// read started after a restart: read contexts start at the replica's start time.
    #[test]
    fn read_contexts_never_repeat_across_restarts() {
        let mut disk = storage(2);
        let mut ctx_of = |r: &mut Replica, now: Nanos| -> u64 {
            let heartbeat = Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(1),
                body: MessageBody::Heartbeat {
                    commit: LogIndex(0),
                    round: 1,
                },
            };
            r.step(heartbeat, now).unwrap();
            r.read(1, ReadMode::Index, now).unwrap();
            // The term learnt from the heartbeat must be durable before anything is sent.
            run(r, &mut disk)
                .iter()
                .find_map(|a| match a {
                    Action::Send(Message {
                        body: MessageBody::ReadIndex { ctx },
                        ..
                    }) => Some(*ctx),
                    _ => None,
                })
                .expect("a follower asks the leader")
        };
        let empty = storage(2);
        let mut first = replica(2, &[1, 2, 3], &empty, 5 * MS);
        let a = ctx_of(&mut first, 5 * MS);
        let b = ctx_of(&mut first, 6 * MS);
        assert!(b > a);
        drop(first);
        let mut second = replica(2, &[1, 2, 3], &empty, 9 * MS);
        let c = ctx_of(&mut second, 9 * MS);
        assert!(
            c > b,
            "a restarted replica reused read context {c} (before: {a}, {b})"
        );
    }

    /// A restarted replica's core is given only the newest `restore_entries_max` applied
    /// entries (and never one before the last applied membership change); storage keeps the
    /// rest until compaction, which steps from storage's own prefix.
    #[test]
    fn a_restart_gives_the_core_only_the_newest_applied_entries() {
        let (mut r, mut disk, mut now) = single_leader();
        for k in 0..50u64 {
            let put = Proposal::new(Command::Put {
                key: format!("k{k}").into_bytes(),
                value: b"v".to_vec(),
            });
            r.propose(k, put.encode(), now).unwrap();
            run(&mut r, &mut disk);
        }
        now += FLUSH_INTERVAL_NS;
        r.tick(now);
        run(&mut r, &mut disk);
        let state = disk.state().clone();
        assert_eq!(state.applied, state.last_index, "{state:?}");
        assert_eq!(state.snapshot.last_included_index, LogIndex(0));

        let voters = Membership::new([NodeId(1)]);
        let restored = restored_state(&disk, &voters, 10).unwrap();
        assert_eq!(restored.snapshot_index, LogIndex(state.applied.0 - 10));
        assert_eq!(restored.entries.len(), 10);
        assert_eq!(restored.entries[0].index, restored.snapshot_index.next());
        assert_eq!(
            restored.snapshot_term,
            disk.term(restored.snapshot_index).unwrap()
        );
        assert_eq!(restored.membership, voters);
        // A window wider than the log: everything, from storage's own prefix.
        let whole = restored_state(&disk, &voters, 1_000).unwrap();
        assert_eq!(whole.snapshot_index, LogIndex(0));
        assert_eq!(whole.entries.len() as u64, state.last_index.0);

        // The replica built so serves: it leads again and applies a new write.
        let mut config = Config::new(NodeId(1));
        config.election_timeout_min_ms = 100;
        config.heartbeat_interval_ms = 10;
        config.restore_entries_max = 10;
        let rng = Box::new(SplitMix64::new(9));
        let mut r = Replica::new(config, &disk, voters, rng, now).unwrap();
        assert_eq!(r.core().snapshot_index(), LogIndex(state.applied.0 - 10));
        while r.core().status(now).role != regent_raft::Role::Leader {
            now += MS;
            r.tick(now);
            run(&mut r, &mut disk);
        }
        let put = Proposal::new(Command::Put {
            key: b"after".to_vec(),
            value: b"v".to_vec(),
        });
        let (index, _) = r.propose(99, put.encode(), now).unwrap();
        run(&mut r, &mut disk);
        assert_eq!(r.state().applied(), index);
        // An operator's compaction through the applied index drops storage's whole prefix.
        let mut out = Vec::new();
        let started = r.compact_now(now, &mut out);
        assert!(matches!(started, CompactNow::Started(_)), "{started:?}");
    }

    #[test]
    fn the_bootstrap_entry_is_the_same_everywhere_and_applies_the_voters() {
        let voters = Membership::new([NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(bootstrap_batch(&voters), bootstrap_batch(&voters));
        let mut disk = storage(1);
        disk.write_batch(&bootstrap_batch(&voters)).unwrap();
        assert_eq!(disk.state().membership, voters);
        // Restored with no bootstrap configuration: the log alone says who the voters are.
        let r = replica(1, &[], &disk, MS);
        assert_eq!(r.core().membership(), &voters);
    }
}

//! Failover history (Patroni's `history`): every leadership change — the term, the new leader,
//! the previous one, why it moved and when — kept as replicated records, so that any node
//! answers the same history at the same applied index.
//!
//! A record is one of regent's own keys, `\0regent/history/<term, 20 decimal digits>` (key
//! order is term order), written by the leader of that term once it leads: a transaction whose
//! compare is the key's absence (so a retried proposal never writes a term twice), fenced to
//! the term it describes (`expected_term`), which also drops the oldest records beyond
//! `history.keep`. A leader proposes it once its term's no-op is applied — the moment it may
//! become writable, which the record never delays (nothing waits for it) — so that every
//! earlier term's record it will ever hold is applied and counted; it proposes it again every
//! `RECORD_RETRY_NS` until it is applied, as long as it leads that term.
//!
//! Why leadership moved: a hand-over carries its cause to the target in the TimeoutNow that
//! starts its campaign (an opaque code to the core, a [`Cause`] here), and the target records
//! it with the old leader as the previous one. Any other campaign is an `election`, and its
//! previous leader is the newest leader of an earlier term that this node saw or that the
//! history holds. A leader whose disk stalls steps down without a hand-over (the lease rules
//! forbid one without its disk), but tells its followers (`StallStepDown`): the next leader
//! records `disk_stall` when the previous leader is the one that told it so.
//!
//! Invariants: at most one record per term, written only by that term's leader; a record that
//! does not parse is skipped with a warning, never trusted halfway.

use crate::Replica;
use regent_raft::{Message, MessageBody, Nanos, NodeId, Role, Term};
use regent_storage::{
    Command, Compare, CompareOp, CompareTarget, Op, Proposal, StateReader, StorageError, Txn,
    TXN_OPS_MAX,
};
use std::fmt;

/// The prefix of every history record.
pub const HISTORY_PREFIX: &[u8] = b"\0regent/history/";
/// Records kept when the configuration says nothing (`history.keep`).
pub const HISTORY_KEEP_DEFAULT: u32 = 100;
/// The most records `history.keep` may ask for.
pub const HISTORY_KEEP_MAX: u32 = 1000;
/// A leader proposes its record again after this long without seeing it applied.
const RECORD_RETRY_NS: Nanos = 1_000_000_000;
/// The oldest records one record's transaction deletes at most (its put is the last op): a
/// `keep` lowered by more than this is reached over the next terms.
const PRUNE_OPS_MAX: usize = TXN_OPS_MAX - 1;
/// The most records read back: `keep` at its largest plus what one transaction may leave.
const RECORDS_READ_MAX: u32 = HISTORY_KEEP_MAX + PRUNE_OPS_MAX as u32 + 1;

/// Why leadership moved to a term's leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// The leader was elected by its own election timer: the previous leader died, was cut
    /// off, stepped down (a stalled disk, no quorum), or there was none.
    Election,
    /// A hand-over whose reason the old leader did not give (an older build).
    Handover,
    /// An operator's `regent switchover`.
    Switchover,
    /// `regent switchover --force` while paused.
    ForcedSwitchover,
    /// The old leader was stopped (SIGTERM, `systemctl stop`) and handed over first.
    Sigterm,
    /// The old leader's host turned unhealthy.
    Health,
    /// The old leader was drained (`regent drain`).
    Drain,
    /// The old leader's promotion (fencing, `pre_promote`) failed.
    PromotionFailed,
    /// The old leader's clock disagreed with a quorum's: it could not hold a lease.
    Clock,
    /// The old leader became ineligible (a required watchdog device stopped working).
    Ineligible,
    /// The old leader's disk stalled past `persist_stall_max_ms` and it stepped down: the new
    /// leader was elected (no hand-over), and the old one had told it why.
    DiskStall,
    /// The old leader's election role may not lead (nofailover, witness): it led only to
    /// hand over (`election.role`).
    NotCandidate,
    /// `prefer_priority`: the old leader handed over to a candidate of higher priority.
    PreferPriority,
}

impl Cause {
    pub const ALL: [Cause; 13] = [
        Cause::Election,
        Cause::Handover,
        Cause::Switchover,
        Cause::ForcedSwitchover,
        Cause::Sigterm,
        Cause::Health,
        Cause::Drain,
        Cause::PromotionFailed,
        Cause::Clock,
        Cause::Ineligible,
        Cause::DiskStall,
        Cause::NotCandidate,
        Cause::PreferPriority,
    ];

    /// The name the records, the API and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Election => "election",
            Cause::Handover => "handover",
            Cause::Switchover => "switchover",
            Cause::ForcedSwitchover => "forced_switchover",
            Cause::Sigterm => "sigterm",
            Cause::Health => "health",
            Cause::Drain => "drain",
            Cause::PromotionFailed => "promotion_failed",
            Cause::Clock => "clock",
            Cause::Ineligible => "ineligible",
            Cause::DiskStall => "disk_stall",
            Cause::NotCandidate => "not_a_candidate",
            Cause::PreferPriority => "prefer_priority",
        }
    }

    pub fn parse(name: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The code a TimeoutNow carries (0: no reason given, which reads as `handover`).
    pub(crate) fn code(self) -> u8 {
        match self {
            Cause::Handover => 0,
            Cause::Switchover => 1,
            Cause::ForcedSwitchover => 2,
            Cause::Sigterm => 3,
            Cause::Health => 4,
            Cause::Drain => 5,
            Cause::PromotionFailed => 6,
            Cause::Clock => 7,
            Cause::Ineligible => 8,
            Cause::NotCandidate => 9,
            Cause::PreferPriority => 10,
            // Never sent: an election is not a hand-over.
            Cause::Election => 255,
            Cause::DiskStall => 254,
        }
    }

    /// A TimeoutNow's code; one this build does not know (a newer peer's) is a `handover`.
    pub(crate) fn from_code(code: u8) -> Cause {
        Cause::ALL
            .into_iter()
            .find(|c| !matches!(c, Cause::Election | Cause::DiskStall) && c.code() == code)
            .unwrap_or(Cause::Handover)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One leadership change, as replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRecord {
    /// The term the leader leads.
    pub term: Term,
    pub leader: NodeId,
    /// The leader of the newest earlier term that the new leader knew of (`None`: none, as for
    /// the cluster's first leader).
    pub previous_leader: Option<NodeId>,
    pub cause: Cause,
    /// The new leader's wall clock when it proposed the record (ms since the epoch; 0 if it
    /// had no reading).
    pub time_ms: u64,
}

impl HistoryRecord {
    /// One line per field: `v1`, term, leader, previous leader (`-` for none), cause, time.
    pub fn encode(&self) -> Vec<u8> {
        let previous = self
            .previous_leader
            .map_or("-".to_string(), |p| p.0.to_string());
        format!(
            "v1\n{}\n{}\n{}\n{}\n{}",
            self.term.0, self.leader.0, previous, self.cause, self.time_ms
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<HistoryRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        if lines.next()? != "v1" {
            return None;
        }
        let term = Term(lines.next()?.parse().ok()?);
        let leader = NodeId(lines.next()?.parse().ok()?);
        let previous_leader = match lines.next()? {
            "-" => None,
            p => Some(NodeId(p.parse().ok()?)),
        };
        let cause = Cause::parse(lines.next()?)?;
        let time_ms = lines.next()?.parse().ok()?;
        if lines.next().is_some() {
            return None;
        }
        Some(HistoryRecord {
            term,
            leader,
            previous_leader,
            cause,
            time_ms,
        })
    }
}

/// The key of `term`'s record: the term in 20 decimal digits, so that key order is term order.
pub fn history_key(term: Term) -> Vec<u8> {
    let mut key = HISTORY_PREFIX.to_vec();
    key.extend_from_slice(format!("{:020}", term.0).as_bytes());
    key
}

/// The replica's part of the history: what it needs to write its own term's record.
#[derive(Debug)]
pub(crate) struct History {
    /// Records kept (`history.keep`), oldest dropped first.
    pub(crate) keep: u32,
    /// The newest term whose record this node saw applied while leading it.
    pub(crate) recorded: Term,
    /// The term and time of this node's last proposal of its record.
    pub(crate) proposed: Option<(Term, Nanos)>,
    /// The newest two (term, leader) this node saw, newest first: the previous leader of an
    /// election is the newest of an earlier term than the one it records.
    pub(crate) seen: [Option<(Term, NodeId)>; 2],
    /// The newest leader that told this node it stepped down on a stalled disk, and its term.
    pub(crate) stall_step_down: Option<(Term, NodeId)>,
    /// Records this node proposed (retries included), for the simulator's summary.
    pub(crate) proposals: u64,
}

impl Default for History {
    fn default() -> History {
        History {
            keep: HISTORY_KEEP_DEFAULT,
            recorded: Term(0),
            proposed: None,
            seen: [None, None],
            stall_step_down: None,
            proposals: 0,
        }
    }
}

impl Replica {
    /// How many records the history keeps (`history.keep`, within 1..=`HISTORY_KEEP_MAX`):
    /// the records this node writes as leader drop the oldest beyond it.
    pub fn set_history_keep(&mut self, keep: u32) {
        assert!(
            (1..=HISTORY_KEEP_MAX).contains(&keep),
            "history.keep {keep} outside 1..={HISTORY_KEEP_MAX} (validated with the config)"
        );
        self.history.keep = keep;
    }

    /// The newest `limit` records as applied here, oldest first. A record that does not
    /// parse is skipped with a warning.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryRecord>, StorageError> {
        let mut records = read_records(&self.state, self.id)?;
        let skip = records.len().saturating_sub(limit);
        Ok(records.split_off(skip))
    }

    /// Records this node proposed as leader since it was built (retries included).
    pub fn history_proposals(&self) -> u64 {
        self.history.proposals
    }

    /// Notes the leader this node sees now (called with every poll).
    pub(crate) fn note_leader(&mut self) {
        let status = self.core.status(self.now);
        let Some(leader) = status.leader else {
            return;
        };
        let seen = &mut self.history.seen;
        if seen[0].is_none_or(|(t, _)| status.term > t) {
            seen[1] = seen[0];
            seen[0] = Some((status.term, leader));
        }
    }

    /// A leader told this node it stepped down because its disk stalled.
    pub(crate) fn note_stall_step_down(&mut self, m: &Message) {
        if m.body == MessageBody::StallStepDown
            && self
                .history
                .stall_step_down
                .is_none_or(|(t, _)| m.term >= t)
        {
            self.history.stall_step_down = Some((m.term, m.from));
        }
    }

    /// A leader proposes its term's record once it leads, and again while it is not applied.
    pub(crate) fn maybe_record_leadership(&mut self, now: Nanos) {
        let status = self.core.status(now);
        if status.role != Role::Leader || self.history.recorded >= status.term {
            return;
        }
        let term = status.term;
        // Only once this term's no-op is applied: every record of an earlier term that will
        // ever be committed is then in the state machine (it precedes the no-op in the log),
        // so the pruning counts it and the previous leader is the newest.
        if self.core.log_term(self.state.applied()) != Some(term) {
            return;
        }
        if self
            .history
            .proposed
            .is_some_and(|(t, at)| t == term && now < at + RECORD_RETRY_NS)
        {
            return;
        }
        if self.core.transfer_target().is_some() {
            return; // The core takes no proposals while handing over.
        }
        // A version-3 record: a cluster with a version-2 voter keeps no history (its leader
        // tries again once the cluster version is raised, as long as it leads the term).
        if self.log_version() < crate::VERSION_OPERATIONS {
            return;
        }
        let key = history_key(term);
        match self.state.kv_get(&key) {
            Ok(Some(_)) => {
                self.history.recorded = term;
                return;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "the history could not be read");
                return;
            }
        }
        let records = match read_records(&self.state, self.id) {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "the history could not be read");
                return;
            }
        };
        let record = self.record_for(term, &records);
        let mut ops: Vec<Op> = self
            .prunable(&records)
            .map(|key| Op::Delete { key })
            .collect();
        ops.push(Op::Put {
            key: key.clone(),
            value: record.encode(),
        });
        let mut proposal = Proposal::new(Command::Txn(Txn {
            compares: vec![Compare {
                key,
                op: CompareOp::Equal,
                target: CompareTarget::Version(0),
            }],
            success: ops,
            failure: vec![],
        }));
        proposal.expected_term = Some(term.0);
        proposal.time_ms = record.time_ms;
        self.history.proposed = Some((term, now));
        self.history.proposals += 1;
        match self.core.propose(proposal.encode(), now) {
            Ok(_) => {
                tracing::info!(
                    node = %self.id, term = term.0, cause = %record.cause,
                    previous = ?record.previous_leader.map(|p| p.0),
                    "leadership recorded in the history"
                )
            }
            Err(err) => {
                tracing::debug!(node = %self.id, error = %err, "the history record is not proposed yet")
            }
        }
    }

    /// The record of `term`, which this node leads: a hand-over's cause and old leader if one
    /// made it campaign, else an election's.
    fn record_for(&self, term: Term, records: &[HistoryRecord]) -> HistoryRecord {
        let time_ms = self.maint.wall.map_or(0, |(at, wall)| {
            wall + self.now.saturating_sub(at) / 1_000_000
        });
        if let Some(c) = self.core.transfer_campaign().filter(|c| c.term == term) {
            return HistoryRecord {
                term,
                leader: self.id,
                previous_leader: Some(c.from),
                cause: Cause::from_code(c.cause),
                time_ms,
            };
        }
        let seen = self
            .history
            .seen
            .into_iter()
            .flatten()
            .find(|&(t, _)| t < term);
        let recorded = records
            .iter()
            .rev()
            .find(|r| r.term < term)
            .map(|r| (r.term, r.leader));
        let previous = match (seen, recorded) {
            (Some(s), Some(r)) => Some(if s.0 >= r.0 { s } else { r }),
            (s, r) => s.or(r),
        };
        // The previous leader told us it stepped down on a stalled disk in the term it led.
        let stalled = previous.is_some() && previous == self.history.stall_step_down;
        HistoryRecord {
            term,
            leader: self.id,
            previous_leader: previous.map(|(_, l)| l),
            cause: if stalled {
                Cause::DiskStall
            } else {
                Cause::Election
            },
            time_ms,
        }
    }

    /// The keys of the oldest records to delete so that `keep` remain with the new one.
    fn prunable<'a>(&self, records: &'a [HistoryRecord]) -> impl Iterator<Item = Vec<u8>> + 'a {
        let excess = (records.len() + 1).saturating_sub(self.history.keep as usize);
        records
            .iter()
            .take(excess.min(PRUNE_OPS_MAX))
            .map(|r| history_key(r.term))
    }
}

/// Every record the state machine holds, oldest first. A record that does not parse (or whose
/// key does not name its term) is skipped with a warning.
fn read_records(state: &dyn StateReader, me: NodeId) -> Result<Vec<HistoryRecord>, StorageError> {
    let (kvs, _more) = state.kv_range(HISTORY_PREFIX, RECORDS_READ_MAX)?;
    Ok(kvs
        .iter()
        .filter_map(|kv| {
            let record = HistoryRecord::decode(&kv.value).filter(|r| history_key(r.term) == kv.key);
            if record.is_none() {
                tracing::warn!(node = %me, key = ?String::from_utf8_lossy(&kv.key), "a history record does not parse: skipped");
            }
            record
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::{Net, MS};
    use crate::{Action, Stop};
    use regent_raft::{Config, Membership, SplitMix64};
    use regent_storage::{Command, Identity, LogStorage, MemStorage, StorageOptions};

    /// The test network, every node keeping `keep` records.
    fn net_keeping(keep: u32) -> Net {
        let mut net = Net::new();
        for id in 1..=3 {
            net.r_mut(id).set_history_keep(keep);
        }
        net
    }

    impl Net {
        /// Runs until a live node leads, is writable and every live node applied its record.
        fn until_recorded(&mut self) -> u64 {
            for _ in 0..400 {
                self.run_ms(5);
                let Some(l) = self.leader() else { continue };
                let term = self.r(l).core().status(self.now).term;
                let everywhere = (1..=3u64)
                    .filter(|&id| !self.down[(id - 1) as usize])
                    .all(|id| {
                        self.r(id)
                            .history(1)
                            .unwrap()
                            .last()
                            .is_some_and(|r| r.term == term)
                    });
                if everywhere {
                    return l;
                }
            }
            panic!("no recorded leader within 2 s");
        }

        /// The newest record, the same on every live node.
        fn last_record(&self) -> HistoryRecord {
            let records: Vec<HistoryRecord> = (1..=3u64)
                .filter(|&id| !self.down[(id - 1) as usize])
                .map(|id| self.r(id).history(1).unwrap().pop().unwrap())
                .collect();
            assert!(records.windows(2).all(|w| w[0] == w[1]), "{records:?}");
            records[0].clone()
        }
    }

    #[test]
    fn the_first_leader_records_an_election_without_a_previous_leader() {
        let mut net = net_keeping(HISTORY_KEEP_DEFAULT);
        let l = net.until_recorded();
        let record = net.last_record();
        assert_eq!(record.leader, NodeId(l));
        assert_eq!(record.cause, Cause::Election);
        assert_eq!(record.previous_leader, None);
        assert!(record.time_ms > 0, "the wall clock stamped it");
        net.run_ms(3_000);
        assert_eq!(net.r(l).history(100).unwrap().len(), 1);
        assert_eq!(net.r(l).history_proposals(), 1, "applied at once: no retry");
    }

    #[test]
    fn hand_overs_record_their_cause_and_the_old_leader() {
        let mut net = net_keeping(HISTORY_KEEP_DEFAULT);
        let first = net.until_recorded();
        let to = if first == 1 { 2 } else { 1 };
        let now = net.now;
        net.r_mut(first)
            .switchover(1, Some(NodeId(to)), now)
            .unwrap();
        assert_eq!(net.until_recorded(), to);
        let record = net.last_record();
        assert_eq!(
            (record.leader, record.previous_leader, record.cause),
            (NodeId(to), Some(NodeId(first)), Cause::Switchover)
        );
        // A stop hands over too.
        let now = net.now;
        assert!(matches!(
            net.r_mut(to).begin_stop(now),
            Stop::AfterHandover(_)
        ));
        let third = net.until_recorded();
        assert_ne!(third, to);
        let record = net.last_record();
        assert_eq!(
            (record.leader, record.previous_leader, record.cause),
            (NodeId(third), Some(NodeId(to)), Cause::Sigterm)
        );
        // An unhealthy host hands over.
        let now = net.now;
        net.r_mut(third).set_host_healthy(false, now);
        let fourth = net.until_recorded();
        assert_ne!(fourth, third);
        let record = net.last_record();
        assert_eq!(
            (record.previous_leader, record.cause),
            (Some(NodeId(third)), Cause::Health)
        );
    }

    #[test]
    fn a_leader_whose_disk_stalls_steps_down_and_its_successor_records_why() {
        let mut net = net_keeping(HISTORY_KEEP_DEFAULT);
        let first = net.until_recorded();
        net.stalled[(first - 1) as usize] = Some(Vec::new());
        let put = Proposal::new(Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        let now = net.now;
        net.r_mut(first).propose(1, put.encode(), now).unwrap();
        // It steps down after persist_stall_max_ms (300 ms); the others elect a new leader.
        net.run_ms(400);
        assert_ne!(net.leader(), Some(first), "stepped down");
        // (Out of the waiting below: a stalled node applies nothing.)
        net.down[(first - 1) as usize] = true;
        let next = net.until_recorded();
        net.down[(first - 1) as usize] = false;
        assert_ne!(next, first);
        let record = net.r(next).history(1).unwrap().pop().unwrap();
        assert_eq!(
            (record.cause, record.previous_leader),
            (Cause::DiskStall, Some(NodeId(first)))
        );
        // The disk comes back: the old leader applies the same history.
        let held = net.stalled[(first - 1) as usize].take().unwrap();
        for p in held {
            let (r, disk) = &mut net.nodes[(first - 1) as usize];
            disk.write_batch(&p.batch).unwrap();
            let mut more: Vec<Action> = p.then_send.into_iter().map(Action::Send).collect();
            r.persisted(p.number, &mut more);
            net.carry_out((first - 1) as usize, more);
        }
        net.run_ms(500);
        assert_eq!(net.last_record(), record);
    }

    #[test]
    fn a_dead_leaders_successor_records_an_election_naming_it() {
        let mut net = net_keeping(HISTORY_KEEP_DEFAULT);
        let first = net.until_recorded();
        net.down[(first - 1) as usize] = true;
        let next = net.until_recorded();
        assert_ne!(next, first);
        let record = net.last_record();
        assert_eq!(
            (record.cause, record.previous_leader),
            (Cause::Election, Some(NodeId(first)))
        );
        let all = net.r(next).history(10).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].term < all[1].term);
    }

    #[test]
    fn only_keep_records_remain_the_newest() {
        let mut net = net_keeping(3);
        let mut leader = net.until_recorded();
        for _ in 0..5 {
            let to = if leader == 3 { 1 } else { leader + 1 };
            let now = net.now;
            net.r_mut(leader)
                .switchover(1, Some(NodeId(to)), now)
                .unwrap();
            leader = net.until_recorded();
            assert_eq!(leader, to);
        }
        for id in 1..=3 {
            let records = net.r(id).history(100).unwrap();
            assert_eq!(records.len(), 3, "n{id}: {records:?}");
            assert_eq!(records[2].leader, NodeId(leader));
            assert!(records.windows(2).all(|w| w[0].term < w[1].term));
            assert!(records.iter().all(|r| r.cause == Cause::Switchover));
        }
        assert_eq!(net.r(1).history(2).unwrap().len(), 2, "the newest two");
    }

    /// A single voter, whose record applies as soon as it is durable: its retry is asked
    /// between the first proposal and its apply, and the compare on the key's absence keeps
    /// the second from writing the term again.
    #[test]
    fn a_retried_record_is_written_once() {
        let identity = Identity {
            cluster_id: "history-test".into(),
            node_id: NodeId(1),
        };
        let mut disk = MemStorage::new(identity, StorageOptions::default())
            .unwrap()
            .0;
        let mut config = Config::new(NodeId(1));
        config.election_timeout_min_ms = 100;
        config.heartbeat_interval_ms = 10;
        let voters = Membership::new([NodeId(1)]);
        let mut r = Replica::new(config, &disk, voters, Box::new(SplitMix64::new(1)), MS).unwrap();
        let mut now = MS;
        let mut retried = false;
        for _ in 0..100 {
            now += 10 * MS;
            r.set_wall_clock(now, now / MS);
            r.tick(now);
            loop {
                let mut out = Vec::new();
                r.poll(&mut out);
                if r.history_proposals() == 1 && !retried {
                    assert!(r.history(10).unwrap().is_empty(), "not applied yet");
                    r.history.proposed = None;
                    r.maybe_record_leadership(now);
                    retried = true;
                }
                if out.is_empty() {
                    break;
                }
                for action in out {
                    if let Action::Persist(p) = action {
                        disk.write_batch(&p.batch).unwrap();
                        let mut more = Vec::new();
                        r.persisted(p.number, &mut more);
                    }
                }
            }
        }
        assert!(retried);
        assert_eq!(r.history_proposals(), 2);
        let records = r.history(10).unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].term, r.core().status(now).term);
        assert_eq!(records[0].previous_leader, None);
    }

    #[test]
    fn a_record_round_trips_and_a_bad_one_is_refused() {
        let record = HistoryRecord {
            term: Term(7),
            leader: NodeId(2),
            previous_leader: Some(NodeId(3)),
            cause: Cause::PromotionFailed,
            time_ms: 1_700_000_000_000,
        };
        assert_eq!(
            HistoryRecord::decode(&record.encode()),
            Some(record.clone())
        );
        let first = HistoryRecord {
            previous_leader: None,
            cause: Cause::Election,
            ..record
        };
        assert_eq!(HistoryRecord::decode(&first.encode()), Some(first));
        assert_eq!(HistoryRecord::decode(b"v2\n7\n2\n-\nelection\n1"), None);
        assert_eq!(HistoryRecord::decode(b"v1\n7\n2\n-\nmystery\n1"), None);
        assert_eq!(HistoryRecord::decode(b"v1\n7\n2\n-\nelection\n1\nx"), None);
        assert_eq!(
            history_key(Term(42)),
            b"\0regent/history/00000000000000000042"
        );
        for cause in Cause::ALL {
            assert_eq!(Cause::parse(cause.as_str()), Some(cause));
            if !matches!(cause, Cause::Election | Cause::DiskStall) {
                assert_eq!(Cause::from_code(cause.code()), cause);
            }
        }
        assert_eq!(Cause::from_code(200), Cause::Handover);
    }
}

//! Tests of the pure core, one file per concept: the Raft paper's cases (`paper`, citing the
//! sections of the extended paper), then what the dissertation adds and regent relies on
//! (`election`, `lease`, `read`, `transfer`, `membership`, `snapshot`), the caller's side
//! (`ready`, `deadline`) and scripted interaction traces (`trace`). "Dissertation" sections are
//! Ongaro's PhD dissertation, where pre-vote (§9.6), check-quorum (§6.2), leader stickiness
//! (§4.2.3), leases (§6.4.1) and leadership transfer (§3.10) are described.
//!
//! This file holds the harnesses. Single-node tests drive one `RaftNode` by hand with crafted
//! messages and `persist` its `Ready`s. `Network` runs several nodes in one thread: it delivers
//! messages in order, drops those on cut links, persists every `Ready` at once on a model disk,
//! and checks election safety and state machine safety after every delivery.
//!
//! Every node uses a 100 ms minimum election timeout (timeouts in [100, 200) ms), 10 ms
//! heartbeats and a 10 % drift bound, so a lease lasts 90 ms.

mod config;
mod deadline;
mod election;
mod lease;
mod membership;
mod paper;
mod read;
mod ready;
mod replication;
mod snapshot;
mod trace;
mod transfer;

use super::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const MS: Nanos = 1_000_000;
const ELECTION_MS: u64 = 100;
const HEARTBEAT_MS: u64 = 10;
/// 10 %: a lease lasts 90 % of the minimum election timeout.
const DRIFT_PPM: u64 = 100_000;
const LEASE: Nanos = 90 * MS;
/// By this time every node built at 0 has passed its election deadline (drawn below 200 ms) and
/// left the window in which a freshly started node refuses votes (100 ms).
const AFTER_TIMEOUT: Nanos = 2 * ELECTION_MS * MS;
/// Messages a `Network` delivers at most before it declares that it does not settle.
const DELIVERIES_MAX: usize = 100_000;

// ----- Vocabulary -----

fn n(id: u64) -> NodeId {
    NodeId(id)
}

fn t(term: u64) -> Term {
    Term(term)
}

fn i(index: u64) -> LogIndex {
    LogIndex(index)
}

fn config(id: u64) -> Config {
    let mut c = Config::new(n(id));
    c.election_timeout_min_ms = ELECTION_MS;
    c.heartbeat_interval_ms = HEARTBEAT_MS;
    c.clock_drift_max_ppm = DRIFT_PPM;
    c.persist_stall_max_ms = 1000;
    c
}

fn config_without_pre_vote(id: u64) -> Config {
    Config {
        pre_vote: false,
        ..config(id)
    }
}

/// The entry a leader of `term` wrote at `index`; the payload names both, so equal entries are
/// the same entry (the log matching property) and a stale one shows in a comparison.
fn entry(term: u64, index: u64) -> Entry {
    Entry {
        term: t(term),
        index: i(index),
        payload: EntryPayload::Normal(format!("t{term}i{index}").into_bytes()),
    }
}

/// A log given by the term of each entry, from index 1 (how the paper's figures draw logs).
fn log(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(k, &term)| entry(term, k as u64 + 1))
        .collect()
}

/// The durable state of a member of the cluster {1..=voters}: term, no vote, `terms` as its log,
/// committed and applied up to `commit`.
fn restored(voters: u64, term: u64, terms: &[u64], commit: u64) -> RestoredState {
    RestoredState {
        hard_state: HardState {
            term: t(term),
            vote: None,
            commit: i(commit),
        },
        membership: Membership::new((1..=voters).map(NodeId)),
        snapshot_index: i(0),
        snapshot_term: t(0),
        entries: log(terms),
        applied: i(commit),
    }
}

/// A node started at time 0. The seed is the id, so every test is reproducible.
fn boot(config: Config, state: RestoredState) -> RaftNode {
    let seed = config.id.0;
    RaftNode::new(config, state, Box::new(SplitMix64::new(seed)), 0).expect("valid config")
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: n(from),
        to: n(to),
        term: t(term),
        body,
    }
}

fn vote_request(last_index: u64, last_term: u64) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote: false,
        last_log_index: i(last_index),
        last_log_term: t(last_term),
        transfer_round: None,
    }
}

fn pre_vote_request(last_index: u64, last_term: u64) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote: true,
        last_log_index: i(last_index),
        last_log_term: t(last_term),
        transfer_round: None,
    }
}

fn vote_response(granted: bool) -> MessageBody {
    MessageBody::RequestVoteResponse {
        pre_vote: false,
        granted,
    }
}

fn pre_vote_response(granted: bool) -> MessageBody {
    MessageBody::RequestVoteResponse {
        pre_vote: true,
        granted,
    }
}

fn append(prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64) -> MessageBody {
    MessageBody::AppendEntries {
        prev_log_index: i(prev_index),
        prev_log_term: t(prev_term),
        entries,
        leader_commit: i(commit),
        round: 1,
    }
}

fn append_ok(match_index: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse {
        success: true,
        match_index: i(match_index),
        conflict: None,
        round: 1,
    }
}

fn append_rejected(rejected: u64, hint_term: Option<u64>, first_index: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse {
        success: false,
        match_index: i(rejected),
        conflict: Some(ConflictHint {
            term: hint_term.map(Term),
            first_index: i(first_index),
        }),
        round: 1,
    }
}

fn heartbeat(commit: u64, round: u64) -> MessageBody {
    MessageBody::Heartbeat {
        commit: i(commit),
        round,
    }
}

fn heartbeat_response(round: u64) -> MessageBody {
    MessageBody::HeartbeatResponse { round }
}

/// Candidates' last (index, term) against a voter whose log is [1, 2, 2], and whether the
/// candidate's log is at least as up to date (§5.4.1: "If the logs have last entries with
/// different terms, then the log with the later term is more up-to-date. If the logs end with
/// the same term, then whichever log is longer is more up-to-date.").
#[rustfmt::skip]
const UP_TO_DATE: [(u64, u64, bool, &str); 7] = [
    // last index, last term, granted
    (3, 2, true,  "same last entry"),
    (4, 2, true,  "same last term, longer"),
    (2, 2, false, "same last term, shorter"),
    (1, 3, true,  "later last term, shorter"),
    (9, 1, false, "earlier last term, longer"),
    (3, 1, false, "earlier last term, same length"),
    (0, 0, false, "empty log"),
];

// ----- Driving one node by hand -----

/// Carries out every `Ready` at once, as a caller with an instant disk would, and returns the
/// messages the node may now send: those sendable at once first, then those that waited for the
/// write.
fn persist(node: &mut RaftNode) -> Vec<Message> {
    let mut out = node.take_messages();
    while let Some(ready) = node.ready() {
        out.extend(ready.messages);
        out.extend(ready.persisted_messages);
        node.advance(ready.number);
    }
    out.extend(node.take_messages());
    out
}

fn step(node: &mut RaftNode, m: Message, now: Nanos) {
    let shown = format!("{m:?}");
    node.step(m, now)
        .unwrap_or_else(|e| panic!("{} refused {shown}: {e}", node.id()));
}

/// Node 1 of {1..=voters}, a follower in `term` with `terms` as its log, started at 0.
fn follower(voters: u64, term: u64, terms: &[u64]) -> RaftNode {
    boot(config(1), restored(voters, term, terms, 0))
}

/// Node 1 of {1..=voters}, a candidate in `term` (it timed out at `AFTER_TIMEOUT` in
/// `term - 1`, without a pre-vote), with its term and vote durable and its vote requests sent.
fn candidate(voters: u64, term: u64, terms: &[u64]) -> RaftNode {
    candidate_with(config_without_pre_vote(1), voters, term, terms)
}

fn candidate_with(config: Config, voters: u64, term: u64, terms: &[u64]) -> RaftNode {
    let mut node = boot(config, restored(voters, term - 1, terms, 0));
    node.tick(AFTER_TIMEOUT);
    persist(&mut node);
    node
}

/// Node 1 of {1..=voters}, leader of `term` since `AFTER_TIMEOUT`: voters 2, 3, … granted just
/// enough votes. Its no-op is durable; no follower has acknowledged anything yet.
fn leader(voters: u64, term: u64, terms: &[u64]) -> RaftNode {
    leader_with(config_without_pre_vote(1), voters, term, terms)
}

fn leader_with(config: Config, voters: u64, term: u64, terms: &[u64]) -> RaftNode {
    let mut node = candidate_with(config, voters, term, terms);
    let mut voter = 2;
    while node.status(AFTER_TIMEOUT).role != Role::Leader {
        step(
            &mut node,
            msg(voter, 1, term, vote_response(true)),
            AFTER_TIMEOUT,
        );
        voter += 1;
    }
    persist(&mut node);
    node
}

// ----- A network of nodes -----

/// Several nodes in one thread. Messages are delivered in the order they were sent, unless the
/// directed link is cut; every `Ready` is written to a model disk and acknowledged at once.
struct Network {
    nodes: BTreeMap<NodeId, RaftNode>,
    now: Nanos,
    /// Directed links (from, to) that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    queue: VecDeque<Message>,
    /// Every message handed to its recipient, with the time it was delivered.
    delivered: Vec<(Nanos, Message)>,
    /// Every message a cut link dropped, with the number of messages delivered before it.
    dropped: Vec<(usize, Message)>,
    /// What each node's storage holds: `disk[id][k]` is the entry at index k + 1.
    disk: BTreeMap<NodeId, Vec<Entry>>,
    /// Every `truncate_from` a node asked its storage for.
    truncations: Vec<(NodeId, LogIndex)>,
    /// State machine safety: the entry applied at each index, by whichever node applied it first.
    applied: BTreeMap<LogIndex, Entry>,
    /// Election safety: the leader of each term.
    leader_of: BTreeMap<Term, NodeId>,
    /// Nodes whose disk hangs: the `Ready` being written, once one was handed out.
    stalled: BTreeMap<NodeId, Option<Ready>>,
}

impl Network {
    /// `voters` empty nodes in term 0.
    fn new(voters: u64) -> Network {
        Network::with_logs(voters, 0, &vec![&[][..]; voters as usize], config)
    }

    /// One node per log, all in `term`, with the first three entries committed when they exist
    /// (every log of figure 7 agrees on them).
    fn with_logs(voters: u64, term: u64, logs: &[&[u64]], config: fn(u64) -> Config) -> Network {
        assert_eq!(logs.len() as u64, voters);
        let nodes = logs
            .iter()
            .enumerate()
            .map(|(k, terms)| {
                let commit = terms.len().min(3) as u64;
                (config(k as u64 + 1), restored(voters, term, terms, commit))
            })
            .collect();
        Network::from_nodes(nodes)
    }

    fn from_nodes(nodes: Vec<(Config, RestoredState)>) -> Network {
        let mut net = Network {
            nodes: BTreeMap::new(),
            now: 0,
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            delivered: Vec::new(),
            dropped: Vec::new(),
            disk: BTreeMap::new(),
            truncations: Vec::new(),
            applied: BTreeMap::new(),
            leader_of: BTreeMap::new(),
            stalled: BTreeMap::new(),
        };
        for (config, state) in nodes {
            let id = config.id;
            net.disk.insert(id, state.entries.clone());
            for e in &state.entries[..state.applied.0 as usize] {
                net.applied.entry(e.index).or_insert_with(|| e.clone());
            }
            net.nodes.insert(id, boot(config, state));
        }
        net
    }

    fn node(&self, id: u64) -> &RaftNode {
        &self.nodes[&n(id)]
    }

    fn status(&self, id: u64) -> Status {
        self.node(id).status(self.now)
    }

    fn leaders(&self) -> Vec<NodeId> {
        let now = self.now;
        self.nodes
            .values()
            .filter(|node| node.status(now).role == Role::Leader)
            .map(|node| node.id())
            .collect()
    }

    /// The terms of the entries on `id`'s disk, from index 1.
    fn log_terms(&self, id: u64) -> Vec<u64> {
        self.disk[&n(id)].iter().map(|e| e.term.0).collect()
    }

    fn isolate(&mut self, id: u64) {
        for &other in self.nodes.keys() {
            if other != n(id) {
                self.cut.insert((n(id), other));
                self.cut.insert((other, n(id)));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// How many AppendEntries `from` delivered to `to` so far.
    fn appends_delivered(&self, from: u64, to: u64) -> usize {
        self.delivered
            .iter()
            .filter(|(_, m)| m.from == n(from) && m.to == n(to))
            .filter(|(_, m)| matches!(m.body, MessageBody::AppendEntries { .. }))
            .count()
    }

    /// Ticks the given nodes at the current time, then delivers until quiet.
    fn tick(&mut self, ids: &[u64]) {
        for &id in ids {
            let now = self.now;
            self.nodes.get_mut(&n(id)).expect("member").tick(now);
        }
        self.deliver();
    }

    /// Lets `ms` milliseconds pass, ticking every node each millisecond.
    fn run_ms(&mut self, ms: u64) {
        let all: Vec<u64> = self.nodes.keys().map(|id| id.0).collect();
        for _ in 0..ms {
            self.now += MS;
            self.tick(&all);
        }
    }

    /// Makes `id` campaign: only `id` is ticked, two minimum election timeouts from now, which is
    /// past its election deadline and past every node's vote-refusal window (no one else ticks,
    /// so no one else campaigns). Delivers until quiet.
    fn campaign(&mut self, id: u64) {
        self.now += AFTER_TIMEOUT;
        self.tick(&[id]);
    }

    fn elect(&mut self, id: u64) {
        self.campaign(id);
        assert_eq!(self.leaders(), vec![n(id)], "n{id} should have won");
    }

    /// Elects `id` while `absent` is cut off, ticking only `id`.
    fn elect_without(&mut self, absent: u64, id: u64) {
        self.isolate(absent);
        self.campaign(id);
        assert_eq!(self.status(id).role, Role::Leader, "n{id} should have won");
    }

    fn deliver(&mut self) {
        self.deliver_checking(|_| {});
    }

    /// Delivers messages one at a time until none is left, calling `check` after each.
    fn deliver_checking(&mut self, mut check: impl FnMut(&Network)) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.flush(id);
        }
        let mut deliveries = 0;
        while let Some(m) = self.queue.pop_front() {
            deliveries += 1;
            assert!(deliveries <= DELIVERIES_MAX, "the network does not settle");
            if self.cut.contains(&(m.from, m.to)) {
                self.dropped.push((self.delivered.len(), m));
                continue;
            }
            let to = m.to;
            self.delivered.push((self.now, m.clone()));
            let now = self.now;
            step(self.nodes.get_mut(&to).expect("member"), m, now);
            self.flush(to);
            check(self);
        }
    }

    /// Carries out every `Ready` of `id` as storage would, checks the safety properties, and
    /// queues the messages it may send.
    fn flush(&mut self, id: NodeId) {
        let mut out = self.nodes.get_mut(&id).expect("member").take_messages();
        loop {
            let node = self.nodes.get_mut(&id).expect("member");
            if let Some(held) = self.stalled.get_mut(&id) {
                // The write hangs; messages that need no durability still go out.
                if held.is_none() {
                    *held = node.ready().map(|mut ready| {
                        out.append(&mut ready.messages);
                        ready
                    });
                }
                break;
            }
            let Some(ready) = node.ready() else { break };
            out.extend(self.write(id, ready));
        }
        let node = self.nodes.get_mut(&id).expect("member");
        out.extend(node.take_messages());
        let status = node.status(self.now);
        if status.role == Role::Leader {
            let first = *self.leader_of.entry(status.term).or_insert(id);
            assert_eq!(first, id, "two leaders in {}", status.term);
        }
        self.queue.extend(out);
    }

    /// Writes one `Ready` to `id`'s disk and acknowledges it; returns the messages that waited
    /// for the write (and those sendable at once, when they were not sent yet).
    fn write(&mut self, id: NodeId, ready: Ready) -> Vec<Message> {
        let mut out = ready.messages;
        let disk = self.disk.get_mut(&id).expect("member");
        if let Some(from) = ready.batch.truncate_from {
            assert!(from.0 >= 1 && from.0 <= disk.len() as u64 + 1);
            disk.truncate(from.0 as usize - 1);
            self.truncations.push((id, from));
        }
        for e in ready.batch.entries {
            assert_eq!(
                e.index.0,
                disk.len() as u64 + 1,
                "{id}: entries not contiguous"
            );
            disk.push(e);
        }
        for e in ready.batch.committed {
            assert_eq!(
                Some(&e),
                disk.get(e.index.0 as usize - 1),
                "{id} applies an entry that is not on its disk"
            );
            let first = self.applied.entry(e.index).or_insert_with(|| e.clone());
            assert_eq!(*first, e, "{id} applies a different entry at {}", e.index);
        }
        out.extend(ready.persisted_messages);
        self.nodes
            .get_mut(&id)
            .expect("member")
            .advance(ready.number);
        out
    }

    /// From now on `id`'s disk hangs on the next `Ready` it is given.
    fn stall(&mut self, id: u64) {
        self.stalled.insert(n(id), None);
    }

    /// `id`'s disk completes the write it hung on, and works normally again.
    fn unstall(&mut self, id: u64) {
        let held = self.stalled.remove(&n(id)).expect("stalled");
        if let Some(mut ready) = held {
            ready.messages.clear(); // Sent when the write started.
            let out = self.write(n(id), ready);
            self.queue.extend(out);
        }
        self.deliver();
    }
}

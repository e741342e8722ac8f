//! The Raft paper's rules written as tests of the pure core, in the manner of raft-rs's
//! `test_raft_paper.rs`: each test names the section or figure it checks and asserts the exact
//! messages and states the core produces. "§5.x" and the figures are the extended Raft paper
//! (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm"); "dissertation"
//! sections are Ongaro's PhD dissertation, where pre-vote (§9.6), check-quorum (§6.2), leader
//! stickiness (§4.2.3) and leases (§6.4.1) are described.
//!
//! Two harnesses. Single-node tests drive one `RaftNode` by hand with crafted messages and
//! `persist` its `Ready`s. `Network` runs several nodes in one thread: it delivers messages
//! in order, drops those on cut links, persists every `Ready` at once on a model disk, and checks
//! election safety and state machine safety after every delivery.
//!
//! Every node uses a 100 ms minimum election timeout (timeouts in [100, 200) ms), 10 ms
//! heartbeats and a 10 % drift bound, so a lease lasts 90 ms.

#![cfg(test)]

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

// ----- Configuration -----

/// A name, a way to break a valid config, and the words its error must contain.
type ConfigCase = (&'static str, fn(&mut Config), &'static [&'static str]);

#[test]
fn config_errors_name_the_field_and_the_rule() {
    let cases: Vec<ConfigCase> = vec![
        ("id 0", |c| c.id = n(0), &["id must not be 0"]),
        (
            "election timeout too short",
            |c| c.election_timeout_min_ms = 2,
            &["election_timeout_min_ms", "at least 3"],
        ),
        (
            "election timeout too long",
            |c| c.election_timeout_min_ms = 3_600_001,
            &["election_timeout_min_ms", "at most"],
        ),
        (
            "no heartbeat",
            |c| c.heartbeat_interval_ms = 0,
            &["heartbeat_interval_ms", "at least 1"],
        ),
        (
            "heartbeat above a third of the election timeout",
            |c| c.heartbeat_interval_ms = 34,
            &["heartbeat_interval_ms", "election_timeout_min_ms", "third"],
        ),
        (
            "drift",
            |c| c.clock_drift_max_ppm = 500_001,
            &["clock_drift_max_ppm"],
        ),
        ("no inflight", |c| c.inflight_max = 0, &["inflight_max"]),
        (
            "too much inflight",
            |c| c.inflight_max = 1025,
            &["inflight_max"],
        ),
        (
            "no append bytes",
            |c| c.append_bytes_max = 0,
            &["append_bytes_max"],
        ),
        (
            "no append entries",
            |c| c.append_entries_max = 0,
            &["append_entries_max"],
        ),
        (
            "uncommitted below one append",
            |c| c.uncommitted_bytes_max = c.append_bytes_max - 1,
            &["uncommitted_bytes_max"],
        ),
        (
            "persist stall below a heartbeat",
            |c| c.persist_stall_max_ms = HEARTBEAT_MS - 1,
            &["persist_stall_max_ms"],
        ),
    ];
    assert_eq!(config(1).validate(), Ok(()));
    for (name, break_it, words) in cases {
        let mut c = config(1);
        break_it(&mut c);
        let err = c.validate().expect_err(name).to_string();
        for word in words {
            assert!(err.contains(word), "{name}: {err:?} does not say {word:?}");
        }
        // The core refuses to start with it, with the same error rather than a panic.
        let refused = RaftNode::new(c, restored(3, 0, &[], 0), Box::new(SplitMix64::new(1)), 0);
        assert_eq!(refused.err().map(|e| e.to_string()), Some(err), "{name}");
    }
}

// ----- Raft §5.1: terms -----

/// Node 1 of {1, 2, 3} in term 3 in the given role, at `AFTER_TIMEOUT`, out of any lease.
fn node_in_role(role: Role) -> RaftNode {
    match role {
        Role::Follower => follower(3, 3, &[]),
        Role::Candidate => candidate(3, 3, &[]),
        Role::Leader => leader(3, 3, &[]),
        _ => unreachable!(),
    }
}

#[test]
fn s5_1_a_message_of_a_higher_term_makes_the_receiver_a_follower_of_that_term() {
    // Raft §5.1: "If a server receives a request or response with a higher term, it updates its
    // term to the received value and reverts to follower state." Two deliberate exceptions:
    // pre-votes (dissertation §9.6) never move a term, and a leader does not let a vote request
    // depose it (leader stickiness, dissertation §4.2.3: it is, after all, alive).
    let adopts = true;
    let keeps = false;
    #[rustfmt::skip]
    let cases: Vec<(&str, MessageBody, [bool; 3])> = vec![
        //                                                                follower candidate leader
        ("append",             append(0, 0, vec![], 0),             [adopts, adopts, adopts]),
        ("heartbeat",          heartbeat(0, 1),                     [adopts, adopts, adopts]),
        ("vote request",       vote_request(9, 9),                  [adopts, adopts, keeps]),
        ("pre-vote request",   pre_vote_request(9, 9),              [keeps,  keeps,  keeps]),
        ("vote refusal",       vote_response(false),                [adopts, adopts, adopts]),
        ("pre-vote grant",     pre_vote_response(true),             [keeps,  keeps,  keeps]),
        ("pre-vote refusal",   pre_vote_response(false),            [adopts, adopts, adopts]),
        ("append response",    append_ok(0),                        [adopts, adopts, adopts]),
        ("heartbeat response", heartbeat_response(1),               [adopts, adopts, adopts]),
    ];
    for (name, body, expected) in cases {
        for (role, adopt) in [Role::Follower, Role::Candidate, Role::Leader]
            .into_iter()
            .zip(expected)
        {
            let mut node = node_in_role(role);
            let leads = matches!(
                body,
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. }
            );
            step(&mut node, msg(2, 1, 5, body.clone()), AFTER_TIMEOUT);
            let s = node.status(AFTER_TIMEOUT);
            if adopt {
                assert_eq!(s.term, t(5), "{role} receiving a {name}");
                assert_eq!(s.role, Role::Follower, "{role} receiving a {name}");
                assert_eq!(s.leader, leads.then_some(n(2)), "{role} receiving a {name}");
            } else {
                assert_eq!((s.term, s.role), (t(3), role), "{role} receiving a {name}");
            }
        }
    }
}

#[test]
fn s5_1_a_message_of_a_stale_term_is_rejected_with_the_current_term() {
    // Raft §5.1: "If a server receives a request with a stale term number, it rejects the
    // request." The node answers where the answer helps the sender catch up (a deposed leader
    // learns the new term from the heartbeat answer) and otherwise ignores the message.
    #[rustfmt::skip]
    let cases: Vec<(&str, MessageBody, Option<MessageBody>)> = vec![
        ("append",             append(0, 0, vec![entry(2, 1)], 1), Some(heartbeat_response(0))),
        ("heartbeat",          heartbeat(0, 4),                    Some(heartbeat_response(0))),
        ("pre-vote request",   pre_vote_request(9, 2),             Some(pre_vote_response(false))),
        ("vote request",       vote_request(9, 2),                 None),
        ("vote grant",         vote_response(true),                None),
        ("append response",    append_ok(1),                       None),
        ("heartbeat response", heartbeat_response(1),              None),
    ];
    for (name, body, answer) in cases {
        let mut node = follower(3, 3, &[]);
        step(&mut node, msg(2, 1, 2, body), AFTER_TIMEOUT);
        let expected: Vec<Message> = answer.into_iter().map(|b| msg(1, 2, 3, b)).collect();
        assert_eq!(node.take_messages(), expected, "{name}");
        assert!(node.ready().is_none(), "{name}: nothing to persist");
        let s = node.status(AFTER_TIMEOUT);
        assert_eq!(
            (s.role, s.term, s.leader),
            (Role::Follower, t(3), None),
            "{name}"
        );
        assert_eq!(s.last_index, i(0), "{name}: a stale append appends nothing");
    }
}

#[test]
fn s5_1_a_stale_leader_steps_down_when_answered_with_a_higher_term() {
    // Check-quorum is off so that the isolated leader keeps believing it leads: only the term
    // in the answers to its heartbeats can tell it otherwise.
    let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], |id| Config {
        check_quorum: false,
        ..config(id)
    });
    net.elect(1);
    let old_term = net.status(1).term;
    net.isolate(1);
    let (lost, _) = net
        .nodes
        .get_mut(&n(1))
        .unwrap()
        .propose(b"lost".to_vec(), net.now)
        .unwrap();
    net.deliver();
    net.elect_without(1, 2);
    let new_term = net.status(2).term;
    assert!(new_term > old_term);
    assert_eq!(net.status(1).role, Role::Leader, "n1 cannot know yet");

    net.heal();
    net.now += HEARTBEAT_MS * MS;
    net.tick(&[1]);
    // Its heartbeats were answered with the new term: it stepped down and adopted it.
    let s = net.status(1);
    assert_eq!((s.role, s.term), (Role::Follower, new_term));
    // The new leader's next heartbeat brings n1's log in line: the entry n1 appended alone in
    // the old term, never committed, is gone.
    net.now += HEARTBEAT_MS * MS;
    net.tick(&[2]);
    assert_eq!(net.disk[&n(1)], net.disk[&n(2)]);
    assert_ne!(net.node(1).log_term(lost), Some(old_term));
    assert_eq!(net.status(1).leader, Some(n(2)));
}

// ----- Raft §5.2: leader election -----

#[test]
fn s5_2_a_follower_that_hears_nothing_starts_a_pre_election_after_its_timeout() {
    // §5.2: "If a follower receives no communication over a period of time called the election
    // timeout, then it ... begins an election"; dissertation §9.6: first a pre-vote, for the
    // next term, which changes no term and needs nothing durable.
    let mut node = follower(3, 4, &[1, 4]);
    node.tick(ELECTION_MS * MS - 1);
    assert_eq!(
        node.status(0).role,
        Role::Follower,
        "no timeout below the minimum"
    );
    assert!(node.take_messages().is_empty());

    node.tick(AFTER_TIMEOUT);
    let s = node.status(AFTER_TIMEOUT);
    assert_eq!((s.role, s.term), (Role::PreCandidate, t(4)));
    assert_eq!(
        node.take_messages(),
        vec![
            msg(1, 2, 5, pre_vote_request(2, 4)),
            msg(1, 3, 5, pre_vote_request(2, 4)),
        ]
    );
    let ready = node.ready().expect("the role changed");
    assert_eq!(
        ready.batch.hard_state, None,
        "a pre-vote changes neither term nor vote"
    );
    assert!(ready.persisted_messages.is_empty());
}

#[test]
fn s5_2_a_won_pre_vote_starts_the_real_election_and_its_requests_wait_for_the_vote_to_be_durable() {
    // §5.2: "a follower increments its current term and transitions to candidate state. It then
    // votes for itself and issues RequestVote RPCs". The vote for itself must be durable
    // before anyone is asked (Figure 2: persistent state is updated before responding).
    let mut node = follower(3, 4, &[1, 4]);
    node.tick(AFTER_TIMEOUT);
    node.take_messages();
    step(
        &mut node,
        msg(2, 1, 5, pre_vote_response(true)),
        AFTER_TIMEOUT,
    );
    let s = node.status(AFTER_TIMEOUT);
    assert_eq!((s.role, s.term), (Role::Candidate, t(5)));
    assert!(
        node.take_messages().is_empty(),
        "nothing before the vote is durable"
    );
    let ready = node.ready().expect("a term and a vote to persist");
    assert!(ready.messages.is_empty());
    assert_eq!(
        ready.batch.hard_state,
        Some(HardState {
            term: t(5),
            vote: Some(n(1)),
            commit: i(0)
        })
    );
    assert_eq!(
        ready.persisted_messages,
        vec![
            msg(1, 2, 5, vote_request(2, 4)),
            msg(1, 3, 5, vote_request(2, 4)),
        ]
    );
}

#[test]
fn s5_2_the_election_timeout_is_random_in_min_to_twice_min() {
    // §5.2: "election timeouts are chosen randomly from a fixed interval (e.g., 150–300ms)".
    // Here [min, 2·min): never before min, always before 2·min, and spread out.
    let min = ELECTION_MS * MS;
    let mut fired_at_ms = BTreeSet::new();
    for seed in 1..=64 {
        let mut node = RaftNode::new(
            config(1),
            restored(3, 1, &[], 0),
            Box::new(SplitMix64::new(seed)),
            0,
        )
        .unwrap();
        node.tick(min - 1);
        assert_eq!(node.status(0).role, Role::Follower, "seed {seed}");
        let mut ms = ELECTION_MS;
        while node.status(0).role == Role::Follower {
            node.tick(ms * MS);
            ms += 1;
        }
        let fired = ms - 1;
        assert!(
            (ELECTION_MS..=2 * ELECTION_MS).contains(&fired),
            "seed {seed}: {fired} ms"
        );
        fired_at_ms.insert(fired);

        let mut node = RaftNode::new(
            config(1),
            restored(3, 1, &[], 0),
            Box::new(SplitMix64::new(seed)),
            0,
        )
        .unwrap();
        node.tick(2 * min - 1);
        assert_eq!(node.status(0).role, Role::PreCandidate, "seed {seed}");
    }
    assert!(
        fired_at_ms.len() >= 30,
        "64 seeds drew only {} distinct timeouts",
        fired_at_ms.len()
    );
}

#[test]
fn s5_2_a_candidate_wins_with_a_majority_loses_to_a_majority_and_waits_otherwise() {
    // §5.2: "A candidate wins an election if it receives votes from a majority of the servers
    // in the full cluster for the same term." Once a majority refused, it cannot win: it
    // returns to follower (in the same term) and waits for a timeout.
    type Answers = &'static [(u64, bool)];
    #[rustfmt::skip]
    let cases: Vec<(u64, Answers, Role)> = vec![
        // voters  answers (voter, granted)                     outcome
        (3, &[],                                                 Role::Candidate),
        (3, &[(2, true)],                                        Role::Leader),
        (3, &[(2, false)],                                       Role::Candidate),
        (3, &[(2, false), (3, false)],                           Role::Follower),
        (3, &[(2, false), (3, true)],                            Role::Leader),
        (5, &[(2, true)],                                        Role::Candidate),
        (5, &[(2, true), (3, true)],                             Role::Leader),
        (5, &[(2, true), (3, false), (4, false)],                Role::Candidate),
        (5, &[(2, false), (3, false), (4, false)],               Role::Follower),
        (5, &[(2, true), (3, false), (4, false), (5, true)],     Role::Leader),
    ];
    for (voters, answers, outcome) in cases {
        let mut node = candidate(voters, 2, &[]);
        for &(voter, granted) in answers {
            step(
                &mut node,
                msg(voter, 1, 2, vote_response(granted)),
                AFTER_TIMEOUT,
            );
        }
        let s = node.status(AFTER_TIMEOUT);
        assert_eq!(
            (s.role, s.term),
            (outcome, t(2)),
            "{voters} voters, {answers:?}"
        );
    }

    // A lone voter is its own majority.
    let mut node = boot(config(1), restored(1, 0, &[], 0));
    node.tick(AFTER_TIMEOUT);
    assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);
}

#[test]
fn s5_2_a_candidate_that_times_out_starts_a_new_election_in_the_next_term() {
    // §5.2: "each candidate will time out and start a new election by incrementing its term".
    let mut node = candidate(3, 2, &[]);
    node.tick(2 * AFTER_TIMEOUT);
    let s = node.status(2 * AFTER_TIMEOUT);
    assert_eq!((s.role, s.term), (Role::Candidate, t(3)));
    assert_eq!(
        persist(&mut node),
        vec![
            msg(1, 2, 3, vote_request(0, 0)),
            msg(1, 3, 3, vote_request(0, 0))
        ]
    );
}

#[test]
fn s5_2_a_candidate_that_hears_from_a_leader_of_its_term_becomes_its_follower() {
    // §5.2: "If the leader's term ... is at least as large as the candidate's current term, then
    // the candidate recognizes the leader as legitimate and returns to follower state."
    let mut node = candidate(3, 2, &[]);
    step(
        &mut node,
        msg(3, 1, 2, append(0, 0, vec![entry(2, 1)], 0)),
        AFTER_TIMEOUT,
    );
    let s = node.status(AFTER_TIMEOUT);
    assert_eq!(
        (s.role, s.term, s.leader),
        (Role::Follower, t(2), Some(n(3)))
    );
    assert_eq!(persist(&mut node), vec![msg(1, 3, 2, append_ok(1))]);
}

#[test]
fn s5_2_a_split_vote_elects_no_one_and_a_later_election_does() {
    // §5.2: "votes could be split so that no candidate obtains a majority. When this happens,
    // each candidate will time out and start a new election". All three time out together,
    // vote for themselves and refuse each other.
    let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], config_without_pre_vote);
    net.now = AFTER_TIMEOUT;
    net.tick(&[1, 2, 3]);
    assert!(net.leaders().is_empty());
    for id in 1..=3 {
        let s = net.status(id);
        assert_eq!((s.term, s.leader), (t(1), None), "n{id}");
        assert_ne!(s.role, Role::Leader, "n{id}");
    }
    // Random timeouts break the tie.
    let mut waited_ms = 0;
    while net.leaders().is_empty() {
        net.run_ms(1);
        waited_ms += 1;
        assert!(waited_ms < 2000, "no leader after 2 s");
    }
    assert!(net.status(net.leaders()[0].0).term > t(1));
}

#[test]
fn s5_2_a_node_votes_at_most_once_per_term() {
    // §5.2: "Each server will vote for at most one candidate in a given term, on a
    // first-come-first-served basis." Asking again in the same term gets the same answer.
    let mut node = follower(3, 1, &[]);
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    assert_eq!(persist(&mut node), vec![msg(1, 2, 2, vote_response(true))]);
    step(&mut node, msg(3, 1, 2, vote_request(5, 1)), AFTER_TIMEOUT);
    assert_eq!(persist(&mut node), vec![msg(1, 3, 2, vote_response(false))]);
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    assert_eq!(persist(&mut node), vec![msg(1, 2, 2, vote_response(true))]);

    // The vote survives a restart: it was durable before it was announced.
    let state = RestoredState {
        hard_state: HardState {
            term: t(2),
            vote: Some(n(2)),
            commit: i(0),
        },
        ..restored(3, 2, &[], 0)
    };
    let mut node = boot(config(1), state);
    step(&mut node, msg(3, 1, 2, vote_request(5, 1)), AFTER_TIMEOUT);
    assert_eq!(persist(&mut node), vec![msg(1, 3, 2, vote_response(false))]);
}

// ----- Raft §5.4.1: the election restriction; dissertation §9.6: pre-vote -----

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

#[test]
fn s5_4_1_a_vote_is_granted_only_to_a_candidate_whose_log_is_at_least_as_up_to_date() {
    for (last_index, last_term, granted, name) in UP_TO_DATE {
        let mut node = follower(3, 2, &[1, 2, 2]);
        step(
            &mut node,
            msg(2, 1, 3, vote_request(last_index, last_term)),
            AFTER_TIMEOUT,
        );
        // The term is adopted either way (§5.1); the vote only when granted.
        assert_eq!(node.status(AFTER_TIMEOUT).term, t(3), "{name}");
        let ready = node.ready().expect("a new term to persist");
        assert_eq!(
            ready.batch.hard_state.map(|hs| (hs.term, hs.vote)),
            Some((t(3), granted.then_some(n(2)))),
            "{name}"
        );
        assert!(
            ready.messages.is_empty(),
            "{name}: the answer waits for the new term"
        );
        assert_eq!(
            ready.persisted_messages,
            vec![msg(1, 2, 3, vote_response(granted))],
            "{name}"
        );
    }
}

#[test]
fn s9_6_a_pre_vote_follows_the_same_rule_and_never_changes_the_voters_term_or_vote() {
    for (last_index, last_term, granted, name) in UP_TO_DATE {
        let mut node = follower(3, 2, &[1, 2, 2]);
        step(
            &mut node,
            msg(2, 1, 3, pre_vote_request(last_index, last_term)),
            AFTER_TIMEOUT,
        );
        assert_eq!(node.status(AFTER_TIMEOUT).term, t(2), "{name}");
        // A grant carries the term it is for; a refusal, the voter's own.
        let answer_term = if granted { 3 } else { 2 };
        assert_eq!(
            node.take_messages(),
            vec![msg(1, 2, answer_term, pre_vote_response(granted))],
            "{name}: sent at once, since it promises nothing durable"
        );
        assert!(node.ready().is_none(), "{name}: nothing to persist");
    }
}

#[test]
fn s9_6_a_partitioned_node_rejoins_without_deposing_the_leader_only_with_pre_vote() {
    // Dissertation §9.6: without pre-vote, a node cut off from the others keeps incrementing
    // its term, and when it returns the higher term forces the leader to step down. With
    // pre-vote it never wins a pre-election while cut off, so its term does not move.
    for (pre_vote, leader_survives) in [(true, true), (false, false)] {
        let config: fn(u64) -> Config = if pre_vote {
            config
        } else {
            config_without_pre_vote
        };
        let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], config);
        net.elect(1);
        let term = net.status(1).term;
        net.isolate(3);
        net.run_ms(1000);
        let cut_off_term = net.status(3).term;
        assert_eq!(
            cut_off_term == term,
            pre_vote,
            "pre_vote {pre_vote}: n3 in {cut_off_term}"
        );
        net.heal();
        net.run_ms(500);
        let s = net.status(1);
        assert_eq!(
            (s.role == Role::Leader && s.term == term),
            leader_survives,
            "pre_vote {pre_vote}: n1 is {} in {}",
            s.role,
            s.term
        );
    }
}

// ----- Raft §5.3: log replication -----

#[test]
fn s5_3_a_follower_rejects_an_append_whose_previous_entry_does_not_match_and_says_where() {
    // §5.3: "If the follower does not find an entry in its log with the same index and term,
    // then it refuses the new entries." The answer names the follower's term at the rejected
    // index and the first index of that term (or its last index + 1 when its log is shorter),
    // so the leader can skip a whole term per round trip.
    #[rustfmt::skip]
    let cases: Vec<(u64, u64, MessageBody)> = vec![
        // prev index, prev term   answer (follower's log is [1, 1, 2, 2, 2])
        (5, 3,                     append_rejected(5, Some(2), 3)),
        (4, 3,                     append_rejected(4, Some(2), 3)),
        (2, 2,                     append_rejected(2, Some(1), 1)),
        (7, 3,                     append_rejected(7, None, 6)),
        (5, 2,                     append_ok(5)),
        (0, 0,                     append_ok(0)),
    ];
    for (prev_index, prev_term, answer) in cases {
        let mut node = follower(3, 3, &[1, 1, 2, 2, 2]);
        step(
            &mut node,
            msg(2, 1, 3, append(prev_index, prev_term, vec![], 0)),
            AFTER_TIMEOUT,
        );
        assert_eq!(
            node.take_messages(),
            vec![msg(1, 2, 3, answer)],
            "prev ({prev_index}, {prev_term})"
        );
        assert_eq!(
            node.status(AFTER_TIMEOUT).last_index,
            i(5),
            "nothing removed"
        );
    }
}

/// Figure 7: the leader of term 8 and the logs its followers might hold. Indexes 1..=3 are
/// committed everywhere.
const FIGURE_7_LEADER: [u64; 10] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];

#[test]
fn s5_3_figure_7_every_follower_ends_with_the_leaders_log() {
    // §5.3: "the leader handles inconsistencies by forcing the followers' logs to duplicate its
    // own." Each case is a cluster of three: n1 holds the leader's log, n2 the follower's log
    // from the figure, and n3 a copy of the leader's log. All are in term 7 and n1 campaigns.
    // Followers (c) and (d) hold logs more up to date than the leader's and refuse their votes
    // (§5.4.1); n3 votes for n1 in every case, which is the majority that elects the leader of
    // term 8 in the figure. n1 appends its term-8 no-op at index 11.
    //
    // The last two columns are what the leader must do: where the follower's storage truncates
    // its log (its extra, uncommitted entries), and how many appends reach it (with conflict
    // hints, one round trip per conflicting term rather than per entry).
    #[rustfmt::skip]
    let cases: Vec<(&str, &[u64], Option<u64>, usize)> = vec![
        ("(a)", &[1, 1, 1, 4, 4, 5, 5, 6, 6],             None,     2),
        ("(b)", &[1, 1, 1, 4],                            None,     2),
        ("(c)", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],       Some(11), 1),
        ("(d)", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],    Some(11), 1),
        ("(e)", &[1, 1, 1, 4, 4, 4, 4],                   Some(6),  3),
        ("(f)", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],       Some(4),  3),
    ];
    let mut expected_log = FIGURE_7_LEADER.to_vec();
    expected_log.push(8);
    for (name, follower_log, truncated_from, appends) in cases {
        let mut net = Network::with_logs(
            3,
            7,
            &[&FIGURE_7_LEADER[..], follower_log, &FIGURE_7_LEADER[..]],
            config,
        );
        net.elect(1);
        assert_eq!(net.status(1).term, t(8), "{name}");
        assert_eq!(net.log_terms(2), expected_log, "{name}");
        assert_eq!(
            net.disk[&n(2)],
            net.disk[&n(1)],
            "{name}: the very same entries"
        );
        let truncations: Vec<_> = net
            .truncations
            .iter()
            .filter(|(id, _)| *id == n(2))
            .map(|(_, from)| from.0)
            .collect();
        assert_eq!(
            truncations,
            truncated_from.into_iter().collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(net.appends_delivered(1, 2), appends, "{name}");
        assert!(appends <= 4, "{name}");

        // The next heartbeat tells everyone that the whole log, no-op included, is committed.
        net.now += HEARTBEAT_MS * MS;
        net.tick(&[1]);
        for id in 1..=3 {
            let s = net.status(id);
            assert_eq!(
                (s.commit_index, s.applied_index),
                (i(11), i(11)),
                "{name}: n{id}"
            );
        }
    }
}

#[test]
fn s5_3_conflict_hints_skip_a_whole_term_per_round_trip() {
    // A follower with 100 entries of two terms the leader never had: a leader backing up one
    // entry per rejection would need 100 round trips; with hints it needs one per term.
    let mut follower_log = vec![1, 1, 1];
    follower_log.extend([2; 40]);
    follower_log.extend([3; 60]);
    let mut leader_log = vec![1, 1, 1];
    leader_log.extend([5; 30]);
    leader_log.extend([6; 30]);
    let mut net = Network::with_logs(
        3,
        6,
        &[&leader_log[..], &follower_log[..], &leader_log[..]],
        config,
    );
    net.elect(1);
    assert_eq!(net.disk[&n(2)], net.disk[&n(1)]);
    assert_eq!(
        net.status(2).last_index,
        i(64),
        "its 100 entries after index 3 replaced by the leader's 60 and the no-op"
    );
    assert_eq!(net.truncations, vec![(n(2), i(4))]);
    assert_eq!(net.appends_delivered(1, 2), 3);
}

#[test]
fn s5_3_a_leader_commits_an_entry_once_a_majority_stores_it() {
    // §5.3: "A log entry is committed once the leader that created the entry has replicated it
    // on a majority of the servers". The leader's no-op is at 1, the proposal at 2.
    #[rustfmt::skip]
    let cases: Vec<(u64, &[u64], bool)> = vec![
        // voters  followers that store entry 2   committed
        (1, &[],                                   true),
        (3, &[],                                   false),
        (3, &[2],                                  true),
        (3, &[3],                                  true),
        (5, &[2],                                  false),
        (5, &[2, 3],                               true),
        (5, &[2, 3, 4, 5],                         true),
    ];
    for (voters, acknowledging, committed) in cases {
        let mut node = leader(voters, 2, &[]);
        let (index, _) = node.propose(b"x".to_vec(), AFTER_TIMEOUT).unwrap();
        assert_eq!(index, i(2));
        persist(&mut node);
        for &id in acknowledging {
            step(&mut node, msg(id, 1, 2, append_ok(2)), AFTER_TIMEOUT);
        }
        let expected = if committed { i(2) } else { i(0) };
        assert_eq!(
            node.status(AFTER_TIMEOUT).commit_index,
            expected,
            "{voters} voters, stored on {acknowledging:?}"
        );
    }
}

#[test]
fn s5_3_a_follower_commits_what_the_leader_committed_but_only_what_it_holds() {
    // Figure 2, AppendEntries receiver: "If leaderCommit > commitIndex, set commitIndex =
    // min(leaderCommit, index of last new entry)".
    let mut node = follower(3, 2, &[]);
    step(
        &mut node,
        msg(2, 1, 2, append(0, 0, vec![entry(1, 1), entry(2, 2)], 5)),
        AFTER_TIMEOUT,
    );
    assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(2));
    persist(&mut node);
    assert_eq!(node.status(AFTER_TIMEOUT).applied_index, i(2));
    // A heartbeat's commit index is capped by what the follower holds as well.
    step(&mut node, msg(2, 1, 2, heartbeat(9, 2)), AFTER_TIMEOUT);
    assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(2));
    assert_eq!(
        node.take_messages(),
        vec![msg(1, 2, 2, heartbeat_response(2))]
    );
}

#[test]
fn s5_3_proposals_are_replicated_committed_and_applied_in_the_same_order_everywhere() {
    let mut net = Network::new(3);
    net.elect(1);
    let mut proposed = Vec::new();
    for k in 0..5u8 {
        let node = net.nodes.get_mut(&n(1)).unwrap();
        proposed.push(node.propose(vec![k], net.now).unwrap());
        net.deliver();
    }
    assert_eq!(
        proposed.iter().map(|p| p.0 .0).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    net.now += HEARTBEAT_MS * MS;
    net.tick(&[1]);
    for id in 1..=3 {
        let s = net.status(id);
        assert_eq!((s.commit_index, s.applied_index), (i(6), i(6)), "n{id}");
    }
    // The network checked on every write that all nodes applied the same entry at each index.
    let applied: Vec<_> = net.applied.values().map(|e| e.payload.clone()).collect();
    let mut expected = vec![EntryPayload::Noop];
    expected.extend((0..5u8).map(|k| EntryPayload::Normal(vec![k])));
    assert_eq!(applied, expected);
}

#[test]
fn s5_3_a_stale_or_duplicated_append_never_truncates_matching_or_committed_entries() {
    // Figure 2: "If an existing entry conflicts with a new one (same index but different terms),
    // delete the existing entry and all that follow it" — only then. An older, shorter append
    // delivered late must not cut the entries a newer append brought (openraft had this bug).
    let mut node = follower(3, 2, &[1, 1]);
    let long = msg(
        2,
        1,
        2,
        append(2, 1, vec![entry(2, 3), entry(2, 4), entry(2, 5)], 4),
    );
    let short = msg(2, 1, 2, append(2, 1, vec![entry(2, 3)], 3));
    step(&mut node, long.clone(), AFTER_TIMEOUT);
    assert_eq!(persist(&mut node), vec![msg(1, 2, 2, append_ok(5))]);
    assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(4));

    for (name, m, answer) in [
        // Entries up to the commit index match the leader's log (leader completeness), so an
        // append that ends before it is acknowledged up to the commit index.
        ("an older, shorter append", short, append_ok(4)),
        ("a duplicate", long, append_ok(5)),
        (
            "an append from before the commit index",
            msg(2, 1, 2, append(0, 0, vec![entry(1, 1)], 1)),
            append_ok(4),
        ),
    ] {
        step(&mut node, m, AFTER_TIMEOUT);
        // Answered at once: it acknowledges only what is already durable.
        assert_eq!(node.take_messages(), vec![msg(1, 2, 2, answer)], "{name}");
        assert!(
            node.ready().is_none(),
            "{name}: nothing to truncate, append or commit"
        );
        let s = node.status(AFTER_TIMEOUT);
        assert_eq!((s.last_index, s.commit_index), (i(5), i(4)), "{name}");
        assert_eq!(node.log_term(i(5)), Some(t(2)), "{name}");
    }
}

// ----- Raft §5.4.2: committing entries from previous terms -----

#[test]
fn s5_4_2_figure_8_an_old_entry_on_a_majority_is_committed_only_with_one_of_the_new_term() {
    // Figure 8 (c): S1 leads term 4 with [1, 2]; S2 holds [1, 2]; S3 and S4 hold [1]; S5, which
    // led term 3, holds [1, 3]. S1 replicates its entry of term 2 to S3 and S4: it is then on
    // a majority, but S5 could still be elected (by S2, S3 and S4, whose last term 2 < 3) and
    // overwrite it, as in (d). So S1 must not count replicas of index 2; it commits index 2 only
    // with its own no-op at index 3 (e). One entry per append makes the two arrive separately.
    // S2 and S5 are cut off: S1 is elected by S3 and S4.
    let logs: [&[u64]; 5] = [&[1, 2], &[1, 2], &[1], &[1], &[1, 3]];
    let mut net = Network::from_nodes(
        (1..=5)
            .map(|id| {
                let config = Config {
                    append_entries_max: 1,
                    ..config(id)
                };
                (config, restored(5, 3, logs[id as usize - 1], 1))
            })
            .collect(),
    );
    net.isolate(2);
    net.isolate(5);
    net.now += AFTER_TIMEOUT;
    net.nodes.get_mut(&n(1)).unwrap().tick(net.now);

    let holding = |net: &Network, index: u64, term: u64| {
        net.disk
            .values()
            .filter(|log| log.get(index as usize - 1).map(|e| e.term) == Some(t(term)))
            .count()
    };
    let mut seen_figure_8c = false;
    net.deliver_checking(|net| {
        let leader = net.status(1);
        if leader.role != Role::Leader {
            return;
        }
        assert_eq!(leader.term, t(4));
        let old_on_majority = holding(net, 2, 2) >= 3;
        let noop_on_majority = holding(net, 3, 4) >= 3;
        if old_on_majority && !noop_on_majority {
            seen_figure_8c = true;
            assert_eq!(
                leader.commit_index,
                i(1),
                "index 2 committed by counting replicas"
            );
        }
        if leader.commit_index > i(1) {
            assert!(
                noop_on_majority,
                "committed {} without the no-op",
                leader.commit_index
            );
        }
    });
    assert!(seen_figure_8c, "the scenario never reached figure 8 (c)");
    assert_eq!(net.status(1).commit_index, i(3), "committed with the no-op");
    assert_eq!(net.log_terms(3), [1, 2, 4]);
    assert_eq!(net.log_terms(4), [1, 2, 4]);
}

// ----- Durability: nothing is promised before it is durable (Figure 2) -----

#[test]
fn a_vote_is_announced_only_after_it_is_durable() {
    let mut node = follower(3, 1, &[]);
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    assert!(node.take_messages().is_empty());
    let ready = node.ready().unwrap();
    assert!(ready.messages.is_empty());
    assert_eq!(
        ready.batch.hard_state,
        Some(HardState {
            term: t(2),
            vote: Some(n(2)),
            commit: i(0)
        })
    );
    assert_eq!(
        ready.persisted_messages,
        vec![msg(1, 2, 2, vote_response(true))]
    );
    // While that write is outstanding, nothing else goes out either: a heartbeat of the new
    // term is answered only after the term is durable.
    step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), AFTER_TIMEOUT);
    assert!(node.take_messages().is_empty());
    node.advance(ready.number);
    assert_eq!(
        persist(&mut node),
        vec![msg(1, 2, 2, heartbeat_response(1))]
    );
}

#[test]
fn an_append_is_acknowledged_only_after_its_entries_are_durable() {
    let mut node = follower(3, 2, &[1]);
    let m = msg(2, 1, 2, append(1, 1, vec![entry(2, 2), entry(2, 3)], 0));
    step(&mut node, m.clone(), AFTER_TIMEOUT);
    assert!(node.take_messages().is_empty());
    let ready = node.ready().unwrap();
    assert_eq!(ready.batch.entries, vec![entry(2, 2), entry(2, 3)]);
    assert!(ready.messages.is_empty());
    assert_eq!(ready.persisted_messages, vec![msg(1, 2, 2, append_ok(3))]);
    node.advance(ready.number);
    assert_eq!(node.persisted_index(), i(3));
    // The same append again acknowledges only what is durable: no need to wait.
    step(&mut node, m, AFTER_TIMEOUT);
    assert_eq!(node.take_messages(), vec![msg(1, 2, 2, append_ok(3))]);
    // A rejection promises nothing and goes out at once.
    step(
        &mut node,
        msg(2, 1, 2, append(7, 2, vec![], 0)),
        AFTER_TIMEOUT,
    );
    assert_eq!(
        node.take_messages(),
        vec![msg(1, 2, 2, append_rejected(7, None, 4))]
    );
}

#[test]
fn a_leader_counts_its_own_entry_toward_a_majority_only_once_it_is_durable() {
    let mut node = leader(3, 2, &[]);
    step(&mut node, msg(2, 1, 2, append_ok(1)), AFTER_TIMEOUT);
    step(&mut node, msg(3, 1, 2, append_ok(1)), AFTER_TIMEOUT);
    persist(&mut node);
    assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(1), "the no-op");

    // The leader may send its new entry before writing it (dissertation §10.2.1)...
    let (index, term) = node.propose(b"t2i2".to_vec(), AFTER_TIMEOUT).unwrap();
    assert_eq!((index, term), (i(2), t(2)));
    assert_eq!(
        node.take_messages(),
        vec![
            msg(1, 2, 2, append(1, 2, vec![entry(2, 2)], 1)),
            msg(1, 3, 2, append(1, 2, vec![entry(2, 2)], 1)),
        ]
    );
    // ...but one follower's copy and its own unwritten one are not a majority.
    step(&mut node, msg(2, 1, 2, append_ok(2)), AFTER_TIMEOUT);
    assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(1));
    let ready = node.ready().unwrap();
    assert_eq!(ready.batch.entries, vec![entry(2, 2)]);
    node.advance(ready.number);
    assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(2));
}

// ----- Check-quorum and leader stickiness (dissertation §6.2 and §4.2.3) -----

#[test]
fn check_quorum_a_leader_that_hears_from_no_majority_for_an_election_timeout_steps_down() {
    // Dissertation §6.2: "a leader steps down if an election timeout elapses without a
    // successful round of heartbeats to a majority of its cluster". Exactly one minimum
    // election timeout after the last answer, and not before; never without check_quorum.
    for check_quorum in [true, false] {
        let config: fn(u64) -> Config = if check_quorum {
            config
        } else {
            |id| Config {
                check_quorum: false,
                ..config(id)
            }
        };
        let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], config);
        net.elect(1);
        net.run_ms(25);
        net.isolate(1);
        let last_heard = net
            .delivered
            .iter()
            .filter(|(_, m)| m.to == n(1))
            .map(|(at, _)| *at)
            .max()
            .unwrap();
        let step_down_at = last_heard + ELECTION_MS * MS;
        while net.now < step_down_at - MS {
            net.now += MS;
            net.tick(&[1]);
            assert_eq!(net.status(1).role, Role::Leader, "at {} ms", net.now / MS);
        }
        net.now += MS;
        net.tick(&[1]);
        let expected = if check_quorum {
            Role::Follower
        } else {
            Role::Leader
        };
        assert_eq!(net.status(1).role, expected, "check_quorum {check_quorum}");
        assert_eq!(net.status(1).term, t(1), "stepping down is not a new term");
    }
}

#[test]
fn stickiness_a_follower_that_recently_heard_from_its_leader_ignores_vote_requests() {
    // Dissertation §4.2.3: "if a server receives a RequestVote request within the minimum
    // election timeout of hearing from a current leader, it does not update its term or grant
    // its vote." The leader's lease rests on this refusal.
    let mut node = follower(3, 2, &[]);
    let heard = AFTER_TIMEOUT;
    step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), heard);
    persist(&mut node);
    for (name, body) in [
        ("vote", vote_request(0, 0)),
        ("pre-vote", pre_vote_request(0, 0)),
    ] {
        step(&mut node, msg(3, 1, 3, body), heard + ELECTION_MS * MS - 1);
        assert!(
            node.take_messages().is_empty(),
            "{name}: not even a refusal"
        );
        assert!(node.ready().is_none(), "{name}: nothing changed");
        let s = node.status(heard);
        assert_eq!((s.term, s.leader), (t(2), Some(n(2))), "{name}");
    }
    assert!(node.sticky_refuses_votes(heard + ELECTION_MS * MS - 1));
    assert!(!node.sticky_refuses_votes(heard + ELECTION_MS * MS));

    // One minimum election timeout after the last contact the leader may be gone: vote.
    step(
        &mut node,
        msg(3, 1, 3, vote_request(0, 0)),
        heard + ELECTION_MS * MS,
    );
    assert_eq!(persist(&mut node), vec![msg(1, 3, 3, vote_response(true))]);
    assert_eq!(node.status(heard + ELECTION_MS * MS).term, t(3));
}

#[test]
fn stickiness_a_restarted_node_refuses_votes_for_one_minimum_election_timeout() {
    // It may have answered a heartbeat just before it went down, and a leader's lease counts
    // on that answer.
    let restarted_at = 5000 * MS;
    let node = RaftNode::new(
        config(1),
        restored(3, 2, &[], 0),
        Box::new(SplitMix64::new(1)),
        restarted_at,
    )
    .unwrap();
    assert!(node.sticky_refuses_votes(restarted_at));
    assert!(node.sticky_refuses_votes(restarted_at + ELECTION_MS * MS - 1));
    assert!(!node.sticky_refuses_votes(restarted_at + ELECTION_MS * MS));
}

// ----- The leader lease (dissertation §6.4.1; DESIGN.md "Lease safety") -----
//
// lease deadline = start of the newest heartbeat round a quorum answered
//                  + election_timeout_min × (1 − clock_drift_max), here 90 ms.
// Every voter that answered the round heard from the leader after it started, so it refuses
// votes until at least election_timeout_min after that start. The host may write while the
// leader holds the lease and has applied its own term's no-op.

#[test]
fn lease_a_new_leader_is_writable_only_once_a_quorum_answered_a_round_and_its_no_op_is_applied() {
    let elected = AFTER_TIMEOUT;
    let mut node = candidate(3, 2, &[]);
    step(&mut node, msg(2, 1, 2, vote_response(true)), elected);
    let s = node.status(elected);
    assert_eq!(s.role, Role::Leader);
    assert_eq!((s.lease_deadline, s.writable), (None, false));

    // A follower answers round 1 (which started at the election): lease = start + 90 ms. The
    // no-op is neither durable on the leader nor committed yet.
    let answered = elected + 5 * MS;
    step(&mut node, msg(2, 1, 2, append_ok(1)), answered);
    let s = node.status(answered);
    assert_eq!(s.lease_deadline, Some(elected + LEASE));
    assert_eq!((s.commit_index, s.writable), (i(0), false));

    // The leader writes its no-op: committed, but not yet applied.
    let ready = node.ready().unwrap();
    assert_eq!(ready.batch.entries.len(), 1);
    node.advance(ready.number);
    let s = node.status(answered);
    assert_eq!(
        (s.commit_index, s.applied_index, s.writable),
        (i(1), i(0), false)
    );

    // Applied: writable, until the lease ends.
    let ready = node.ready().unwrap();
    assert_eq!(ready.batch.committed.len(), 1);
    node.advance(ready.number);
    assert!(node.status(answered).writable);
    assert!(node.status(elected + LEASE - 1).writable);
    assert!(!node.status(elected + LEASE).writable);

    // An answer to the next round, started at +10 ms, extends the lease from that start; a late
    // answer to round 1 changes nothing.
    node.tick(elected + HEARTBEAT_MS * MS);
    assert_eq!(
        node.take_messages(),
        vec![msg(1, 2, 2, heartbeat(1, 2)), msg(1, 3, 2, heartbeat(0, 2))],
        "the commit index sent is capped by what each follower is known to hold"
    );
    step(
        &mut node,
        msg(3, 1, 2, heartbeat_response(1)),
        elected + 15 * MS,
    );
    assert_eq!(
        node.status(elected + 15 * MS).lease_deadline,
        Some(elected + LEASE)
    );
    step(
        &mut node,
        msg(3, 1, 2, heartbeat_response(2)),
        elected + 20 * MS,
    );
    let s = node.status(elected + 20 * MS);
    assert_eq!(s.lease_deadline, Some(elected + HEARTBEAT_MS * MS + LEASE));
    assert!(s.writable);
}

#[test]
fn lease_an_isolated_leader_stops_being_writable_before_anyone_else_can_lead() {
    // Writable exactly until the deadline; the followers elect someone else only after it.
    let mut net = Network::new(3);
    net.elect(1);
    net.run_ms(25);
    assert!(net.status(1).writable);
    // The last round every follower answered started at the last heartbeat.
    let last_round = net
        .delivered
        .iter()
        .filter(|(_, m)| m.from == n(1) && matches!(m.body, MessageBody::Heartbeat { .. }))
        .map(|(at, _)| *at)
        .max()
        .unwrap();
    let deadline = last_round + LEASE;
    assert_eq!(net.status(1).lease_deadline, Some(deadline));

    net.isolate(1);
    let mut new_leader_at = None;
    while new_leader_at.is_none() {
        net.run_ms(1);
        let writable = net.status(1).writable;
        assert_eq!(writable, net.now < deadline, "at {} ms", net.now / MS);
        if net.leaders().iter().any(|&id| id != n(1)) {
            new_leader_at = Some(net.now);
        }
        assert!(net.now < deadline + 1000 * MS, "no new leader");
    }
    assert!(new_leader_at.unwrap() >= deadline);
    assert_ne!(net.status(1).role, Role::Leader, "check-quorum deposed it");
}

#[test]
fn lease_a_leader_that_steps_down_refuses_votes_until_the_lease_deadline_it_advertised() {
    // The lease counts the leader itself among the voters that refuse to vote for anyone else
    // until a minimum election timeout after each round started (`update_lease` credits it
    // with every round). That refusal must outlive its leadership: in a cluster of three where
    // n2 answered the round, the old leader's vote for n3, which answered nothing, completes a
    // quorum that elects n3 while the old lease still runs.
    let mut failures = Vec::new();
    for trigger in ["an answer with a higher term", "a stalled disk"] {
        let mut node = leader(3, 2, &[]);
        let mut now = AFTER_TIMEOUT;
        step(&mut node, msg(2, 1, 2, append_ok(1)), now);
        persist(&mut node);
        let advertised;
        if trigger == "a stalled disk" {
            node.propose(b"x".to_vec(), now).unwrap();
            let hanging = node.ready().expect("the proposal to write");
            // n2 keeps answering heartbeats, which renews the lease, until the leader gives up
            // on its disk (persist_stall_max_ms).
            loop {
                let before = node.status(now);
                now += HEARTBEAT_MS * MS;
                node.tick(now);
                if node.status(now).role != Role::Leader {
                    advertised = before.lease_deadline.expect("a lease");
                    break;
                }
                for m in node.take_messages() {
                    if let (MessageBody::Heartbeat { round, .. }, 2) = (m.body, m.to.0) {
                        step(&mut node, msg(2, 1, 2, heartbeat_response(round)), now);
                    }
                }
            }
            node.advance(hanging.number); // The disk recovers.
        } else {
            now += MS;
            advertised = node.status(now).lease_deadline.expect("a lease");
            // n3, cut off from the leader for a while, campaigned in term 3 without pre-vote.
            step(&mut node, msg(3, 1, 3, heartbeat_response(0)), now);
        }
        let s = node.status(now);
        assert_eq!(s.role, Role::Follower, "{trigger}");
        assert!(now < advertised, "{trigger}: the lease is still running");

        let refuses = node.sticky_refuses_votes(now);
        let term = s.term.0 + 1;
        let last = s.last_index.0;
        step(&mut node, msg(3, 1, term, vote_request(last, 2)), now);
        let granted = persist(&mut node).contains(&msg(1, 3, term, vote_response(true)));
        if granted || !refuses {
            failures.push(format!(
                "after {trigger}: sticky_refuses_votes {refuses}, grants n3 a vote {granted}, \
                 {} ms before the end of its lease",
                (advertised - now) / MS
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn lease_no_other_node_leads_before_the_deadline_a_deposed_leader_advertised() {
    // Status::lease_deadline: "until when this leader is sure no other node can be leader".
    // The whole cluster, with pre-vote and check-quorum on: n1's disk hangs on a proposal that
    // n2 and n3 store and commit; then n3 is cut off from n1's messages and from n2. n2 keeps
    // answering n1's heartbeats, so n1's lease runs on, until n1 gives up on its disk.
    let mut net = Network::new(3);
    net.elect(1);
    net.run_ms(20);
    net.stall(1);
    let now = net.now;
    let (x, _) = net
        .nodes
        .get_mut(&n(1))
        .unwrap()
        .propose(b"x".to_vec(), now)
        .unwrap();
    net.deliver();
    let stored = (
        net.status(1).commit_index,
        net.status(2).last_index,
        net.status(3).last_index,
    );
    assert_eq!(
        stored,
        (x, x, x),
        "committed by n2 and n3 without n1's disk"
    );
    net.cut.extend([(n(1), n(3)), (n(2), n(3)), (n(3), n(2))]);
    let mut advertised = None;
    while net.status(1).role == Role::Leader {
        advertised = net.status(1).lease_deadline;
        net.now += MS;
        net.tick(&[1, 2]);
        assert!(net.now < 10_000 * MS, "n1 never gave up on its disk");
    }
    let advertised = advertised.expect("n1 had a lease");
    assert!(net.now < advertised);

    // n1's disk recovers and n3 hears from it again. n3, silent for a second, campaigns.
    net.unstall(1);
    net.heal();
    net.cut.extend([(n(2), n(3)), (n(3), n(2))]);
    net.tick(&[3]);
    assert!(
        net.now >= advertised || net.status(3).role != Role::Leader,
        "n3 leads {} ms before the end of n1's lease (writable: {})",
        (advertised - net.now) / MS,
        net.status(3).writable
    );
}

// ----- Backpressure -----

#[test]
fn uncommitted_bytes_max_bounds_the_proposals_a_leader_holds_uncommitted() {
    let max = 1000;
    let config = Config {
        append_bytes_max: max,
        uncommitted_bytes_max: max,
        ..config_without_pre_vote(1)
    };
    let mut node = leader_with(config, 3, 2, &[]);
    let now = AFTER_TIMEOUT;
    step(&mut node, msg(2, 1, 2, append_ok(1)), now);
    persist(&mut node);

    let mut proposals: Vec<LogIndex> = Vec::new();
    let mut propose_until_refused = |node: &mut RaftNode| loop {
        match node.propose(vec![0; 100], now) {
            Ok((index, _)) => proposals.push(index),
            Err(ProposeError::Backpressure { .. }) => break proposals.clone(),
            Err(e) => panic!("{e}"),
        }
    };
    let first_batch = propose_until_refused(&mut node);
    assert!(first_batch.len() >= 2);
    assert!(first_batch.len() * 100 <= max);
    persist(&mut node);
    // n2 stores only the first of them: it is committed, the others are not.
    step(&mut node, msg(2, 1, 2, append_ok(first_batch[0].0)), now);
    assert_eq!(node.status(now).commit_index, first_batch[0]);

    let all = propose_until_refused(&mut node);
    let commit = node.status(now).commit_index;
    let held = all.iter().filter(|&&index| index > commit).count() * 100;
    assert!(
        held <= max,
        "{held} bytes of proposals uncommitted, uncommitted_bytes_max is {max}"
    );
}

// ----- Input from the network is an error, never a panic -----

#[test]
fn malformed_messages_are_errors_that_name_the_peer() {
    let mut node = leader(3, 2, &[]);
    let cases: Vec<(Message, StepError)> = vec![
        (
            msg(2, 3, 2, heartbeat(0, 1)),
            StepError::WrongRecipient { to: n(3), me: n(1) },
        ),
        (
            msg(1, 1, 2, heartbeat(0, 1)),
            StepError::FromSelf { me: n(1) },
        ),
        (
            msg(2, 1, 2, append(0, 0, vec![], 0)),
            StepError::SecondLeader {
                from: n(2),
                term: t(2),
                me: n(1),
            },
        ),
    ];
    for (m, err) in cases {
        let shown = format!("{m:?}");
        assert_eq!(node.step(m, AFTER_TIMEOUT), Err(err), "{shown}");
    }
    // A vote request from a node outside the configuration (a removed node that does not know
    // it yet) is ignored: no answer, no change of term. (Other messages from non-members are
    // accepted: the leader replicating a configuration that removes it is one.)
    let before = node.status(AFTER_TIMEOUT);
    assert_eq!(
        node.step(msg(9, 1, 9, vote_request(100, 9)), AFTER_TIMEOUT),
        Ok(())
    );
    assert!(node.take_messages().is_empty());
    assert_eq!(node.status(AFTER_TIMEOUT).term, before.term);
    assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);

    let mut node = follower(3, 2, &[]);
    for entries in [
        vec![entry(2, 2)],              // does not follow prev 0
        vec![entry(1, 1), entry(1, 3)], // a gap
        vec![entry(3, 1)],              // from a term after the message's
        vec![entry(2, 1), entry(1, 2)], // terms going backwards
    ] {
        let shown = format!("{entries:?}");
        assert_eq!(
            node.step(msg(2, 1, 2, append(0, 0, entries, 0)), AFTER_TIMEOUT),
            Err(StepError::MalformedEntries {
                from: n(2),
                prev: i(0)
            }),
            "{shown}"
        );
        assert_eq!(node.status(AFTER_TIMEOUT).last_index, i(0), "{shown}");
    }
}

#[test]
fn a_proposal_to_a_follower_is_refused_with_the_leaders_id() {
    let mut node = follower(3, 2, &[]);
    assert_eq!(
        node.propose(b"x".to_vec(), AFTER_TIMEOUT),
        Err(ProposeError::NotLeader { leader: None })
    );
    step(&mut node, msg(3, 1, 2, heartbeat(0, 1)), AFTER_TIMEOUT);
    assert_eq!(
        node.propose(b"x".to_vec(), AFTER_TIMEOUT),
        Err(ProposeError::NotLeader { leader: Some(n(3)) })
    );
}

// ----- Core II: linearizable reads, leadership transfer, membership -----

fn read_states(node: &mut RaftNode) -> Vec<(u64, Result<LogIndex, ReadError>)> {
    node.take_read_states()
        .into_iter()
        .map(|r| (r.ctx, r.result))
        .collect()
}

#[test]
fn read_index_waits_for_a_commit_of_the_current_term_and_a_quorum_round() {
    // Thesis §6.4, and TiKV #9208: a new leader's commit index may lag what earlier leaders
    // committed; it may serve a read only once an entry of its own term is committed.
    let mut node = leader(3, 2, &[1, 1]);
    let now = AFTER_TIMEOUT;
    assert_eq!(node.read_index(7, now), Ok(()));
    let out = persist(&mut node);
    let round = out
        .iter()
        .find_map(|m| match m.body {
            MessageBody::Heartbeat { round, .. } => Some(round),
            _ => None,
        })
        .expect("a read starts a heartbeat round");
    // A quorum answers the round, but the no-op (index 3) is not committed yet: no answer.
    step(&mut node, msg(2, 1, 2, heartbeat_response(round)), now);
    persist(&mut node);
    assert_eq!(read_states(&mut node), vec![]);
    // The no-op commits: the read is answered at the commit index, once applied.
    step(&mut node, msg(2, 1, 2, append_ok(3)), now);
    persist(&mut node);
    assert_eq!(node.status(now).commit_index, i(3));
    assert_eq!(read_states(&mut node), vec![(7, Ok(i(3)))]);
}

#[test]
fn read_index_needs_a_round_started_after_the_request() {
    let mut node = leader(3, 2, &[1]);
    let now = AFTER_TIMEOUT;
    step(&mut node, msg(2, 1, 2, append_ok(2)), now);
    persist(&mut node);
    assert_eq!(node.read_index(1, now), Ok(()));
    let out = persist(&mut node);
    let round = out
        .iter()
        .find_map(|m| match m.body {
            MessageBody::Heartbeat { round, .. } => Some(round),
            _ => None,
        })
        .unwrap();
    // An answer to an older round proves nothing about the time of the read.
    step(&mut node, msg(2, 1, 2, heartbeat_response(round - 1)), now);
    persist(&mut node);
    assert_eq!(read_states(&mut node), vec![]);
    step(&mut node, msg(3, 1, 2, heartbeat_response(round)), now);
    persist(&mut node);
    assert_eq!(read_states(&mut node), vec![(1, Ok(i(2)))]);
}

#[test]
fn a_follower_read_is_confirmed_by_the_leader_and_served_once_applied() {
    let mut net = Network::new(3);
    net.elect(1);
    let now = net.now;
    net.nodes
        .get_mut(&n(2))
        .unwrap()
        .read_index(42, now)
        .unwrap();
    net.deliver();
    let states = read_states(net.nodes.get_mut(&n(2)).unwrap());
    assert_eq!(states.len(), 1);
    let (ctx, result) = &states[0];
    assert_eq!(*ctx, 42);
    let index = result.clone().expect("confirmed");
    assert!(net.status(2).applied_index >= index);
    // Without a leader there is no one to confirm with.
    let mut lonely = follower(3, 1, &[1]);
    assert_eq!(lonely.read_index(1, 0), Err(ReadError::NoLeader));
}

#[test]
fn a_lease_read_waits_for_the_leader_to_apply_its_commit_index() {
    let mut net = Network::new(3);
    net.elect(1);
    net.now += HEARTBEAT_MS * MS;
    net.tick(&[1]);
    let now = net.now;
    assert!(net.status(1).writable);
    // The leader's disk hangs on a write that a quorum of followers committed.
    net.stall(1);
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .propose(vec![1], now)
        .unwrap();
    net.deliver();
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    let s = leader.status(now);
    assert!(s.commit_index > s.applied_index, "{s:?}");
    leader.lease_read(9, now).unwrap();
    assert_eq!(
        read_states(leader),
        vec![],
        "not before the commit index is applied"
    );
    net.unstall(1);
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    let commit = leader.status(net.now).commit_index;
    assert_eq!(read_states(leader), vec![(9, Ok(commit))]);
}

#[test]
fn a_transfer_to_a_lagging_voter_waits_until_it_has_caught_up() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for k in 0..5u8 {
        let now = net.now;
        net.nodes
            .get_mut(&n(1))
            .unwrap()
            .propose(vec![k], now)
            .unwrap();
        net.deliver();
    }
    net.heal();
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    assert_eq!(leader.transfer_leadership(Some(n(3)), now), Ok(n(3)));
    // At once: no lease, no proposals.
    assert!(!leader.status(now).writable);
    assert!(matches!(
        leader.propose(vec![9], now),
        Err(ProposeError::Transferring { .. })
    ));
    let leader_last = leader.status(now).last_index;
    // The next heartbeat round finds n3 behind: the leader repairs its log first.
    let now = now + HEARTBEAT_MS * MS;
    net.now = now;
    net.nodes.get_mut(&n(1)).unwrap().tick(now);
    let mut timeout_now_seen_caught_up = None;
    net.deliver_checking(|net| {
        let (_, last) = net.delivered.last().unwrap();
        if matches!(last.body, MessageBody::TimeoutNow { .. })
            && timeout_now_seen_caught_up.is_none()
        {
            timeout_now_seen_caught_up = Some(net.status(3).last_index == leader_last);
        }
    });
    assert_eq!(
        timeout_now_seen_caught_up,
        Some(true),
        "TimeoutNow only once n3 caught up"
    );
    assert_eq!(net.leaders(), vec![n(3)]);
    assert_eq!(net.status(3).term, t(2));
}

#[test]
fn an_abandoned_transfer_resumes_the_old_leader() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    let now = net.now;
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .transfer_leadership(Some(n(3)), now)
        .unwrap();
    net.deliver();
    // n3 never catches up; after a minimum election timeout the leader takes proposals again.
    assert!(!net.status(1).writable);
    net.run_ms(ELECTION_MS + 1);
    let now = net.now;
    assert_eq!(net.status(1).role, Role::Leader);
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    assert!(leader.propose(vec![1], now).is_ok());
    net.deliver();
    net.now += HEARTBEAT_MS * MS;
    net.tick(&[1]);
    assert!(
        net.status(1).writable,
        "the lease comes back with new rounds"
    );
}

#[test]
fn a_learner_receives_the_log_but_never_counts_toward_a_quorum() {
    use crate::raft::ConfChange;
    let mut net = Network::with_logs(4, 1, &[&[1], &[1], &[1], &[1]], config);
    // Start from {1,2,3} + learner 4: remove 4 as a voter first is not needed — build it.
    net.elect(1);
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    leader
        .change_membership(ConfChange::Remove(n(4)), now)
        .unwrap();
    net.deliver();
    // The joint configuration is left automatically.
    let m = net.node(1).membership().clone();
    assert!(!m.is_joint() && !m.is_voter(n(4)), "{m:?}");
    let now = net.now;
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .change_membership(ConfChange::AddLearner(n(4)), now)
        .unwrap();
    net.deliver();
    assert_eq!(net.status(4).role, Role::Learner);
    assert_eq!(net.status(4).last_index, net.status(1).last_index);
    // With 2 and 3 cut off, the leader and the learner are no quorum: nothing commits.
    net.isolate(2);
    net.isolate(3);
    let now = net.now;
    let before = net.status(1).commit_index;
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .propose(vec![1], now)
        .unwrap();
    net.deliver();
    assert_eq!(net.status(1).commit_index, before);
    assert_eq!(
        net.status(4).last_index,
        net.status(1).last_index,
        "but it replicates"
    );
}

#[test]
fn one_membership_change_at_a_time_and_a_removed_leader_steps_down() {
    use crate::raft::{ConfChange, ConfChangeError};
    let mut net = Network::new(3);
    net.elect(1);
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    leader
        .change_membership(ConfChange::Remove(n(1)), now)
        .unwrap();
    assert!(matches!(
        leader.change_membership(ConfChange::Remove(n(2)), now),
        Err(ConfChangeError::ChangeInProgress { .. })
    ));
    net.deliver();
    // Once C_new (without n1) is committed, n1 is no longer leader nor voter.
    assert_ne!(net.status(1).role, Role::Leader);
    assert!(!net.node(2).membership().is_voter(n(1)));
    net.campaign(2);
    assert_eq!(net.leaders(), vec![n(2)]);
}

// ----- Core II: snapshots and compaction -----

#[test]
fn the_compaction_policy_asks_for_a_snapshot_and_compact_drops_the_prefix() {
    let mut c = config(1);
    c.compaction_entries_max = 3;
    let mut node = boot(c, restored(1, 1, &[1, 1], 2));
    assert_eq!(
        node.snapshot_due(),
        None,
        "2 applied entries are below the threshold"
    );
    node.tick(AFTER_TIMEOUT);
    persist(&mut node);
    assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);
    assert_eq!(
        node.snapshot_due(),
        Some(i(3)),
        "its no-op is the third applied entry"
    );
    node.compact(i(3));
    assert_eq!(node.snapshot_index(), i(3));
    assert_eq!(node.log_term(i(2)), None, "compacted away");
    assert_eq!(
        node.log_term(i(3)),
        Some(t(2)),
        "the snapshot's term is known"
    );
    assert_eq!(node.snapshot_due(), None);
}

#[test]
fn a_follower_behind_the_snapshot_gets_one_and_is_asked_again_after_a_timeout() {
    let mut c = config_without_pre_vote(1);
    c.snapshot_timeout_ms = 50;
    let mut node = leader_with(c, 3, 2, &[1, 1, 1]);
    let now = AFTER_TIMEOUT;
    // n2 holds everything; the leader compacts past what n3 has.
    step(&mut node, msg(2, 1, 2, append_ok(4)), now);
    persist(&mut node);
    node.compact(i(4));
    // n3 says its log is empty: the entries it needs are gone.
    step(&mut node, msg(3, 1, 2, append_rejected(3, None, 1)), now);
    persist(&mut node);
    let requests = node.take_snapshot_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!((requests[0].to, requests[0].at_least), (n(3), i(4)));
    // Nothing comes back: after the timeout the leader probes, and asks again.
    node.tick(now + 60 * MS);
    persist(&mut node);
    step(
        &mut node,
        msg(3, 1, 2, heartbeat_response(1)),
        now + 61 * MS,
    );
    persist(&mut node);
    assert_eq!(
        node.take_snapshot_requests().len(),
        1,
        "no follower stays in snapshot state forever"
    );
    // The follower installs it: appends resume after the snapshot.
    step(
        &mut node,
        msg(3, 1, 2, MessageBody::SnapshotInstalled { last_index: i(4) }),
        now + 62 * MS,
    );
    persist(&mut node);
    node.propose(vec![7], now + 63 * MS).unwrap();
    let out = persist(&mut node);
    assert!(out.iter().any(|m| m.to == n(3)
        && matches!(m.body, MessageBody::AppendEntries { prev_log_index, .. } if prev_log_index == i(4))));
}

#[test]
fn an_installed_snapshot_keeps_the_matching_durable_suffix_and_nothing_else() {
    // A follower whose log holds the snapshot's last entry keeps what follows it.
    let mut node = follower(3, 2, &[1, 1, 2, 2, 2]);
    let members = Membership::new([n(1), n(2), n(3)]);
    node.snapshot_installed(n(2), i(3), t(2), members.clone(), 0);
    assert_eq!(node.snapshot_index(), i(3));
    assert_eq!(node.status(0).last_index, i(5));
    assert_eq!(node.status(0).applied_index, i(3));
    // One whose log disagrees at that index starts over after it.
    let mut node = follower(3, 2, &[1, 1, 1, 1]);
    node.snapshot_installed(n(2), i(3), t(2), members.clone(), 0);
    assert_eq!(node.status(0).last_index, i(3));
    assert_eq!(node.log_term(i(3)), Some(t(2)));
    // A stale snapshot is answered with the commit index, so the leader resumes from there.
    let mut node = follower(3, 2, &[1, 1]);
    node.snapshot_installed(n(2), i(3), t(2), members.clone(), 0);
    persist(&mut node);
    node.snapshot_installed(n(2), i(2), t(1), members, 0);
    let out = persist(&mut node);
    assert!(out
        .iter()
        .any(|m| m.body == MessageBody::SnapshotInstalled { last_index: i(3) }));
}

// ----- Ready: numbered, acknowledged by number, one write as one batch -----

#[test]
fn readies_are_numbered_from_one_and_acknowledged_by_number() {
    let mut node = follower(3, 1, &[]);
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    let first = node.ready().expect("a vote to persist");
    assert_eq!(first.number, 1);
    assert!(first.needs_write());
    assert_eq!(
        first.batch,
        Batch {
            hard_state: Some(HardState {
                term: t(2),
                vote: Some(n(2)),
                commit: i(0)
            }),
            ..Batch::default()
        }
    );
    assert!(node.ready().is_none(), "one Ready outstanding at a time");
    node.advance(first.number);
    step(
        &mut node,
        msg(2, 1, 2, append(0, 0, vec![entry(2, 1)], 1)),
        AFTER_TIMEOUT,
    );
    let second = node.ready().expect("an entry to persist");
    assert_eq!(second.number, 2);
    assert_eq!(second.batch.entries, vec![entry(2, 1)]);
    assert_eq!(second.batch.committed, vec![entry(2, 1)]);
    node.advance(second.number);
    // Only the soft state changed: a Ready with nothing to write.
    node.tick(10 * AFTER_TIMEOUT);
    let third = node.ready().expect("the role changed");
    assert_eq!(third.number, 3);
    assert!(third.batch.is_empty() && !third.needs_write());
    node.advance(3);
}

#[test]
#[should_panic(expected = "advance(1) while Ready 2 is outstanding")]
fn advancing_a_ready_other_than_the_outstanding_one_is_a_bug() {
    let mut node = follower(3, 1, &[]);
    step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
    let first = node.ready().unwrap();
    node.advance(first.number);
    step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), AFTER_TIMEOUT);
    let _second = node.ready().unwrap();
    node.advance(first.number);
}

#[test]
#[should_panic(expected = "advance without an outstanding Ready")]
fn advancing_with_no_ready_outstanding_is_a_bug() {
    let mut node = follower(3, 1, &[]);
    node.advance(1);
}

//! The journal check: after the heal, every node's journal (`GET /v1/journal?follow=false`)
//! holds one dense sequence of operations, the same on every node, in which every
//! acknowledged append appears exactly once, at the index its answer named, and no operation
//! appears twice (a retried append applied once) or comes from nowhere.
//!
//! During the run, [`Followers`] keep a live tail (`follow=true`) open on every node,
//! reconnecting from the next index after a restart; what each saw must be a dense sequence
//! from index 1 that agrees with the final journal at every index ([`check_live`]).
//!
//! The checking is pure ([`check`], [`check_live`]: tails and appends in, problems out) so that
//! its cases are unit tests; [`read_tail`] and [`Followers`] are the I/O. A node's journal may start past index 1 if retention
//! dropped a prefix (the default bounds keep a run's operations): then only the indexes the
//! nodes still hold are compared, and an acknowledged append below every node's first index
//! cannot be checked (it is counted, not failed).

use super::workload::{self, JournalAck, OpKind, Record};
use base64::Engine;
use regent_client as client;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Problems listed one by one; the rest are counted.
const PROBLEMS_LISTED_MAX: usize = 20;
/// One tail read's time limit.
const TAIL_TIMEOUT: Duration = Duration::from_secs(20);
/// Operations a live tail records at most (a 60 s run appends some tens of thousands).
const LIVE_OPS_MAX: usize = 4_000_000;

/// One operation as a tail carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailOp {
    pub index: u64,
    pub term: u64,
    pub op: Vec<u8>,
}

/// A node's journal as read from `first` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTail {
    pub node: u64,
    /// The index the read started from (1, or the node's first retained index).
    pub first: u64,
    pub ops: Vec<TailOp>,
}

/// One append as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append {
    pub client: u64,
    pub payload: Vec<u8>,
    /// None: the outcome is unknown (it may appear once, or never).
    pub ack: Option<JournalAck>,
}

/// What the check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Acknowledged appends.
    pub acked: u64,
    /// Acknowledged appends below every node's first retained index (not checkable).
    pub compacted: u64,
    /// Operations the nodes hold (the union of their tails).
    pub held: u64,
    /// Violations, each naming the node, the index and the payload; at most
    /// `PROBLEMS_LISTED_MAX`, then one line with the count of the others.
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The appends of a client history.
pub fn appends(history: &[Record]) -> Vec<Append> {
    history
        .iter()
        .filter_map(|r| match &r.kind {
            OpKind::Append { n, ack } => Some(Append {
                client: r.client,
                payload: workload::journal_payload(r.client, *n),
                ack: *ack,
            }),
            _ => None,
        })
        .collect()
}

fn show(op: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(op))
}

struct Problems {
    listed: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        if self.listed.len() < PROBLEMS_LISTED_MAX {
            self.listed.push(problem);
        } else {
            self.more += 1;
        }
    }
}

/// Checks the nodes' tails against each other and against the clients' appends.
pub fn check(tails: &[NodeTail], appends: &[Append]) -> Report {
    let mut problems = Problems {
        listed: Vec::new(),
        more: 0,
    };
    // Each node's sequence is dense from where it was read.
    for t in tails {
        if let Some((expected, op)) = first_gap(t.first, &t.ops) {
            problems.push(format!(
                "n{}: index {} (payload {}) where index {expected} was due: the sequence is not dense",
                t.node,
                op.index,
                show(&op.op)
            ));
        }
    }
    // Every node holds the same sequence: the same operation at every index two nodes hold, and
    // the same last index (the nodes have settled).
    let mut union: BTreeMap<u64, (u64, &TailOp)> = BTreeMap::new();
    let mut diverged = 0;
    for t in tails {
        for op in &t.ops {
            match union.get(&op.index) {
                None => {
                    union.insert(op.index, (t.node, op));
                }
                Some((other, held)) if (held.term, &held.op) != (op.term, &op.op) => {
                    diverged += 1;
                    if diverged <= 3 {
                        problems.push(format!(
                            "n{} and n{other} differ at index {}: n{} holds {} (term {}), n{other} holds {} (term {})",
                            t.node,
                            op.index,
                            t.node,
                            show(&op.op),
                            op.term,
                            show(&held.op),
                            held.term
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }
    if diverged > 3 {
        problems.push(format!("{diverged} indexes differ between nodes in all"));
    }
    let last = |t: &NodeTail| {
        t.ops
            .last()
            .map_or(t.first.saturating_sub(1), |op| op.index)
    };
    if let Some(longest) = tails.iter().max_by_key(|t| last(t)) {
        for t in tails.iter().filter(|t| last(t) < last(longest)) {
            let missing = union.get(&(last(t) + 1)).map(|(_, op)| show(&op.op));
            problems.push(format!(
                "n{}'s journal ends at index {}, n{}'s at {}: n{} lacks index {} (payload {})",
                t.node,
                last(t),
                longest.node,
                last(longest),
                t.node,
                last(t) + 1,
                missing.unwrap_or_default()
            ));
        }
    }
    // No operation twice, none from nowhere.
    let mut at: HashMap<&[u8], Vec<u64>> = HashMap::new();
    for (index, (_, op)) in &union {
        at.entry(op.op.as_slice()).or_default().push(*index);
    }
    let appended: HashMap<&[u8], &Append> =
        appends.iter().map(|a| (a.payload.as_slice(), a)).collect();
    for (index, (node, op)) in &union {
        let indexes = &at[op.op.as_slice()];
        if indexes.len() > 1 && indexes[0] == *index {
            problems.push(format!(
                "payload {} appears {} times, at indexes {indexes:?} (n{node} and the others): applied more than once",
                show(&op.op),
                indexes.len()
            ));
        }
        if !appended.contains_key(op.op.as_slice()) {
            problems.push(format!(
                "n{node} holds {} at index {index}, which no client appended",
                show(&op.op)
            ));
        }
    }
    // Every acknowledged append, at the index its answer named.
    let retained_from = tails.iter().map(|t| t.first).min().unwrap_or(1);
    let mut acked = 0;
    let mut compacted = 0;
    for a in appends {
        let Some(ack) = a.ack else { continue };
        acked += 1;
        let found = at.get(a.payload.as_slice());
        match (union.get(&ack.index), found) {
            (Some((_, op)), _) if op.op == a.payload => {
                // A retry answered from its session names the stored term too.
                if op.term != ack.term {
                    problems.push(format!(
                        "{} was answered with index {} term {}; the operation there carries term {}",
                        show(&a.payload),
                        ack.index,
                        ack.term,
                        op.term
                    ));
                }
            }
            (_, Some(indexes)) => problems.push(format!(
                "{} (client {}) was acknowledged at index {}, but the journal holds it at index {indexes:?}",
                show(&a.payload),
                a.client,
                ack.index
            )),
            (None, None) if ack.index < retained_from => compacted += 1,
            (held, None) => problems.push(format!(
                "{} (client {}) was acknowledged at index {} and is missing from every node's journal{}",
                show(&a.payload),
                a.client,
                ack.index,
                held.map(|(node, op)| format!(" (n{node} holds {} there)", show(&op.op)))
                    .unwrap_or_default()
            )),
        }
    }
    if problems.more > 0 {
        problems
            .listed
            .push(format!("and {} more journal problems", problems.more));
    }
    Report {
        acked,
        compacted,
        held: union.len() as u64,
        problems: problems.listed,
    }
}

/// Checks the live tails against the final journal (`reference`, every node's tail read after
/// the heal): each live sequence is dense from where it started, and every operation it saw is
/// the one the journal holds at that index (below the journal's retained range, unchecked).
pub fn check_live(live: &[NodeTail], reference: &[NodeTail]) -> Vec<String> {
    let mut union: BTreeMap<u64, &TailOp> = BTreeMap::new();
    for t in reference {
        for op in &t.ops {
            union.entry(op.index).or_insert(op);
        }
    }
    let retained_from = reference.iter().map(|t| t.first).min().unwrap_or(1);
    let mut problems = Problems {
        listed: Vec::new(),
        more: 0,
    };
    for t in live {
        if let Some((expected, op)) = first_gap(t.first, &t.ops) {
            problems.push(format!(
                "n{}'s live tail: index {} (payload {}) where index {expected} was due",
                t.node,
                op.index,
                show(&op.op)
            ));
        }
        let differing = t.ops.iter().find(|op| match union.get(&op.index) {
            Some(held) => (held.term, &held.op) != (op.term, &op.op),
            None => op.index >= retained_from,
        });
        if let Some(op) = differing {
            let held = union
                .get(&op.index)
                .map(|h| format!("{} (term {})", show(&h.op), h.term));
            problems.push(format!(
                "n{}'s live tail saw {} (term {}) at index {}; the journal holds {} there",
                t.node,
                show(&op.op),
                op.term,
                op.index,
                held.unwrap_or_else(|| "nothing".into())
            ));
        }
    }
    if problems.more > 0 {
        problems
            .listed
            .push(format!("and {} more live tail problems", problems.more));
    }
    problems.listed
}

/// Live tails (`GET /v1/journal?from=N&format=ndjson`, following) on every node for the whole
/// run, one thread each, reconnecting from the next index after the stream ends (a restart).
pub struct Followers {
    tails: Vec<Arc<Mutex<NodeTail>>>,
    /// Per node: why a tail could not go on (a 410: the next index was truncated).
    ended: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Followers {
    pub fn start(sockets: Vec<(u64, PathBuf)>) -> Followers {
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let mut tails = Vec::new();
        let mut threads = Vec::new();
        for (node, socket) in sockets {
            let tail = Arc::new(Mutex::new(NodeTail {
                node,
                first: 1,
                ops: Vec::new(),
            }));
            tails.push(tail.clone());
            let (stop, ended) = (stop.clone(), ended.clone());
            threads.push(std::thread::spawn(move || {
                follow(node, &socket, &tail, &ended, &stop)
            }));
        }
        Followers {
            tails,
            ended,
            stop,
            threads,
        }
    }

    /// Stops the threads (they end when their node's stream ends: kill the nodes first) and
    /// returns what each saw, and why a tail stopped early if one did.
    pub fn finish(mut self) -> (Vec<NodeTail>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        let tails = self
            .tails
            .iter()
            .map(|t| t.lock().unwrap().clone())
            .collect();
        let ended = self.ended.lock().unwrap().clone();
        (tails, ended)
    }
}

impl Drop for Followers {
    /// A run that ends early leaves no thread reconnecting to sockets that are gone.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One node's live tail until `stop`. Every line is recorded as it came (the check finds a gap
/// or a repeat); a reconnection asks for the index after the last one seen.
fn follow(
    node: u64,
    socket: &Path,
    tail: &Mutex<NodeTail>,
    ended: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let (next, held) = {
            let t = tail.lock().unwrap();
            (t.ops.last().map_or(1, |op| op.index + 1), t.ops.len())
        };
        if held >= LIVE_OPS_MAX {
            ended.lock().unwrap().push(format!(
                "n{node}'s live tail stopped at index {next}: {LIVE_OPS_MAX} operations recorded"
            ));
            return;
        }
        let path = format!("/v1/journal?from={next}&format=ndjson");
        let mut failed = None;
        let streamed = client::stream(socket, &path, |line| {
            match parse_tail(node, next, line.as_bytes()) {
                Ok(t) => {
                    let mut held = tail.lock().unwrap();
                    held.ops.extend(t.ops);
                    held.ops.len() < LIVE_OPS_MAX && !stop.load(Ordering::Relaxed)
                }
                Err(err) => {
                    failed = Some(err);
                    false
                }
            }
        });
        let gone = match (&failed, &streamed) {
            // A node whose disk failed (the full-disk fault) stops and is restarted: its
            // stream ends with a storage error, and the tail reconnects like after a kill.
            (Some(err), _) if err.ended_with("storage_error") => None,
            (Some(err), _) => Some(err.to_string()),
            (None, Err(err)) if format!("{err:#}").contains("journal_compacted") => {
                Some(format!("n{node}: {err:#}"))
            }
            _ => None,
        };
        if let Some(reason) = gone {
            ended.lock().unwrap().push(format!(
                "n{node}'s live tail stopped at index {next}: {reason}"
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first operation of `ops` that is not at the index due (`first`, then one more each),
/// with that index.
fn first_gap(first: u64, ops: &[TailOp]) -> Option<(u64, &TailOp)> {
    (first..)
        .zip(ops)
        .find(|(expected, op)| op.index != *expected)
}

/// Why a node's journal could not be read as a tail. Each names the node (`n3: ...`).
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("n{node}: a tail line is not JSON ({error}): {}", show(.line))]
    NotJson {
        node: u64,
        error: serde_json::Error,
        line: Vec<u8>,
    },
    /// The stream ended with an error line (`{"error": CODE, ...}`): the journal was truncated
    /// meanwhile, or the node's storage failed.
    #[error("n{node}: the tail ended with {code}: {line}")]
    ErrorLine {
        node: u64,
        code: serde_json::Value,
        line: serde_json::Value,
    },
    #[error("n{node}: a tail line lacks index, term or op: {line}")]
    Incomplete { node: u64, line: serde_json::Value },
    #[error("n{node}: reading the journal: {error:#}")]
    Request { node: u64, error: anyhow::Error },
    #[error("n{node}: 410 without first_index")]
    GoneWithoutFirstIndex { node: u64 },
    /// Any other answer than 200 or 410, with the API's error text.
    #[error("n{node}: GET {path}: {text}")]
    Status {
        node: u64,
        path: String,
        text: String,
    },
    #[error("n{node}: the journal's first index kept moving (410 three times)")]
    FirstIndexMoving { node: u64 },
}

impl TailError {
    /// Whether the stream ended with the error line of code `code`.
    pub fn ended_with(&self, code: &str) -> bool {
        matches!(self, TailError::ErrorLine { code: c, .. } if c == code)
    }
}

/// Parses an NDJSON tail body read from `first`; an error line (the journal was truncated
/// meanwhile) or a malformed line is an error.
pub fn parse_tail(node: u64, first: u64, body: &[u8]) -> Result<NodeTail, TailError> {
    let mut ops = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|error| TailError::NotJson {
                node,
                error,
                line: line.to_vec(),
            })?;
        if let Some(code) = v.get("error") {
            return Err(TailError::ErrorLine {
                node,
                code: code.clone(),
                line: v,
            });
        }
        let op = v["op"]
            .as_str()
            .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok());
        match (v["index"].as_u64(), v["term"].as_u64(), op) {
            (Some(index), Some(term), Some(op)) => ops.push(TailOp { index, term, op }),
            _ => return Err(TailError::Incomplete { node, line: v }),
        }
    }
    Ok(NodeTail { node, first, ops })
}

/// Reads a node's whole journal (`follow=false`) from index 1, or from its first retained
/// index when a prefix is gone.
pub fn read_tail(node: u64, socket: &Path) -> Result<NodeTail, TailError> {
    let mut from = 1;
    for _ in 0..3 {
        let path = format!("/v1/journal?from={from}&format=ndjson&follow=false");
        let answer = client::request(socket, "GET", &path, b"", TAIL_TIMEOUT).map_err(|error| {
            TailError::Request {
                node,
                error: error.into(),
            }
        })?;
        match answer.status {
            200 => return parse_tail(node, from, &answer.body),
            410 => {
                from = answer
                    .json()
                    .ok()
                    .and_then(|v| v["first_index"].as_u64())
                    .ok_or(TailError::GoneWithoutFirstIndex { node })?;
            }
            _ => {
                return Err(TailError::Status {
                    node,
                    text: answer.error_text(),
                    path,
                })
            }
        }
    }
    Err(TailError::FirstIndexMoving { node })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(index: u64, term: u64, payload: &str) -> TailOp {
        TailOp {
            index,
            term,
            op: payload.as_bytes().to_vec(),
        }
    }

    fn tail(node: u64, ops: &[(u64, u64, &str)]) -> NodeTail {
        NodeTail {
            node,
            first: ops.first().map_or(1, |o| o.0),
            ops: ops.iter().map(|&(i, t, p)| op(i, t, p)).collect(),
        }
    }

    fn acked(payload: &str, index: u64, term: u64) -> Append {
        Append {
            client: 0,
            payload: payload.as_bytes().to_vec(),
            ack: Some(JournalAck { index, term }),
        }
    }

    fn unknown(payload: &str) -> Append {
        Append {
            client: 0,
            payload: payload.as_bytes().to_vec(),
            ack: None,
        }
    }

    const GOOD: &[(u64, u64, &str)] = &[(1, 2, "a"), (2, 2, "b"), (3, 3, "c")];

    fn good_appends() -> Vec<Append> {
        vec![
            acked("a", 1, 2),
            unknown("b"),
            acked("c", 3, 3),
            unknown("d"),
        ]
    }

    fn problems(tails: &[NodeTail], appends: &[Append]) -> String {
        let report = check(tails, appends);
        assert!(!report.ok(), "the check passed: {report:?}");
        report.problems.join("\n")
    }

    #[test]
    fn the_same_dense_sequence_everywhere_passes() {
        let tails = [tail(1, GOOD), tail(2, GOOD), tail(3, GOOD)];
        let report = check(&tails, &good_appends());
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.acked, report.held, report.compacted), (2, 3, 0));
    }

    #[test]
    fn a_duplicate_fails() {
        let twice = [(1, 2, "a"), (2, 2, "b"), (3, 3, "c"), (4, 3, "a")];
        let text = problems(&[tail(1, &twice), tail(2, &twice)], &good_appends());
        assert!(
            text.contains("\"a\" appears 2 times, at indexes [1, 4]"),
            "{text}"
        );
        // An append whose outcome is unknown may appear once, not twice.
        let twice = [(1, 2, "a"), (2, 2, "b"), (3, 3, "c"), (4, 3, "b")];
        let text = problems(&[tail(1, &twice)], &good_appends());
        assert!(text.contains("\"b\" appears 2 times"), "{text}");
    }

    #[test]
    fn a_gap_fails() {
        let gap = [(1, 2, "a"), (3, 3, "c")];
        let text = problems(&[tail(1, &gap)], &good_appends());
        assert!(
            text.contains("n1: index 3 (payload \"c\") where index 2 was due"),
            "{text}"
        );
    }

    #[test]
    fn a_divergent_node_fails() {
        let other = [(1, 2, "a"), (2, 2, "d"), (3, 3, "c")];
        let text = problems(&[tail(1, GOOD), tail(2, &other)], &good_appends());
        assert!(
            text.contains(
                "n2 and n1 differ at index 2: n2 holds \"d\" (term 2), n1 holds \"b\" (term 2)"
            ),
            "{text}"
        );
        // The same payload under another term is a divergence too.
        let other = [(1, 2, "a"), (2, 3, "b"), (3, 3, "c")];
        assert!(problems(&[tail(1, GOOD), tail(2, &other)], &good_appends()).contains("differ"));
        // So is a node that lacks the end of the sequence.
        let short = [(1, 2, "a"), (2, 2, "b")];
        let text = problems(&[tail(1, GOOD), tail(2, &short)], &good_appends());
        assert!(
            text.contains(
                "n2's journal ends at index 2, n1's at 3: n2 lacks index 3 (payload \"c\")"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_lost_ack_fails() {
        let lost = [(1, 2, "a"), (2, 2, "b")];
        let text = problems(&[tail(1, &lost), tail(2, &lost)], &good_appends());
        assert!(
            text.contains("\"c\" (client 0) was acknowledged at index 3 and is missing from every node's journal"),
            "{text}"
        );
        // Another operation in its place: still missing, and the holder is named.
        let replaced = [(1, 2, "a"), (2, 2, "b"), (3, 3, "d")];
        let text = problems(&[tail(1, &replaced)], &good_appends());
        assert!(text.contains("(n1 holds \"d\" there)"), "{text}");
    }

    #[test]
    fn a_wrong_index_fails() {
        let appends = vec![acked("a", 1, 2), unknown("b"), acked("c", 2, 3)];
        let text = problems(&[tail(1, GOOD)], &appends);
        assert!(
            text.contains("\"c\" (client 0) was acknowledged at index 2, but the journal holds it at index [3]"),
            "{text}"
        );
    }

    #[test]
    fn an_operation_no_client_appended_fails() {
        let text = problems(&[tail(1, GOOD)], &[acked("a", 1, 2), acked("c", 3, 3)]);
        assert!(
            text.contains("n1 holds \"b\" at index 2, which no client appended"),
            "{text}"
        );
    }

    #[test]
    fn a_compacted_prefix_is_compared_where_the_nodes_overlap() {
        let mut n2 = tail(2, &GOOD[1..]);
        n2.first = 2;
        let report = check(&[tail(1, GOOD), n2.clone()], &good_appends());
        assert!(report.ok(), "{:?}", report.problems);
        // Dropped everywhere: an acknowledged append below the first index is not checkable.
        let report = check(&[n2], &good_appends());
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.acked, report.compacted), (2, 1));
    }

    #[test]
    fn a_term_that_differs_from_the_answer_fails() {
        let appends = vec![acked("a", 1, 5), unknown("b"), acked("c", 3, 3)];
        let report = check(&[tail(1, GOOD)], &appends);
        assert!(!report.ok());
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("answered with index 1 term 5"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn live_tails_that_are_prefixes_of_the_journal_pass() {
        let reference = [tail(1, GOOD), tail(2, GOOD)];
        let live = [tail(1, &GOOD[..2]), tail(2, GOOD), tail(3, &[])];
        assert_eq!(check_live(&live, &reference), Vec::<String>::new());
    }

    #[test]
    fn a_live_tail_with_a_gap_a_repeat_or_another_operation_fails() {
        let reference = [tail(1, GOOD)];
        let gap = [tail(2, &[(1, 2, "a"), (3, 3, "c")])];
        let text = check_live(&gap, &reference).join("\n");
        assert!(
            text.contains("n2's live tail: index 3 (payload \"c\") where index 2 was due"),
            "{text}"
        );
        // A reconnection that sent an index again.
        let repeat = [tail(2, &[(1, 2, "a"), (2, 2, "b"), (2, 2, "b")])];
        assert!(check_live(&repeat, &reference)[0].contains("where index 3 was due"));
        let other = [tail(2, &[(1, 2, "a"), (2, 2, "x")])];
        let text = check_live(&other, &reference).join("\n");
        assert!(
            text.contains("n2's live tail saw \"x\" (term 2) at index 2; the journal holds \"b\" (term 2) there"),
            "{text}"
        );
        // Seen live, then gone from the final journal.
        let beyond = [tail(
            2,
            &[(1, 2, "a"), (2, 2, "b"), (3, 3, "c"), (4, 3, "d")],
        )];
        let text = check_live(&beyond, &reference).join("\n");
        assert!(
            text.contains("at index 4; the journal holds nothing there"),
            "{text}"
        );
    }

    #[test]
    fn ndjson_tails_parse_and_error_lines_fail() {
        let body =
            b"{\"index\":4,\"term\":2,\"op\":\"YQ==\"}\n{\"index\":5,\"term\":2,\"op\":\"Yg==\"}\n";
        let t = parse_tail(1, 4, body).unwrap();
        assert_eq!(t.ops, vec![op(4, 2, "a"), op(5, 2, "b")]);
        let gone = b"{\"index\":4,\"term\":2,\"op\":\"YQ==\"}\n{\"error\":\"journal_compacted\",\"first_index\":9}\n";
        assert!(parse_tail(1, 4, gone)
            .unwrap_err()
            .to_string()
            .contains("journal_compacted"));
        assert!(parse_tail(1, 4, b"{\"index\":4}\n").is_err());
        assert!(parse_tail(1, 4, b"nonsense\n").is_err());
    }
}

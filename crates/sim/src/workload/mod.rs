//! The workload: three clients with exactly-once sessions, each issuing one operation at a time
//! — writes (retried under the same session sequence number when their outcome is unknown),
//! appends to the host's journal (retried alike), reads through the log, ReadIndex reads on
//! any node and lease reads — and the history of what they saw, for the linearizability
//! checker (an append is a write of its own key, which nobody reads).
//!
//! Invariant: every write and every append carries a value never used before, so a value
//! names its write.

mod answers;
mod encode;

pub use encode::{key_of, value_of, JOURNAL_RETENTION};

use super::checker::linearizability::{OpKind, Operation};
use super::env::Env;
use super::node::SimNode;
use super::time::{Event, MS};
use encode::encode;
use regent_raft::{LogIndex, Nanos, NodeId, ProposeError, SplitMix64, Term};
use regent_replica::{ReadMode, Token};
use std::collections::BTreeSet;

/// Clients of every run.
const CLIENTS: usize = 3;

/// Attempts of one write before the client gives up on it (its outcome then stays unknown).
const WRITE_ATTEMPTS_MAX: u32 = 4;

/// Replica tokens: a history operation's index, or a client's session registration with this
/// bit set.
const REGISTRATION: Token = 1 << 63;

/// The history key of journal appends (no read asks for it).
pub const JOURNAL_KEY: u64 = u64::MAX;

/// How long a client waits for an answer before it calls the outcome unknown.
const ANSWER_TIMEOUT_NS: Nanos = 2000 * MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOp {
    Write {
        key: u64,
        value: u64,
        seq: u64,
    },
    /// Appends the value's bytes to the host's journal.
    Append {
        value: u64,
        seq: u64,
    },
    LogRead {
        key: u64,
    },
    LeaseRead {
        key: u64,
    },
    /// Opens the client's exactly-once session.
    Register,
    /// A ReadIndex read, on any node (followers ask the leader).
    IndexRead {
        key: u64,
    },
}

#[derive(Default)]
struct Client {
    leader_hint: Option<NodeId>,
    /// The operation in progress: its history index, or a not yet accepted request.
    current: Option<usize>,
    pending_request: Option<ClientOp>,
    done: bool,
    /// The exactly-once session (its client id), once registered.
    session: Option<u64>,
    registering_until: Nanos,
    next_seq: u64,
    /// The request of the current operation, and how many attempts it has had: a write whose
    /// outcome is unknown is retried with the same session sequence number.
    last_request: Option<ClientOp>,
    attempts: u32,
}

/// What became of a request handed to a node.
enum Submitted {
    ReadStarted,
    Proposed,
    Refused(ProposeError),
}

pub struct Workload {
    clients: Vec<Client>,
    history: Vec<Operation>,
    /// Every write puts a value never written before.
    next_value: u64,
    /// Where each acknowledged write was applied: (index, term).
    acked_writes: Vec<(LogIndex, Term)>,
    /// Each acknowledged append: its operation and the journal index it took.
    acked_appends: Vec<(Vec<u8>, u64)>,
    /// History operations that certainly never took effect (left out of the check).
    failed_ops: BTreeSet<usize>,
    /// Clients stop starting operations after this (one second after the heal).
    stop_after: Option<Nanos>,
    /// Writes acknowledged, reads answered, writes sent again after an unknown outcome.
    pub commits: u64,
    pub reads: u64,
    pub retries: u64,
}

impl Workload {
    pub fn new() -> Workload {
        Workload {
            clients: (0..CLIENTS)
                .map(|_| Client {
                    next_seq: 1,
                    ..Client::default()
                })
                .collect(),
            history: Vec::new(),
            next_value: 0,
            acked_writes: Vec::new(),
            acked_appends: Vec::new(),
            failed_ops: BTreeSet::new(),
            stop_after: None,
            commits: 0,
            reads: 0,
            retries: 0,
        }
    }

    /// Schedules every client's first operation.
    pub fn begin(&mut self, env: &mut Env) {
        for c in 0..self.clients.len() {
            let at = 100 * MS + env.rng.below(100 * MS);
            env.schedule(at, Event::ClientStart(c));
        }
    }

    /// The network healed at `at`: clients finish a second later.
    pub fn heal(&mut self, at: Nanos) {
        self.stop_after = Some(at + 1000 * MS);
    }

    pub fn all_done(&self) -> bool {
        self.clients.iter().all(|c| c.done)
    }

    pub fn acked_writes(&self) -> &[(LogIndex, Term)] {
        &self.acked_writes
    }

    pub fn acked_appends(&self) -> &[(Vec<u8>, u64)] {
        &self.acked_appends
    }

    /// The history to check: every operation except those that certainly never took effect.
    pub fn history_to_check(&self) -> Vec<Operation> {
        self.history
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.failed_ops.contains(i))
            .map(|(_, op)| op.clone())
            .collect()
    }

    /// Client `c` starts its next operation (or retries its current write) on some node.
    /// Returns the node to drive, if it was handed a request.
    pub fn start(&mut self, env: &mut Env, nodes: &mut [SimNode], c: usize) -> Option<usize> {
        if self.clients[c].current.is_some() {
            return None;
        }
        if self.stop_after.is_some_and(|t| env.now() > t) {
            self.clients[c].done = true;
            return None;
        }
        if self.clients[c].session.is_none() {
            if env.now() < self.clients[c].registering_until {
                env.schedule(20 * MS, Event::ClientStart(c));
                return None;
            }
            self.clients[c].pending_request = Some(ClientOp::Register);
        }
        let request = self.next_request(&mut env.rng, c);
        let target = self.pick_target(&mut env.rng, c, nodes.len());
        let Some(now) = nodes[target].local_now(env.now()) else {
            self.clients[c].pending_request = Some(request);
            self.clients[c].leader_hint = None;
            env.schedule(10 * MS, Event::ClientStart(c));
            return None;
        };
        let op = self.op_index(c, request);
        let submitted = self.submit(&mut nodes[target], c, op, request, now);
        let id = nodes[target].id;
        self.after_submit(env, c, op, request, id, submitted)
            .then_some(target)
    }

    /// The pending request, or a new one drawn at random.
    fn next_request(&mut self, rng: &mut SplitMix64, c: usize) -> ClientOp {
        if let Some(r) = self.clients[c].pending_request.take() {
            return r;
        }
        let key = rng.below(3);
        match rng.below(5) {
            0 | 1 => {
                let seq = self.clients[c].next_seq;
                self.clients[c].next_seq += 1;
                self.next_value += 1;
                // Writes of the last key go to the journal instead (no extra draw, so the
                // random streams of the runs stay as they were).
                if key == 2 {
                    ClientOp::Append {
                        value: self.next_value,
                        seq,
                    }
                } else {
                    ClientOp::Write {
                        key,
                        value: self.next_value,
                        seq,
                    }
                }
            }
            2 => ClientOp::LogRead { key },
            3 => ClientOp::LeaseRead { key },
            _ => ClientOp::IndexRead { key },
        }
    }

    /// The node the client asks: mostly the leader it heard of, else any.
    fn pick_target(&self, rng: &mut SplitMix64, c: usize, nodes: usize) -> usize {
        match self.clients[c].leader_hint {
            Some(id) if rng.below(10) > 0 => (id.0 - 1) as usize,
            _ => rng.below(nodes as u64) as usize,
        }
    }

    /// The history index of the operation: a retried write is the same operation, invoked
    /// when it was first sent.
    fn op_index(&self, c: usize, request: ClientOp) -> usize {
        match self.clients[c].last_request {
            Some(last) if last == request && self.clients[c].attempts > 0 => {
                self.history.len()
                    - 1
                    - self
                        .history
                        .iter()
                        .rev()
                        .position(|o| {
                            o.client == c as u64 && matches!(o.kind, OpKind::Write { .. })
                        })
                        .expect("the write being retried")
            }
            _ => self.history.len(),
        }
    }

    /// Hands the request to a live node: a read to its read path, anything else proposed.
    fn submit(
        &self,
        node: &mut SimNode,
        c: usize,
        op: usize,
        request: ClientOp,
        now: Nanos,
    ) -> Submitted {
        let id = node.id;
        let replica = node.live();
        let result = match request {
            ClientOp::IndexRead { .. } | ClientOp::LeaseRead { .. } => {
                let mode = match request {
                    ClientOp::LeaseRead { .. } => ReadMode::Lease,
                    _ => ReadMode::Index,
                };
                return match replica.read(op as Token, mode, now) {
                    Ok(()) => Submitted::ReadStarted,
                    Err(_) => Submitted::Refused(ProposeError::NotLeader {
                        leader: replica.core().status(now).leader.filter(|&l| l != id),
                    }),
                };
            }
            ClientOp::Register => {
                let token = REGISTRATION | c as Token;
                replica.propose(token, encode(request, None, now / MS), now)
            }
            _ => {
                let session = self.clients[c].session;
                replica.propose(op as Token, encode(request, session, now / MS), now)
            }
        };
        match result {
            Ok(_) => Submitted::Proposed,
            Err(refusal) => Submitted::Refused(refusal),
        }
    }

    /// Records what became of the request; true if the node took it (and must be driven).
    fn after_submit(
        &mut self,
        env: &mut Env,
        c: usize,
        op: usize,
        request: ClientOp,
        target: NodeId,
        submitted: Submitted,
    ) -> bool {
        match submitted {
            Submitted::ReadStarted => {
                self.invoke(env, c, op, request);
                true
            }
            Submitted::Proposed if request == ClientOp::Register => {
                self.clients[c].registering_until = env.now() + 500 * MS;
                env.schedule(20 * MS, Event::ClientStart(c));
                true
            }
            Submitted::Proposed => {
                self.clients[c].last_request = Some(request);
                self.clients[c].attempts += 1;
                self.invoke(env, c, op, request);
                self.clients[c].leader_hint = Some(target);
                true
            }
            Submitted::Refused(ProposeError::NotLeader { leader }) => {
                self.clients[c].leader_hint = leader;
                self.clients[c].pending_request = Some(request);
                let wait = 2 * MS + env.rng.below(20 * MS);
                env.schedule(wait, Event::ClientStart(c));
                false
            }
            Submitted::Refused(
                ProposeError::Backpressure { .. } | ProposeError::Transferring { .. },
            ) => {
                self.clients[c].pending_request = Some(request);
                env.schedule(20 * MS, Event::ClientStart(c));
                false
            }
        }
    }

    /// The operation `op` is in progress: in the history (unless it is a retry) and timed.
    fn invoke(&mut self, env: &mut Env, c: usize, op: usize, request: ClientOp) {
        let (key, kind) = match request {
            ClientOp::Write { key, value, .. } => (key, OpKind::Write { value }),
            ClientOp::Append { value, .. } => (JOURNAL_KEY, OpKind::Write { value }),
            ClientOp::LogRead { key }
            | ClientOp::LeaseRead { key }
            | ClientOp::IndexRead { key } => (key, OpKind::Read { observed: None }),
            ClientOp::Register => unreachable!("a registration is no history operation"),
        };
        if op == self.history.len() {
            self.history.push(Operation {
                client: c as u64,
                key,
                kind,
                invoke: env.now(),
                complete: None,
            });
        }
        self.clients[c].current = Some(op);
        env.schedule(ANSWER_TIMEOUT_NS, Event::ClientTimeout { client: c, op });
    }
}

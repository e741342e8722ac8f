//! How the clients take their answers: applied proposals, confirmed reads, lost attempts (a
//! timeout, a crash, an entry replaced by another leader's), and what each client does next.

use super::{value_of, ClientOp, Workload, REGISTRATION, WRITE_ATTEMPTS_MAX};
use crate::checker::linearizability::OpKind;
use crate::checker::{Finding, ViolationKind};
use crate::env::Env;
use crate::node::SimNode;
use crate::time::{Event, MS};
use regent_raft::{LogIndex, ReadError};
use regent_replica::{Abandoned, ProposalOutcome, Token};
use regent_storage::{ApplyResult, Response};

impl Workload {
    /// A proposal made on some node is decided: a session registration, or a client operation.
    pub fn proposal_decided(&mut self, env: &mut Env, token: Token, outcome: ProposalOutcome) {
        if token & REGISTRATION != 0 {
            if let ProposalOutcome::Applied {
                result: ApplyResult::Command(Ok(Response::SessionRegistered { client_id })),
                ..
            } = outcome
            {
                // A client keeps the first session it learns of: retrying a write under another
                // session would (rightly) apply it twice.
                let client = (token & !REGISTRATION) as usize;
                self.clients[client].session.get_or_insert(client_id);
            }
            return;
        }
        self.op_decided(env, token as usize, outcome);
    }

    fn op_decided(&mut self, env: &mut Env, op: usize, outcome: ProposalOutcome) {
        let client = self.history[op].client as usize;
        if self.history[op].complete.is_some() || self.failed_ops.contains(&op) {
            return;
        }
        let still_current = self.clients[client].current == Some(op);
        let ProposalOutcome::Applied {
            index,
            term,
            result,
        } = outcome
        else {
            // Another leader's entry took that index: this attempt will never be applied. A
            // write that had earlier attempts may still have been applied by one of them.
            if still_current {
                if self.clients[client].attempts > 1 {
                    self.attempt_lost(env, client, 1);
                } else {
                    self.failed_ops.insert(op);
                    self.next_op(env, client, 1);
                }
            }
            return;
        };
        if !still_current {
            return; // The client gave up (unknown outcome); keep it that way.
        }
        self.history[op].complete = Some(env.now());
        match &mut self.history[op].kind {
            OpKind::Write { value } => {
                if let ApplyResult::Command(Ok(
                    Response::JournalAppended { first, .. }
                    | Response::JournalRetried { first, .. },
                )) = result
                {
                    self.acked_appends
                        .push((super::encode::append_op(*value), first));
                }
                self.acked_writes.push((index, term));
                self.commits += 1;
            }
            OpKind::Read { observed } => {
                let ApplyResult::Command(Ok(Response::Get { kv, .. })) = result else {
                    panic!("a read entry answered with {result:?}");
                };
                *observed = kv.as_ref().map(|kv| value_of(&kv.value));
                self.reads += 1;
            }
        }
        self.next_op(env, client, 1);
    }

    /// A ReadIndex or lease read on a node is confirmed (or failed): the client reads that
    /// node's state machine. A read released before its index was applied is stale.
    pub fn read_confirmed(
        &mut self,
        env: &mut Env,
        node: &SimNode,
        op: usize,
        result: Result<LogIndex, ReadError>,
    ) -> Result<(), Finding> {
        let client = self.history[op].client as usize;
        if self.clients[client].current != Some(op) {
            return Ok(()); // The client gave up on it: unknown outcome.
        }
        let store = node.applied_state();
        match result {
            Ok(index) => {
                let applied = node.applied_index();
                if applied < index {
                    let detail = format!(
                        "{} released a read at {index} with applied {applied}",
                        node.id
                    );
                    return Err(Finding::new(ViolationKind::StaleRead, detail));
                }
                let key = self.history[op].key;
                let observed = store
                    .kv_get(&super::key_of(key))
                    .expect("in-memory reads do not fail")
                    .map(|kv| value_of(&kv.value));
                self.history[op].kind = OpKind::Read { observed };
                self.history[op].complete = Some(env.now());
                self.reads += 1;
            }
            Err(_) => {
                self.failed_ops.insert(op);
            }
        }
        self.next_op(env, client, 1);
        Ok(())
    }

    /// The client's answer did not come in time.
    pub fn timed_out(&mut self, env: &mut Env, client: usize, op: usize) {
        if self.clients[client].current == Some(op) {
            self.attempt_lost(env, client, 1);
        }
    }

    /// A node crashed with these requests unanswered: their clients never hear back.
    pub fn abandoned(&mut self, env: &mut Env, abandoned: Abandoned) {
        for op in abandoned.reads {
            let client = self.history[op as usize].client as usize;
            if self.clients[client].current == Some(op as usize) {
                self.next_op(env, client, 5);
            }
        }
        for token in abandoned.proposals {
            // Registrations, the hosts' fenced writes and reports, and the operator's
            // maintenance are no operations.
            let not_ops = REGISTRATION
                | crate::hosts::FENCE
                | crate::hosts::HOST_REPORT
                | crate::maintenance::MAINTENANCE;
            if token & not_ops != 0 {
                continue;
            }
            // Unknown outcome, retried if a write.
            let op = token as usize;
            let client = self.history[op].client as usize;
            if self.clients[client].current == Some(op) {
                self.attempt_lost(env, client, 5);
            }
        }
    }

    /// The client's attempt ended without an answer (timeout, crash, or its entry replaced): a
    /// write is retried with the same session sequence number, which the state machine
    /// answers from its record if an earlier attempt was applied; otherwise the outcome stays
    /// unknown.
    fn attempt_lost(&mut self, env: &mut Env, client: usize, delay_ms: u64) {
        let c = &mut self.clients[client];
        c.current = None;
        c.leader_hint = None;
        match c.last_request {
            Some(request @ (ClientOp::Write { .. } | ClientOp::Append { .. }))
                if c.attempts < WRITE_ATTEMPTS_MAX =>
            {
                c.pending_request = Some(request);
                self.retries += 1;
                env.schedule(delay_ms * MS, Event::ClientStart(client));
            }
            _ => self.next_op(env, client, delay_ms),
        }
    }

    /// The client is done with its operation and starts the next one after `delay_ms`.
    fn next_op(&mut self, env: &mut Env, client: usize, delay_ms: u64) {
        let c = &mut self.clients[client];
        c.last_request = None;
        c.attempts = 0;
        c.current = None;
        let at = delay_ms * MS + env.rng.below(MS);
        env.schedule(at, Event::ClientStart(client));
    }
}

//! What the hosts beside the nodes do apart from the clients' workload: writes fenced with an
//! `expected_term` (the current term, a stale one as a deposed master would send, or one
//! ahead), and reports of how far each host applied the journal (a follower's forwarded to the
//! leader, which logs it in the follower's name).
//!
//! Checked here: a write outside a session whose expected term is not its node's current term
//! never reaches the log, and one that is current is not refused early; an applied fenced
//! write was appended in the term it expected; every journal report the state machine applies
//! names a node whose host made exactly that report.
//!
//! Invariant: fenced writes go to a key of their own, which the clients never read, so the
//! linearizability check of the clients' history is unaffected.

use super::checker::{Finding, ViolationKind};
use super::env::Env;
use super::node::SimNode;
use super::time::MS;
use super::workload::JOURNAL_RETENTION;
use regent_raft::{Entry, EntryPayload, Nanos, NodeId};
use regent_replica::{ProposalOutcome, ProposeRefusal, Token};
use regent_storage::{ApplyResult, Command, CommandError, Proposal};
use std::collections::{BTreeMap, BTreeSet};

/// Tokens of fenced writes and of journal reports (apart from the clients' operations).
pub const FENCE: Token = 1 << 62;
pub const HOST_REPORT: Token = 1 << 61;

/// The key fenced writes put.
const FENCE_KEY: &[u8] = b"fence";

#[derive(Default)]
pub struct Hosts {
    next_token: Token,
    /// Fenced writes proposed and not yet decided: token → the term they expected.
    pending: BTreeMap<Token, u64>,
    /// Every journal report a host made: (its node, the index it reported applied).
    reported: BTreeSet<(u64, u64)>,
    /// Fenced writes refused, early or where they applied (`fenced=`).
    pub fenced: u64,
    /// Fenced writes applied (in the term they expected).
    pub fenced_applied: u64,
    /// Followers' journal reports forwarded and logged by a leader (`host_reports=`).
    pub host_reports: u64,
}

impl Hosts {
    /// The host beside node `i` writes with an expected term: its node's current term, or
    /// (as a deposed master would) the one before, or one ahead. Returns whether the node took
    /// it (and must be driven).
    pub fn fenced_write(&mut self, env: &mut Env, node: &mut SimNode) -> Result<bool, Finding> {
        let Some(now) = node.local_now(env.now()) else {
            return Ok(false);
        };
        let id = node.id;
        let replica = node.live();
        let current = replica.core().status(now).term.0;
        let expected = match env.rng.below(3) {
            0 => current,
            1 => current.saturating_sub(1),
            _ => current + 1,
        };
        self.next_token += 1;
        let token = FENCE | self.next_token;
        let mut proposal = Proposal::new(Command::Put {
            key: FENCE_KEY.to_vec(),
            value: token.to_le_bytes().to_vec(),
        });
        proposal.expected_term = Some(expected);
        match replica.propose_command(token, proposal, now, env.now() / MS) {
            Ok(_) if expected != current => Err(Finding::new(
                ViolationKind::Fencing,
                format!("{id} proposed a write expecting term {expected} in term {current}"),
            )),
            Ok(_) => {
                self.pending.insert(token, expected);
                Ok(true)
            }
            Err(ProposeRefusal::TermMismatch {
                expected: e,
                current: c,
            }) => {
                self.fenced += 1;
                if e == c || c != current {
                    return Err(Finding::new(
                        ViolationKind::Fencing,
                        format!(
                            "{id} refused a write expecting term {e} as stale, saying its term is \
                             {c} (it is {current})"
                        ),
                    ));
                }
                env.note(format!("{id} fenced a write expecting term {e} (term {c})"));
                Ok(false)
            }
            Err(ProposeRefusal::Core(_)) => Ok(false),
        }
    }

    /// A fenced write was decided where it was proposed.
    pub fn decided(
        &mut self,
        env: &mut Env,
        token: Token,
        outcome: ProposalOutcome,
    ) -> Result<(), Finding> {
        let Some(expected) = self.pending.remove(&token) else {
            return Ok(());
        };
        let ProposalOutcome::Applied { term, result, .. } = outcome else {
            return Ok(());
        };
        match result {
            ApplyResult::Command(Ok(_)) if term.0 != expected => Err(Finding::new(
                ViolationKind::Fencing,
                format!("a write expecting term {expected} was applied from term {term}"),
            )),
            ApplyResult::Command(Ok(_)) => {
                self.fenced_applied += 1;
                Ok(())
            }
            ApplyResult::Command(Err(CommandError::TermMismatch { .. })) => {
                self.fenced += 1;
                env.note(format!(
                    "a write expecting term {expected} fenced where it applied"
                ));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The host beside node `i` reports how far it applied the journal (its node's journal as
    /// applied there). Returns whether the node must be driven.
    pub fn journal_report(&mut self, env: &mut Env, node: &mut SimNode) -> bool {
        let Some(now) = node.local_now(env.now()) else {
            return false;
        };
        let applied = node.applied_journal().last;
        if applied == 0 {
            return false;
        }
        let id = node.id;
        self.reported.insert((id.0, applied));
        self.next_token += 1;
        let token = HOST_REPORT | self.next_token;
        let proposal = Proposal::new(Command::JournalReport {
            node: id.0,
            applied: Some(applied),
            checkpoint: None,
            retention: JOURNAL_RETENTION,
        });
        // On a follower the replica forwards it to the leader (and refuses it here).
        let _ = node
            .live()
            .propose_command(token, proposal, now, env.now() / MS);
        true
    }

    /// A follower's forwarded report reaches the leader at `to`. Returns whether it was logged.
    pub fn report_arrived(
        &mut self,
        now: Nanos,
        wall_ms: u64,
        from: NodeId,
        to: &mut SimNode,
        applied: Option<u64>,
        checkpoint: Option<u64>,
    ) -> bool {
        let logged =
            to.live()
                .host_report(from, applied, checkpoint, JOURNAL_RETENTION, now, wall_ms);
        self.host_reports += u64::from(logged);
        logged
    }

    /// An entry applied on some node: a journal report in it must name the node whose host
    /// made it.
    pub fn check_applied(&self, e: &Entry) -> Result<(), Finding> {
        let EntryPayload::Normal(data) = &e.payload else {
            return Ok(());
        };
        let Ok(proposal) = Proposal::decode(data) else {
            return Ok(());
        };
        if let Command::JournalReport {
            node,
            applied: Some(applied),
            ..
        } = proposal.command
        {
            if !self.reported.contains(&(node, applied)) {
                return Err(Finding::new(
                    ViolationKind::HostReport,
                    format!(
                        "entry {} logs a journal report of n{node} (applied {applied}) that its \
                         host never made",
                        e.index
                    ),
                ));
            }
        }
        Ok(())
    }
}

//! Answers: what the replica decided about a request, turned into the API's answer (or
//! error) and sent on the request's oneshot.
//!
//! Invariant: each pending request is answered at most once; an answer whose request is not
//! pending (the driver's own reads, a report nobody waits for) is dropped.

use super::{Driver, DriverError, Pending};
use crate::api::{
    BusyReason, HandoverAnswer, RequestError, StorageFailure, TransferFailure, WriteAnswer,
};
use crate::disk;
use regent_raft::{LogIndex, NodeId, ProposeError, ReadError, TransferError};
use regent_replica::{HandoverOutcome, InstallVerdict, MaintenanceRefusal, ProposalOutcome, Token};
use regent_storage::{ApplyResult, CommandError};
use std::sync::atomic::Ordering::Relaxed;

impl Driver {
    pub(super) fn answer_proposal(&mut self, token: Token, outcome: ProposalOutcome) {
        let Some(Pending::Write { reply, arrived }) = self.pending.remove(&token) else {
            return;
        };
        let micros = arrived.elapsed().as_micros() as u64;
        self.metrics.proposal_seconds.observe_micros(micros);
        let answer = match outcome {
            ProposalOutcome::Applied {
                index,
                term,
                result,
            } => match result {
                ApplyResult::Command(Ok(response)) => Ok(WriteAnswer {
                    index,
                    term,
                    response,
                }),
                ApplyResult::Command(Err(CommandError::TermMismatch { expected, actual })) => {
                    Err(RequestError::TermMismatch {
                        expected,
                        current: actual,
                    })
                }
                ApplyResult::Command(Err(err)) => Err(RequestError::Command(err)),
                other => Err(RequestError::Storage(StorageFailure::UnexpectedApply(
                    other,
                ))),
            },
            ProposalOutcome::Superseded { .. } => Err(RequestError::Superseded),
        };
        if answer.is_err() {
            self.metrics.proposals_failed.fetch_add(1, Relaxed);
        }
        let _ = reply.send(answer);
    }

    pub(super) fn answer_read(&mut self, token: Token, result: Result<LogIndex, ReadError>) {
        let Some(pending) = self.pending.remove(&token) else {
            return;
        };
        let Pending::Read { query, reply } = pending else {
            self.pending.insert(token, pending);
            return;
        };
        match result {
            Ok(_) => {
                // The replica has applied the read index (in memory): answer from there.
                let answer = disk::read(self.replica.state(), query);
                let _ =
                    reply.send(answer.map_err(|e| RequestError::Storage(StorageFailure::Read(e))));
            }
            Err(err) => {
                let _ = reply.send(Err(self.read_error(err)));
            }
        }
    }

    pub(super) fn answer_handover(&mut self, token: Option<Token>, outcome: HandoverOutcome) {
        let Some(Pending::Switchover { reply }) = token.and_then(|t| self.pending.remove(&t))
        else {
            return;
        };
        let answer = match outcome {
            HandoverOutcome::Done { from, to, pause_ms } => {
                Ok(HandoverAnswer { from, to, pause_ms })
            }
            HandoverOutcome::NotDone {
                to,
                waited_ms,
                leader,
            } => Err(RequestError::Transfer(TransferFailure::NotTakenOver {
                target: to,
                waited_ms,
                leader,
            })),
        };
        let _ = reply.send(answer);
    }

    pub(super) fn answer_chunk(&mut self, token: Token, verdict: InstallVerdict) {
        let Some(Pending::Chunk { reply }) = self.pending.remove(&token) else {
            return;
        };
        let answer = match verdict {
            InstallVerdict::Continue => Ok(false),
            InstallVerdict::Installed { .. } => Ok(true),
            InstallVerdict::Refused(err) => Err(err),
            InstallVerdict::Fatal(error) => {
                self.fatal = Some(DriverError::SnapshotInstall {
                    error: error.clone(),
                });
                Err(error)
            }
        };
        let _ = reply.send(answer);
    }

    pub(super) fn propose_error(&self, err: ProposeError) -> RequestError {
        match err {
            ProposeError::NotLeader { leader } => self.not_leader(leader),
            ProposeError::Backpressure { .. } | ProposeError::Transferring { .. } => {
                RequestError::Busy(BusyReason::Propose(err))
            }
        }
    }

    /// A refused switchover or maintenance change: a transfer the core refused keeps its
    /// `transfer_failed` answer, a proposal its `not_leader` or `busy` one.
    pub(super) fn maintenance_error(&self, err: MaintenanceRefusal) -> RequestError {
        match err {
            MaintenanceRefusal::Core(err) => self.propose_error(err),
            MaintenanceRefusal::Transfer(TransferError::NotLeader { leader }) => {
                self.not_leader(leader)
            }
            MaintenanceRefusal::Transfer(err) => {
                RequestError::Transfer(TransferFailure::Refused(err))
            }
            other => RequestError::Maintenance(other),
        }
    }

    pub(super) fn read_error(&self, err: ReadError) -> RequestError {
        match err {
            ReadError::NoLeader | ReadError::NotLeader => {
                // The leader field does not depend on the time asked.
                let leader = self.replica.core().status(0).leader;
                self.not_leader(leader.filter(|&l| l != self.id))
            }
            ReadError::Transferring | ReadError::Backpressure { .. } => {
                RequestError::Busy(BusyReason::Read(err))
            }
        }
    }

    pub(super) fn not_leader(&self, leader: Option<NodeId>) -> RequestError {
        RequestError::NotLeader {
            leader,
            address: leader.and_then(|l| self.peers.address(l)),
        }
    }
}

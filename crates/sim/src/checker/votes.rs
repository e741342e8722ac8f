//! Votes, as the disks record them: a node votes at most once per term, across restarts, and
//! never forgets a vote it made durable; a leader was elected by a quorum of durable votes.
//!
//! Invariant: `votes[(node, term)]` is the vote the node's disk first recorded for that term;
//! it is never revised.

use super::quorum::is_quorum;
use super::{Finding, ViolationKind};
use regent_raft::{HardState, Membership, NodeId, Term};
use std::collections::HashMap;

#[derive(Default)]
pub struct Votes {
    votes: HashMap<(NodeId, Term), NodeId>,
}

impl Votes {
    /// `node` made `hs` durable.
    pub fn on_durable(&mut self, node: NodeId, hs: &HardState) -> Result<(), Finding> {
        let known = self.votes.get(&(node, hs.term)).copied();
        match (known, hs.vote) {
            (Some(before), Some(now)) if before != now => {
                let detail = format!("{node} voted for {before} and then {now} in {}", hs.term);
                Err(Finding::new(ViolationKind::DoubleVote, detail))
            }
            (Some(before), None) => {
                let detail = format!(
                    "{node} made its vote for {before} in {} durable, then a hard state without it",
                    hs.term
                );
                Err(Finding::new(ViolationKind::DoubleVote, detail))
            }
            (None, Some(now)) => {
                self.votes.insert((node, hs.term), now);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `leader` was seen leading `term` under `membership`: a quorum of its voters voted for it
    /// durably — its own vote included, which counts only once durable like any other (a
    /// lone voter that led a term before its vote was durable could forget it in a crash and
    /// lead that term again).
    pub fn check_elected(
        &self,
        leader: NodeId,
        term: Term,
        membership: &Membership,
    ) -> Result<(), Finding> {
        let voted = |id: NodeId| self.votes.get(&(id, term)) == Some(&leader);
        if is_quorum(membership, voted) {
            return Ok(());
        }
        let voters: Vec<NodeId> = membership
            .members()
            .into_iter()
            .filter(|&id| voted(id))
            .collect();
        let detail = format!(
            "{leader} leads {term} with durable votes from only {voters:?} in {membership:?}"
        );
        Err(Finding::new(ViolationKind::ElectionQuorum, detail))
    }
}

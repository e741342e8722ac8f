//! Membership changes as the leader carries them out: configurations take effect when
//! appended, joint configurations are left once committed, a removed leader steps down.
//!
//! Invariant: `membership` always equals `configs.current()`; the leader replicates to exactly
//! the members of the configuration in force.

use super::*;

impl RaftNode {
    pub(super) fn check_can_change(&self) -> Result<(), ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.lead().transfer.is_some() {
            return Err(ConfChangeError::Transferring);
        }
        let index = self.configs.current_index();
        if index > self.log.committed || self.configs.current().is_joint() {
            return Err(ConfChangeError::ChangeInProgress { index });
        }
        Ok(())
    }

    /// Appends an entry of the current term as leader; a configuration takes effect at once.
    pub(super) fn append_entry(&mut self, payload: EntryPayload) -> LogIndex {
        let config = match &payload {
            EntryPayload::Config(m) => Some(m.clone()),
            _ => None,
        };
        let index = self.log.append_new(self.term, payload);
        if let Some(m) = config {
            self.configs.push(index, m);
            self.on_membership_changed();
        }
        index
    }

    /// Brings role and replication in line with the configuration in force.
    pub(super) fn on_membership_changed(&mut self) {
        let voter = self.configs.current().is_voter(self.id);
        match self.role {
            Role::Leader => {
                let (me, now) = (self.id, self.now);
                let members = self.configs.current().members();
                let joint = self.configs.current().is_joint();
                let last = self.log.last_index();
                let lead = self.lead_mut();
                lead.progress.retain(|id, _| members.contains(id));
                for id in members {
                    if id != me && !lead.progress.contains_key(&id) {
                        lead.progress.insert(id, Progress::new(last, now));
                    }
                }
                lead.joint_since = match (joint, lead.joint_since) {
                    (true, None) => Some(now),
                    (true, since) => since,
                    (false, _) => None,
                };
                // The lease must rest on a quorum of the configuration in force (both halves
                // of a joint one): recompute it from the rounds each member acknowledged.
                lead.lease_until = 0;
                lead.quorum_round = 0;
                self.update_lease();
            }
            Role::Follower | Role::Learner => {
                self.role = if voter { Role::Follower } else { Role::Learner };
            }
            Role::Candidate | Role::PreCandidate => {
                if !self.may_campaign() {
                    self.become_follower(self.term, None);
                }
            }
        }
    }

    /// Once the newest configuration is committed: leave a joint configuration (C_new), or, if
    /// this leader is no longer a voter, step down.
    pub(super) fn after_config_commit(&mut self) {
        if self.role != Role::Leader || self.configs.current_index() > self.log.committed {
            return;
        }
        if self.configs.current().is_joint() {
            let next = membership::leave_joint(self.configs.current());
            self.append_entry(EntryPayload::Config(next));
            self.broadcast_append();
            self.maybe_commit();
        } else if !self.configs.current().is_voter(self.id) {
            self.become_follower(self.term, None);
        }
    }
}

//! The checkers run by the cluster: each node after each input, the lease after each step,
//! liveness and the final state after healing; a violation gets its seed's replay command.

use super::Cluster;
use crate::checker::{final_state, history, lease, liveness, quorum, Finding, Replay, Violation};
use crate::time::MS;
use regent_storage::LogStorage;

impl Cluster {
    /// Checks the node's state after it handled an input.
    pub(super) fn observe(&mut self, i: usize) {
        let Some(now) = self.nodes[i].local_now(self.env.now()) else {
            return;
        };
        let core = self.nodes[i].core().expect("live");
        let seen = self.watches[i].observe(core, now, &mut self.facts);
        let id = self.nodes[i].id;
        let membership = core.membership();
        let mut findings = seen.findings;
        if let Some((index, term)) = seen.leader_commit {
            let held = quorum::check_commit(&self.nodes, id, membership, index, term);
            findings.extend(held.err());
        }
        if let Some(term) = seen.leads {
            findings.extend(self.votes.check_elected(id, term, membership).err());
        }
        findings.extend(self.journal_tails.observe(&self.nodes[i]).err());
        if self.maintenance.is_some() {
            findings.extend(crate::maintenance::check(&self.nodes[i], self.env.now()).err());
        }
        if self.roles.is_some() {
            findings.extend(crate::roles::check(&self.nodes[i], self.env.now()).err());
        }
        for f in findings {
            self.violation(f);
        }
        if let Some(term) = seen.leads {
            self.elections += 1;
            let membership = self.nodes[i].core().expect("live").membership();
            self.operator.new_leader(id, term, membership);
            self.env.note(format!("{id} leads {term}"));
            self.eager_change(i);
        }
    }

    pub(super) fn check_after_step(&mut self) {
        for f in std::mem::take(&mut self.operator.findings) {
            self.violation(f);
        }
        let lease = lease::check(&self.nodes, self.env.now());
        for f in lease.findings {
            self.violation(f);
        }
        if self.heal_at.is_some() && self.first_writable_after_heal.is_none() && lease.writable {
            self.first_writable_after_heal = Some(self.env.now());
        }
    }

    /// Whether the liveness phase is over: healed, a leader writable, clients done, every
    /// member caught up with the commit index.
    pub(super) fn settled(&self) -> bool {
        self.heal_at.is_some()
            && self.first_writable_after_heal.is_some()
            && self.workload.all_done()
            && liveness::caught_up(&self.nodes)
    }

    pub(super) fn final_checks(&mut self) {
        if self.env.tracing() {
            self.trace_nodes();
        }
        let liveness_ms_max = self.cfg.liveness_ms_max;
        let (Some(elected), Some(heal_at)) = (self.first_writable_after_heal, self.heal_at) else {
            self.violation(liveness::no_leader(liveness_ms_max));
            return;
        };
        self.election_after_heal_ns = elected - heal_at;
        if self.election_after_heal_ns > liveness_ms_max * MS {
            self.violation(liveness::no_leader(liveness_ms_max));
            return;
        }
        if !self.settled() {
            self.violation(liveness::not_settled(&self.nodes, self.cfg.settle_ms_max));
            return;
        }
        let keep = crate::node::HISTORY_KEEP as usize;
        let histories: Vec<_> = (self.nodes.iter())
            .filter_map(|node| node.replica.as_ref())
            .filter_map(|replica| history::check_final(replica, keep).err())
            .collect();
        for f in histories {
            self.violation(f);
        }
        let members = liveness::final_members(&self.nodes);
        if let Err(f) = final_state::check(&self.nodes, &members, &self.workload) {
            self.violation(f);
        }
        let tails = &mut self.journal_tails;
        let findings: Vec<_> = (self.nodes.iter())
            .filter_map(|node| tails.observe(node).err())
            .collect();
        for f in findings {
            self.violation(f);
        }
        if let Err(f) = self
            .journal_tails
            .check_final(self.workload.acked_appends())
        {
            self.violation(f);
        }
    }

    pub(super) fn trace_nodes(&mut self) {
        for (i, node) in self.nodes.iter().enumerate() {
            let line = match (&node.replica, node.local_now(self.env.now())) {
                (Some(replica), Some(now)) => format!(
                    "n{}: {:?} writing={} durable={:?} clock={:?}",
                    i + 1,
                    replica.core().status(now),
                    node.disk.is_writing(),
                    node.disk.store.state().hard_state,
                    replica.clock_status(),
                ),
                _ => format!("n{}: down", i + 1),
            };
            self.env.note(line);
        }
    }

    pub(super) fn violation(&mut self, finding: Finding) {
        let replay = Replay {
            seed: self.cfg.seed,
            nodes: self.cfg.nodes,
        };
        let violation = Violation::new(finding, replay);
        self.env.note(format!("VIOLATION: {violation}"));
        self.violations.push(violation);
    }
}

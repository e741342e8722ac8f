//! The node's address book and the transport's peers: every member's address (the
//! configuration file's, overridden by the replicated address records), re-read from the state
//! machine after a membership change, while a member has no address, and every
//! `ADDRESS_REREAD`; the transport's peers are the configuration's members whose address is
//! known.
//!
//! Invariant: at most one read of the address records is on the disk at a time.

use super::Driver;
use crate::api::{self, ReadAnswer, ReadQuery};
use crate::disk;
use regent_raft::{Membership, Nanos, NodeId};
use regent_storage::StorageError;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The members' address records are read again at least this often.
const ADDRESS_REREAD: Duration = Duration::from_secs(5);

/// While a member of the configuration has no known address, the records are read again at
/// most this often.
const ADDRESS_MISSING_REREAD_NS: Nanos = 1_000_000_000;

pub(super) struct Peers {
    addresses: BTreeMap<NodeId, SocketAddr>,
    /// Set on a membership change: the records are read at the next turn.
    due: bool,
    read_at: Nanos,
    last_membership: Membership,
}

impl Peers {
    pub(super) fn new(addresses: BTreeMap<NodeId, SocketAddr>, membership: Membership) -> Peers {
        Peers {
            addresses,
            due: false,
            read_at: 0,
            last_membership: membership,
        }
    }

    pub(super) fn address(&self, id: NodeId) -> Option<SocketAddr> {
        self.addresses.get(&id).copied()
    }
}

impl Driver {
    /// After each turn: logs a membership change (and syncs the transport's peers), and asks
    /// the disk for the members' address records when they are due.
    pub(super) fn peers_turn(&mut self, now: Nanos) {
        let current = self.replica.core().membership();
        if *current != self.peers.last_membership {
            tracing::info!(
                node = %self.id,
                voters = ?current.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
                outgoing = ?current.voters_outgoing.iter().map(|v| v.0).collect::<Vec<_>>(),
                learners = ?current.learners.iter().map(|v| v.0).collect::<Vec<_>>(),
                "membership changed"
            );
            self.peers.last_membership = current.clone();
            self.peers.due = true;
            self.sync_peers();
        }
        self.maybe_read_addresses(now);
    }

    /// Reads the members' address records from the state machine when they are due: after a
    /// membership change, and (at most once a second) while a member of the configuration has
    /// no known address — on a follower the record may be applied a little after the change
    /// appears.
    fn maybe_read_addresses(&mut self, now: Nanos) {
        let missing = self
            .replica
            .core()
            .membership()
            .members()
            .into_iter()
            .any(|id| id != self.id && !self.peers.addresses.contains_key(&id));
        // Also every ADDRESS_REREAD: a member moved with `regent members update` is found
        // there without a configuration change.
        let since = now.saturating_sub(self.peers.read_at);
        let due = self.peers.due
            || (missing && since >= ADDRESS_MISSING_REREAD_NS)
            || since >= ADDRESS_REREAD.as_nanos() as u64;
        if !due {
            return;
        }
        self.peers.due = false;
        self.peers.read_at = now;
        let result = disk::read(
            self.replica.state(),
            ReadQuery::Range {
                prefix: api::members::MEMBER_ADDRESS_PREFIX.to_vec(),
                limit: api::members::MEMBER_RECORDS_MAX,
            },
        );
        self.on_address_records(result);
    }

    pub(super) fn on_address_records(&mut self, result: Result<ReadAnswer, StorageError>) {
        let kvs = match result {
            Ok(ReadAnswer::Range { kvs, .. }) => kvs,
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "reading the members' addresses failed");
                return;
            }
        };
        for kv in &kvs {
            match api::members::parse_member_address(kv) {
                Some((id, addr)) => {
                    if self.peers.addresses.insert(id, addr) != Some(addr) {
                        tracing::info!(node = %self.id, member = %id, %addr, "learned a member's address");
                    }
                }
                None => tracing::warn!(
                    node = %self.id, key = ?String::from_utf8_lossy(&kv.key),
                    "an address record that does not parse; ignored"
                ),
            }
        }
        self.sync_peers();
    }

    /// The transport's peers: every other member of the configuration whose address is known
    /// (all known addresses while this node has no configuration yet, as a joining node).
    fn wanted_peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        let members = self.replica.core().membership().members();
        let others = self.peers.addresses.iter().filter(|(&id, _)| id != self.id);
        if members.is_empty() {
            return others.map(|(&id, &a)| (id, a)).collect();
        }
        others
            .filter(|(id, _)| members.contains(id))
            .map(|(&id, &a)| (id, a))
            .collect()
    }

    pub(super) fn sync_peers(&mut self) {
        let wanted = self.wanted_peers();
        if wanted == self.transport.peers() {
            return;
        }
        match self.transport.set_peers(&wanted) {
            Ok(changes) => {
                for (peer, addr) in changes.added {
                    tracing::info!(node = %self.id, %peer, %addr, "peer added");
                }
                for (peer, addr) in changes.removed {
                    self.status.link_up.remove(&peer);
                    self.status.link_versions.remove(&peer);
                    tracing::info!(node = %self.id, %peer, %addr, "peer removed");
                }
            }
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "the transport's peers could not be changed")
            }
        }
    }
}

//! Mixed versions: the cluster version, the newest wire and command version every voter
//! speaks, committed by the leader so that every node gates the newer formats on the same
//! replicated value.
//!
//! Each build speaks the versions `VERSION_MIN..=VERSION_MAX` (one number for the wire — the
//! ALPN protocol `regent/<v>` — and for the commands the leader may put in the log). A link
//! speaks the newest version both its ends offer; the caller reports it
//! ([`Replica::peer_wire_version`]). The leader commits `cluster_version` = the lowest of its
//! own newest version and the versions of the links to every voter, as the record
//! `\0regent/cluster_version` (an ordinary put under the reserved prefix; a version-2 node
//! applies it as a plain key, which it never reads). An absent record means `VERSION_MIN`: a
//! cluster created or run by a build without the record.
//!
//! Invariants: the record is raised only when every voter's link is up and speaks the new
//! version (a voter not heard of holds it where it is); it is lowered as soon as one voter's
//! link speaks an older one. A node whose own newest version is below `VERSION_MAX` (an older
//! build, or one forced to speak as one in tests) never proposes the record, and sees the
//! cluster's version as at most its own; a follower sees it as at most its link's to the leader
//! (a leader of the older build cannot lower the record). A command or message newer than the cluster version
//! is refused (`VersionRefusal`) — by the replica for its own records (maintenance), by the
//! caller for the rest (backup, forwarded requests, clock stamps per link).

use crate::Replica;
use regent_raft::{LogIndex, Nanos, NodeId, Role, Term};
use regent_storage::{Command, Proposal, StateReader};
use std::collections::BTreeMap;

/// The oldest version this build speaks (ALPN `regent/2`).
pub const VERSION_MIN: u8 = 2;
/// The newest version this build speaks (ALPN `regent/3`).
pub const VERSION_MAX: u8 = 3;
/// The version that brought clock stamps, call streams (forwarding), maintenance records,
/// election records and backups: none of them is used while the cluster version is below it.
pub const VERSION_OPERATIONS: u8 = 3;
/// The cluster version's record.
pub const CLUSTER_VERSION_KEY: &[u8] = b"\0regent/cluster_version";
/// A leader proposes the record again after this long without seeing it applied.
const VERSION_RETRY_NS: Nanos = 1_000_000_000;

/// Why a request was refused: it needs a newer version than the cluster's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this needs cluster version {needed}; the cluster's is {cluster} (a node runs an older build: finish the upgrade first)")]
pub struct VersionRefusal {
    pub needed: u8,
    pub cluster: u8,
}

/// The replica's view of versions.
#[derive(Debug)]
pub(crate) struct Versions {
    /// The newest version this node speaks.
    pub(crate) max: u8,
    /// The version the link to each peer speaks, as the caller last reported it (absent: no
    /// link).
    pub(crate) links: BTreeMap<NodeId, u8>,
    /// The version taken for a peer the caller never reported: `VERSION_MAX` by default (the
    /// simulator's network has no handshake: every peer speaks this build's version); `None`
    /// once the caller said it reports every link (the daemon).
    pub(crate) assumed: Option<u8>,
    /// The record as applied here (`VERSION_MIN` while absent).
    pub(crate) committed: u8,
    /// The value this node, leading, last proposed, and when (for the retry).
    pub(crate) proposed: Option<(u8, Nanos)>,
    /// The record this node, leading, appended and has not yet seen applied: its term, index
    /// and value. Everything this leader appends after it is applied after it, everywhere.
    pub(crate) pending: Option<(Term, LogIndex, u8)>,
}

impl Default for Versions {
    fn default() -> Versions {
        Versions {
            max: VERSION_MAX,
            links: BTreeMap::new(),
            assumed: Some(VERSION_MAX),
            committed: VERSION_MIN,
            proposed: None,
            pending: None,
        }
    }
}

/// The value the record holds (`None`: it does not parse).
pub fn decode_cluster_version(value: &[u8]) -> Option<u8> {
    let v: u8 = std::str::from_utf8(value).ok()?.parse().ok()?;
    (v >= VERSION_MIN).then_some(v)
}

/// The version a leader speaking `own` commits for voters whose links are `links` (`None`: no
/// link known), with `committed` in force: lower at once to the lowest version heard, raise
/// only when every voter is heard at the new version. `None`: leave the record as it is.
pub fn cluster_version_target(own: u8, committed: u8, links: &[Option<u8>]) -> Option<u8> {
    target_of(own, committed, links.iter().copied())
}

/// [`cluster_version_target`] over an iterator: the leader runs it at every input, so it
/// allocates nothing.
fn target_of(own: u8, committed: u8, links: impl Iterator<Item = Option<u8>>) -> Option<u8> {
    let (lowest, all_heard) = links.fold((own, true), |(low, all), link| match link {
        Some(v) => (low.min(v), all),
        None => (low, false),
    });
    if lowest < committed || (lowest > committed && all_heard) {
        Some(lowest)
    } else {
        None
    }
}

impl Replica {
    /// The newest version this node speaks: `VERSION_MAX` but in tests that make the node speak
    /// as an older build (then it never proposes the record, and refuses newer commands).
    pub fn set_version_max(&mut self, max: u8) {
        assert!((VERSION_MIN..=VERSION_MAX).contains(&max));
        self.versions.max = max;
        self.check_clocks(self.now);
    }

    /// The newest version this node speaks.
    pub fn version_max(&self) -> u8 {
        self.versions.max
    }

    /// The link to `peer` came up speaking `version`, or went down (`None`).
    pub fn peer_wire_version(&mut self, peer: NodeId, version: Option<u8>, now: Nanos) {
        self.observe(now);
        match version {
            Some(v) => {
                if self.versions.links.insert(peer, v) != Some(v) {
                    tracing::debug!(node = %self.id, %peer, version = v, "the link to the peer speaks this version");
                }
            }
            None => {
                self.versions.links.remove(&peer);
            }
        }
        self.check_clocks(self.now);
        self.maybe_commit_version(self.now);
    }

    /// Takes every peer the caller never reported to speak `version`; `None`: a peer whose
    /// link was not reported has none (the daemon, which reports every link). The default,
    /// `VERSION_MAX`, suits a caller without handshakes (the simulator).
    pub fn assume_peer_wire_version(&mut self, version: Option<u8>) {
        assert!(version.is_none_or(|v| (VERSION_MIN..=VERSION_MAX).contains(&v)));
        self.versions.assumed = version;
        self.check_clocks(self.now);
    }

    /// The version the link to `peer` speaks, as known here.
    pub fn link_version(&self, peer: NodeId) -> Option<u8> {
        self.versions
            .links
            .get(&peer)
            .copied()
            .or(self.versions.assumed)
    }

    /// Whether this node may send `peer` a message of version `version`: its link is known to
    /// speak it (a peer not known is sent nothing newer than the oldest version).
    pub(crate) fn peer_speaks(&self, peer: NodeId, version: u8) -> bool {
        self.versions.max >= version && self.link_version(peer).is_some_and(|v| v >= version)
    }

    /// The cluster version as applied here: the committed record (`VERSION_MIN` while absent),
    /// never above this node's own newest version nor, on a follower, above the version of its
    /// link to the leader (a leader of an older build cannot lower the record, and its
    /// followers must not take it for newer than it is).
    pub fn cluster_version(&self) -> u8 {
        self.versions.committed.min(self.version_cap())
    }

    /// This node's newest version, and on a follower its link's to the leader.
    fn version_cap(&self) -> u8 {
        let leader = self.core.status(self.now).leader;
        let leader_link = leader
            .filter(|&l| l != self.id)
            .and_then(|l| self.link_version(l));
        leader_link.map_or(self.versions.max, |v| v.min(self.versions.max))
    }

    /// The cluster version that an entry appended now would be applied under: on a leader
    /// that appended a new record it has not seen applied yet (in this term), that record's
    /// value — the log applies it first on every node —, else the committed one. Never above
    /// this node's own newest version.
    pub fn log_version(&self) -> u8 {
        let status = self.core.status(self.now);
        let pending = self
            .versions
            .pending
            .filter(|&(term, index, _)| {
                status.role == Role::Leader && term == status.term && index > status.applied_index
            })
            .map(|(_, _, v)| v);
        pending
            .unwrap_or(self.versions.committed)
            .min(self.version_cap())
    }

    /// `Ok` when the version an entry appended now is applied under (`log_version`) is at
    /// least `needed`. A leader's first entries after it raised the version are so taken at
    /// once, before the record is committed: they are applied after it on every node.
    pub fn require_version(&self, needed: u8) -> Result<(), VersionRefusal> {
        let cluster = self.log_version();
        if cluster >= needed {
            Ok(())
        } else {
            Err(VersionRefusal { needed, cluster })
        }
    }

    /// The version every voter speaks as this node sees it: its own newest and the versions of
    /// its links to every other voter (each voter links to every node, so on any node this is
    /// what the leader will commit). `None` while a voter's link is not known.
    pub fn voters_version(&self) -> Option<u8> {
        let membership = self.core.membership();
        membership
            .voters
            .iter()
            .chain(&membership.voters_outgoing)
            .filter(|&&id| id != self.id)
            .try_fold(self.versions.max, |low, &id| {
                self.link_version(id).map(|v| low.min(v))
            })
    }

    /// A leader that speaks the record proposes the version every voter's link speaks when it
    /// differs from the committed one (see `cluster_version_target`). Retried while not
    /// applied.
    pub(crate) fn maybe_commit_version(&mut self, now: Nanos) {
        let own = self.versions.max;
        if own < VERSION_OPERATIONS || self.core.status(now).role != Role::Leader {
            return;
        }
        let membership = self.core.membership();
        let links = membership
            .voters
            .iter()
            .chain(&membership.voters_outgoing)
            .filter(|&&id| id != self.id)
            .map(|&id| self.link_version(id));
        let Some(target) = target_of(own, self.versions.committed, links) else {
            return;
        };
        if self
            .versions
            .proposed
            .is_some_and(|(v, at)| v == target && now < at + VERSION_RETRY_NS)
        {
            return;
        }
        let proposal = Proposal::new(Command::Put {
            key: CLUSTER_VERSION_KEY.to_vec(),
            value: target.to_string().into_bytes(),
        });
        let bytes = proposal.encode();
        self.versions.proposed = Some((target, now));
        match self.core.propose(bytes, now) {
            Ok((index, term)) => {
                self.versions.pending = Some((term, index, target));
                tracing::info!(node = %self.id, from = self.versions.committed, to = target, index = index.0, "proposing the cluster version")
            }
            Err(err) => {
                tracing::debug!(node = %self.id, error = %err, "the cluster version not proposed yet")
            }
        }
    }

    /// Reads the record from the state machine (at start, after an install, after an apply
    /// that wrote one of regent's own records: `StateMachine::reserved_writes`).
    pub(crate) fn reload_versions(&mut self) {
        let committed = match self.state.kv_get(CLUSTER_VERSION_KEY) {
            Ok(Some(kv)) => decode_cluster_version(&kv.value).unwrap_or_else(|| {
                tracing::warn!(node = %self.id, "the cluster version record does not parse: taken as the oldest");
                VERSION_MIN
            }),
            Ok(None) => VERSION_MIN,
            Err(err) => {
                tracing::warn!(node = %self.id, error = %err, "the cluster version record could not be read");
                self.versions.committed
            }
        };
        if committed != self.versions.committed {
            tracing::info!(node = %self.id, from = self.versions.committed, to = committed, "cluster version changed");
            self.versions.committed = committed;
        }
        self.versions.proposed = None;
        self.versions.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_only_when_every_voter_speaks_it() {
        // Every voter at 3: raise from 2.
        assert_eq!(cluster_version_target(3, 2, &[Some(3), Some(3)]), Some(3));
        // One voter not heard from: hold.
        assert_eq!(cluster_version_target(3, 2, &[Some(3), None]), None);
        // One voter at 2: stays.
        assert_eq!(cluster_version_target(3, 2, &[Some(3), Some(2)]), None);
        // Already there.
        assert_eq!(cluster_version_target(3, 3, &[Some(3), Some(3)]), None);
        // A single-node cluster speaks its own version.
        assert_eq!(cluster_version_target(3, 2, &[]), Some(3));
    }

    #[test]
    fn lowered_as_soon_as_one_voter_speaks_an_older_version() {
        assert_eq!(cluster_version_target(3, 3, &[Some(2), None]), Some(2));
        assert_eq!(cluster_version_target(3, 3, &[Some(3), Some(2)]), Some(2));
        // A voter not heard from does not lower it.
        assert_eq!(cluster_version_target(3, 3, &[None, None]), None);
        // A leader that speaks only 2 (it would not propose; the rule says 2).
        assert_eq!(cluster_version_target(2, 3, &[Some(2)]), Some(2));
    }

    #[test]
    fn the_record_parses_only_as_a_known_version() {
        assert_eq!(decode_cluster_version(b"3"), Some(3));
        assert_eq!(decode_cluster_version(b"1"), None);
        assert_eq!(decode_cluster_version(b"x"), None);
    }
}

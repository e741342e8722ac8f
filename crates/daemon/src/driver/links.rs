//! What the peer links bring and take: Raft messages out, what peers send in (Raft
//! messages, host reports, clock stamps, snapshot streams, relayed requests), and the links'
//! ups and downs. Each input goes to the replica as it is; nothing is decided here.

use super::Driver;
use crate::streams;
use crate::wire::PeerMessage;
use regent_raft::{Message, Nanos, NodeId};
use regent_transport::{Inbound, LinkEvent, TransportHandle};
use tokio::sync::broadcast;

/// Queues a Raft message for its peer, in the words the peer's link speaks: a peer that speaks
/// only wire version 2 gets its TimeoutNow without the cause, and nothing it has no word for.
/// The driver sends through it, and so does the disk thread (the messages that wait for a
/// durable write, `Persist::then_send`).
pub(crate) fn send_raft(transport: &TransportHandle<PeerMessage>, id: NodeId, mut m: Message) {
    let to = m.to;
    if transport.wire_version(to) == Some(2) {
        match m.body.without_cause() {
            Some(body) => m.body = body,
            None => return,
        }
    }
    if let Err(err) = transport.send(to, &PeerMessage::Raft(m)) {
        tracing::debug!(node = %id, peer = %to, error = %err, "message not queued");
    }
}

impl Driver {
    pub(super) fn send(&mut self, m: Message) {
        send_raft(&self.transport, self.id, m);
    }

    pub(super) fn on_inbound(&mut self, inbound: Inbound<PeerMessage>, now: Nanos) {
        match inbound {
            Inbound::Message {
                from,
                message:
                    PeerMessage::HostReport {
                        applied,
                        checkpoint,
                    },
            } => {
                let retention = self.admin.config.journal.retention();
                let wall_ms = self.wall_ms;
                self.replica
                    .host_report(from, applied, checkpoint, retention, now, wall_ms);
            }
            Inbound::Message {
                from,
                message: message @ PeerMessage::Clock { .. },
            } => {
                let stamp = message.stamp().expect("a Clock message carries a stamp");
                // Read the clock afresh: the exchange's bounds hold only if our reading is
                // taken after the stamp arrived (`now` was read before the inputs drained).
                let now = crate::clock::now().max(now);
                self.replica.clock_stamp(from, stamp, now);
            }
            Inbound::Message {
                from,
                message: PeerMessage::Raft(message),
            } => {
                if message.from != from {
                    tracing::warn!(node = %self.id, peer = %from, claimed = %message.from, "a peer sent a message in another node's name; dropped");
                    return;
                }
                if let Err(err) = self.replica.step(message, now) {
                    tracing::warn!(node = %self.id, peer = %from, error = %err, "message refused");
                }
            }
            Inbound::Snapshot(receiver) => {
                tokio::spawn(streams::receive(*receiver, self.streams_tx.clone()));
            }
            // A request a follower relayed: the API carries it out as a local one.
            Inbound::Call(call) => {
                if let Err(err) = self.calls.try_send(call) {
                    tracing::warn!(node = %self.id, error = %err, "a forwarded request dropped: too many waiting");
                }
            }
        }
    }

    /// Tells the replica the version of every peer's link as the transport has it now (at
    /// start, and after link events were missed).
    pub(super) fn sync_link_versions(&mut self) {
        let now = crate::clock::now();
        for peer in self.transport.peer_ids() {
            let version = self.transport.wire_version(peer);
            match version {
                Some(v) => self.status.link_versions.insert(peer, v),
                None => self.status.link_versions.remove(&peer),
            };
            self.replica.peer_wire_version(peer, version, now);
        }
    }

    pub(super) fn on_link_event(&mut self, event: Result<LinkEvent, broadcast::error::RecvError>) {
        match event {
            Ok(LinkEvent::Up {
                peer,
                dialed,
                wire_version,
                ..
            }) => {
                self.status.link_up.insert(peer, true);
                self.status.link_versions.insert(peer, wire_version);
                self.replica
                    .peer_wire_version(peer, Some(wire_version), crate::clock::now());
                tracing::info!(node = %self.id, %peer, dialed, wire_version, "link up")
            }
            Ok(LinkEvent::Down { peer, reason }) => {
                self.status.link_up.insert(peer, false);
                self.status.link_versions.remove(&peer);
                self.replica
                    .peer_wire_version(peer, None, crate::clock::now());
                tracing::info!(node = %self.id, %peer, %reason, "link down")
            }
            Ok(LinkEvent::Rejected {
                peer,
                remote,
                by,
                reason,
            }) => tracing::warn!(
                node = %self.id, peer = ?peer.map(|p| p.0), %remote, by = ?by, %reason,
                "connection refused"
            ),
            Ok(LinkEvent::DialFailed { peer, reason }) => {
                tracing::debug!(node = %self.id, %peer, %reason, "dial failed")
            }
            Ok(LinkEvent::IdentityReloaded { cert }) => {
                self.status.certificate_not_after_unix = Some(cert.not_after_unix);
                tracing::info!(node = %self.id, serial = %cert.serial, "certificate reloaded")
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(node = %self.id, missed = n, "link events missed");
                self.sync_link_versions();
            }
            Err(broadcast::error::RecvError::Closed) => {
                // The transport is gone; re-subscribing keeps the branch quiet.
                self.links = self.transport.subscribe();
            }
        }
    }
}

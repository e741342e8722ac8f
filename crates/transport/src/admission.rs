//! Admission of incoming handshakes: which connection attempts may hold a handshake slot, so
//! that no flood of unauthenticated handshakes can keep a configured peer from connecting.
//!
//! Invariants: an attempt from an address that has not proved it receives what is sent to it
//! (a QUIC Retry round trip) never holds a slot; each configured peer address has a budget of
//! its own (`PEER_HANDSHAKES_MAX`) that no other address can spend; all other addresses
//! together hold at most `HANDSHAKES_MAX` slots, and one source among them (an IPv4 address
//! or an IPv6 /64) at most `HANDSHAKES_PER_SOURCE_MAX`; a count is released exactly when its
//! `Slot` drops, so the counts always equal the live slots.

use super::{HANDSHAKES_MAX, HANDSHAKES_PER_SOURCE_MAX, PEER_HANDSHAKES_MAX};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// What to do with a new connection attempt.
#[derive(Debug)]
pub enum Decision {
    /// Answer with a QUIC Retry: the address is not validated yet. A Retry is no larger than
    /// the client's Initial and keeps no state, so spoofed or fire-and-forget attempts cost
    /// nothing but that one packet.
    Retry,
    /// Go on with the handshake while holding `Slot`.
    Admit(Slot),
    /// Refuse: the budget this attempt would spend is used up.
    Refuse(Refusal),
}

/// Which budget was used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `PEER_HANDSHAKES_MAX` handshakes from this configured peer address are in progress.
    PeerAddressBusy,
    /// `HANDSHAKES_PER_SOURCE_MAX` handshakes from this source are in progress.
    SourceBusy,
    /// `HANDSHAKES_MAX` handshakes from addresses that are not configured peers are in
    /// progress.
    OthersBusy,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::PeerAddressBusy => "too many handshakes in progress from this peer address",
            Refusal::SourceBusy => "too many handshakes in progress from this source",
            Refusal::OthersBusy => {
                "too many handshakes in progress from addresses that are not configured peers"
            }
        })
    }
}

/// A source of handshakes from an address that is not a configured peer: one IPv4 address,
/// or one IPv6 /64 (the smallest block an attacker is commonly given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6Prefix(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.into()),
            IpAddr::V6(v6) => Source::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The handshake budgets of one endpoint.
#[derive(Debug)]
pub struct Gate {
    /// The configured peers' addresses, canonical (an IPv4-mapped IPv6 address as IPv4);
    /// replaced when the peers change at run time.
    peers: std::sync::RwLock<HashSet<SocketAddr>>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Slots held per configured peer address; absent means 0.
    per_peer: HashMap<SocketAddr, usize>,
    /// Slots held per other source; absent means 0.
    per_source: HashMap<Source, usize>,
    /// Slots held by all other sources together: the sum of `per_source`.
    others: usize,
}

/// One handshake slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<Gate>,
    held: Held,
}

#[derive(Debug)]
enum Held {
    Peer(SocketAddr),
    Other(Source),
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Gate {
    pub fn new(peer_addrs: impl IntoIterator<Item = SocketAddr>) -> Arc<Gate> {
        Arc::new(Gate {
            peers: std::sync::RwLock::new(peer_addrs.into_iter().map(canonical).collect()),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Replaces the peers' addresses (slots already held stay counted where they were taken).
    pub fn set_peers(&self, peer_addrs: impl IntoIterator<Item = SocketAddr>) {
        *self.peers.write().unwrap_or_else(|p| p.into_inner()) =
            peer_addrs.into_iter().map(canonical).collect();
    }

    /// Decides about an attempt from `remote`; `validated` says whether it carried a valid
    /// Retry token (proof that it receives what is sent to `remote`).
    pub fn admit(self: &Arc<Self>, remote: SocketAddr, validated: bool) -> Decision {
        if !validated {
            return Decision::Retry;
        }
        let remote = canonical(remote);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let is_peer = self
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&remote);
        let held = if is_peer {
            let n = counts.per_peer.entry(remote).or_insert(0);
            if *n >= PEER_HANDSHAKES_MAX {
                return Decision::Refuse(Refusal::PeerAddressBusy);
            }
            *n += 1;
            Held::Peer(remote)
        } else {
            let source = Source::of(remote.ip());
            if counts.others >= HANDSHAKES_MAX {
                return Decision::Refuse(Refusal::OthersBusy);
            }
            let n = counts.per_source.entry(source).or_insert(0);
            if *n >= HANDSHAKES_PER_SOURCE_MAX {
                return Decision::Refuse(Refusal::SourceBusy);
            }
            *n += 1;
            counts.others += 1;
            Held::Other(source)
        };
        Decision::Admit(Slot {
            gate: self.clone(),
            held,
        })
    }

    /// Slots held now: (from configured peer addresses, from all others).
    pub fn in_progress(&self) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (counts.per_peer.values().sum(), counts.others)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.gate.counts.lock().unwrap_or_else(|p| p.into_inner());
        match self.held {
            Held::Peer(addr) => {
                let n = counts.per_peer.get_mut(&addr);
                let n = n.expect("a held peer slot is counted");
                assert!(*n > 0);
                *n -= 1;
                if *n == 0 {
                    counts.per_peer.remove(&addr);
                }
            }
            Held::Other(source) => {
                assert!(counts.others > 0);
                counts.others -= 1;
                let n = counts.per_source.get_mut(&source);
                let n = n.expect("a held source slot is counted");
                assert!(*n > 0);
                *n -= 1;
                if *n == 0 {
                    counts.per_source.remove(&source);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn admitted(decision: Decision) -> Slot {
        match decision {
            Decision::Admit(slot) => slot,
            other => panic!("expected a slot, got {other:?}"),
        }
    }

    fn refused(decision: Decision) -> Refusal {
        match decision {
            Decision::Refuse(why) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_unvalidated_address_gets_a_retry_and_no_slot() {
        let gate = Gate::new([addr("10.0.0.1:7000")]);
        for remote in ["10.0.0.1:7000", "192.0.2.1:5555"] {
            assert!(matches!(gate.admit(addr(remote), false), Decision::Retry));
        }
        assert_eq!(gate.in_progress(), (0, 0));
    }

    #[test]
    fn others_cannot_spend_a_peer_address_budget() {
        let peer = addr("10.0.0.1:7000");
        let gate = Gate::new([peer]);
        // Fill the budget of all other addresses, from many sources, and the per-source
        // budget of the peer's own IP from another port.
        let mut held = Vec::new();
        for i in 0..HANDSHAKES_MAX {
            let remote = addr(&format!("192.0.2.{}:4000", i / HANDSHAKES_PER_SOURCE_MAX));
            held.push(admitted(gate.admit(remote, true)));
        }
        assert_eq!(
            refused(gate.admit(addr("198.51.100.1:1"), true)),
            Refusal::OthersBusy
        );
        assert_eq!(
            refused(gate.admit(addr("10.0.0.1:7001"), true)),
            Refusal::OthersBusy,
            "the peer's IP from another port is not the peer's address"
        );
        // The peer still gets its own slots, and only its own.
        let mut peer_slots: Vec<Slot> = (0..PEER_HANDSHAKES_MAX)
            .map(|_| admitted(gate.admit(peer, true)))
            .collect();
        assert_eq!(refused(gate.admit(peer, true)), Refusal::PeerAddressBusy);
        assert_eq!(gate.in_progress(), (PEER_HANDSHAKES_MAX, HANDSHAKES_MAX));
        peer_slots.pop();
        admitted(gate.admit(peer, true));
        // An IPv4-mapped IPv6 address is the same peer.
        drop(peer_slots);
        admitted(gate.admit(addr("[::ffff:10.0.0.1]:7000"), true));
        drop(held);
        assert_eq!(gate.in_progress(), (0, 0));
    }

    #[test]
    fn one_source_holds_at_most_its_share() {
        let gate = Gate::new([]);
        let mut held = Vec::new();
        for port in 0..HANDSHAKES_PER_SOURCE_MAX as u16 {
            held.push(admitted(
                gate.admit(SocketAddr::new("192.0.2.7".parse().unwrap(), port), true),
            ));
        }
        assert_eq!(
            refused(gate.admit(addr("192.0.2.7:9"), true)),
            Refusal::SourceBusy
        );
        // One IPv6 /64 is one source.
        for i in 0..HANDSHAKES_PER_SOURCE_MAX {
            held.push(admitted(
                gate.admit(addr(&format!("[2001:db8::{i}]:443")), true),
            ));
        }
        assert_eq!(
            refused(gate.admit(addr("[2001:db8::ffff:1]:443"), true)),
            Refusal::SourceBusy
        );
        admitted(gate.admit(addr("[2001:db8:0:1::1]:443"), true));
        held.clear();
        assert_eq!(gate.in_progress(), (0, 0));
        admitted(gate.admit(addr("192.0.2.7:9"), true));
    }
}

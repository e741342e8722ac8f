//! A cluster of nodes on loopback, all peers of each other, with good certificates.

use super::node::{bind, config, start, Node};
use super::pki::Pki;
use std::net::SocketAddr;

/// Starts nodes `ids` with good certificates from `pki`, all peers of each other.
pub fn start_cluster(pki: &Pki, ids: &[u64]) -> Vec<Node> {
    let sockets: Vec<_> = ids.iter().map(|_| bind()).collect();
    let addrs: Vec<(u64, SocketAddr)> = ids
        .iter()
        .zip(&sockets)
        .map(|(id, (_, a))| (*id, *a))
        .collect();
    let mut nodes = Vec::new();
    for (i, (socket, addr)) in sockets.into_iter().enumerate() {
        let id = ids[i];
        let paths = pki.node(&format!("n{id}"), id);
        let peers: Vec<_> = addrs.iter().copied().filter(|(p, _)| *p != id).collect();
        nodes.push(start(config(id, addr, &peers, &paths), socket));
    }
    nodes
}

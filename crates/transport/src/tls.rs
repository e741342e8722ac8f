//! QUIC endpoint configuration from a node's TLS material: TLS 1.3 only, the ring provider
//! only, mutual authentication always, no session resumption.
//!
//! Invariants: every connection runs a full handshake with both certificates verified against
//! the material current when it started (resumption is off on both sides, so a ticket from
//! before a reload or a CA drop can never skip a check); a dial verifies the one node it
//! expects; an accept verifies the client names a configured peer of this cluster.

use super::TransportError;
use crate::pki::material::NodeMaterial;
use crate::pki::verify::{ClusterClients, ExpectedServer};
use crate::pki::{crypto_provider, NodeIdentity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use regent_raft::NodeId;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The newest wire version this build speaks: its ALPN protocol name. A peer speaking no
/// `regent/N` this build speaks is not a regent node it can talk to.
pub const ALPN: &[u8] = b"regent/3";
/// The oldest wire version this build still speaks (`regent/2`: Raft messages and host reports,
/// no clock stamps, no call streams). See docs/transport.md, "Versions".
pub const WIRE_VERSION_MIN: u8 = 2;
/// The newest wire version this build speaks (`regent/3`: clock stamps and call streams).
pub const WIRE_VERSION_MAX: u8 = 3;

/// The ALPN protocol name of wire version `version`: `regent/<version>`.
pub fn alpn_name(version: u8) -> Vec<u8> {
    format!("regent/{version}").into_bytes()
}

/// The protocols a node whose newest wire version is `max` offers and accepts, newest first:
/// `regent/<max>` down to `regent/<WIRE_VERSION_MIN>`. The server picks the first of its own
/// list the client offers (rustls), so a link speaks the newest version both ends speak.
pub fn alpn_protocols(max: u8) -> Vec<Vec<u8>> {
    assert!((WIRE_VERSION_MIN..=WIRE_VERSION_MAX).contains(&max));
    (WIRE_VERSION_MIN..=max).rev().map(alpn_name).collect()
}

/// The wire version of an ALPN protocol name this build speaks (`None`: not one of them).
pub fn wire_version(protocol: &[u8]) -> Option<u8> {
    (WIRE_VERSION_MIN..=WIRE_VERSION_MAX).find(|&v| alpn_name(v) == protocol)
}

/// The wire version a connection's handshake settled on (its negotiated ALPN protocol).
pub fn negotiated_version(conn: &quinn::Connection) -> Option<u8> {
    let data = conn.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    wire_version(data.protocol.as_deref()?)
}

/// The server name put in the ClientHello. Peers are identified by their URI SAN, not by
/// this name, which is never checked.
pub const SERVER_NAME: &str = "regent-peer";

fn tls_err(what: &'static str) -> impl FnOnce(rustls::Error) -> TransportError {
    move |error| TransportError::Tls { what, error }
}

/// The server's TLS side: presents the node's certificate, requires a client certificate
/// that names one of `peers` in `cluster`, accepts the wire versions up to `wire_version_max`.
pub fn server_crypto(
    material: &NodeMaterial,
    cluster: &str,
    peers: BTreeSet<NodeId>,
    wire_version_max: u8,
) -> Result<Arc<QuicServerConfig>, TransportError> {
    let provider = crypto_provider();
    let verifier = ClusterClients::new(
        material.roots.clone(),
        cluster.to_string(),
        peers,
        provider.clone(),
    )
    .map_err(tls_err("client verifier"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("TLS 1.3"))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(material.chain.clone(), material.key())
        .map_err(tls_err("server certificate"))?;
    tls.alpn_protocols = alpn_protocols(wire_version_max);
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|error| TransportError::QuicCrypto {
        what: "QUIC server config",
        error,
    })?;
    Ok(Arc::new(quic))
}

/// The endpoint's server configuration around `crypto`, with a new random Retry token key.
/// Built once per endpoint; a reload replaces only `crypto` (see `reload_identity`).
pub fn server_config(
    crypto: Arc<QuicServerConfig>,
    transport: Arc<quinn::TransportConfig>,
) -> quinn::ServerConfig {
    let mut config = quinn::ServerConfig::with_crypto(crypto);
    config.transport_config(transport);
    // Peers do not move; refusing migration keeps a connection bound to the address that
    // was authenticated.
    config.migration(false);
    // The accept loop decides about every attempt at once (Retry, refuse or a slot), so the
    // queue in front of it stays short; these bound it and the bytes it may buffer.
    config.max_incoming(super::INCOMING_MAX);
    config.incoming_buffer_size(64 << 10);
    config.incoming_buffer_size_total(4 << 20);
    config
}

/// The client side for one dial: presents the node's certificate and accepts only a server
/// whose certificate names `expected`, offering the wire versions up to `wire_version_max`.
pub fn client_config(
    material: &NodeMaterial,
    expected: NodeIdentity,
    transport: Arc<quinn::TransportConfig>,
    wire_version_max: u8,
) -> Result<quinn::ClientConfig, TransportError> {
    let provider = crypto_provider();
    let verifier = ExpectedServer::new(material.roots.clone(), expected, provider.clone());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("TLS 1.3"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(material.chain.clone(), material.key())
        .map_err(tls_err("client certificate"))?;
    tls.alpn_protocols = alpn_protocols(wire_version_max);
    tls.resumption = rustls::client::Resumption::disabled();
    let quic = QuicClientConfig::try_from(tls).map_err(|error| TransportError::QuicCrypto {
        what: "QUIC client config",
        error,
    })?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// The leaf certificate a connection's peer presented.
pub fn peer_certificate(
    conn: &quinn::Connection,
) -> Option<rustls::pki_types::CertificateDer<'static>> {
    let identity = conn.peer_identity()?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    chain.first().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_newest_first_down_to_the_oldest() {
        assert_eq!(
            alpn_protocols(3),
            vec![b"regent/3".to_vec(), b"regent/2".to_vec()]
        );
        assert_eq!(alpn_protocols(2), vec![b"regent/2".to_vec()]);
        assert_eq!(alpn_name(WIRE_VERSION_MAX), ALPN);
        assert_eq!(wire_version(b"regent/2"), Some(2));
        assert_eq!(wire_version(b"regent/3"), Some(3));
        assert_eq!(wire_version(b"regent/1"), None);
        assert_eq!(wire_version(b"regent/4"), None);
        assert_eq!(wire_version(b"h3"), None);
    }
}

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

/// The ALPN protocol name: a peer speaking anything else is not a regent node.
pub const ALPN: &[u8] = b"regent/3";

/// The server name put in the ClientHello. Peers are identified by their URI SAN, not by
/// this name, which is never checked.
pub const SERVER_NAME: &str = "regent-peer";

fn tls_err(what: &'static str) -> impl FnOnce(rustls::Error) -> TransportError {
    move |error| TransportError::Tls { what, error }
}

/// The server's TLS side: presents the node's certificate, requires a client certificate
/// that names one of `peers` in `cluster`.
pub fn server_crypto(
    material: &NodeMaterial,
    cluster: &str,
    peers: BTreeSet<NodeId>,
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
    tls.alpn_protocols = vec![ALPN.to_vec()];
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
/// whose certificate names `expected`.
pub fn client_config(
    material: &NodeMaterial,
    expected: NodeIdentity,
    transport: Arc<quinn::TransportConfig>,
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
    tls.alpn_protocols = vec![ALPN.to_vec()];
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

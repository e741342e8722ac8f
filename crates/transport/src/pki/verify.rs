//! The TLS verifiers that tie a peer's certificate to a regent node: chain to a trusted CA
//! (any CA of the bundle), valid now, right usage, and the node named in the URI SAN.
//!
//! Invariants: a dialer accepts only the node it dialed (`ExpectedServer`); a server accepts
//! only a client whose certificate names a configured peer of its own cluster
//! (`ClusterClients`). Both refuse with an error that says why, which rustls turns into a
//! TLS alert and quinn into a closed connection, so a refused peer never gets a link.

use super::identity::{identity_of, NodeIdentity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls::{Error, OtherError, SignatureScheme};
use std::collections::BTreeSet;
use std::sync::Arc;

use regent_raft::NodeId;

/// Why a peer's certificate was refused after its chain checked out.
#[derive(thiserror::Error)]
pub enum IdentityRefusal {
    #[error("certificate names no regent node: {0}")]
    NoIdentity(super::PkiError),
    #[error("certificate names {found}, but this connection expects {expected}")]
    WrongNode {
        found: NodeIdentity,
        expected: NodeIdentity,
    },
    #[error("certificate names {found}, which is not of cluster {cluster}")]
    WrongCluster {
        found: NodeIdentity,
        cluster: String,
    },
    #[error("certificate names {found}, which is not a configured peer")]
    NotAPeer { found: NodeIdentity },
}

/// rustls formats a refusal with `Debug`; make that the readable sentence.
impl std::fmt::Debug for IdentityRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn refuse(reason: IdentityRefusal) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(reason))))
}

/// The dialer's check of the server: the chain is trusted and it names `expected`.
#[derive(Debug)]
pub struct ExpectedServer {
    roots: Arc<RootCertStore>,
    expected: NodeIdentity,
    provider: Arc<CryptoProvider>,
}

impl ExpectedServer {
    pub fn new(
        roots: Arc<RootCertStore>,
        expected: NodeIdentity,
        provider: Arc<CryptoProvider>,
    ) -> ExpectedServer {
        ExpectedServer {
            roots,
            expected,
            provider,
        }
    }
}

impl ServerCertVerifier for ExpectedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // The server name is not used: nodes are named by their URI SAN, not by DNS, so the
        // same check holds whatever address the peer was dialed at.
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let found =
            identity_of(end_entity.as_ref()).map_err(|e| refuse(IdentityRefusal::NoIdentity(e)))?;
        if found != self.expected {
            return Err(refuse(IdentityRefusal::WrongNode {
                found,
                expected: self.expected.clone(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server's check of a client: webpki's client verification (chain, validity, clientAuth
/// usage), then the certificate must name a configured peer of `cluster`.
#[derive(Debug)]
pub struct ClusterClients {
    inner: Arc<dyn ClientCertVerifier>,
    cluster: String,
    peers: BTreeSet<NodeId>,
}

impl ClusterClients {
    pub fn new(
        roots: Arc<RootCertStore>,
        cluster: String,
        peers: BTreeSet<NodeId>,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClusterClients, Error> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| Error::General(format!("client verifier: {e}")))?;
        Ok(ClusterClients {
            inner,
            cluster,
            peers,
        })
    }

    /// The check on the identity alone, shared with the hello exchange.
    pub fn check_identity(&self, found: &NodeIdentity) -> Result<(), IdentityRefusal> {
        if found.cluster != self.cluster {
            return Err(IdentityRefusal::WrongCluster {
                found: found.clone(),
                cluster: self.cluster.clone(),
            });
        }
        if !self.peers.contains(&found.node_id) {
            return Err(IdentityRefusal::NotAPeer {
                found: found.clone(),
            });
        }
        Ok(())
    }
}

impl ClientCertVerifier for ClusterClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let found =
            identity_of(end_entity.as_ref()).map_err(|e| refuse(IdentityRefusal::NoIdentity(e)))?;
        self.check_identity(&found).map_err(refuse)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

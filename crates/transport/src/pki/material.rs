//! A node's TLS material — its certificate chain, its key and the trusted CA bundle — loaded
//! from files with every check done before anything uses it.
//!
//! Invariant: a `NodeMaterial` from `load` holds a certificate that names the expected node,
//! is valid now, chains to a CA of its own bundle, and matches its key. A failed load returns
//! an error and changes nothing, which is what makes hot reload safe: the caller keeps the
//! material it had.

use super::files;
use super::identity::{CertError, CertInfo, NodeIdentity};
use super::PkiError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::RootCertStore;
use std::path::PathBuf;
use std::sync::Arc;

/// The most CA certificates a trust bundle may hold (two generations during a rotation, plus
/// room for an operator's own arrangement).
pub const BUNDLE_CERTS_MAX: usize = 16;

/// Where a node's TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// The node's certificate (PEM); intermediates, if any, follow it.
    pub cert: PathBuf,
    /// The node's private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Every CA the node trusts (PEM, one or more certificates).
    pub ca_bundle: PathBuf,
}

/// A node's certificate, key and trust roots, checked and ready for rustls.
#[derive(Clone)]
pub struct NodeMaterial {
    /// The node's certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    /// The CA certificates of the bundle, as rustls trust anchors.
    pub roots: Arc<RootCertStore>,
    /// The node's certificate, parsed.
    pub cert_info: CertInfo,
    /// The bundle's CA certificates, parsed, in file order.
    pub ca_infos: Vec<CertInfo>,
}

impl std::fmt::Debug for NodeMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never appears in logs.
        f.debug_struct("NodeMaterial")
            .field("cert", &self.cert_info.subject)
            .field("serial", &self.cert_info.serial)
            .field("cas", &self.ca_infos.len())
            .finish_non_exhaustive()
    }
}

impl NodeMaterial {
    /// Loads and checks everything: key mode, certificate/key pair, CA bundle, the identity
    /// named by the certificate (`expected`), validity now, and trust by the bundle.
    pub fn load(paths: &TlsPaths, expected: &NodeIdentity) -> Result<NodeMaterial, PkiError> {
        let material = NodeMaterial::load_unverified(paths)?;
        let found = material
            .cert_info
            .identity()
            .map_err(|e| PkiError::BadFile {
                path: paths.cert.clone(),
                reason: e.to_string(),
            })?;
        if &found != expected {
            return Err(PkiError::WrongIdentity {
                path: paths.cert.clone(),
                found: found.to_string(),
                expected: expected.to_string(),
            });
        }
        let provider = super::crypto_provider();
        let leaf = ParsedCertificate::try_from(&material.chain[0])?;
        // The node must trust its own issuer: a peer with the same bundle would refuse it
        // otherwise. This also catches a certificate reissued by a new CA before the new
        // bundle was installed, and an expired or not yet valid certificate.
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &material.roots,
            &material.chain[1..],
            UnixTime::now(),
            provider.signature_verification_algorithms.all,
        )
        .map_err(|e| PkiError::Untrusted {
            path: paths.cert.clone(),
            bundle: paths.ca_bundle.clone(),
            reason: e.to_string(),
        })?;
        Ok(material)
    }

    /// Loads and checks only what makes the material usable at all: both files present, the
    /// key file's mode, the key matching the certificate, a parseable bundle. Identity,
    /// validity and trust are not checked: tests use this to present bad certificates and
    /// watch the peer refuse them. The daemon uses `load`.
    pub fn load_unverified(paths: &TlsPaths) -> Result<NodeMaterial, PkiError> {
        match (files::exists(&paths.cert), files::exists(&paths.key)) {
            (true, false) => {
                return Err(PkiError::MissingKey {
                    cert: paths.cert.clone(),
                    key: paths.key.clone(),
                })
            }
            (false, true) => {
                return Err(PkiError::MissingCertificate {
                    cert: paths.cert.clone(),
                    key: paths.key.clone(),
                })
            }
            _ => {}
        }
        let key = files::read_private_key(&paths.key)?;
        let chain = files::read_certificates(&paths.cert)?;
        let cert_info =
            CertInfo::parse(chain[0].as_ref()).map_err(|error| PkiError::BadCertificate {
                path: paths.cert.clone(),
                error,
            })?;
        let provider = super::crypto_provider();
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
            |e| PkiError::KeyMismatch {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
                reason: e.to_string(),
            },
        )?;
        let (roots, ca_infos) = load_bundle(&paths.ca_bundle)?;
        Ok(NodeMaterial {
            chain,
            key: Arc::new(key),
            roots: Arc::new(roots),
            cert_info,
            ca_infos,
        })
    }

    /// A copy of the private key for a rustls config.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// Why one certificate of a CA bundle is refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleProblem {
    #[error("{0}")]
    Certificate(CertError),
    #[error("{subject:?} is not a CA certificate")]
    NotCa { subject: String },
    /// rustls refused it as a trust anchor.
    #[error("{0}")]
    NotTrustable(rustls::Error),
}

/// Reads a CA bundle: one or more CA certificates, all trusted.
pub fn load_bundle(path: &std::path::Path) -> Result<(RootCertStore, Vec<CertInfo>), PkiError> {
    let certs = files::read_certificates(path)?;
    if certs.len() > BUNDLE_CERTS_MAX {
        return Err(PkiError::BadFile {
            path: path.to_path_buf(),
            reason: format!("{} certificates, more than {BUNDLE_CERTS_MAX}", certs.len()),
        });
    }
    let mut roots = RootCertStore::empty();
    let mut infos = Vec::with_capacity(certs.len());
    for (i, der) in certs.into_iter().enumerate() {
        let bad = |problem: BundleProblem| PkiError::BundleCertificate {
            path: path.to_path_buf(),
            number: i + 1,
            problem,
        };
        let info = CertInfo::parse(der.as_ref()).map_err(|e| bad(BundleProblem::Certificate(e)))?;
        if !info.is_ca {
            return Err(bad(BundleProblem::NotCa {
                subject: info.subject,
            }));
        }
        roots
            .add(der)
            .map_err(|e| bad(BundleProblem::NotTrustable(e)))?;
        infos.push(info);
    }
    Ok((roots, infos))
}

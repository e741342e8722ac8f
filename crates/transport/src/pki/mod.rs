//! The cluster's certificates: a CA made with rcgen, node certificates that name their node
//! (`regent://<cluster>/node/<id>`), loading them for TLS with every check done up front, and
//! the TLS verifiers that tie a peer's certificate to the node id it must be.
//!
//! Invariant: material is either fully loaded and checked (certificate, matching key, trusted
//! CA bundle) or refused with an error that names the file; there is no half-loaded identity.

pub mod ca;
pub mod files;
pub mod identity;
pub mod issue;
pub mod material;
pub mod verify;

pub use ca::{CaDir, LoadedCa};
pub use identity::{CertError, CertInfo, IdentityError, NodeIdentity, UriProblem};
pub use issue::{IssueRequest, Issued, Renewal, Validity};
pub use material::{BundleProblem, NodeMaterial, TlsPaths};

use std::path::PathBuf;

/// Every error of the PKI layer. Each names the file or the field at fault. A message that
/// includes an underlying error does not also return it as its `source`, so a printed chain
/// never says the same thing twice.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] files::ReadError),
    #[error(
        "key file {path} is readable by group or others (mode {mode:04o}); fix it with: chmod 600 {path}"
    )]
    KeyFileMode { path: PathBuf, mode: u32 },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("{path}: {error}")]
    BadCertificate { path: PathBuf, error: CertError },
    /// One certificate of a CA bundle (numbered from 1, in file order) is refused.
    #[error("{path}: certificate #{number}: {problem}")]
    BundleCertificate {
        path: PathBuf,
        number: usize,
        problem: BundleProblem,
    },
    #[error("certificate {cert} has no key: {key} is missing (a certificate without its key is not an identity)")]
    MissingKey { cert: PathBuf, key: PathBuf },
    #[error("key {key} has no certificate: {cert} is missing (a key without its certificate is not an identity)")]
    MissingCertificate { cert: PathBuf, key: PathBuf },
    #[error("certificate {cert} and key {key} do not belong together: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("identity: {0}")]
    Identity(IdentityError),
    #[error("certificate {path} names {found}, expected {expected}")]
    WrongIdentity {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("certificate {path} is not trusted by the CA bundle {bundle}: {reason}")]
    Untrusted {
        path: PathBuf,
        bundle: PathBuf,
        reason: String,
    },
    #[error("{path} already exists; {hint}")]
    Exists { path: PathBuf, hint: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(rcgen::Error),
    #[error("TLS: {0}")]
    Tls(rustls::Error),
}

impl From<rcgen::Error> for PkiError {
    fn from(error: rcgen::Error) -> Self {
        PkiError::Rcgen(error)
    }
}

impl From<rustls::Error> for PkiError {
    fn from(error: rustls::Error) -> Self {
        PkiError::Tls(error)
    }
}

/// The one crypto provider regent uses (ring, as `Cargo.toml` compiles only ring).
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Fills `buf` from the provider's secure random source (serial numbers, backoff seeds).
pub fn fill_random(buf: &mut [u8]) -> Result<(), PkiError> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| PkiError::Invalid {
            field: "random source",
            reason: "the system random source failed".into(),
        })
}

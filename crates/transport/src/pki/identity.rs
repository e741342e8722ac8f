//! Who a certificate names: the `regent://<cluster>/node/<id>` URI SAN, and a parsed summary of
//! a certificate for checks and for `regent admin cert inspect`.
//!
//! Invariant: a certificate names at most one regent node; a certificate with two regent URIs,
//! or a malformed one, names nobody and is refused, so a node id is never guessed.

use super::PkiError;
use regent_raft::NodeId;
use std::fmt;
use std::net::IpAddr;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI scheme of a node identity.
pub const URI_SCHEME: &str = "regent://";

pub use regent_storage::CLUSTER_NAME_BYTES_MAX;

/// A node of a cluster, as named by its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeIdentity {
    pub cluster: String,
    pub node_id: NodeId,
}

impl NodeIdentity {
    /// Builds an identity after checking the cluster name and that the id is not 0.
    pub fn new(cluster: &str, node_id: NodeId) -> Result<NodeIdentity, PkiError> {
        validate_cluster_name(cluster)?;
        if node_id.0 == 0 {
            return Err(PkiError::Invalid {
                field: "node id",
                reason: "0 is not a valid node id".into(),
            });
        }
        Ok(NodeIdentity {
            cluster: cluster.to_string(),
            node_id,
        })
    }

    /// The URI SAN that names this node: `regent://<cluster>/node/<id>`.
    pub fn uri(&self) -> String {
        format!("{URI_SCHEME}{}/node/{}", self.cluster, self.node_id.0)
    }

    /// The DNS SAN every node certificate carries besides the operator's names.
    pub fn default_dns_name(&self) -> String {
        format!("n{}.{}.regent", self.node_id.0, self.cluster)
    }

    /// Parses `regent://<cluster>/node/<id>`; anything else is an error, never a guess.
    pub fn parse_uri(uri: &str) -> Result<NodeIdentity, PkiError> {
        let bad = |problem: UriProblem| {
            PkiError::Identity(IdentityError::BadUri {
                uri: uri.to_string(),
                problem,
            })
        };
        let rest = uri
            .strip_prefix(URI_SCHEME)
            .ok_or_else(|| bad(UriProblem::Scheme))?;
        let (cluster, id) = rest
            .split_once("/node/")
            .ok_or_else(|| bad(UriProblem::Shape))?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.len() > 20 {
            return Err(bad(UriProblem::IdNotDecimal));
        }
        let id: u64 = id.parse().map_err(|_| bad(UriProblem::IdTooLarge))?;
        NodeIdentity::new(cluster, NodeId(id)).map_err(|e| bad(UriProblem::Invalid(Box::new(e))))
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} of cluster {}", self.node_id.0, self.cluster)
    }
}

/// A cluster name is one lowercase DNS label (the rule is storage's,
/// [`regent_storage::cluster_name_problem`], so that a data directory can only belong to a
/// cluster a certificate can name).
pub fn validate_cluster_name(name: &str) -> Result<(), PkiError> {
    match regent_storage::cluster_name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(PkiError::Invalid {
            field: "cluster name",
            reason: format!("{name:?}: {reason}"),
        }),
    }
}

/// Why DER bytes are not a certificate regent can read. The messages hold the parser's error,
/// which is therefore not also returned as the `source`.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not an X.509 certificate: {error}")]
    NotX509 {
        error: x509_parser::nom::Err<X509Error>,
    },
    #[error("{count} trailing bytes after the certificate")]
    TrailingBytes { count: usize },
    #[error("bad subjectAltName extension: {error}")]
    BadSubjectAltName { error: X509Error },
}

/// Why a certificate names no regent node (or why a `regent://` URI is not a node's name).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("URI {uri:?}: {problem}")]
    BadUri { uri: String, problem: UriProblem },
    #[error("certificate {subject:?} has no regent://<cluster>/node/<id> URI SAN")]
    NoUri { subject: String },
    #[error("certificate {subject:?} names more than one regent node")]
    SeveralNodes { subject: String },
    #[error("{0}")]
    Certificate(CertError),
}

/// What is wrong with a `regent://<cluster>/node/<id>` URI.
#[derive(Debug, thiserror::Error)]
pub enum UriProblem {
    #[error("does not start with regent://")]
    Scheme,
    #[error("expected regent://<cluster>/node/<id>")]
    Shape,
    #[error("the node id is not a decimal number")]
    IdNotDecimal,
    #[error("the node id does not fit in 64 bits")]
    IdTooLarge,
    /// The cluster name or the node id breaks the rule `NodeIdentity::new` checks.
    #[error("{0}")]
    Invalid(Box<PkiError>),
}

/// A certificate as read back from DER: what `cert inspect` prints and what checks use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// The serial number as colon-separated hex bytes.
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub is_ca: bool,
    pub dns_names: Vec<String>,
    pub ip_addrs: Vec<IpAddr>,
    pub uris: Vec<String>,
}

impl CertInfo {
    /// Parses one DER certificate. Errors say what was wrong, for the path the caller names.
    pub fn parse(der: &[u8]) -> Result<CertInfo, CertError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|error| CertError::NotX509 { error })?;
        if !rest.is_empty() {
            return Err(CertError::TrailingBytes { count: rest.len() });
        }
        let mut info = CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before_unix: cert.validity().not_before.timestamp(),
            not_after_unix: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            uris: Vec::new(),
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|error| CertError::BadSubjectAltName { error })?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => info.dns_names.push(dns.to_string()),
                    GeneralName::URI(uri) => info.uris.push(uri.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            info.ip_addrs.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// The regent node this certificate names: exactly one `regent://` URI SAN, well formed.
    pub fn identity(&self) -> Result<NodeIdentity, PkiError> {
        let mut regent = self.uris.iter().filter(|u| u.starts_with(URI_SCHEME));
        let first = regent.next().ok_or_else(|| {
            PkiError::Identity(IdentityError::NoUri {
                subject: self.subject.clone(),
            })
        })?;
        if regent.next().is_some() {
            return Err(PkiError::Identity(IdentityError::SeveralNodes {
                subject: self.subject.clone(),
            }));
        }
        NodeIdentity::parse_uri(first)
    }

    /// Whole days until `not_after`, negative once expired.
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after_unix - now_unix).div_euclid(86_400)
    }

    /// Whether `now_unix` lies within the validity period.
    pub fn is_valid_at(&self, now_unix: i64) -> bool {
        self.not_before_unix <= now_unix && now_unix <= self.not_after_unix
    }
}

/// The identity named by a DER certificate, for the TLS verifiers.
pub fn identity_of(der: &[u8]) -> Result<NodeIdentity, PkiError> {
    CertInfo::parse(der)
        .map_err(|e| PkiError::Identity(IdentityError::Certificate(e)))?
        .identity()
}

/// Seconds since the Unix epoch, as certificates count time.
pub fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_unix(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} (out of range)"),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trips() {
        let id = NodeIdentity::new("prod-1", NodeId(42)).unwrap();
        assert_eq!(id.uri(), "regent://prod-1/node/42");
        assert_eq!(NodeIdentity::parse_uri(&id.uri()).unwrap(), id);
    }

    #[test]
    fn malformed_uris_name_nobody() {
        for uri in [
            "regent://prod/node/",
            "regent://prod/node/0",
            "regent://prod/node/-1",
            "regent://prod/node/1x",
            "regent://prod/node/99999999999999999999999",
            "regent://Prod/node/1",
            "regent:///node/1",
            "https://prod/node/1",
            "regent://prod/nodes/1",
        ] {
            assert!(
                NodeIdentity::parse_uri(uri).is_err(),
                "{uri} must be refused"
            );
        }
    }

    #[test]
    fn cluster_names_are_dns_labels() {
        assert!(validate_cluster_name("a").is_ok());
        assert!(validate_cluster_name(&"a".repeat(63)).is_ok());
        assert!(validate_cluster_name(&"a".repeat(64)).is_err());
        assert!(validate_cluster_name("-a").is_err());
        assert!(validate_cluster_name("a.b").is_err());
        assert!(validate_cluster_name("").is_err());
    }

    #[test]
    fn days_left_rounds_down() {
        let info = CertInfo {
            subject: String::new(),
            issuer: String::new(),
            serial: String::new(),
            not_before_unix: 0,
            not_after_unix: 86_400 * 10,
            is_ca: false,
            dns_names: vec![],
            ip_addrs: vec![],
            uris: vec![],
        };
        assert_eq!(info.days_left(0), 10);
        assert_eq!(info.days_left(1), 9);
        assert_eq!(info.days_left(86_400 * 10 + 1), -1);
    }
}

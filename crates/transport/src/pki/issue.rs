//! Node certificates: issuing one that names its node, and renewing one with a new key.
//!
//! Invariants: every node certificate carries exactly one `regent://<cluster>/node/<id>` URI
//! SAN, the node's default DNS SAN, and both serverAuth and clientAuth usages (every node is
//! both a TLS client and a TLS server); a renewal replaces the key and certificate files by
//! rename, the key first, so each file is whole at every instant.

use super::ca::{check_key_pair, random_serial, validate_days, LoadedCa};
use super::files::{self, Staged, KEY_MODE, PUBLIC_MODE};
use super::identity::{CertInfo, IdentityError, NodeIdentity};
use super::PkiError;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::Path;

/// Extra DNS or IP names a certificate may carry.
pub const EXTRA_NAMES_MAX: usize = 32;

/// The validity period of a certificate, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

impl Validity {
    /// From five minutes ago (tolerating a peer's clock running behind) to `days` from now.
    pub fn days_from_now(days: u32) -> Validity {
        let now = super::identity::unix_now();
        Validity {
            not_before_unix: now - 300,
            not_after_unix: now + i64::from(days) * 86_400,
        }
    }
}

/// What a node certificate names and how long it lives.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    pub identity: NodeIdentity,
    pub dns_names: Vec<String>,
    pub ip_addrs: Vec<IpAddr>,
    pub validity: Validity,
}

/// A freshly issued certificate and its new key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub info: CertInfo,
}

/// What a renewal did.
#[derive(Debug)]
pub struct Renewal {
    pub old: CertInfo,
    pub new: CertInfo,
}

impl IssueRequest {
    /// A request for `days` of validity from now, with the default DNS name only.
    pub fn new(identity: NodeIdentity, days: u32) -> IssueRequest {
        IssueRequest {
            identity,
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            validity: Validity::days_from_now(days),
        }
    }
}

/// Signs a new node certificate with a new key.
pub fn issue(ca: &LoadedCa, request: &IssueRequest) -> Result<Issued, PkiError> {
    let validity = request.validity;
    if validity.not_after_unix <= validity.not_before_unix {
        return Err(PkiError::Invalid {
            field: "validity",
            reason: "not_after must be later than not_before".into(),
        });
    }
    if request.dns_names.len() + request.ip_addrs.len() > EXTRA_NAMES_MAX {
        return Err(PkiError::Invalid {
            field: "names",
            reason: format!("more than {EXTRA_NAMES_MAX} DNS and IP names"),
        });
    }
    let identity = &request.identity;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "regent");
    dn.push(
        DnType::CommonName,
        format!("regent node {} ({})", identity.node_id.0, identity.cluster),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?);
    let mut sans = vec![SanType::URI(identity.uri().try_into()?)];
    let mut dns_names = vec![identity.default_dns_name()];
    for name in &request.dns_names {
        if !dns_names.contains(name) {
            dns_names.push(name.clone());
        }
    }
    for name in dns_names {
        validate_dns_name(&name)?;
        sans.push(SanType::DnsName(name.try_into()?));
    }
    for ip in &request.ip_addrs {
        sans.push(SanType::IpAddress(*ip));
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = to_datetime(validity.not_before_unix)?;
    params.not_after = to_datetime(validity.not_after_unix)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    let info = CertInfo::parse(cert.der().as_ref())
        .map_err(|e| PkiError::Identity(IdentityError::Certificate(e)))?;
    // Pair check: what we read back names the node we meant to name.
    assert_eq!(info.identity().ok().as_ref(), Some(identity));
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        info,
    })
}

/// Writes a new node's certificate and key (0600) into `cert`/`key`, refusing to overwrite.
pub fn write_new(issued: &Issued, cert: &Path, key: &Path) -> Result<(), PkiError> {
    let hint = "use `regent admin rotate-certs` to renew an existing certificate";
    for path in [cert, key] {
        if files::exists(path) {
            return Err(PkiError::Exists {
                path: path.to_path_buf(),
                hint: hint.into(),
            });
        }
    }
    Staged::write(key, issued.key_pem.as_bytes(), KEY_MODE)?.create_new(hint)?;
    Staged::write(cert, issued.cert_pem.as_bytes(), PUBLIC_MODE)?.create_new(hint)?;
    Ok(())
}

/// Renews the certificate at `cert` with a NEW key signed by `ca`, keeping its identity and
/// names, for `days`. The key at `key` must be the certificate's own key (checked before
/// anything is written). Both files are written aside and then renamed into place.
pub fn renew(ca: &LoadedCa, cert: &Path, key: &Path, days: u32) -> Result<Renewal, PkiError> {
    validate_days(days)?;
    if !files::exists(key) {
        return Err(PkiError::MissingKey {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        });
    }
    // The old key signs nothing, but it is read: a key file others can read is reported, not
    // rewritten silently beside a leak, and a key that is not this certificate's (another
    // node's) is refused before anything is written, so a wrong `--key` never loses a key.
    let old_key_pem = files::read_key_pem(key)?;
    let der = files::read_certificates(cert)?.remove(0);
    let old = CertInfo::parse(der.as_ref()).map_err(|error| PkiError::BadCertificate {
        path: cert.to_path_buf(),
        error,
    })?;
    let old_key = KeyPair::from_pem(&old_key_pem).map_err(|e| PkiError::BadFile {
        path: key.to_path_buf(),
        reason: format!("not a usable private key: {e}"),
    })?;
    check_key_pair(cert, der.as_ref(), key, &old_key)?;
    let identity = old.identity()?;
    let default_dns = identity.default_dns_name();
    let request = IssueRequest {
        dns_names: old
            .dns_names
            .iter()
            .filter(|n| **n != default_dns)
            .cloned()
            .collect(),
        ip_addrs: old.ip_addrs.clone(),
        validity: Validity::days_from_now(days),
        identity,
    };
    let issued = issue(ca, &request)?;
    let staged_key = Staged::write(key, issued.key_pem.as_bytes(), KEY_MODE)?;
    let staged_cert = Staged::write(cert, issued.cert_pem.as_bytes(), PUBLIC_MODE)?;
    // Between these two renames the key is new and the certificate old; a reload in that
    // instant fails its key check and keeps the running identity, so nothing half-loads.
    staged_key.replace()?;
    staged_cert.replace()?;
    Ok(Renewal {
        old,
        new: issued.info,
    })
}

/// A DNS name of labels of `[A-Za-z0-9-]`, 1 to 63 bytes each, at most 253 bytes in all. A
/// wildcard is allowed only as the whole leftmost label (`*.example.com`), never inside a
/// label or further right, as certificate verifiers match nothing else (RFC 6125 §6.4.3).
fn validate_dns_name(name: &str) -> Result<(), PkiError> {
    let refuse = |why: &str| {
        Err(PkiError::Invalid {
            field: "DNS name",
            reason: format!("{name:?} is not a DNS name: {why}"),
        })
    };
    if name.is_empty() || name.len() > 253 {
        return refuse("it must be 1 to 253 bytes long");
    }
    for (i, label) in name.split('.').enumerate() {
        if label.is_empty() || label.len() > 63 {
            return refuse("every label must be 1 to 63 bytes long");
        }
        if label == "*" {
            if i > 0 {
                return refuse("a wildcard may only be the leftmost label");
            }
            if !name.contains('.') {
                return refuse("a wildcard needs a parent domain");
            }
            continue;
        }
        if label.contains('*') {
            return refuse("a wildcard must be a whole label ('*'), the leftmost one");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return refuse("a label may hold only letters, digits and '-'");
        }
    }
    Ok(())
}

fn to_datetime(unix: i64) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| PkiError::Invalid {
        field: "validity",
        reason: format!("{unix} is out of range: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_is_only_the_whole_leftmost_label() {
        for good in ["db.example.com", "*.example.com", "a-1.b", "x"] {
            validate_dns_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "*.*.x",
            "a.*.x",
            "x.*",
            "*",
            "f*.example.com",
            "*a.example.com",
            "a..b",
            "",
            "a_b.c",
            "é.c",
        ] {
            assert!(validate_dns_name(bad).is_err(), "{bad:?} must be refused");
        }
    }
}

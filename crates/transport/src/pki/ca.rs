//! The cluster CA directory: the current CA, an outgoing CA during a rotation, and the trust
//! bundle that nodes load.
//!
//! Layout of a CA directory:
//! - `ca.pem`, `ca.key` — the current CA, which signs every new node certificate;
//! - `ca.old.pem`, `ca.old.key` — the outgoing CA, only between `ca rotate` and `ca drop-old`;
//! - `bundle.pem` — what nodes trust: the current CA, then the outgoing one if any.
//!
//! Invariants: `bundle.pem` always holds the current CA; it holds the outgoing CA exactly
//! while `ca.old.pem` exists; at most two CA generations exist at once, so a rotation must be
//! finished (`drop-old`) before the next one starts.

use super::files::{self, Staged, KEY_MODE, PUBLIC_MODE};
use super::identity::CertInfo;
use super::PkiError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use std::path::{Path, PathBuf};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const OLD_CA_CERT_FILE: &str = "ca.old.pem";
pub const OLD_CA_KEY_FILE: &str = "ca.old.key";
pub const BUNDLE_FILE: &str = "bundle.pem";

/// The longest CA lifetime `ca init` and `ca rotate` accept.
pub const CA_DAYS_MAX: u32 = 36_500;

/// A CA directory on disk.
#[derive(Clone, Debug)]
pub struct CaDir {
    pub dir: PathBuf,
}

/// A CA loaded with its signing key, ready to issue node certificates.
pub struct LoadedCa {
    pub cert_pem: String,
    pub info: CertInfo,
    pub issuer: Issuer<'static, KeyPair>,
}

/// What `rotate` did.
#[derive(Debug)]
pub struct CaRotation {
    pub old: CertInfo,
    pub new: CertInfo,
}

impl CaDir {
    pub fn new(dir: impl Into<PathBuf>) -> CaDir {
        CaDir { dir: dir.into() }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }
    pub fn old_cert_path(&self) -> PathBuf {
        self.dir.join(OLD_CA_CERT_FILE)
    }
    pub fn old_key_path(&self) -> PathBuf {
        self.dir.join(OLD_CA_KEY_FILE)
    }
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.join(BUNDLE_FILE)
    }

    /// Creates a new CA (certificate, key with mode 0600, bundle). Refuses to overwrite one.
    pub fn init(&self, days: u32) -> Result<CertInfo, PkiError> {
        validate_days(days)?;
        files::ensure_dir(&self.dir)?;
        for path in [self.cert_path(), self.key_path(), self.bundle_path()] {
            if files::exists(&path) {
                return Err(PkiError::Exists {
                    path,
                    hint: "a CA is already here; use `regent admin ca rotate` to replace it".into(),
                });
            }
        }
        let (cert_pem, key_pem) = generate_ca(days)?;
        let hint = "a CA is already here";
        // The key goes first: a certificate whose key failed to land would be useless.
        Staged::write(&self.key_path(), key_pem.as_bytes(), KEY_MODE)?.create_new(hint)?;
        Staged::write(&self.cert_path(), cert_pem.as_bytes(), PUBLIC_MODE)?.create_new(hint)?;
        Staged::write(&self.bundle_path(), cert_pem.as_bytes(), PUBLIC_MODE)?.create_new(hint)?;
        cert_info_of_pem(&self.cert_path(), &cert_pem)
    }

    /// Loads the current CA and its key (the key file must be mode 0600).
    pub fn load(&self) -> Result<LoadedCa, PkiError> {
        load_ca(&self.cert_path(), &self.key_path())
    }

    /// Starts a CA rotation: the current CA becomes the outgoing one, a new CA is created, and
    /// the bundle trusts both. Node certificates issued from now on are signed by the new CA.
    pub fn rotate(&self, days: u32) -> Result<CaRotation, PkiError> {
        validate_days(days)?;
        if files::exists(&self.old_cert_path()) || files::exists(&self.old_key_path()) {
            return Err(PkiError::Exists {
                path: self.old_cert_path(),
                hint: "a rotation is still in progress; finish it with `regent admin ca drop-old` first".into(),
            });
        }
        // Load first: this checks the key mode and that the current CA is whole.
        let current = self.load()?;
        let (new_pem, new_key_pem) = generate_ca(days)?;
        let new = cert_info_of_pem(&self.cert_path(), &new_pem)?;

        // Each step leaves a directory that still works: first copy the outgoing CA aside,
        // then write the dual bundle (trusting both), and only then replace the current CA.
        let old_key_pem = files::read_key_pem(&self.key_path())?;
        Staged::write(&self.old_key_path(), old_key_pem.as_bytes(), KEY_MODE)?
            .create_new("a rotation is in progress")?;
        Staged::write(
            &self.old_cert_path(),
            current.cert_pem.as_bytes(),
            PUBLIC_MODE,
        )?
        .create_new("a rotation is in progress")?;
        let bundle = format!(
            "{}{}",
            ensure_newline(&new_pem),
            ensure_newline(&current.cert_pem)
        );
        Staged::write(&self.bundle_path(), bundle.as_bytes(), PUBLIC_MODE)?.replace()?;
        Staged::write(&self.key_path(), new_key_pem.as_bytes(), KEY_MODE)?.replace()?;
        Staged::write(&self.cert_path(), new_pem.as_bytes(), PUBLIC_MODE)?.replace()?;
        Ok(CaRotation {
            old: current.info,
            new,
        })
    }

    /// Ends a CA rotation: the bundle trusts only the current CA, and the outgoing CA's
    /// certificate and key are deleted. Returns the dropped CA.
    pub fn drop_old(&self) -> Result<CertInfo, PkiError> {
        let old_cert = self.old_cert_path();
        if !files::exists(&old_cert) {
            return Err(PkiError::Invalid {
                field: "CA directory",
                reason: format!(
                    "{} has no outgoing CA ({OLD_CA_CERT_FILE}); there is nothing to drop",
                    self.dir.display()
                ),
            });
        }
        let current = self.load()?;
        let old_pem = String::from_utf8_lossy(&files::read_pem_file(&old_cert)?).into_owned();
        let old = cert_info_of_pem(&old_cert, &old_pem)?;
        Staged::write(
            &self.bundle_path(),
            current.cert_pem.as_bytes(),
            PUBLIC_MODE,
        )?
        .replace()?;
        files::remove(&self.old_key_path())?;
        files::remove(&old_cert)?;
        Ok(old)
    }

    /// The CAs the bundle trusts, in file order.
    pub fn bundle(&self) -> Result<Vec<CertInfo>, PkiError> {
        let path = self.bundle_path();
        files::read_certificates(&path)?
            .iter()
            .map(|der| {
                CertInfo::parse(der.as_ref()).map_err(|error| PkiError::BadCertificate {
                    path: path.clone(),
                    error,
                })
            })
            .collect()
    }
}

/// Loads a CA certificate and key from two files, checking they belong together.
pub fn load_ca(cert_path: &Path, key_path: &Path) -> Result<LoadedCa, PkiError> {
    match (files::exists(cert_path), files::exists(key_path)) {
        (true, false) => {
            return Err(PkiError::MissingKey {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        (false, true) => {
            return Err(PkiError::MissingCertificate {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        _ => {}
    }
    let key_pem = files::read_key_pem(key_path)?;
    let cert_pem = String::from_utf8_lossy(&files::read_pem_file(cert_path)?).into_owned();
    let info = cert_info_of_pem(cert_path, &cert_pem)?;
    if !info.is_ca {
        return Err(PkiError::BadFile {
            path: cert_path.to_path_buf(),
            reason: "not a CA certificate (basicConstraints CA is not set)".into(),
        });
    }
    let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::BadFile {
        path: key_path.to_path_buf(),
        reason: format!("not a usable private key: {e}"),
    })?;
    let der = files::read_certificates(cert_path)?.remove(0);
    check_key_pair(cert_path, der.as_ref(), key_path, &key)?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| PkiError::BadFile {
        path: cert_path.to_path_buf(),
        reason: format!("cannot sign with this CA: {e}"),
    })?;
    Ok(LoadedCa {
        cert_pem,
        info,
        issuer,
    })
}

/// Checks that `key` (read from `key_path`) is the private half of the certificate `cert_der`
/// (read from `cert_path`); the error names both files.
pub(crate) fn check_key_pair(
    cert_path: &Path,
    cert_der: &[u8],
    key_path: &Path,
    key: &KeyPair,
) -> Result<(), PkiError> {
    let spki_matches = x509_parser::parse_x509_certificate(cert_der)
        .map(|(_, c)| c.public_key().raw == key.subject_public_key_info().as_slice())
        .unwrap_or(false);
    if !spki_matches {
        return Err(PkiError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            reason: "the key's public half is not the certificate's".into(),
        });
    }
    Ok(())
}

/// A fresh self-signed CA: PEM certificate and PEM key.
fn generate_ca(days: u32) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let serial = random_serial()?;
    let now = time::OffsetDateTime::now_utc();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "regent");
    // Each CA gets a distinct name, so an operator (and a path builder) can tell the old CA
    // from the new one during a rotation.
    dn.push(
        DnType::CommonName,
        format!(
            "regent cluster CA {:04}-{:02}-{:02} {}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            &hex(serial.as_ref())[..8]
        ),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(serial);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Backdated a little so a peer whose clock runs slightly behind still accepts it.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A random positive 16-byte serial number.
pub fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    super::fill_random(&mut bytes)?;
    // The top bit clear keeps the DER integer positive; non-zero first byte keeps it 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Checks a lifetime in days is within `1..=CA_DAYS_MAX`.
pub fn validate_days(days: u32) -> Result<(), PkiError> {
    if days == 0 || days > CA_DAYS_MAX {
        return Err(PkiError::Invalid {
            field: "days",
            reason: format!("{days} is not within 1..={CA_DAYS_MAX}"),
        });
    }
    Ok(())
}

pub(crate) fn cert_info_of_pem(path: &Path, pem: &str) -> Result<CertInfo, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        PkiError::BadFile {
            path: path.to_path_buf(),
            reason: format!("bad PEM certificate: {e}"),
        }
    })?;
    CertInfo::parse(der.as_ref()).map_err(|error| PkiError::BadCertificate {
        path: path.to_path_buf(),
        error,
    })
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_string()
    } else {
        format!("{pem}\n")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_two_generations_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaDir::new(dir.path());
        let first = ca.init(30).unwrap();
        assert!(ca.init(30).is_err(), "init must not overwrite a CA");
        assert_eq!(ca.bundle().unwrap(), vec![first.clone()]);

        let rotation = ca.rotate(30).unwrap();
        assert_eq!(rotation.old, first);
        assert_ne!(rotation.new.subject, first.subject);
        assert_eq!(
            ca.bundle().unwrap(),
            vec![rotation.new.clone(), first.clone()]
        );
        let err = ca.rotate(30).unwrap_err().to_string();
        assert!(err.contains("drop-old"), "{err}");

        let dropped = ca.drop_old().unwrap();
        assert_eq!(dropped, first);
        assert_eq!(ca.bundle().unwrap(), vec![rotation.new]);
        assert!(!ca.old_key_path().exists());
        assert!(ca.drop_old().is_err(), "nothing left to drop");
    }
}

//! Files of the PKI: PEM reading, key-file permission checks, and writes that never leave a
//! half-written or world-readable key behind.
//!
//! Invariants: a key file is created with mode 0600 before any byte is written (create-new,
//! then rename or link into place); a key file readable by group or others is never loaded;
//! a replaced file is either the old or the new content, never a mix (write aside, fsync,
//! rename, fsync the directory).

use super::PkiError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The largest PEM file read: far above any certificate bundle, far below a mistake.
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// File modes for what is written.
pub const KEY_MODE: u32 = 0o600;
pub const PUBLIC_MODE: u32 = 0o644;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a whole file, refusing anything larger than `PEM_FILE_BYTES_MAX`.
pub fn read_limited(path: &Path) -> Result<Vec<u8>, PkiError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if meta.len() > PEM_FILE_BYTES_MAX {
        return Err(PkiError::BadFile {
            path: path.to_path_buf(),
            reason: format!("{} bytes, more than {PEM_FILE_BYTES_MAX}", meta.len()),
        });
    }
    fs::read(path).map_err(io_err(path))
}

/// Refuses a key file that group or others may read or write, with the command that fixes it.
pub fn check_key_mode(path: &Path) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// All certificates of a PEM file, in order; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bytes = read_limited(path)?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let cert = item.map_err(|e| PkiError::BadFile {
            path: path.to_path_buf(),
            reason: format!("bad PEM: {e}"),
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(PkiError::BadFile {
            path: path.to_path_buf(),
            reason: "no PEM CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file, after checking the file's mode.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    check_key_mode(path)?;
    let bytes = read_limited(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| PkiError::BadFile {
        path: path.to_path_buf(),
        reason: format!("no usable PEM private key: {e}"),
    })
}

/// The PEM text of a key file for rcgen, after checking the file's mode.
pub fn read_key_pem(path: &Path) -> Result<String, PkiError> {
    check_key_mode(path)?;
    let bytes = read_limited(path)?;
    String::from_utf8(bytes).map_err(|_| PkiError::BadFile {
        path: path.to_path_buf(),
        reason: "not UTF-8 PEM text".into(),
    })
}

/// A file written aside, not yet in place. Dropping it removes the temporary file.
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
    placed: bool,
}

impl Staged {
    /// Writes `contents` to a new temporary file beside `target` with `mode`, created with
    /// that mode (never widened later) and fsynced.
    pub fn write(target: &Path, contents: &[u8], mode: u32) -> Result<Staged, PkiError> {
        let name = target
            .file_name()
            .ok_or_else(|| PkiError::Invalid {
                field: "path",
                reason: format!("{} has no file name", target.display()),
            })?
            .to_string_lossy()
            .into_owned();
        let mut suffix = [0u8; 6];
        super::fill_random(&mut suffix)?;
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let temp = target.with_file_name(format!(".{name}.tmp-{suffix}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(io_err(&temp))?;
        let staged = Staged {
            temp: temp.clone(),
            target: target.to_path_buf(),
            placed: false,
        };
        // The umask may have narrowed the mode; it can only remove bits, so 0600 stays 0600.
        file.write_all(contents).map_err(io_err(&temp))?;
        file.sync_all().map_err(io_err(&temp))?;
        Ok(staged)
    }

    /// Moves the file into place, replacing what was there (atomic on one filesystem).
    pub fn replace(mut self) -> Result<(), PkiError> {
        fs::rename(&self.temp, &self.target).map_err(io_err(&self.target))?;
        self.placed = true;
        sync_parent(&self.target)
    }

    /// Moves the file into place only if nothing is there (a hard link fails on an existing
    /// name, so two writers never overwrite each other).
    pub fn create_new(mut self, hint: &str) -> Result<(), PkiError> {
        match fs::hard_link(&self.temp, &self.target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(PkiError::Exists {
                    path: self.target.clone(),
                    hint: hint.to_string(),
                })
            }
            Err(e) => return Err(io_err(&self.target)(e)),
        }
        self.placed = true;
        let _ = fs::remove_file(&self.temp);
        sync_parent(&self.target)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Fsyncs the directory holding `path`, so a rename survives a crash.
fn sync_parent(path: &Path) -> Result<(), PkiError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(parent))
}

/// Creates `dir` (and parents) if missing, mode 0700 for new directories holding keys.
pub fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Whether a path exists (a broken symlink counts as existing: it is not ours to replace).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Removes a file, naming it on failure.
pub fn remove(path: &Path) -> Result<(), PkiError> {
    fs::remove_file(path).map_err(io_err(path))
}

/// Serializes DER certificates to PEM text, one block each.
pub fn certificates_to_pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str(&pem_block("CERTIFICATE", cert.as_ref()));
    }
    out
}

fn pem_block(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = match chunk.len() {
            3 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]),
            2 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8),
            _ => u32::from(chunk[0]) << 16,
        };
        let symbols = [18, 12, 6, 0].map(|s| ALPHABET[((n >> s) & 63) as usize] as char);
        let used = chunk.len() + 1;
        for (i, c) in symbols.iter().enumerate() {
            b64.push(if i < used { *c } else { '=' });
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_key_is_0600_and_create_new_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        Staged::write(&path, b"one", KEY_MODE)
            .unwrap()
            .create_new("x")
            .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = Staged::write(&path, b"two", KEY_MODE)
            .unwrap()
            .create_new("use rotate")
            .unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn group_readable_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = check_key_mode(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        check_key_mode(&path).unwrap();
    }

    #[test]
    fn pem_encoding_round_trips() {
        for len in [1usize, 2, 3, 4, 47, 48, 49, 300] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let pem = certificates_to_pem(&[CertificateDer::from(der.clone())]);
            let back: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].as_ref(), der.as_slice());
        }
    }
}

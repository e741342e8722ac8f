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
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The largest PEM file read: far above any certificate bundle, far below a mistake.
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// File modes for what is written.
pub const KEY_MODE: u32 = 0o600;
pub const PUBLIC_MODE: u32 = 0o644;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |error| PkiError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Why `read_limited` refused a file or could not read it. Each names the path; none
/// repeats an underlying error as its `source` (the message already holds it).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a regular file but {kind}; give the path of a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path}: larger than {max_bytes} bytes, the most read from this kind of file")]
    TooLarge { path: PathBuf, max_bytes: u64 },
}

/// Reads a whole regular file of at most `max_bytes` bytes, following symlinks.
///
/// Refuses anything that is not a regular file (a device such as `/dev/zero`, a FIFO, a
/// socket, a directory) without reading it, and never reads more than `max_bytes + 1` bytes
/// whatever the file's metadata says (a file may grow while it is read). A FIFO is neither
/// read nor waited on. Every file regent reads — certificates, keys, bundles, configuration —
/// goes through here.
pub fn read_limited(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let (file, meta) = open_regular(path)?;
    read_capped(file, &meta, path, max_bytes)
}

/// Opens `path` for reading only if it is a regular file. The type is checked before the open
/// (so a device is never opened) and again on the opened file (so a file swapped in between
/// is caught); the open does not block on a FIFO.
fn open_regular(path: &Path) -> Result<(File, fs::Metadata), ReadError> {
    let io = |error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    check_regular(path, &fs::metadata(path).map_err(io)?)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    check_regular(path, &meta)?;
    Ok((file, meta))
}

fn check_regular(path: &Path, meta: &fs::Metadata) -> Result<(), ReadError> {
    if meta.file_type().is_file() {
        return Ok(());
    }
    Err(ReadError::NotRegular {
        path: path.to_path_buf(),
        kind: kind_name(&meta.file_type()),
    })
}

/// What a file is, with its article, for messages ("… is a directory").
pub fn kind_name(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "of an unknown type"
    }
}

/// Reads an opened file through a cap of `max_bytes + 1` bytes: one byte more than allowed
/// proves the file too large without reading the rest.
fn read_capped(
    file: File,
    meta: &fs::Metadata,
    path: &Path,
    max_bytes: u64,
) -> Result<Vec<u8>, ReadError> {
    let too_large = || ReadError::TooLarge {
        path: path.to_path_buf(),
        max_bytes,
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| ReadError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads a PEM file (certificates, a bundle): a regular file of at most `PEM_FILE_BYTES_MAX`.
pub fn read_pem_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    Ok(read_limited(path, PEM_FILE_BYTES_MAX)?)
}

/// Refuses a key file that is not a regular file, or that group or others may read or
/// write, with the command that fixes it.
pub fn check_key_mode(path: &Path) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    check_regular(path, &meta)?;
    check_mode_of(path, &meta)
}

fn check_mode_of(path: &Path, meta: &fs::Metadata) -> Result<(), PkiError> {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Reads a key file: a regular file, not readable by group or others, at most
/// `PEM_FILE_BYTES_MAX`. Type and mode are checked on the opened file, the one that is read.
fn read_key_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    let (file, meta) = open_regular(path)?;
    check_mode_of(path, &meta)?;
    Ok(read_capped(file, &meta, path, PEM_FILE_BYTES_MAX)?)
}

/// All certificates of a PEM file, in order; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bytes = read_pem_file(path)?;
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
    let bytes = read_key_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| PkiError::BadFile {
        path: path.to_path_buf(),
        reason: format!("no usable PEM private key: {e}"),
    })
}

/// The PEM text of a key file for rcgen, after checking the file's mode.
pub fn read_key_pem(path: &Path) -> Result<String, PkiError> {
    let bytes = read_key_file(path)?;
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
    fn read_limited_caps_what_it_reads_and_refuses_what_is_not_a_regular_file() {
        // A regular file whose metadata says 0 bytes, yet which holds more: the cap holds.
        let proc_file = Path::new("/proc/self/status");
        assert_eq!(fs::metadata(proc_file).unwrap().len(), 0);
        assert!(!read_limited(proc_file, 1 << 20).unwrap().is_empty());
        let err = read_limited(proc_file, 10).unwrap_err();
        assert!(
            matches!(err, ReadError::TooLarge { max_bytes: 10, .. }),
            "{err}"
        );

        let err = read_limited(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/dev/zero: not a regular file but a character device"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = read_limited(dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let exact = dir.path().join("exact");
        fs::write(&exact, [7u8; 100]).unwrap();
        assert_eq!(read_limited(&exact, 100).unwrap().len(), 100);
        assert!(read_limited(&exact, 99).is_err());
        // A key file that is a device is refused as such, not for its mode.
        let err = check_key_mode(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
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

//! `DaemonConfig::validate`: every rule of the file, each error naming the field by its YAML
//! path and the rule it breaks.
//!
//! Two tiers: `validate_settings` needs nothing but the values (it also runs the `validate()`
//! of `raft::Config`, `TransportConfig` and `StorageOptions` on the converted values, so a
//! config that passes converts into values that pass); `validate` adds what the values name on
//! this machine — TLS files, key mode, the certificate's identity, the data directory and the
//! socket's directory. Checking that a directory is writable creates and removes a probe file.

use super::{ConfigError, DaemonConfig};
use regent_storage::StorageError;
use regent_transport::pki::identity::validate_cluster_name;
use regent_transport::pki::{files, NodeIdentity, NodeMaterial, PkiError};
use regent_transport::TransportError;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The most members: the transport's peer limit plus this node.
pub const MEMBERS_MAX: usize = regent_transport::PEERS_MAX + 1;
/// The longest socket path: `sun_path` is 108 bytes, including the terminating NUL.
pub const SOCKET_PATH_BYTES_MAX: usize = 107;
/// The most entries of `admin_uids` and of `admin_gids`.
pub const ADMIN_IDS_MAX: usize = 64;
/// Bounds of `api.request_bytes_max`.
pub const API_REQUEST_BYTES_MIN: usize = 4096;
pub const API_REQUEST_BYTES_MAX: usize = 64 << 20;
/// The largest `api.connections_max`.
pub const API_CONNECTIONS_MAX: usize = 65_536;
/// The longest `backup.interval_s`: a year.
pub const BACKUP_INTERVAL_S_MAX: u64 = 365 * 24 * 3600;
/// The most backup files `backup.keep` may keep.
pub const BACKUP_KEEP_MAX: u32 = 10_000;
/// The longest group name accepted in `socket_group`.
const GROUP_NAME_BYTES_MAX: usize = 256;
/// The largest buffer offered to `getgrnam_r` (groups with very many members need more).
const GROUP_BUFFER_BYTES_MAX: usize = 1 << 20;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(field, reason)
}

impl DaemonConfig {
    /// Checks every rule: the settings (`validate_settings`), then the files and directories
    /// they name. The data directory and the socket's directory must be writable or creatable;
    /// this is tested by creating and removing a probe file in them (or in their nearest
    /// existing ancestor). The TLS material is loaded and must name this node.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_settings()?;
        self.validate_files()
    }

    /// The rules among the `timing` fields only (what `regent explain-timing` needs).
    pub fn validate_timing(&self) -> Result<(), ConfigError> {
        self.timing.validate()
    }

    /// Every rule that needs only the values, not the file system.
    pub fn validate_settings(&self) -> Result<(), ConfigError> {
        validate_cluster_name(&self.cluster).map_err(|e| invalid("cluster", pki_reason(e)))?;
        if self.node_id.0 == 0 {
            return Err(invalid("node_id", "must not be 0 (0 means \"nobody\")"));
        }
        self.validate_members()?;
        if let Some(probe) = &self.host_health {
            probe
                .check()
                .map_err(|e| invalid(e.field(), e.rule.to_string()))?;
        }
        let lease_ms = self.timing.lease_ns() / 1_000_000;
        self.hooks
            .check(lease_ms)
            .map_err(|(field, reason)| invalid(field, reason))?;
        self.fencing
            .check()
            .map_err(|(field, reason)| invalid(field, reason))?;
        self.validate_election()
            .map_err(|(field, reason)| invalid(field, reason))?;
        self.watchdog
            .check(lease_ms)
            .map_err(|(field, reason)| invalid(field, reason))?;
        if let Some(vip) = &self.vip {
            vip.validate().map_err(|reason| {
                // The module's messages start with the field's path.
                match reason.split_once(": ") {
                    Some((field, rule)) if field.starts_with("vip.") => invalid(field, rule),
                    _ => invalid("vip", reason),
                }
            })?;
            // A regent killed or frozen cannot release the address: the kernel drops it
            // `lifetime_s` (checked about once a second) after its last renewal, which must come
            // before another node can be writable (the lease's end, at the earliest).
            match vip.lifetime_s {
                None => {
                    return Err(invalid(
                        "vip.lifetime_s",
                        "required: without it a regent killed with SIGKILL or frozen keeps the \
                         address on its interface while another node takes it",
                    ))
                }
                Some(seconds) if u64::from(seconds) * 1000 + 1000 > lease_ms => {
                    return Err(invalid(
                        "vip.lifetime_s",
                        format!(
                            "{seconds} s (+1 s of the kernel's check) outlasts the lease \
                             ({lease_ms} ms): a frozen node would keep the address after another \
                             node became writable; shorten it or raise \
                             timing.election_timeout_min_ms"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(level) = &self.log_level {
            crate::logging::parse(level).map_err(|e| invalid("log_level", e.to_string()))?;
        }
        if let Some(level) = &self.log.level {
            if self.log_level.is_some() {
                return Err(invalid(
                    "log.level",
                    "log_level says the same: give one of the two",
                ));
            }
            crate::logging::parse(level).map_err(|e| invalid("log.level", e.to_string()))?;
        }
        self.validate_listen()?;
        self.validate_timing()?;
        self.raft_config().validate().map_err(raft_error)?;
        self.transport_config()
            .validate()
            .map_err(transport_error)?;
        self.storage_options().validate().map_err(storage_error)?;
        self.validate_journal()?;
        self.validate_history()?;
        self.validate_api()?;
        self.validate_backup()?;
        self.validate_access()?;
        self.validate_paths()
    }

    fn validate_members(&self) -> Result<(), ConfigError> {
        if self.members.is_empty() {
            return Err(invalid(
                "members",
                "at least one member is needed (the initial voters, this node among them)",
            ));
        }
        if self.members.len() > MEMBERS_MAX {
            return Err(invalid(
                "members",
                format!("{} members, more than {MEMBERS_MAX}", self.members.len()),
            ));
        }
        let mut ids = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for (i, member) in self.members.iter().enumerate() {
            let at = |what: &str| format!("members[{i}].{what}");
            if member.id.0 == 0 {
                return Err(invalid(at("id"), "must not be 0 (0 means \"nobody\")"));
            }
            if let Some(first) = ids.insert(member.id, i) {
                return Err(invalid(
                    at("id"),
                    format!(
                        "node {} is listed twice (also members[{first}]); member ids must be unique",
                        member.id.0
                    ),
                ));
            }
            if member.address.ip().is_unspecified() || member.address.port() == 0 {
                return Err(invalid(
                    at("address"),
                    format!(
                        "{} is not an address peers can dial (a wildcard IP or port 0)",
                        member.address
                    ),
                ));
            }
            if let Some(first) = addresses.insert(member.address, i) {
                return Err(invalid(
                    at("address"),
                    format!(
                        "{} is listed twice (also members[{first}]); member addresses must be unique",
                        member.address
                    ),
                ));
            }
        }
        let own = self.own_member().is_some();
        if !self.join && !own {
            return Err(invalid(
                "members",
                format!(
                    "this node (node_id {}) is not among the members; list it, or set \
                     join: true to join an existing cluster as a learner",
                    self.node_id.0
                ),
            ));
        }
        if self.join && self.peer_addresses().is_empty() {
            return Err(invalid(
                "members",
                "with join: true, list the existing cluster's members (at least one other node)",
            ));
        }
        Ok(())
    }

    fn validate_listen(&self) -> Result<(), ConfigError> {
        let listen = self.listen;
        if listen.port() == 0 {
            return Err(invalid("listen", "port 0 is not a port peers can dial"));
        }
        let Some(own) = self.own_member() else {
            return Ok(());
        };
        if listen.port() != own.address.port() {
            return Err(invalid(
                "listen",
                format!(
                    "port {} is not the port of this node's member address {}; peers dial that \
                     port",
                    listen.port(),
                    own.address
                ),
            ));
        }
        if !listen.ip().is_unspecified() && listen.ip() != own.address.ip() {
            return Err(invalid(
                "listen",
                format!(
                    "{listen} is not this node's member address {}; listen on that address, or \
                     on a wildcard (0.0.0.0 or [::]) with port {}",
                    own.address,
                    own.address.port()
                ),
            ));
        }
        Ok(())
    }

    fn validate_backup(&self) -> Result<(), ConfigError> {
        let Some(backup) = &self.backup else {
            return Ok(());
        };
        let bytes = backup.dir.as_os_str().as_bytes();
        if bytes.is_empty() || bytes.contains(&0) {
            return Err(invalid(
                "backup.dir",
                "must be a path (not empty, no NUL byte)",
            ));
        }
        if !(1..=BACKUP_INTERVAL_S_MAX).contains(&backup.interval_s) {
            return Err(invalid(
                "backup.interval_s",
                format!("must be within 1..={BACKUP_INTERVAL_S_MAX} (a year)"),
            ));
        }
        if !(1..=BACKUP_KEEP_MAX).contains(&backup.keep) {
            return Err(invalid(
                "backup.keep",
                format!("must be within 1..={BACKUP_KEEP_MAX}"),
            ));
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        if !(API_REQUEST_BYTES_MIN..=API_REQUEST_BYTES_MAX).contains(&api.request_bytes_max) {
            return Err(invalid(
                "api.request_bytes_max",
                format!(
                    "{} is not within {API_REQUEST_BYTES_MIN}..={API_REQUEST_BYTES_MAX}",
                    api.request_bytes_max
                ),
            ));
        }
        if !(1..=API_CONNECTIONS_MAX).contains(&api.connections_max) {
            return Err(invalid(
                "api.connections_max",
                format!(
                    "{} is not within 1..={API_CONNECTIONS_MAX}",
                    api.connections_max
                ),
            ));
        }
        Ok(())
    }

    fn validate_access(&self) -> Result<(), ConfigError> {
        if let Some(group) = &self.socket_group {
            let name_ok = !group.is_empty()
                && group.len() <= GROUP_NAME_BYTES_MAX
                && group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-$".contains(&b));
            if !name_ok {
                return Err(invalid(
                    "socket_group",
                    format!("{group:?} is neither a group name nor a numeric gid"),
                ));
            }
            if group.bytes().all(|b| b.is_ascii_digit()) && group.parse::<u32>().is_err() {
                return Err(invalid(
                    "socket_group",
                    format!("gid {group} does not fit in 32 bits"),
                ));
            }
        }
        for (field, ids) in [
            ("admin_uids", &self.admin_uids),
            ("admin_gids", &self.admin_gids),
        ] {
            if ids.len() > ADMIN_IDS_MAX {
                return Err(invalid(
                    field,
                    format!("{} entries, more than {ADMIN_IDS_MAX}", ids.len()),
                ));
            }
        }
        Ok(())
    }

    fn validate_paths(&self) -> Result<(), ConfigError> {
        for (field, path) in [
            ("data_dir", &self.data_dir),
            ("socket", &self.socket),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.ca_bundle", &self.tls.ca_bundle),
        ] {
            let bytes = path.as_os_str().as_bytes();
            if bytes.is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
            if bytes.contains(&0) {
                return Err(invalid(field, "must not contain a NUL byte"));
            }
        }
        let socket_bytes = self.socket.as_os_str().len();
        if socket_bytes > SOCKET_PATH_BYTES_MAX {
            return Err(invalid(
                "socket",
                format!(
                    "{} is {socket_bytes} bytes long; a Unix socket path holds at most \
                     {SOCKET_PATH_BYTES_MAX} (sun_path): choose a shorter path",
                    self.socket.display()
                ),
            ));
        }
        if self.socket.file_name().is_none() {
            return Err(invalid(
                "socket",
                format!("{} does not name a file", self.socket.display()),
            ));
        }
        Ok(())
    }

    /// What the settings name on this machine.
    fn validate_files(&self) -> Result<(), ConfigError> {
        regular_file("tls.cert", &self.tls.cert)?;
        regular_file("tls.key", &self.tls.key)?;
        regular_file("tls.ca_bundle", &self.tls.ca_bundle)?;
        files::check_key_mode(&self.tls.key).map_err(|e| invalid("tls.key", e.to_string()))?;
        writable_dir("data_dir", "the data directory", &self.data_dir)?;
        if let Some(backup) = &self.backup {
            writable_dir("backup.dir", "the backup directory", &backup.dir)?;
        }
        self.validate_socket_location()?;
        self.socket_gid()?;
        let identity = NodeIdentity::new(&self.cluster, self.node_id)
            .map_err(|e| invalid("cluster", pki_reason(e)))?;
        NodeMaterial::load(&self.tls_paths(), &identity).map_err(|e| {
            let field = match e {
                PkiError::WrongIdentity { .. } | PkiError::Untrusted { .. } => "tls.cert",
                PkiError::KeyMismatch { .. } => "tls.key",
                _ => "tls",
            };
            invalid(field, e.to_string())
        })?;
        Ok(())
    }

    fn validate_socket_location(&self) -> Result<(), ConfigError> {
        match fs::symlink_metadata(&self.socket) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(invalid(
                    "socket",
                    format!(
                        "{} exists and is {}, not a socket",
                        self.socket.display(),
                        files::kind_name(&meta.file_type())
                    ),
                ))
            }
            // A socket file, live or stale, is the daemon's to judge when it starts.
            _ => {}
        }
        let dir = match self.socket.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        writable_dir("socket", "the socket's directory", dir)
    }

    /// The gid that should own the socket: `socket_group` as a number, or the group of that
    /// name looked up in the system's group database. None when `socket_group` is not set.
    pub fn socket_gid(&self) -> Result<Option<u32>, ConfigError> {
        let Some(group) = &self.socket_group else {
            return Ok(None);
        };
        if !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()) {
            return group.parse().map(Some).map_err(|_| {
                invalid(
                    "socket_group",
                    format!("gid {group} does not fit in 32 bits"),
                )
            });
        }
        match lookup_group(group) {
            Ok(Some(gid)) => Ok(Some(gid)),
            Ok(None) => Err(invalid(
                "socket_group",
                format!("there is no group named {group:?} on this machine"),
            )),
            Err(e) => Err(invalid(
                "socket_group",
                format!("looking up group {group:?}: {e}"),
            )),
        }
    }
}

/// The reason of a PKI validation error, without its generic prefix.
fn pki_reason(e: PkiError) -> String {
    match e {
        PkiError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Maps a `raft::Config` error to the YAML path of its field. Timing fields live in `timing`.
fn raft_error(e: regent_raft::ConfigError) -> ConfigError {
    use regent_raft::ConfigError as E;
    let path = |field: &str| match field {
        "election_timeout_min_ms" | "heartbeat_interval_ms" | "persist_stall_max_ms" => {
            format!("timing.{field}")
        }
        "clock_drift_max_ppm" => "timing.clock_drift_max".to_string(),
        _ => format!("raft.{field}"),
    };
    // Lower bounds that are other fields: say which.
    let bound = |field: &str| match field {
        "uncommitted_bytes_max" => " (raft.append_bytes_max)",
        "persist_stall_max_ms" | "snapshot_timeout_ms" => " (timing.heartbeat_interval_ms)",
        "conf_change_timeout_ms" => " (timing.election_timeout_min_ms)",
        _ => "",
    };
    match e {
        E::ZeroId => invalid("node_id", "must not be 0 (0 means \"nobody\")"),
        E::TooSmall { field, min, value } => invalid(
            path(field),
            format!("must be at least {min}{}, got {value}", bound(field)),
        ),
        E::TooLarge { field, max, value } => {
            invalid(path(field), format!("must be at most {max}, got {value}"))
        }
        E::HeartbeatTooSlow { .. } => invalid("timing.heartbeat_interval_ms", e.to_string()),
    }
}

/// Maps a `TransportConfig` error to the YAML path of its field.
fn transport_error(e: TransportError) -> ConfigError {
    match e {
        TransportError::Config {
            field: "peers",
            reason,
        } => invalid("members", reason),
        TransportError::Config { field, reason } => invalid(format!("transport.{field}"), reason),
        TransportError::Pki(e) => invalid("cluster", pki_reason(e)),
        other => invalid("transport", other.to_string()),
    }
}

impl DaemonConfig {
    /// A journal bound below one batch's worth would drop an append as it lands.
    fn validate_journal(&self) -> Result<(), ConfigError> {
        let j = &self.journal;
        let bytes_min = regent_storage::COMMAND_BYTES_MAX as u64;
        if j.retained_bytes_max < bytes_min {
            return Err(invalid(
                "journal.retained_bytes_max",
                format!("must be at least {bytes_min} (one command's bytes)"),
            ));
        }
        let count_min = regent_storage::JOURNAL_BATCH_OPS_MAX as u64;
        if j.retained_count_max < count_min {
            return Err(invalid(
                "journal.retained_count_max",
                format!("must be at least {count_min} (one append's operations)"),
            ));
        }
        if j.retained_age_max_ms < 1000 {
            return Err(invalid(
                "journal.retained_age_max_ms",
                "must be at least 1000",
            ));
        }
        Ok(())
    }
}

impl DaemonConfig {
    fn validate_history(&self) -> Result<(), ConfigError> {
        let max = regent_replica::HISTORY_KEEP_MAX;
        if !(1..=max).contains(&self.history.keep) {
            return Err(invalid("history.keep", format!("must be within 1..={max}")));
        }
        Ok(())
    }
}

/// Maps a `StorageOptions` error (its message starts with the field's name) to the YAML path.
fn storage_error(e: StorageError) -> ConfigError {
    match e {
        StorageError::InvalidRequest(message) => {
            let field = message.split_whitespace().next().unwrap_or_default();
            invalid(format!("storage.{field}"), message)
        }
        other => invalid("storage", other.to_string()),
    }
}

/// The path must name a regular file (a symlink to one is fine).
fn regular_file(field: &str, path: &Path) -> Result<(), ConfigError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(invalid(
            field,
            format!(
                "{} is {}, not a regular file",
                path.display(),
                files::kind_name(&meta.file_type())
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(invalid(field, format!("{} does not exist", path.display())))
        }
        Err(e) => Err(invalid(field, format!("{}: {e}", path.display()))),
    }
}

/// `dir` must be a writable directory, or creatable: its nearest existing ancestor a writable
/// directory. Writability is tested, not inferred from mode bits (root ignores them, a
/// read-only mount does not): a probe file is created with `create_new` and removed.
fn writable_dir(field: &str, what: &str, dir: &Path) -> Result<(), ConfigError> {
    let mut existing = dir;
    loop {
        match fs::metadata(existing) {
            Ok(meta) if meta.is_dir() => break,
            Ok(meta) => {
                let kind = files::kind_name(&meta.file_type());
                let reason = if existing == dir {
                    format!("{what} {} is {kind}, not a directory", dir.display())
                } else {
                    format!(
                        "{what} {} cannot be created: {} is {kind}, not a directory",
                        dir.display(),
                        existing.display()
                    )
                };
                return Err(invalid(field, reason));
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                existing = match existing.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    Some(_) => Path::new("."),
                    None => {
                        return Err(invalid(
                            field,
                            format!("{what} {}: no ancestor exists", dir.display()),
                        ))
                    }
                };
            }
            Err(e) => {
                return Err(invalid(
                    field,
                    format!("{what} {}: {}: {e}", dir.display(), existing.display()),
                ))
            }
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let probe = existing.join(format!(".regent-probe-{}-{nanos:09}", std::process::id()));
    let not_writable = |e: io::Error| {
        let reason = if existing == dir {
            format!("{what} {} is not writable: {e}", dir.display())
        } else {
            format!(
                "{what} {} cannot be created: {} is not writable: {e}",
                dir.display(),
                existing.display()
            )
        };
        invalid(field, reason)
    };
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .map_err(not_writable)?;
    fs::remove_file(&probe).map_err(|e| {
        invalid(
            field,
            format!("could not remove the probe file {}: {e}", probe.display()),
        )
    })
}

/// The gid of the group named `name` in the system's group database (NSS included).
fn lookup_group(name: &str) -> io::Result<Option<u32>> {
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the name"))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: `libc::group` is plain data (integers and pointers), for which all-zero is a
        // valid value; getgrnam_r overwrites it.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `c_name` is NUL-terminated, `group` and `result` are live locals, and `buf`
        // is writable for `buf.len()` bytes; the strings getgrnam_r stores point into `buf`,
        // and only the gid is read after the call.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 => return Ok((!result.is_null()).then_some(group.gr_gid)),
            libc::ERANGE if buf.len() < GROUP_BUFFER_BYTES_MAX => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            // Some C libraries report "no such group" as an error rather than a null result.
            libc::ENOENT | libc::ESRCH => return Ok(None),
            _ => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_probe_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        writable_dir("data_dir", "the data directory", tmp.path()).unwrap();
        writable_dir("data_dir", "the data directory", &tmp.path().join("a/b/c")).unwrap();
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_under_a_file_cannot_be_created() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = writable_dir("data_dir", "the data directory", &file.join("data")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = writable_dir("data_dir", "the data directory", &file).unwrap_err();
        assert!(err.to_string().contains("is a regular file"), "{err}");
    }

    #[test]
    fn regular_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let err = regular_file("tls.cert", tmp.path()).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = regular_file("tls.cert", &tmp.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        regular_file("tls.cert", &file).unwrap();
    }

    #[test]
    fn groups_resolve_by_name_and_number() {
        assert_eq!(lookup_group("root").unwrap(), Some(0));
        assert_eq!(lookup_group("no-such-group-regent").unwrap(), None);
    }

    #[test]
    fn core_errors_map_to_yaml_paths() {
        let err = raft_error(regent_raft::ConfigError::TooSmall {
            field: "uncommitted_bytes_max",
            min: 10,
            value: 1,
        });
        assert_eq!(err.field(), Some("raft.uncommitted_bytes_max"));
        assert!(err.to_string().contains("raft.append_bytes_max"), "{err}");
        let err = raft_error(regent_raft::ConfigError::TooLarge {
            field: "clock_drift_max_ppm",
            max: 1,
            value: 2,
        });
        assert_eq!(err.field(), Some("timing.clock_drift_max"));
        let err = storage_error(StorageError::InvalidRequest(
            "changes_retained_max must be at least 1".into(),
        ));
        assert_eq!(err.field(), Some("storage.changes_retained_max"));
    }
}

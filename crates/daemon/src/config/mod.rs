//! The daemon's configuration file: one YAML document read into [`DaemonConfig`], with unknown
//! fields rejected, every default in `defaults.rs`, and every rule checked by `validate` with an
//! error that names the field by its YAML path (`timing.heartbeat_interval_ms`) and the rule.
//!
//! Invariant: a `DaemonConfig` returned by [`DaemonConfig::load`] holds only absolute paths
//! (relative ones are resolved against the directory of the file) and has passed `validate`,
//! so every conversion (`raft_config`, `transport_config`, `storage_options`) yields a value
//! whose own `validate()` passes.
//!
//! `config/regent.yaml` is the documented example; tests keep it in step with this struct.

use regent_transport::pki::files::ReadError;
mod election;
mod hooks;
mod probe;
mod reload;
pub use election::{
    ElectionConfig, MemberElection, RoleName, HOLD_DOWN_MS_DEFAULT, HOLD_DOWN_MS_MAX,
};
pub use hooks::{FenceMethod, FencingConfig, HookCommand, HooksConfig, HOOK_NAMES};
pub use probe::{HttpTarget, MissingPort, ProbeConfig, ProbeError, ProbeRule};
mod defaults;
mod timing;
mod validate;

pub use defaults::{BACKUP_KEEP_DEFAULT, DATA_DIR_DEFAULT, SOCKET_DEFAULT, SOCKET_MODE_DEFAULT};
pub use reload::{ReloadPlan, ReloadRefused};
pub use timing::{TimingConfig, TimingExplanation, FSYNC_MS_ASSUMED, ROUND_TRIP_MS_ASSUMED};
pub use validate::{
    ADMIN_IDS_MAX, API_CONNECTIONS_MAX, API_REQUEST_BYTES_MAX, API_REQUEST_BYTES_MIN,
    BACKUP_INTERVAL_S_MAX, BACKUP_KEEP_MAX, MEMBERS_MAX, SOCKET_PATH_BYTES_MAX,
};

use regent_raft::{Membership, NodeId};
use regent_storage::{ApplyMode, StorageOptions, VerifyOnOpen};
use regent_transport::pki::TlsPaths;
use regent_transport::TransportConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The largest configuration file read. A real one is a few kilobytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// The configuration of one regent daemon (`regent run --config FILE`).
///
/// Required: `cluster`, `node_id`, `listen`, `members`, `tls`. Everything else has a default
/// (see `defaults.rs` and `config/regent.yaml`). Relative paths (`data_dir`, `socket`, the
/// `tls` files) are resolved by [`DaemonConfig::load`] against the directory holding the
/// configuration file, as named on the command line (a symlink to the file is not followed
/// for this).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The cluster name: one lowercase DNS label. It is part of every certificate's identity
    /// (`regent://<cluster>/node/<id>`), so nodes of two clusters never talk to each other.
    pub cluster: String,
    /// This node's id: not 0, unique in the cluster, and named by this node's certificate.
    pub node_id: NodeId,
    /// The UDP address this node's QUIC endpoint binds. Its port must be this node's member
    /// port, and its address the member address unless it is a wildcard (0.0.0.0 or [::]).
    pub listen: SocketAddr,
    /// The initial voters: used to bootstrap a new cluster on the first start; afterwards the
    /// membership in the log is authoritative and this list only says where peers are.
    pub members: Vec<Member>,
    /// Start as an empty learner and wait for the leader to add this node, instead of
    /// bootstrapping from `members`.
    #[serde(default)]
    pub join: bool,
    /// Where the node's database lives. It must exist and be writable, or be creatable.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// The Unix socket of the host API. At most 107 bytes (`sun_path`).
    #[serde(default = "defaults::socket")]
    pub socket: PathBuf,
    /// The socket file's mode, set before the daemon listens.
    #[serde(default = "defaults::socket_mode")]
    pub socket_mode: SocketMode,
    /// The group owning the socket: a group name or a numeric gid. None keeps the daemon's.
    #[serde(default)]
    pub socket_group: Option<String>,
    /// Uids allowed to call the API's cluster-changing calls (root always is).
    #[serde(default)]
    pub admin_uids: Vec<u32>,
    /// Gids whose members may call the API's cluster-changing calls.
    #[serde(default)]
    pub admin_gids: Vec<u32>,
    /// This node's certificate, key and trusted CAs.
    pub tls: TlsFiles,
    #[serde(default)]
    pub timing: TimingConfig,
    #[serde(default)]
    pub raft: RaftLimits,
    #[serde(default)]
    pub transport: TransportLimits,
    #[serde(default)]
    pub storage: StorageLimits,
    #[serde(default)]
    pub api: ApiLimits,
    /// Retention of the host's operation journal.
    #[serde(default)]
    pub journal: JournalLimits,
    /// A probe of the master beside regent; without it the host counts as always healthy.
    #[serde(default)]
    pub host_health: Option<ProbeConfig>,
    /// Commands run on leadership changes, for a master that knows nothing of regent.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// Fence methods run against the previous leader after a failover.
    #[serde(default)]
    pub fencing: FencingConfig,
    /// A machine watchdog armed while this node is writable.
    #[serde(default)]
    pub watchdog: crate::watchdog::WatchdogConfig,
    /// A virtual IP held while this node is writable.
    #[serde(default)]
    pub vip: Option<crate::vip::VipConfig>,
    /// The log filter (`info`, `warn,regent::daemon=debug`, ...). None: the `REGENT_LOG`
    /// environment variable, else `warn`. A reload applies a change.
    #[serde(default)]
    pub log_level: Option<String>,
    /// How the log is written: `format` text or json, and `level` (the same as `log_level`;
    /// give one of the two).
    #[serde(default)]
    pub log: LogConfig,
    /// Backups of the state machine written on a schedule. None: no schedule (`regent
    /// backup` still takes one on demand).
    #[serde(default)]
    pub backup: Option<BackupConfig>,
    /// Who may lead: this node's role (candidate, nofailover, witness) and priority.
    #[serde(default)]
    pub election: ElectionConfig,
    /// The failover history: how many leadership changes the replicated history keeps.
    #[serde(default)]
    pub history: HistoryConfig,
}

/// The `history:` section. The leader of each term writes its record and drops the oldest
/// beyond `keep` (the leader's value is the one in force; nodes need not agree).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Records kept, within 1..=1000 (default 100).
    pub keep: u32,
}

impl Default for HistoryConfig {
    fn default() -> HistoryConfig {
        HistoryConfig {
            keep: regent_replica::HISTORY_KEEP_DEFAULT,
        }
    }
}

/// The `backup:` section: every `interval_s` the daemon writes a backup file (the image
/// `GET /v1/admin/backup` serves) into `dir` and keeps the newest `keep` of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Where the files go; created if missing. Relative to the configuration file's directory.
    pub dir: PathBuf,
    /// Seconds between two backups, the first one `interval_s` after the start.
    pub interval_s: u64,
    /// How many of this node's backup files in `dir` are kept (older ones are removed).
    #[serde(default = "defaults::backup_keep")]
    pub keep: u32,
}

/// The `log:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    #[serde(default)]
    pub level: Option<String>,
}

/// One line per event: text (tracing's) or a JSON object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl DaemonConfig {
    /// The log filter in force: `log.level`, else `log_level`.
    pub fn log_filter(&self) -> Option<&str> {
        self.log.level.as_deref().or(self.log_level.as_deref())
    }
}

/// One node of the cluster and the UDP address its peers dial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: NodeId,
    pub address: SocketAddr,
    /// What that node's own `election:` section says, as far as this file knows (for
    /// `check-config`'s rule that some voter may lead; the node's own file counts at run
    /// time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election: Option<MemberElection>,
}

/// Where this node's TLS files are (the `tls` section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The node certificate (PEM), naming `regent://<cluster>/node/<node_id>`.
    pub cert: PathBuf,
    /// Its private key (PEM). Mode 0600: a key readable by group or others is refused.
    pub key: PathBuf,
    /// The CAs this node trusts (PEM, one or more certificates).
    pub ca_bundle: PathBuf,
}

/// Limits of the Raft core (the `raft` section); the names are those of `regent_raft::Config`,
/// and so are the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftLimits {
    /// Appends in flight to one follower.
    pub inflight_max: usize,
    /// Bytes of entries in one AppendEntries (at least one entry is always sent).
    pub append_bytes_max: usize,
    /// Entries in one AppendEntries.
    pub append_entries_max: usize,
    /// Bytes of proposed, uncommitted entries before proposals are refused.
    pub uncommitted_bytes_max: usize,
    /// Linearizable reads pending on this node.
    pub reads_pending_max: usize,
    /// A learner is promoted only within this many entries of the leader's last index.
    pub promote_lag_max: u64,
    /// A joint configuration not left within this time is aborted.
    pub conf_change_timeout_ms: u64,
    /// A snapshot is due after this many entries applied since the last one ...
    pub compaction_entries_max: u64,
    /// ... or this many bytes of entries.
    pub compaction_bytes_max: u64,
    /// A follower that has not confirmed a snapshot within this time is probed again.
    pub snapshot_timeout_ms: u64,
}

/// Limits of the QUIC transport (the `transport` section); the names are those of
/// `regent_transport::TransportConfig`, and so are the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportLimits {
    /// Time allowed for the TLS handshake plus the hello exchange.
    pub handshake_timeout_ms: u64,
    /// How long a connection may hold a handshake slot before its certificate is checked.
    pub unauthenticated_timeout_ms: u64,
    /// A connection silent this long is dead; keep-alives go every third of it.
    pub idle_timeout_ms: u64,
    /// Reconnect backoff: the first ceiling ...
    pub reconnect_backoff_min_ms: u64,
    /// ... and the cap.
    pub reconnect_backoff_max_ms: u64,
    /// The largest frame; the same on every node (checked when links come up).
    pub frame_bytes_max: usize,
    /// Frames queued per peer before the oldest are dropped.
    pub send_queue_max: usize,
    /// Bytes queued per peer before the oldest frames are dropped.
    pub send_queue_bytes_max: usize,
    /// Inbound messages waiting for the node before reading from peers pauses.
    pub inbound_queue_max: usize,
    /// A snapshot stream without progress this long is aborted.
    pub snapshot_stall_timeout_ms: u64,
    /// The largest snapshot accepted.
    pub snapshot_bytes_max: u64,
}

/// Settings of the redb storage (the `storage` section); the names are those of
/// `regent_storage::StorageOptions`, and so are the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageLimits {
    /// redb's page cache.
    pub cache_bytes: usize,
    /// The change feed keeps the changes of at most this many recent revisions.
    pub changes_retained_max: u64,
    /// Entries in one durable batch.
    pub batch_entries_max: usize,
    /// Snapshot chunks are cut at this many bytes.
    pub snapshot_chunk_bytes: usize,
    /// Where committed entries are applied: with the log (durable) or deferred.
    pub apply_mode: StorageApplyMode,
    /// When every page checksum is verified as the database is opened.
    pub verify_on_open: StorageVerify,
    /// The file is compacted once it has at least this many free bytes ...
    pub compact_free_bytes_min: u64,
    /// ... and they are at least this share of it, in percent.
    pub compact_free_percent_min: u64,
}

/// Retention bounds of the host's operation journal (the `journal` section). Operations are
/// kept until every member's host has checkpointed past them, but never beyond these bounds.
/// The leader's values travel in each journal command, so nodes need not agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalLimits {
    /// Bytes of operations retained at most.
    pub retained_bytes_max: u64,
    /// Operations retained at most.
    pub retained_count_max: u64,
    /// Operations older than this (by the leader-assigned log time) are dropped.
    pub retained_age_max_ms: u64,
}

impl Default for JournalLimits {
    fn default() -> JournalLimits {
        JournalLimits {
            retained_bytes_max: 256 << 20,
            retained_count_max: 1_000_000,
            retained_age_max_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

impl JournalLimits {
    /// The bounds as the journal commands carry them.
    pub fn retention(&self) -> regent_storage::JournalRetention {
        regent_storage::JournalRetention {
            bytes_max: self.retained_bytes_max,
            count_max: self.retained_count_max,
            age_max_ms: self.retained_age_max_ms,
        }
    }
}

/// `storage.apply_mode`, as written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageApplyMode {
    /// `ApplyMode::WithLog`: applied in the batch's one durable transaction.
    WithLog,
    /// `ApplyMode::Deferred`: applied in a second, non-durable transaction.
    Deferred,
}

/// `storage.verify_on_open`, as written in the file: `auto` (the default: only when the file
/// was not closed cleanly), `always` or `never`; `true` and `false` (the older form) mean
/// `always` and `never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageVerify {
    Always,
    Auto,
    Never,
}

impl Serialize for StorageVerify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            StorageVerify::Always => "always",
            StorageVerify::Auto => "auto",
            StorageVerify::Never => "never",
        })
    }
}

impl<'de> Deserialize<'de> for StorageVerify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StorageVerify;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("auto, always or never (or true/false: always/never)")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StorageVerify, E> {
                Ok(if v {
                    StorageVerify::Always
                } else {
                    StorageVerify::Never
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StorageVerify, E> {
                match v {
                    "always" => Ok(StorageVerify::Always),
                    "auto" => Ok(StorageVerify::Auto),
                    "never" => Ok(StorageVerify::Never),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Limits of the host API on the Unix socket (the `api` section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLimits {
    /// The largest request body accepted on the socket, in bytes.
    pub request_bytes_max: usize,
    /// Connections to the socket open at once; more are refused.
    pub connections_max: usize,
    /// An optional read-only TCP listener for /v1/leader, /v1/replica, /v1/health and /metrics.
    pub tcp_listen: Option<SocketAddr>,
}

/// A file mode for the socket, written in the file as an octal string (`"0660"`).
///
/// Invariant: at most 0o777 (no setuid, setgid or sticky bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketMode(u32);

impl SocketMode {
    pub fn new(bits: u32) -> Option<SocketMode> {
        (bits <= 0o777).then_some(SocketMode(bits))
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Text that is not an octal file mode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an octal file mode from \"0000\" to \"0777\"")]
pub struct SocketModeError {
    pub text: String,
}

impl FromStr for SocketMode {
    type Err = SocketModeError;

    fn from_str(text: &str) -> Result<SocketMode, SocketModeError> {
        let bad = || SocketModeError {
            text: text.to_string(),
        };
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty()
            || digits.len() > 4
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(bad());
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
        SocketMode::new(bits).ok_or_else(bad)
    }
}

impl Serialize for SocketMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SocketMode, D::Error> {
        // serde_yaml hands any scalar to `deserialize_str` as written, so `0660` and "0660"
        // both arrive as the text "0660" (never as the decimal number 660). The error is made
        // inside the visitor, so serde_yaml adds the field's path, line and column to it.
        struct Octal;
        impl serde::de::Visitor<'_> for Octal {
            type Value = SocketMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal file mode such as \"0660\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SocketMode, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Octal)
    }
}

/// Every error of the configuration layer. Validation errors name the field by its YAML path;
/// errors of a file read by `load` are wrapped in `File`, which names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("is {0}, not a regular file; a configuration must be a regular file")]
    NotRegularFile(&'static str),
    #[error("is larger than {CONFIG_FILE_BYTES_MAX} bytes; a configuration file is far smaller")]
    TooLarge,
    #[error("is not UTF-8 text")]
    NotUtf8,
    /// The YAML does not parse or does not fit the schema. The message comes from serde_yaml
    /// and names the field and the line and column.
    #[error("{message}")]
    Parse {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The YAML path of the field at fault, for a validation error.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::File { error, .. } => error.field(),
            _ => None,
        }
    }

    fn in_file(self, path: &Path) -> ConfigError {
        ConfigError::File {
            path: path.to_path_buf(),
            error: Box::new(self),
        }
    }
}

impl DaemonConfig {
    /// Reads, parses and validates a configuration file (see [`DaemonConfig::validate`], which
    /// also looks at the files and directories the configuration names). Every error names
    /// the file.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let config = DaemonConfig::load_unvalidated(path)?;
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Reads and parses a configuration file and resolves its relative paths, without
    /// validating it (`regent explain-timing` needs only `validate_timing`).
    pub fn load_unvalidated(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = read_capped(path).map_err(|e| e.in_file(path))?;
        let mut config = DaemonConfig::parse(&text).map_err(|e| e.in_file(path))?;
        let absolute = std::path::absolute(path).map_err(|e| ConfigError::Read(e).in_file(path))?;
        let base = absolute.parent().unwrap_or(Path::new("/"));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses YAML text. Relative paths stay relative; nothing is validated.
    pub fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| {
            let location = e.location();
            ConfigError::Parse {
                message: e.to_string(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
            }
        })
    }

    /// Makes every relative path absolute by joining it to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.data_dir,
            &mut self.socket,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tls.ca_bundle,
        ]
        .into_iter()
        .chain(self.backup.as_mut().map(|b| &mut b.dir))
        {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = base.join(&*path);
            }
        }
    }

    /// The replica's clock check: the core's timing, and `timing.clock_drift_alarm`.
    pub fn clock_check(&self) -> regent_replica::ClockCheck {
        let alarm = self.timing.clock_drift_alarm_ppm();
        regent_replica::ClockCheck::for_config(&self.raft_config(), alarm)
    }

    /// The Raft core's configuration. Pre-vote and check-quorum are always on: the lease and
    /// the failover figures of `explain_timing` rest on them.
    pub fn raft_config(&self) -> regent_raft::Config {
        let (t, r) = (&self.timing, &self.raft);
        regent_raft::Config {
            id: self.node_id,
            election_timeout_min_ms: t.election_timeout_min_ms,
            heartbeat_interval_ms: t.heartbeat_interval_ms,
            clock_drift_max_ppm: t.clock_drift_max_ppm(),
            pre_vote: true,
            check_quorum: true,
            inflight_max: r.inflight_max,
            append_bytes_max: r.append_bytes_max,
            append_entries_max: r.append_entries_max,
            uncommitted_bytes_max: r.uncommitted_bytes_max,
            persist_stall_max_ms: t.persist_stall_max_ms,
            reads_pending_max: r.reads_pending_max,
            promote_lag_max: r.promote_lag_max,
            conf_change_timeout_ms: r.conf_change_timeout_ms,
            compaction_entries_max: r.compaction_entries_max,
            compaction_bytes_max: r.compaction_bytes_max,
            snapshot_timeout_ms: r.snapshot_timeout_ms,
            restore_entries_max: regent_raft::Config::new(self.node_id).restore_entries_max,
        }
    }

    /// The transport's configuration: this node's endpoint, and every other member as a peer.
    pub fn transport_config(&self) -> TransportConfig {
        let t = &self.transport;
        TransportConfig {
            node_id: self.node_id,
            cluster_name: self.cluster.clone(),
            listen_addr: self.listen,
            peers: self.peer_addresses(),
            tls: self.tls_paths(),
            frame_bytes_max: t.frame_bytes_max,
            send_queue_max: t.send_queue_max,
            send_queue_bytes_max: t.send_queue_bytes_max,
            inbound_queue_max: t.inbound_queue_max,
            reconnect_backoff_min_ms: t.reconnect_backoff_min_ms,
            reconnect_backoff_max_ms: t.reconnect_backoff_max_ms,
            handshake_timeout_ms: t.handshake_timeout_ms,
            unauthenticated_timeout_ms: t.unauthenticated_timeout_ms,
            idle_timeout_ms: t.idle_timeout_ms,
            snapshot_stall_timeout_ms: t.snapshot_stall_timeout_ms,
            snapshot_bytes_max: t.snapshot_bytes_max,
            wire_version_max: regent_transport::tls::WIRE_VERSION_MAX,
        }
    }

    /// The storage handle's settings.
    pub fn storage_options(&self) -> StorageOptions {
        let s = &self.storage;
        StorageOptions {
            changes_retained_max: s.changes_retained_max,
            batch_entries_max: s.batch_entries_max,
            snapshot_chunk_bytes: s.snapshot_chunk_bytes,
            apply_mode: match s.apply_mode {
                StorageApplyMode::WithLog => ApplyMode::WithLog,
                StorageApplyMode::Deferred => ApplyMode::Deferred,
            },
            verify_on_open: match s.verify_on_open {
                StorageVerify::Always => VerifyOnOpen::Always,
                StorageVerify::Auto => VerifyOnOpen::Auto,
                StorageVerify::Never => VerifyOnOpen::Never,
            },
            cache_bytes: s.cache_bytes,
            compact_free_bytes_min: s.compact_free_bytes_min,
            compact_free_percent_min: s.compact_free_percent_min,
        }
    }

    pub fn tls_paths(&self) -> TlsPaths {
        TlsPaths {
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
            ca_bundle: self.tls.ca_bundle.clone(),
        }
    }

    /// The configuration a new cluster bootstraps with: every member a voter.
    pub fn initial_membership(&self) -> Membership {
        Membership::new(self.members.iter().map(|m| m.id))
    }

    /// Every member other than this node, with the address to dial.
    pub fn peer_addresses(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.members
            .iter()
            .filter(|m| m.id != self.node_id)
            .map(|m| (m.id, m.address))
            .collect()
    }

    /// This node's entry in `members`, if it is listed.
    pub fn own_member(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.id == self.node_id)
    }

    /// What the timing settings mean: the lease and its margin, the worst-case failover and
    /// the planned switchover pause, each with its formula (print it with `Display`).
    pub fn explain_timing(&self) -> TimingExplanation {
        TimingExplanation::new(&self.timing)
    }
}

/// Reads at most `CONFIG_FILE_BYTES_MAX` bytes of a regular file (a device or FIFO is refused
/// at once, never read or waited on).
fn read_capped(path: &Path) -> Result<String, ConfigError> {
    let bytes = match regent_transport::pki::files::read_limited(path, CONFIG_FILE_BYTES_MAX) {
        Ok(bytes) => bytes,
        Err(ReadError::Io { error, .. }) => return Err(ConfigError::Read(error)),
        Err(ReadError::NotRegular { kind, .. }) => return Err(ConfigError::NotRegularFile(kind)),
        Err(ReadError::TooLarge { .. }) => return Err(ConfigError::TooLarge),
    };
    String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
cluster: demo
node_id: 2
listen: 127.0.0.1:7402
members:
  - { id: 1, address: 127.0.0.1:7401 }
  - { id: 2, address: 127.0.0.1:7402 }
  - { id: 3, address: 127.0.0.1:7403 }
tls: { cert: node.pem, key: node.key, ca_bundle: ca-bundle.pem }
";

    #[test]
    fn a_minimal_file_takes_every_default() {
        let c = DaemonConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.node_id, NodeId(2));
        assert!(!c.join);
        assert_eq!(c.data_dir, Path::new(DATA_DIR_DEFAULT));
        assert_eq!(c.socket, Path::new(SOCKET_DEFAULT));
        assert_eq!(c.socket_mode.bits(), SOCKET_MODE_DEFAULT);
        assert_eq!(c.timing, TimingConfig::default());
        assert_eq!(c.raft, RaftLimits::default());
        assert_eq!(c.transport, TransportLimits::default());
        assert_eq!(c.storage, StorageLimits::default());
        assert_eq!(c.api, ApiLimits::default());
    }

    #[test]
    fn conversions_carry_every_setting() {
        let mut c = DaemonConfig::parse(MINIMAL).unwrap();
        c.raft.inflight_max = 7;
        c.transport.frame_bytes_max = 1 << 21;
        c.storage.cache_bytes = 1 << 24;
        c.storage.apply_mode = StorageApplyMode::Deferred;
        let raft = c.raft_config();
        assert_eq!(raft.id, NodeId(2));
        assert_eq!(raft.clock_drift_max_ppm, 50_000);
        assert_eq!(raft.inflight_max, 7);
        assert!(raft.pre_vote && raft.check_quorum);
        assert_eq!(raft.validate(), Ok(()));

        let transport = c.transport_config();
        assert_eq!(transport.frame_bytes_max, 1 << 21);
        let peers: Vec<u64> = transport.peers.keys().map(|id| id.0).collect();
        assert_eq!(peers, [1, 3]);
        assert_eq!(transport.peers, c.peer_addresses());
        assert_eq!(transport.tls, c.tls_paths());
        transport.validate().unwrap();

        let storage = c.storage_options();
        assert_eq!(storage.cache_bytes, 1 << 24);
        assert_eq!(storage.apply_mode, ApplyMode::Deferred);
        storage.validate().unwrap();

        let membership = c.initial_membership();
        assert_eq!(membership.voters.len(), 3);
        assert!(membership.learners.is_empty() && !membership.is_joint());
    }

    #[test]
    fn relative_paths_resolve_against_the_base() {
        let mut c = DaemonConfig::parse(MINIMAL).unwrap();
        c.data_dir = PathBuf::from("data");
        c.backup = Some(BackupConfig {
            dir: PathBuf::from("backups"),
            interval_s: 60,
            keep: BACKUP_KEEP_DEFAULT,
        });
        c.resolve_paths(Path::new("/etc/regent"));
        assert_eq!(c.backup.unwrap().dir, Path::new("/etc/regent/backups"));
        assert_eq!(c.tls.cert, Path::new("/etc/regent/node.pem"));
        assert_eq!(c.tls.ca_bundle, Path::new("/etc/regent/ca-bundle.pem"));
        assert_eq!(c.data_dir, Path::new("/etc/regent/data"));
        // Absolute paths are kept.
        assert_eq!(c.socket, Path::new(SOCKET_DEFAULT));
    }

    #[test]
    fn socket_modes_are_octal_text() {
        for (text, bits) in [
            ("0660", 0o660),
            ("660", 0o660),
            ("0o600", 0o600),
            ("0777", 0o777),
        ] {
            assert_eq!(text.parse::<SocketMode>().unwrap().bits(), bits, "{text}");
        }
        for text in ["", "0800", "1777", "07777", "rw-rw----", "-1", "0x1ff"] {
            assert!(
                text.parse::<SocketMode>().is_err(),
                "{text} must be refused"
            );
        }
        assert_eq!(SocketMode::new(0o640).unwrap().to_string(), "0640");
        // Unquoted in YAML it is still read as octal text, never as decimal 660.
        let c = DaemonConfig::parse(&format!("{MINIMAL}socket_mode: 0640\n")).unwrap();
        assert_eq!(c.socket_mode.bits(), 0o640);
    }

    #[test]
    fn parse_errors_carry_a_location() {
        let err =
            DaemonConfig::parse(&format!("{MINIMAL}timing: {{ heartbeat_ms: 5 }}\n")).unwrap_err();
        let ConfigError::Parse { message, line, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.contains("unknown field `heartbeat_ms`"),
            "{message}"
        );
        assert!(message.contains("timing"), "{message}");
        assert_eq!(*line, Some(9));
    }
}

//! Every default of the configuration file, and nowhere else: the `serde(default = ...)`
//! functions of `DaemonConfig`'s optional fields and the `Default` impls of its sections.
//!
//! Invariant: the limits of the `raft`, `transport` and `storage` sections default to the
//! defaults of the layer that owns them (`raft::Config::new`, `TransportConfig::new`,
//! `StorageOptions::default`), so a file that leaves them out behaves like the tested core.
//! `config/regent.yaml` states the same values; a test compares them.

use super::{
    ApiLimits, RaftLimits, SocketMode, StorageApplyMode, StorageLimits, StorageVerify,
    TimingConfig, TransportLimits,
};
use regent_raft::NodeId;
use regent_storage::{ApplyMode, StorageOptions, VerifyOnOpen};
use regent_transport::pki::TlsPaths;
use regent_transport::TransportConfig;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Where a systemd install keeps the database (`StateDirectory=regent`).
pub const DATA_DIR_DEFAULT: &str = "/var/lib/regent";
/// Where a systemd install puts the API socket (`RuntimeDirectory=regent`).
pub const SOCKET_DEFAULT: &str = "/run/regent/regent.sock";
/// Owner and group may connect; others may not.
pub const SOCKET_MODE_DEFAULT: u32 = 0o660;

/// Backup files kept in `backup.dir` when `backup.keep` is not given.
pub const BACKUP_KEEP_DEFAULT: u32 = 7;

pub(super) fn backup_keep() -> u32 {
    BACKUP_KEEP_DEFAULT
}

pub(super) fn data_dir() -> PathBuf {
    PathBuf::from(DATA_DIR_DEFAULT)
}

pub(super) fn socket() -> PathBuf {
    PathBuf::from(SOCKET_DEFAULT)
}

pub(super) fn socket_mode() -> SocketMode {
    SocketMode::new(SOCKET_MODE_DEFAULT).expect("the default socket mode is at most 0777")
}

/// The daemon's timing. It differs from `raft::Config::new` (1 s election timeout, 5 s stall):
/// a sidecar for one master wants a failover near one second on a LAN.
impl Default for TimingConfig {
    fn default() -> TimingConfig {
        TimingConfig {
            election_timeout_min_ms: 500,
            heartbeat_interval_ms: 100,
            clock_drift_max: 0.05,
            clock_drift_alarm: 0.5,
            persist_stall_max_ms: 2000,
            lease_warning_ms: 100,
        }
    }
}

impl Default for RaftLimits {
    fn default() -> RaftLimits {
        let c = regent_raft::Config::new(NodeId(1));
        RaftLimits {
            inflight_max: c.inflight_max,
            append_bytes_max: c.append_bytes_max,
            append_entries_max: c.append_entries_max,
            uncommitted_bytes_max: c.uncommitted_bytes_max,
            reads_pending_max: c.reads_pending_max,
            promote_lag_max: c.promote_lag_max,
            conf_change_timeout_ms: c.conf_change_timeout_ms,
            compaction_entries_max: c.compaction_entries_max,
            compaction_bytes_max: c.compaction_bytes_max,
            snapshot_timeout_ms: c.snapshot_timeout_ms,
        }
    }
}

impl Default for TransportLimits {
    fn default() -> TransportLimits {
        let none = PathBuf::new();
        let c = TransportConfig::new(
            NodeId(1),
            "",
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            BTreeMap::new(),
            TlsPaths {
                cert: none.clone(),
                key: none.clone(),
                ca_bundle: none,
            },
        );
        TransportLimits {
            handshake_timeout_ms: c.handshake_timeout_ms,
            unauthenticated_timeout_ms: c.unauthenticated_timeout_ms,
            idle_timeout_ms: c.idle_timeout_ms,
            reconnect_backoff_min_ms: c.reconnect_backoff_min_ms,
            reconnect_backoff_max_ms: c.reconnect_backoff_max_ms,
            frame_bytes_max: c.frame_bytes_max,
            send_queue_max: c.send_queue_max,
            send_queue_bytes_max: c.send_queue_bytes_max,
            inbound_queue_max: c.inbound_queue_max,
            snapshot_stall_timeout_ms: c.snapshot_stall_timeout_ms,
            snapshot_bytes_max: c.snapshot_bytes_max,
        }
    }
}

impl Default for StorageLimits {
    fn default() -> StorageLimits {
        let o = StorageOptions::default();
        StorageLimits {
            cache_bytes: o.cache_bytes,
            changes_retained_max: o.changes_retained_max,
            batch_entries_max: o.batch_entries_max,
            snapshot_chunk_bytes: o.snapshot_chunk_bytes,
            apply_mode: match o.apply_mode {
                ApplyMode::WithLog => StorageApplyMode::WithLog,
                ApplyMode::Deferred => StorageApplyMode::Deferred,
            },
            verify_on_open: match o.verify_on_open {
                VerifyOnOpen::Always => StorageVerify::Always,
                VerifyOnOpen::Auto => StorageVerify::Auto,
                VerifyOnOpen::Never => StorageVerify::Never,
            },
            compact_free_bytes_min: o.compact_free_bytes_min,
            compact_free_percent_min: o.compact_free_percent_min,
        }
    }
}

impl Default for ApiLimits {
    fn default() -> ApiLimits {
        ApiLimits {
            request_bytes_max: 1 << 20,
            connections_max: 1024,
            tcp_listen: None,
        }
    }
}

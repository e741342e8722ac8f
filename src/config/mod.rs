//! TEMPORARY stand-in until the configuration layer lands (replaced at merge).
#![allow(missing_docs)]
use crate::raft::{Membership, NodeId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, serde::Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub address: SocketAddr,
}
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_bundle: PathBuf,
}
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Timing {
    pub election_timeout_min_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub clock_drift_max: f64,
    pub persist_stall_max_ms: u64,
    pub lease_warning_ms: u64,
}
#[derive(Clone, Copy, Debug, serde::Deserialize)]
pub struct SocketMode(u32);
impl SocketMode {
    pub fn bits(self) -> u32 {
        self.0
    }
}
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Api {
    pub request_bytes_max: usize,
    pub connections_max: usize,
}
#[derive(Clone, Debug, serde::Deserialize)]
pub struct DaemonConfig {
    pub cluster: String,
    pub node_id: NodeId,
    pub listen: SocketAddr,
    pub members: Vec<Member>,
    pub join: bool,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_mode: SocketMode,
    pub socket_group: Option<String>,
    pub admin_uids: Vec<u32>,
    pub admin_gids: Vec<u32>,
    pub tls: Tls,
    pub timing: Timing,
    pub api: Api,
}
impl DaemonConfig {
    pub fn load(path: &Path) -> anyhow::Result<DaemonConfig> {
        Ok(serde_yaml::from_slice(&std::fs::read(path)?)?)
    }
    pub fn raft_config(&self) -> crate::raft::Config {
        let mut c = crate::raft::Config::new(self.node_id);
        c.election_timeout_min_ms = self.timing.election_timeout_min_ms;
        c.heartbeat_interval_ms = self.timing.heartbeat_interval_ms;
        c
    }
    pub fn storage_options(&self) -> crate::storage::StorageOptions {
        Default::default()
    }
    pub fn tls_paths(&self) -> crate::pki::TlsPaths {
        crate::pki::TlsPaths {
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
            ca_bundle: self.tls.ca_bundle.clone(),
        }
    }
    pub fn peer_addresses(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.members
            .iter()
            .filter(|m| m.id != self.node_id)
            .map(|m| (m.id, m.address))
            .collect()
    }
    pub fn transport_config(&self) -> crate::transport::TransportConfig {
        crate::transport::TransportConfig::new(
            self.node_id,
            self.cluster.clone(),
            self.listen,
            self.peer_addresses(),
            self.tls_paths(),
        )
    }
    pub fn initial_membership(&self) -> Membership {
        Membership::new(self.members.iter().map(|m| m.id))
    }
}

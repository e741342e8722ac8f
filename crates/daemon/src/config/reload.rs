//! What a reload may change: every field of the configuration is classified — applied at once
//! (live), kept at its old value until the next restart, or refusing the whole file — by
//! destructuring the configuration without `..`, so that a field added later without a class
//! does not compile.
//!
//! Invariant: the configuration in force after a reload ([`ReloadPlan::in_force`]) holds the
//! new file's live fields and the old file's restart-only fields; nothing else.

use super::{DaemonConfig, TimingConfig};
use regent_raft::NodeId;

/// A reload's plan: which changed fields apply now, which wait for a restart.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadPlan {
    /// Changed fields applied at once (YAML names).
    pub live: Vec<&'static str>,
    /// Changed fields that keep their old value until the next restart (YAML names).
    pub restart: Vec<&'static str>,
    /// The configuration in force once the reload is done.
    pub in_force: DaemonConfig,
}

impl ReloadPlan {
    /// Whether the field `name` (a YAML name) changed and is applied at once.
    pub fn applies(&self, name: &str) -> bool {
        self.live.contains(&name)
    }
}

/// The new file is for another node or cluster: refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("is for node {new_node} of cluster {new_cluster:?}, but this is node {node} of cluster {cluster:?}")]
pub struct ReloadRefused {
    pub new_node: NodeId,
    pub new_cluster: String,
    pub node: NodeId,
    pub cluster: String,
}

impl DaemonConfig {
    /// Classifies every field that differs between this configuration (in force) and `new`
    /// (read from the file again). Refused as a whole when `new` names another node or
    /// cluster.
    pub fn reload_plan(&self, new: &DaemonConfig) -> Result<ReloadPlan, ReloadRefused> {
        let DaemonConfig {
            cluster,
            node_id,
            listen,
            members,
            join,
            data_dir,
            socket,
            socket_mode,
            socket_group,
            admin_uids,
            admin_gids,
            tls,
            timing,
            raft,
            transport,
            storage,
            api,
            journal,
            host_health,
            hooks,
            fencing,
            watchdog,
            vip,
            log_level,
            log,
            backup,
            election,
            history,
        } = new;
        let old = self;
        if *cluster != old.cluster || *node_id != old.node_id {
            return Err(ReloadRefused {
                new_node: *node_id,
                new_cluster: cluster.clone(),
                node: old.node_id,
                cluster: old.cluster.clone(),
            });
        }
        let mut in_force = old.clone();
        let (mut live, mut restart) = (Vec::new(), Vec::new());
        // Live: applied at once, and in force from now on.
        macro_rules! live {
            ($field:ident, $name:expr) => {
                if *$field != old.$field {
                    live.push($name);
                    in_force.$field = $field.clone();
                }
            };
        }
        // Restart: the old value stays in force until the next start reads the file.
        macro_rules! restart {
            ($field:ident, $name:expr) => {
                if *$field != old.$field {
                    restart.push($name);
                }
            };
        }
        live!(log_level, "log_level");
        live!(log, "log");
        live!(admin_uids, "admin_uids");
        live!(admin_gids, "admin_gids");
        live!(journal, "journal");
        live!(host_health, "host_health");
        live!(election, "election");
        live!(history, "history");
        restart!(listen, "listen");
        restart!(members, "members");
        restart!(join, "join");
        restart!(data_dir, "data_dir");
        restart!(socket, "socket");
        restart!(socket_mode, "socket_mode");
        restart!(socket_group, "socket_group");
        restart!(tls, "tls (paths)");
        restart!(raft, "raft");
        restart!(transport, "transport");
        restart!(storage, "storage");
        restart!(api, "api");
        restart!(hooks, "hooks");
        restart!(fencing, "fencing");
        restart!(watchdog, "watchdog");
        restart!(vip, "vip");
        restart!(backup, "backup");

        let TimingConfig {
            election_timeout_min_ms,
            heartbeat_interval_ms,
            clock_drift_max,
            clock_drift_alarm,
            persist_stall_max_ms,
            lease_warning_ms,
        } = timing;
        if *lease_warning_ms != old.timing.lease_warning_ms {
            live.push("timing.lease_warning_ms");
            in_force.timing.lease_warning_ms = *lease_warning_ms;
        }
        let timing_restart = *election_timeout_min_ms != old.timing.election_timeout_min_ms
            || *heartbeat_interval_ms != old.timing.heartbeat_interval_ms
            || *clock_drift_max != old.timing.clock_drift_max
            || *clock_drift_alarm != old.timing.clock_drift_alarm
            || *persist_stall_max_ms != old.timing.persist_stall_max_ms;
        if timing_restart {
            restart.push("timing");
        }
        Ok(ReloadPlan {
            live,
            restart,
            in_force,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DaemonConfig {
        let yaml = r#"
cluster: c
node_id: 1
listen: 127.0.0.1:7401
members:
  - { id: 1, address: 127.0.0.1:7401 }
  - { id: 2, address: 127.0.0.1:7402 }
  - { id: 3, address: 127.0.0.1:7403 }
tls: { cert: n.pem, key: n.key, ca_bundle: ca.pem }
"#;
        serde_yaml::from_str(yaml).expect("a minimal configuration")
    }

    #[test]
    fn an_unchanged_file_plans_nothing() {
        let c = config();
        let plan = c.reload_plan(&c).unwrap();
        assert!(plan.live.is_empty() && plan.restart.is_empty(), "{plan:?}");
        assert_eq!(plan.in_force, c);
    }

    #[test]
    fn live_fields_apply_and_restart_fields_keep_their_old_value() {
        let old = config();
        let mut new = old.clone();
        new.log_level = Some("debug".into());
        new.admin_uids = vec![1000];
        new.timing.lease_warning_ms += 1;
        new.timing.election_timeout_min_ms += 100;
        new.raft.promote_lag_max += 1;
        new.socket = "/elsewhere.sock".into();
        let plan = old.reload_plan(&new).unwrap();
        assert_eq!(
            plan.live,
            ["log_level", "admin_uids", "timing.lease_warning_ms"]
        );
        assert_eq!(plan.restart, ["socket", "raft", "timing"]);
        assert!(plan.applies("log_level") && !plan.applies("raft"));
        let f = &plan.in_force;
        assert_eq!(f.log_level.as_deref(), Some("debug"));
        assert_eq!(f.admin_uids, [1000]);
        assert_eq!(f.timing.lease_warning_ms, new.timing.lease_warning_ms);
        assert_eq!(
            f.timing.election_timeout_min_ms,
            old.timing.election_timeout_min_ms
        );
        assert_eq!(f.raft, old.raft);
        assert_eq!(f.socket, old.socket);
    }

    #[test]
    fn another_node_or_cluster_is_refused_whole() {
        let old = config();
        let mut other = old.clone();
        other.node_id = NodeId(2);
        let err = old.reload_plan(&other).unwrap_err();
        assert_eq!(
            err.to_string(),
            "is for node n2 of cluster \"c\", but this is node n1 of cluster \"c\""
        );
        let mut other = old.clone();
        other.cluster = "d".into();
        assert!(old.reload_plan(&other).is_err());
    }
}

//! Operator maintenance and reloads: `regent snapshot` / `regent compact` (a log compaction
//! now, then the database file), and SIGHUP or `POST /v1/admin/reload` (the configuration file
//! and the certificate read again; the configuration's `reload_plan` says which changed fields
//! apply now and which wait for a restart).
//!
//! Invariants: a reload is all or nothing (a file that does not load, names another node or
//! cluster, or a certificate that does not load is refused, and everything stays as it was);
//! every snapshot asked is answered once its log compaction is done or failed, or at shutdown.

use super::Driver;
use crate::api::{self, ReloadRefusal, RequestError, SnapshotAnswer, StorageFailure};
use crate::config::DaemonConfig;
use crate::disk::DiskRequest;
use regent_raft::{LogIndex, Nanos};
use regent_storage::StorageError;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// An operator's snapshot (or compaction) waiting for the log compaction through `index`.
pub(super) struct Maintenance {
    previous_index: LogIndex,
    index: LogIndex,
    file: bool,
    reply: oneshot::Sender<Result<SnapshotAnswer, RequestError>>,
}

/// The configuration in force, where it is read from, and the operators' waiting snapshots.
pub(super) struct Admin {
    live: watch::Sender<api::LiveOptions>,
    config_path: PathBuf,
    pub(super) config: DaemonConfig,
    maintenance: Vec<Maintenance>,
}

impl Admin {
    pub(super) fn new(
        live: watch::Sender<api::LiveOptions>,
        config_path: PathBuf,
        config: DaemonConfig,
    ) -> Admin {
        Admin {
            live,
            config_path,
            config,
            maintenance: Vec::new(),
        }
    }

    /// At shutdown: the snapshots still waiting are answered `shutting_down`.
    pub(super) fn refuse_all(&mut self) {
        for m in self.maintenance.drain(..) {
            let _ = m.reply.send(Err(RequestError::ShuttingDown));
        }
    }
}

/// The API settings a reload may change, from a configuration.
pub fn live_options(config: &DaemonConfig) -> api::LiveOptions {
    api::LiveOptions {
        lease_warning_ms: config.timing.lease_warning_ms,
        admin_uids: config.admin_uids.clone(),
        admin_gids: config.admin_gids.clone(),
        journal_retention: config.journal.retention(),
    }
}

impl Driver {
    /// SIGHUP or `POST /v1/admin/reload`: reads the configuration file again and reloads the
    /// certificate, key and CA bundle; then applies what may change at run time — the log
    /// filter, the host health probe, who may call admin endpoints, the lease warning, the
    /// journal's retention, the history's `keep`. Settings that need a restart are named in the
    /// answer and the log, and keep their old values.
    pub(super) fn reload(&mut self) -> Result<String, RequestError> {
        let refuse = |refusal: ReloadRefusal| {
            tracing::error!(node = %self.id, reason = %refusal, "reload refused; the old configuration and certificate stay");
            Err(RequestError::Reload(refusal))
        };
        let path = &self.admin.config_path;
        let new = match DaemonConfig::load(path) {
            Ok(new) => new,
            Err(err) => return refuse(ReloadRefusal::Config(err)),
        };
        let plan = match self.admin.config.reload_plan(&new) {
            Ok(plan) => plan,
            Err(other) => {
                return refuse(ReloadRefusal::OtherNode {
                    path: path.clone(),
                    file_node: other.new_node,
                    file_cluster: other.new_cluster,
                    node: other.node,
                    cluster: other.cluster,
                })
            }
        };
        let cert = match self.transport.reload_identity() {
            Ok(cert) => cert,
            Err(err) => return refuse(ReloadRefusal::Identity(err)),
        };
        self.status.certificate_not_after_unix = Some(cert.not_after_unix);
        let mut applied = Vec::new();
        if plan.applies("log") {
            crate::logging::set_json(new.log.format == crate::config::LogFormat::Json);
            applied.push(format!("log format {:?}", new.log.format).to_lowercase());
        }
        if plan.applies("log_level") || plan.applies("log") {
            match crate::logging::set_filter(new.log_filter()) {
                Ok(filter) => applied.push(format!("log filter {filter}")),
                // Validated with the file, so this is not expected; keep going with the rest.
                Err(err) => tracing::warn!(node = %self.id, error = %err, "log filter not changed"),
            }
        }
        let live = live_options(&plan.in_force);
        if live != live_options(&self.admin.config) {
            self.admin.live.send_replace(live);
            applied.push("admin_uids, admin_gids, timing.lease_warning_ms, journal".into());
        }
        if plan.applies("host_health") {
            // Dropping the old receiver ends the old probe's task; a new probe starts healthy.
            self.host_health = new.host_health.clone().map(crate::health::start);
            self.replica.set_host_healthy(true, self.now);
            applied.push(match &new.host_health {
                Some(_) => "host_health (a new probe, starting from healthy)".to_string(),
                None => "host_health removed (the host counts as healthy)".to_string(),
            });
        }
        if plan.applies("election") {
            self.replica.set_election(new.election.settings(), self.now);
            applied.push(format!(
                "election (role {}, priority {})",
                new.election.role.role(),
                new.election.priority
            ));
        }
        if plan.applies("history") {
            self.replica.set_history_keep(new.history.keep);
            applied.push(format!("history.keep {}", new.history.keep));
        }
        self.admin.config = plan.in_force;
        let mut text = format!(
            "certificate {} valid until {}",
            cert.serial,
            regent_transport::pki::identity::format_unix(cert.not_after_unix)
        );
        if !applied.is_empty() {
            text.push_str(&format!("; applied: {}", applied.join(", ")));
        }
        if !plan.restart.is_empty() {
            text.push_str(&format!(
                "; changed but applied only at the next restart: {}",
                plan.restart.join(", ")
            ));
            tracing::warn!(node = %self.id, fields = ?plan.restart, "reload: these settings change only at the next restart");
        }
        tracing::info!(node = %self.id, serial = %cert.serial, applied = ?applied, "reloaded");
        Ok(text)
    }

    /// `regent snapshot` / `regent compact`: compact the log through the applied index now
    /// (off the commit path: the disk thread runs it after the batch in flight), then, for
    /// `compact`, the database file.
    pub(super) fn snapshot_now(
        &mut self,
        file: bool,
        reply: oneshot::Sender<Result<SnapshotAnswer, RequestError>>,
        now: Nanos,
    ) {
        let previous_index = self.replica.core().snapshot_index();
        let mut actions = std::mem::take(&mut self.actions);
        let started = self.replica.compact_now(now, &mut actions);
        self.carry_out(&mut actions, now);
        self.actions = actions;
        let waiting = Maintenance {
            previous_index,
            index: previous_index,
            file,
            reply,
        };
        match started {
            regent_replica::CompactNow::Started(index)
            | regent_replica::CompactNow::InFlight(index) => {
                tracing::info!(node = %self.id, %index, "snapshot asked by an operator");
                self.admin
                    .maintenance
                    .push(Maintenance { index, ..waiting });
            }
            regent_replica::CompactNow::UpToDate(index) => {
                self.admin
                    .maintenance
                    .push(Maintenance { index, ..waiting });
                self.finish_maintenance(index, None);
            }
        }
    }

    /// The log compaction through `index` is done (or failed): answers the snapshots that
    /// waited for it, compacting the file first for those that asked.
    pub(super) fn finish_maintenance(
        &mut self,
        index: LogIndex,
        failed: Option<Arc<StorageError>>,
    ) {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.admin.maintenance)
            .into_iter()
            .partition(|m| m.index <= index);
        self.admin.maintenance = waiting;
        for m in done {
            if let Some(error) = &failed {
                let _ = m
                    .reply
                    .send(Err(RequestError::Storage(StorageFailure::Compaction {
                        index,
                        error: error.clone(),
                    })));
                continue;
            }
            let answer = SnapshotAnswer {
                previous_index: m.previous_index,
                index,
                file: None,
            };
            if !m.file {
                let _ = m.reply.send(Ok(answer));
                continue;
            }
            let (file_reply, file_done) = oneshot::channel();
            self.disk
                .send(DiskRequest::CompactFileNow { reply: file_reply });
            let id = self.id;
            tokio::spawn(async move {
                let result = match file_done.await {
                    Ok(Ok(file)) => {
                        tracing::info!(
                            node = %id, bytes_before = file.bytes_before, bytes_after = file.bytes_after,
                            busy = file.busy, "database file compacted by an operator"
                        );
                        Ok(SnapshotAnswer {
                            file: Some(file),
                            ..answer
                        })
                    }
                    Ok(Err(err)) => Err(RequestError::Storage(StorageFailure::FileCompaction(err))),
                    Err(_) => Err(RequestError::ShuttingDown),
                };
                let _ = m.reply.send(result);
            });
        }
    }
}

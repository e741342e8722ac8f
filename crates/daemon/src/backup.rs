//! Backups on the daemon's side: a consistent image of the state machine (a storage snapshot
//! at the applied index storage holds, opened by the disk thread) written as a backup file
//! (`regent_storage::backup`: header, checked frames, trailer with the digest) to an HTTP
//! stream (`GET /v1/admin/backup`) or, on the `backup:` schedule, to a file in `backup.dir`,
//! of which the newest `backup.keep` are kept.
//!
//! Invariants: the snapshot is read on a blocking thread of its own, never on the driver or
//! the disk thread, so a backup does not hold up writes (its read transaction pins the image
//! while writes go on); a scheduled file appears under its name only complete and synced
//! (written under a temporary name, fsynced, renamed, the directory fsynced), and pruning
//! removes only files of this node's naming pattern.

use crate::api::status::NodeStatus;
use crate::api::{BackupSource, Request, RequestError};
use crate::config::BackupConfig;
use regent_storage::{BackupHeader, BackupSummary, BackupWriter, StorageError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// The extension of backup files (`regent backup --out` may name its file as it likes).
pub const BACKUP_FILE_SUFFIX: &str = ".backup";

/// Opens a snapshot for a backup that holds everything this node had applied when asked:
/// storage holds the state machine a little behind the apply (a layer is written at most
/// about 100 ms after its first record, `replica::FLUSH_INTERVAL_NS`), so an image older than
/// that is put back and another one opened a little later, for at most `CATCH_UP_MAX` (then
/// the image is taken as it is).
pub async fn open_caught_up(
    requests: &mpsc::Sender<Request>,
    status: &watch::Receiver<NodeStatus>,
) -> Result<BackupSource, RequestError> {
    let target = status.borrow().applied_index;
    let started = std::time::Instant::now();
    loop {
        let opened = open(requests).await?;
        let index = opened.source.meta().last_included_index;
        if index >= target || started.elapsed() >= CATCH_UP_MAX {
            return Ok(opened);
        }
        drop(opened);
        tokio::time::sleep(CATCH_UP_RETRY).await;
    }
}

/// How long a backup waits for storage to hold what was applied when it was asked ...
const CATCH_UP_MAX: Duration = Duration::from_secs(3);
/// ... trying again this often.
const CATCH_UP_RETRY: Duration = Duration::from_millis(30);

/// Opens a snapshot for a backup through the driver (the disk thread answers).
pub async fn open(requests: &mpsc::Sender<Request>) -> Result<BackupSource, RequestError> {
    let (reply, answer) = oneshot::channel();
    crate::api::routes::ask_driver(requests, Request::Backup { reply }, answer).await
}

/// Reads the whole snapshot and hands the backup file's bytes to `sink`, in order. Blocking
/// (redb reads): call it on a blocking thread. Returns `None` when `sink` gave up (a client
/// that went away).
pub fn write(
    opened: BackupSource,
    mut sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<Option<BackupSummary>, StorageError> {
    let BackupSource {
        identity,
        mut source,
    } = opened;
    let meta = source.meta().clone();
    let (mut writer, head) = BackupWriter::start(BackupHeader {
        cluster_id: identity.cluster_id,
        node_id: identity.node_id,
        index: meta.last_included_index,
        term: meta.last_included_term,
        taken_unix_ms: crate::clock::unix_ms(),
    });
    if !sink(head) {
        return Ok(None);
    }
    while let Some(frame) = source.next_chunk()? {
        if !sink(writer.frame(&frame)?) {
            return Ok(None);
        }
    }
    let (trailer, summary) = writer.finish()?;
    Ok(sink(trailer).then_some(summary))
}

/// Takes backups every `interval_s` into `dir` until `shutdown` turns true.
pub async fn schedule(
    config: BackupConfig,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
    metrics: std::sync::Arc<crate::api::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let every = Duration::from_secs(config.interval_s);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let opened = match open_caught_up(&requests, &status).await {
            Ok(opened) => opened,
            Err(err) => {
                metrics.backups_failed.fetch_add(1, Relaxed);
                tracing::warn!(error = %err, "scheduled backup: the snapshot could not be opened");
                continue;
            }
        };
        let dir = config.dir.clone();
        let keep = config.keep as usize;
        match tokio::task::spawn_blocking(move || write_file(&dir, opened, keep)).await {
            Ok(Ok((path, summary))) => {
                metrics.backups_written.fetch_add(1, Relaxed);
                metrics.backup_last_unix.store(
                    regent_transport::pki::identity::unix_now().max(0) as u64,
                    Relaxed,
                );
                metrics
                    .backup_last_index
                    .store(summary.header.index.0, Relaxed);
                tracing::info!(
                    file = %path.display(),
                    index = summary.header.index.0,
                    bytes = summary.bytes,
                    "scheduled backup written"
                )
            }
            Ok(Err(err)) => {
                metrics.backups_failed.fetch_add(1, Relaxed);
                tracing::warn!(error = %err, "scheduled backup failed")
            }
            Err(err) => {
                metrics.backups_failed.fetch_add(1, Relaxed);
                tracing::warn!(error = %err, "scheduled backup task failed")
            }
        }
    }
}

/// Why a scheduled backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupFileError {
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("reading the snapshot: {0}")]
    Storage(#[from] StorageError),
}

/// Writes one backup into `dir` (complete and synced before it appears under its name) and
/// removes this node's older ones beyond the newest `keep`. Blocking.
pub fn write_file(
    dir: &Path,
    opened: BackupSource,
    keep: usize,
) -> Result<(PathBuf, BackupSummary), BackupFileError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| BackupFileError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let prefix = file_prefix(&opened.identity.cluster_id, opened.identity.node_id.0);
    let name = format!(
        "{prefix}{:013}-i{}{BACKUP_FILE_SUFFIX}",
        crate::clock::unix_ms(),
        opened.source.meta().last_included_index.0
    );
    let path = dir.join(&name);
    let staging = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .map_err(io(&staging))?;
        let mut failed = None;
        let written = write(opened, |bytes| match file.write_all(&bytes) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        if let Some(error) = failed {
            return Err(io(&staging)(error));
        }
        let summary = written.expect("a file sink never gives up without an error");
        file.sync_all().map_err(io(&staging))?;
        std::fs::rename(&staging, &path).map_err(io(&path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(summary)
    })();
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            let _ = std::fs::remove_file(&staging);
            return Err(err);
        }
    };
    prune(dir, &prefix, keep).map_err(io(dir))?;
    Ok((path, summary))
}

/// The names of one node's scheduled backups start with this; the rest is the time in
/// milliseconds (13 digits, so names sort by time) and the index.
fn file_prefix(cluster: &str, node: u64) -> String {
    format!("regent-{cluster}-n{node}-")
}

/// Removes the files of `prefix` in `dir` but the newest `keep` (by name: by time).
fn prune(dir: &Path, prefix: &str, keep: usize) -> std::io::Result<()> {
    assert!(keep >= 1, "backup.keep is validated to be at least 1");
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix) && name.ends_with(BACKUP_FILE_SUFFIX))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for name in &names[..excess] {
        std::fs::remove_file(dir.join(name))?;
        tracing::info!(file = %name, "old backup removed (backup.keep)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_files_of_this_node_only() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = file_prefix("c", 2);
        let names = [
            format!("{prefix}1700000000001-i5.backup"),
            format!("{prefix}1700000000003-i9.backup"),
            format!("{prefix}1700000000002-i7.backup"),
            "regent-c-n3-1700000000000-i1.backup".to_string(),
            format!("{prefix}notes.txt"),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        prune(dir.path(), &prefix, 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "regent-c-n2-1700000000002-i7.backup",
                "regent-c-n2-1700000000003-i9.backup",
                "regent-c-n2-notes.txt",
                "regent-c-n3-1700000000000-i1.backup",
            ]
        );
    }
}

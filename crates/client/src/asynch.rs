//! The async (tokio) front end over the one blocking core: the same `Journal`, `Kv` and
//! `Leadership`, with each call that waits on the socket run on tokio's blocking pool
//! (`spawn_blocking`) and the leadership events on a tokio channel. The protocol logic (fencing,
//! sessions, retries, the lease clock) is the core's, once. Enabled by the `tokio` feature.

use crate::journal::{Appended, Entry, Journal};
use crate::kv::{Consistency, KeyValue, Kv};
use crate::leadership::{Leadership, LeadershipEvent, LeadershipOptions};
use crate::regent_error::RegentError;
use crate::session::WriteOptions;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A blocking call's task that panicked or was cancelled: a bug, reported as the library's
/// error rather than a panic in the caller.
fn joined<T>(r: Result<Result<T, RegentError>, tokio::task::JoinError>) -> Result<T, RegentError> {
    r.unwrap_or_else(|e| {
        Err(RegentError::Unavailable {
            message: format!("the blocking call failed: {e}"),
            sent: true,
            timeout: false,
        })
    })
}

/// Starts a `Leadership` whose events come on a tokio channel (bounded by `capacity`; a host
/// that does not read them holds the library's event thread, never the lease clock).
pub fn start_leadership(
    socket: &Path,
    options: LeadershipOptions,
    capacity: usize,
) -> (Leadership, tokio::sync::mpsc::Receiver<LeadershipEvent>) {
    assert!(capacity > 0, "a channel holds at least one event");
    let (leadership, rx) = Leadership::start(socket, options);
    let (tx, out) = tokio::sync::mpsc::channel(capacity);
    std::thread::spawn(move || {
        for event in rx {
            if tx.blocking_send(event).is_err() {
                return;
            }
        }
    });
    (leadership, out)
}

/// `Journal` for async callers.
#[derive(Clone)]
pub struct AsyncJournal {
    core: Arc<Journal>,
}

impl AsyncJournal {
    pub fn new(socket: &Path, leadership: Option<Leadership>, options: WriteOptions) -> Self {
        AsyncJournal {
            core: Arc::new(Journal::new(socket, leadership, options)),
        }
    }

    pub async fn append(
        &self,
        ops: Vec<Vec<u8>>,
        expected_term: Option<u64>,
    ) -> Result<Appended, RegentError> {
        let core = self.core.clone();
        joined(tokio::task::spawn_blocking(move || core.append(&ops, expected_term)).await)
    }

    pub async fn ack(&self, index: u64) -> Result<Value, RegentError> {
        let core = self.core.clone();
        joined(tokio::task::spawn_blocking(move || core.ack(index)).await)
    }

    pub async fn checkpoint(&self, index: u64) -> Result<Value, RegentError> {
        let core = self.core.clone();
        joined(tokio::task::spawn_blocking(move || core.checkpoint(index)).await)
    }

    /// The tail's entries on a channel (bounded by `capacity`), from a thread of its own; the
    /// channel ends after a `JournalCompacted` or when the receiver is dropped.
    pub fn tail(
        &self,
        from: u64,
        capacity: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<Entry, RegentError>> {
        assert!(capacity > 0, "a channel holds at least one entry");
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        let tail = self.core.tail(from);
        std::thread::spawn(move || {
            for item in tail {
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

/// `Kv` for async callers.
#[derive(Clone)]
pub struct AsyncKv {
    core: Arc<Kv>,
}

impl AsyncKv {
    pub fn new(socket: &Path, leadership: Option<Leadership>, options: WriteOptions) -> Self {
        AsyncKv {
            core: Arc::new(Kv::new(socket, leadership, options)),
        }
    }

    pub async fn get(
        &self,
        key: Vec<u8>,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, RegentError> {
        let core = self.core.clone();
        joined(tokio::task::spawn_blocking(move || core.get(&key, consistency)).await)
    }

    pub async fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        expected_term: Option<u64>,
    ) -> Result<Value, RegentError> {
        let core = self.core.clone();
        joined(tokio::task::spawn_blocking(move || core.put(&key, &value, expected_term)).await)
    }

    pub async fn delete(
        &self,
        key: Vec<u8>,
        expected_term: Option<u64>,
    ) -> Result<Value, RegentError> {
        let core = self.core.clone();
        joined(tokio::task::spawn_blocking(move || core.delete(&key, expected_term)).await)
    }

    pub async fn range(
        &self,
        prefix: Vec<u8>,
        limit: u32,
        consistency: Consistency,
    ) -> Result<(Vec<KeyValue>, bool), RegentError> {
        let core = self.core.clone();
        joined(tokio::task::spawn_blocking(move || core.range(&prefix, limit, consistency)).await)
    }

    pub async fn txn(
        &self,
        compare: Value,
        success: Value,
        failure: Value,
        expected_term: Option<u64>,
    ) -> Result<Value, RegentError> {
        let core = self.core.clone();
        joined(
            tokio::task::spawn_blocking(move || core.txn(compare, success, failure, expected_term))
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a daemon the async front end gives the core's typed error, not a panic.
    #[tokio::test]
    async fn a_missing_daemon_is_unavailable_and_nothing_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let kv = AsyncKv::new(&dir.path().join("none.sock"), None, WriteOptions::default());
        let err = kv
            .get(b"k".to_vec(), Consistency::Linearizable)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegentError::Unavailable { sent: false, .. }),
            "{err:?}"
        );
    }
}

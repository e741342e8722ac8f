//! The driver's end: requests still queued or waiting are answered `shutting_down`, the batch
//! on the disk is let finish (bounded) so that what was promised is durable, the messages that
//! waited for it leave, the state machine's last layer is written durably (bounded), then the
//! links and the disk thread close.
//!
//! Invariant: every request the driver took is answered before it returns.

use super::{Driver, Pending};
use crate::api::{Request, RequestError};
use crate::disk::{DiskDone, DiskRequest};
use std::time::Duration;

/// How long the batch on the disk may take to finish at shutdown.
const FLUSH_MAX: Duration = Duration::from_secs(5);

impl Driver {
    pub(super) async fn stop(mut self) -> Result<(), super::DriverError> {
        // Stop taking requests; answer those waiting.
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            let refused = RequestError::ShuttingDown;
            match request {
                Request::Propose { reply, .. } => drop(reply.send(Err(refused))),
                Request::Maintenance { reply, .. } => drop(reply.send(Err(refused))),
                Request::Read { reply, .. } => drop(reply.send(Err(refused))),
                Request::Transfer { reply, .. } => drop(reply.send(Err(refused))),
                Request::Members { reply, .. } => drop(reply.send(Err(refused))),
                Request::Snapshot { reply, .. } => drop(reply.send(Err(refused))),
                Request::Backup { reply } => drop(reply.send(Err(refused))),
                Request::History { reply, .. } => drop(reply.send(Err(refused))),
                Request::Reload { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(refused));
                    }
                }
                // Stopping: no promotion matters any more.
                Request::Promoted { .. } | Request::Demoted { .. } => {}
            }
        }
        // Flush: let the batch on the disk finish (bounded), so what was promised is durable.
        if self.fatal.is_none() && self.replica.is_persisting() {
            let wait = tokio::time::timeout(FLUSH_MAX, async {
                while let Some(done) = self.disk_done.recv().await {
                    let persisted = matches!(done, DiskDone::Persisted { .. });
                    // The last turn's time: nothing is timed any more.
                    self.on_disk(done, self.now);
                    if persisted {
                        break;
                    }
                }
            });
            let _ = wait.await;
            // Carry out what the batch released before the links close: the messages that
            // waited for durability, the answers of what it let apply, a state layer.
            let mut actions = std::mem::take(&mut self.actions);
            self.replica.poll(&mut actions);
            self.carry_out(&mut actions, self.now);
            self.actions = actions;
        }
        // The state machine's last layer, written durably, so that a restart starts from
        // everything applied instead of applying the log again.
        if self.fatal.is_none() {
            let wait = tokio::time::timeout(FLUSH_MAX, async {
                loop {
                    if !self.replica.is_persisting_state() {
                        match self.replica.final_state_layer() {
                            Some(flush) => self.disk.send(DiskRequest::PersistState(flush)),
                            None => break,
                        }
                    }
                    let Some(done) = self.disk_done.recv().await else {
                        break;
                    };
                    let layer = matches!(done, DiskDone::StatePersisted { .. });
                    self.on_disk(done, self.now);
                    if layer && self.fatal.is_some() {
                        break;
                    }
                }
            });
            let _ = wait.await;
        }
        for (_, pending) in std::mem::take(&mut self.pending) {
            let refused = RequestError::ShuttingDown;
            match pending {
                Pending::Write { reply, .. } => drop(reply.send(Err(refused))),
                Pending::Read { reply, .. } => drop(reply.send(Err(refused))),
                Pending::Switchover { reply } => drop(reply.send(Err(refused))),
                // The receiving task sees its answer dropped and ends the stream.
                Pending::Chunk { reply } => drop(reply),
            }
        }
        self.admin.refuse_all();
        self.transport.shutdown().await;
        let disk = self.disk;
        let _ = tokio::task::spawn_blocking(move || disk.stop()).await;
        match self.fatal {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

//! The Raft consensus core: a pure, deterministic state machine (sans-I/O).
//!
//! Nothing in this module reads a clock, touches a file or socket, spawns a task or draws
//! randomness of its own: time and a seeded random generator are inputs. Drive a
//! [`RaftNode`] with `tick`, `step` and `propose`; carry out each [`Ready`] as its
//! documentation says; then `advance`.

mod config;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod quorum;
mod ready;
mod rng;
#[cfg(test)]
mod tests;
mod types;

pub use config::{Config, ConfigError};
pub use membership::{ConfChange, ConfChangeError};
pub use message::{ConflictHint, Message, MessageBody};
pub use node::{
    ProposeError, RaftNode, ReadError, ReadState, RestoredState, SnapshotRequest, Status,
    StepError, TransferCampaign, TransferError,
};
pub use ready::{Batch, Ready, SoftState};
pub use rng::{RaftRng, SplitMix64};
pub use types::{Entry, EntryPayload, HardState, LogIndex, Membership, Nanos, NodeId, Role, Term};

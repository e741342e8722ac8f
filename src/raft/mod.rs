//! The Raft consensus core: a pure, deterministic state machine (sans-I/O).
//!
//! Nothing in this module reads a clock, touches a file or socket, spawns a task or draws
//! randomness of its own: time and a seeded random generator are inputs.

pub mod message;
pub mod types;

pub use message::{ConflictHint, Message, MessageBody};
pub use types::{Entry, EntryPayload, HardState, LogIndex, Membership, Nanos, NodeId, Role, Term};

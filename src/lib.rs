//! regent: a sidecar daemon that makes a single-master process highly available.
//!
//! Layers, each a module; dependencies point down only:
//! `cli` → `daemon` → `api` → `config`, `replica`, `transport`, `pki` → `storage` → `raft`.
//! `config` reads the daemon's YAML file and turns it into each layer's own configuration.
//! `raft` is the pure consensus core: no I/O, no clock, no runtime, no randomness of its own.
//! `sim` runs the real core in a deterministic, seeded cluster simulator.

pub mod api;
pub mod chaos;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod pki;
pub mod raft;
pub mod replica;
pub mod sim;
pub mod storage;
pub mod transport;

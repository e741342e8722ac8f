//! regent's command line, over the layer crates (see the workspace in Cargo.toml):
//! `regent-raft` (the pure core) ← `regent-storage` ← `regent-transport` (+ PKI) ←
//! `regent-replica` ← `regent-daemon` (+ API, configuration) ← this crate. The harnesses
//! (`regent-sim`, `regent-chaos`, `regent-bench`) are linked in with the `harness` feature.

pub mod cli;

//! regent's benchmarks: commands that print figures, never timed assertions.
//!
//! `storage` (durable commits, snapshots), `transport` (two QUIC nodes), `cluster` (three real
//! `regent run` processes under a closed-loop load) and `peers` (the same load against etcd and
//! ZooKeeper, side by side). A harness: it depends on the product, never the other way round.

pub mod cluster;
mod cpu;
pub mod load;
pub mod peers;
pub mod storage;
pub mod transport;

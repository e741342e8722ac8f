//! The daemon end to end: real `regent run` processes on loopback, real QUIC with mutual TLS,
//! real redb files, made with `regent admin cluster init`. One test binary, so the support
//! module is shared without dead code.

mod api;
mod backup;
mod bench;
mod clock;
mod cluster;
mod forward;
mod history;
mod hooks;
mod journal;
mod maintenance;
mod operations;
mod roles;
mod support;
mod unmodified;
mod versions;

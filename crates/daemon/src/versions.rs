//! The versions this daemon speaks (docs/operations.md, "Rolling upgrade and downgrade"): its
//! build, the wire and command versions `VERSION_MIN..=VERSION_MAX` (one number: the ALPN
//! protocol `regent/<v>` and the newest records the leader may put in the log), and the
//! test-only switch that makes a node speak as the previous build did.
//!
//! Invariant: the transport's ALPN range and the replica's command range are the same numbers
//! (checked at compile time below), so a link's negotiated protocol is the version the replica
//! counts for that voter.

use regent_replica::{VERSION_MAX, VERSION_MIN};
use regent_transport::tls;

const _: () = assert!(tls::WIRE_VERSION_MIN == VERSION_MIN && tls::WIRE_VERSION_MAX == VERSION_MAX);

/// The build's version (the package's).
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Test only: the newest version this node offers and speaks, below `VERSION_MAX` to make it
/// behave as a node of the previous build (offers only `regent/2`, sends no clock stamps and
/// opens no call streams, never proposes the cluster version, refuses version-3 requests).
/// Never set it in production.
pub const TEST_WIRE_VERSION_MAX_ENV: &str = "REGENT_TEST_WIRE_VERSION_MAX";

#[derive(Debug, thiserror::Error)]
#[error("{TEST_WIRE_VERSION_MAX_ENV}={value}: not a version within {VERSION_MIN}..={VERSION_MAX}")]
pub struct VersionEnvError {
    value: String,
}

/// The newest version this node speaks: `VERSION_MAX`, or the test switch's value.
pub fn version_max() -> Result<u8, VersionEnvError> {
    match std::env::var(TEST_WIRE_VERSION_MAX_ENV) {
        Err(_) => Ok(VERSION_MAX),
        Ok(value) => match value.trim().parse::<u8>() {
            Ok(v) if (VERSION_MIN..=VERSION_MAX).contains(&v) => Ok(v),
            _ => Err(VersionEnvError { value }),
        },
    }
}

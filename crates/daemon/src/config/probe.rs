//! The host health probe's settings (the `host_health` section): how regent checks that the
//! master beside it is alive. The probe itself runs in `daemon::health`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// How to probe the host (the `host_health:` section of the configuration).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// A command run with `sh -c`; exit status 0 is healthy.
    #[serde(default)]
    pub exec: Option<String>,
    /// `HOST:PORT/PATH` fetched with HTTP/1.1 GET; a 2xx answer is healthy.
    #[serde(default)]
    pub http: Option<String>,
    /// `HOST:PORT` that must accept a TCP connection.
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures before the host is unhealthy.
    #[serde(default = "defaults::failures")]
    pub failures: u32,
    /// Consecutive successes before it is healthy again.
    #[serde(default = "defaults::successes")]
    pub successes: u32,
}

mod defaults {
    pub fn interval_ms() -> u64 {
        1000
    }
    pub fn timeout_ms() -> u64 {
        500
    }
    pub fn failures() -> u32 {
        3
    }
    pub fn successes() -> u32 {
        2
    }
}

impl ProbeConfig {
    /// Exactly one kind of probe, and sane timings; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let kinds = [self.exec.is_some(), self.http.is_some(), self.tcp.is_some()];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err("host_health: give exactly one of exec, http, tcp".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return Err("host_health.timeout_ms: must be within 1..=interval_ms".into());
        }
        if self.failures == 0 || self.successes == 0 {
            return Err("host_health.failures: failures and successes must be at least 1".into());
        }
        if let Some(http) = &self.http {
            parse_http_target(http).map_err(|e| format!("host_health.http: {e}"))?;
        }
        Ok(())
    }
}

pub fn parse_http_target(target: &str) -> Result<(String, String), String> {
    let target = target.strip_prefix("http://").unwrap_or(target);
    let (host, path) = match target.split_once('/') {
        Some((host, path)) => (host, format!("/{path}")),
        None => (target, "/".to_string()),
    };
    if !host.contains(':') {
        return Err(format!("{host:?} needs a port (HOST:PORT/PATH)"));
    }
    Ok((host.to_string(), path))
}

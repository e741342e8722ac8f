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

/// What is wrong with a `host_health` section. `Display` names the field by its YAML path,
/// then the rule: `host_health.timeout_ms: must be within 1..=interval_ms`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {rule}", .rule.field())]
pub struct ProbeError {
    pub rule: ProbeRule,
}

impl ProbeError {
    /// The YAML path of the field at fault.
    pub fn field(&self) -> &'static str {
        self.rule.field()
    }
}

/// The rule a `host_health` section breaks; `Display` says the rule without the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeRule {
    #[error("give exactly one of exec, http, tcp")]
    OneKind,
    #[error("must be within 1..=interval_ms")]
    TimeoutWithinInterval { timeout_ms: u64, interval_ms: u64 },
    #[error("failures and successes must be at least 1")]
    ThresholdsAtLeastOne { failures: u32, successes: u32 },
    #[error("{0}")]
    HttpTarget(MissingPort),
}

impl ProbeRule {
    /// The YAML path of the field the rule is about.
    pub fn field(&self) -> &'static str {
        match self {
            ProbeRule::OneKind => "host_health",
            ProbeRule::TimeoutWithinInterval { .. } => "host_health.timeout_ms",
            ProbeRule::ThresholdsAtLeastOne { .. } => "host_health.failures",
            ProbeRule::HttpTarget(_) => "host_health.http",
        }
    }
}

/// An HTTP probe target without a port.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{host:?} needs a port (HOST:PORT/PATH)")]
pub struct MissingPort {
    pub host: String,
}

impl ProbeConfig {
    /// Exactly one kind of probe, and sane timings; the error names the field.
    pub fn check(&self) -> Result<(), ProbeError> {
        let broken = |rule| Err(ProbeError { rule });
        let kinds = [self.exec.is_some(), self.http.is_some(), self.tcp.is_some()];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return broken(ProbeRule::OneKind);
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return broken(ProbeRule::TimeoutWithinInterval {
                timeout_ms: self.timeout_ms,
                interval_ms: self.interval_ms,
            });
        }
        if self.failures == 0 || self.successes == 0 {
            return broken(ProbeRule::ThresholdsAtLeastOne {
                failures: self.failures,
                successes: self.successes,
            });
        }
        if let Some(http) = &self.http {
            if let Err(missing) = HttpTarget::parse(http) {
                return broken(ProbeRule::HttpTarget(missing));
            }
        }
        Ok(())
    }
}

/// Where an HTTP probe connects (`HOST:PORT`) and what it asks for (`/PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub path: String,
}

impl HttpTarget {
    /// Parses `[http://]HOST:PORT[/PATH]`; the path defaults to `/`.
    pub fn parse(target: &str) -> Result<HttpTarget, MissingPort> {
        let target = target.strip_prefix("http://").unwrap_or(target);
        let (host, path) = match target.split_once('/') {
            Some((host, path)) => (host, format!("/{path}")),
            None => (target, "/".to_string()),
        };
        if !host.contains(':') {
            return Err(MissingPort {
                host: host.to_string(),
            });
        }
        Ok(HttpTarget {
            host: host.to_string(),
            path,
        })
    }
}

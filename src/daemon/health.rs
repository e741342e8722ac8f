//! The host health probe: is the master beside regent alive? An exec command, an HTTP GET or a
//! TCP connect, every `interval`, each bounded by `timeout`. The host turns unhealthy after
//! `failures` consecutive failures and healthy again after `successes` consecutive successes
//! (hysteresis, as HDFS's ZKFC and Patroni do). A regent whose host is unhealthy does not
//! campaign, and a leader whose host turns unhealthy hands leadership over.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How to probe the host (the `host_health:` section of the configuration).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
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
            return Err("host_health.timeout_ms must be within 1..=interval_ms".into());
        }
        if self.failures == 0 || self.successes == 0 {
            return Err("host_health.failures and .successes must be at least 1".into());
        }
        if let Some(http) = &self.http {
            parse_http_target(http).map_err(|e| format!("host_health.http: {e}"))?;
        }
        Ok(())
    }
}

fn parse_http_target(target: &str) -> Result<(String, String), String> {
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

/// One probe; `Err` says why it failed.
async fn probe_once(config: &ProbeConfig) -> Result<(), String> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let attempt = async {
        if let Some(command) = &config.exec {
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("running {command:?}: {e}"))?;
            return if status.success() {
                Ok(())
            } else {
                Err(format!("{command:?} exited with {status}"))
            };
        }
        if let Some(addr) = config.tcp {
            return tokio::net::TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| format!("connect {addr}: {e}"));
        }
        if let Some(http) = &config.http {
            let (host, path) = parse_http_target(http)?;
            let mut stream = tokio::net::TcpStream::connect(&host)
                .await
                .map_err(|e| format!("connect {host}: {e}"))?;
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut head = [0u8; 32];
            let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
            let line = String::from_utf8_lossy(&head[..n]);
            let code = line.split(' ').nth(1).unwrap_or("");
            return if code.starts_with('2') {
                Ok(())
            } else {
                Err(format!(
                    "GET {http}: {}",
                    line.lines().next().unwrap_or("no answer")
                ))
            };
        }
        Err("no probe configured".into())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", config.timeout_ms)),
    }
}

/// Runs the probe forever, publishing the host's health (healthy at start: a regent must not
/// refuse to lead before its first verdict when the host was never probed).
pub fn start(config: ProbeConfig) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(true);
    tokio::spawn(async move {
        let mut failures = 0u32;
        let mut successes = 0u32;
        let mut interval = tokio::time::interval(Duration::from_millis(config.interval_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let healthy = *tx.borrow();
            match probe_once(&config).await {
                Ok(()) => {
                    failures = 0;
                    successes += 1;
                    if !healthy && successes >= config.successes {
                        tracing::info!("host healthy again");
                        let _ = tx.send(true);
                    }
                }
                Err(reason) => {
                    successes = 0;
                    failures += 1;
                    if healthy && failures >= config.failures {
                        tracing::warn!(%reason, failures, "host unhealthy");
                        let _ = tx.send(false);
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(exec: &str) -> ProbeConfig {
        ProbeConfig {
            exec: Some(exec.into()),
            http: None,
            tcp: None,
            interval_ms: 50,
            timeout_ms: 40,
            failures: 2,
            successes: 2,
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(probe("true").validate().is_ok());
        let mut two = probe("true");
        two.tcp = Some("127.0.0.1:1".parse().unwrap());
        assert!(two.validate().unwrap_err().contains("exactly one"));
        let mut slow = probe("true");
        slow.timeout_ms = 60;
        assert!(slow.validate().unwrap_err().contains("timeout_ms"));
        let http = ProbeConfig {
            exec: None,
            http: Some("localhost/health".into()),
            ..probe("x")
        };
        assert!(http.validate().unwrap_err().contains("port"));
    }

    #[tokio::test]
    async fn a_failing_probe_turns_unhealthy_after_the_threshold_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("down");
        let config = probe(&format!("test ! -e {}", flag.display()));
        assert!(probe_once(&config).await.is_ok());
        std::fs::write(&flag, b"").unwrap();
        assert!(probe_once(&config).await.is_err());
        let mut health = start(config);
        tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| !h))
            .await
            .expect("unhealthy within 5 s")
            .unwrap();
        std::fs::remove_file(&flag).unwrap();
        tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| *h))
            .await
            .expect("healthy again within 5 s")
            .unwrap();
        let timeout = probe("sleep 5");
        let err = probe_once(&ProbeConfig {
            timeout_ms: 50,
            ..timeout
        })
        .await
        .unwrap_err();
        assert!(err.contains("within 50 ms"), "{err}");
    }
}

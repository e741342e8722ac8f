//! The host health probe: is the master beside regent alive? An exec command, an HTTP GET or a
//! TCP connect, every `interval`, each bounded by `timeout`. The host turns unhealthy after
//! `failures` consecutive failures and healthy again after `successes` consecutive successes
//! (hysteresis, as HDFS's ZKFC and Patroni do). A regent whose host is unhealthy does not
//! campaign, and a leader whose host turns unhealthy hands leadership over.

use crate::config::parse_http_target;
pub use crate::config::ProbeConfig;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

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

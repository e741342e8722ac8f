//! The host health probe: is the master beside regent alive? An exec command, an HTTP GET or a
//! TCP connect, every `interval`, each bounded by `timeout`. The host turns unhealthy after
//! `failures` consecutive failures and healthy again after `successes` consecutive successes
//! (hysteresis, as HDFS's ZKFC and Patroni do). A regent whose host is unhealthy does not
//! campaign, and a leader whose host turns unhealthy hands leadership over.

use crate::config::HttpTarget;
pub use crate::config::ProbeConfig;
use regent_client::Conn;
use std::time::Duration;
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
            let HttpTarget { host, path } = HttpTarget::parse(http).map_err(|e| e.to_string())?;
            let target = http.clone();
            // The client is blocking, so it runs on tokio's blocking pool. When the timeout
            // below gives up on it first, the thread still ends on its own: its connect, reads
            // and writes are each bounded by the same timeout.
            return tokio::task::spawn_blocking(move || probe_http(&target, &host, &path, timeout))
                .await
                .map_err(|e| format!("GET {http}: the probe's thread failed: {e}"))?;
        }
        Err("no probe configured".into())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", config.timeout_ms)),
    }
}

/// One HTTP GET of `path` on `host` (`HOST:PORT`), `target` as configured: healthy on a 2xx
/// status. Only the answer's head is read, since the status decides and a body could be large
/// or endless.
fn probe_http(target: &str, host: &str, path: &str, timeout: Duration) -> Result<(), String> {
    let mut conn = Conn::tcp(host, Some(timeout)).map_err(|e| format!("connect {host}: {e}"))?;
    conn.send_closing("GET", path, b"")
        .map_err(|e| format!("GET {target}: {e}"))?;
    let status = conn.read_head().map_err(|e| format!("GET {target}: {e}"))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {target}: {}", conn.status_line()))
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
    use crate::config::{MissingPort, ProbeRule};

    /// An exec probe with a valid configuration. Its timeout is long on purpose: no test here
    /// may fail because a loaded machine ran a probe slowly. A verdict comes from the command's
    /// exit status, or (in the one test of the bound) from a clock the test controls.
    fn probe(exec: &str) -> ProbeConfig {
        ProbeConfig {
            exec: Some(exec.into()),
            http: None,
            tcp: None,
            interval_ms: 60_000,
            timeout_ms: 30_000,
            failures: 2,
            successes: 2,
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(probe("true").check(), Ok(()));
        let mut two = probe("true");
        two.tcp = Some("127.0.0.1:1".parse().unwrap());
        let err = two.check().unwrap_err();
        assert_eq!(err.rule, ProbeRule::OneKind);
        assert_eq!(
            err.to_string(),
            "host_health: give exactly one of exec, http, tcp"
        );
        let mut slow = probe("true");
        slow.timeout_ms = slow.interval_ms + 1;
        let err = slow.check().unwrap_err();
        assert_eq!(
            err.rule,
            ProbeRule::TimeoutWithinInterval {
                timeout_ms: 60_001,
                interval_ms: 60_000
            }
        );
        assert_eq!(err.field(), "host_health.timeout_ms");
        assert_eq!(
            err.to_string(),
            "host_health.timeout_ms: must be within 1..=interval_ms"
        );
        let http = ProbeConfig {
            exec: None,
            http: Some("localhost/health".into()),
            ..probe("x")
        };
        let err = http.check().unwrap_err();
        assert_eq!(
            err.rule,
            ProbeRule::HttpTarget(MissingPort {
                host: "localhost".into()
            })
        );
        assert_eq!(
            err.to_string(),
            "host_health.http: \"localhost\" needs a port (HOST:PORT/PATH)"
        );
    }

    /// A one-connection HTTP server on loopback that reads a request's head and writes
    /// `answer`; returns the probe's target for it.
    fn serve_once(answer: &'static [u8]) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = format!("http://{}/health", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8];
            while !request.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            assert!(request.starts_with(b"GET /health HTTP/1.1\r\n"));
            stream.write_all(answer).unwrap();
        });
        target
    }

    #[tokio::test]
    async fn an_http_probe_judges_by_the_status_line() {
        let http = |target: String| ProbeConfig {
            exec: None,
            http: Some(target),
            ..probe("x")
        };
        let ok = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(probe_once(&http(ok)).await, Ok(()));
        let down = serve_once(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        let err = probe_once(&http(down.clone())).await.unwrap_err();
        assert_eq!(err, format!("GET {down}: HTTP/1.1 503 Service Unavailable"));
        let garbage = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n");
        let err = probe_once(&http(garbage)).await.unwrap_err();
        assert!(err.contains("no status line"), "{err}");
    }

    #[tokio::test]
    async fn a_failing_probe_turns_unhealthy_after_the_threshold_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("down");
        let config = ProbeConfig {
            // A quick pace, so that the thresholds are crossed soon. It is no bound: a probe
            // slower than the interval delays the next tick, and the 30 s timeout never
            // decides, since the command exits at once either way. (`check` would refuse a
            // timeout longer than the interval in a configuration; `start` does not need it.)
            interval_ms: 20,
            ..probe(&format!("test ! -e '{}'", flag.display()))
        };
        assert_eq!(probe_once(&config).await, Ok(()));
        std::fs::write(&flag, b"").unwrap();
        let err = probe_once(&config).await.unwrap_err();
        assert!(err.contains("exited with"), "{err}");
        let mut health = start(config);
        tokio::time::timeout(Duration::from_secs(60), health.wait_for(|h| !h))
            .await
            .expect("unhealthy within 60 s")
            .unwrap();
        std::fs::remove_file(&flag).unwrap();
        tokio::time::timeout(Duration::from_secs(60), health.wait_for(|h| *h))
            .await
            .expect("healthy again within 60 s")
            .unwrap();
    }

    /// The bound, on a paused clock: the command never exits, so the runtime idles and tokio
    /// advances its clock to the timeout's deadline. However slowly the machine runs, the
    /// command cannot have answered first. (The command is killed when the probe gives up.)
    #[tokio::test(start_paused = true)]
    async fn a_probe_without_an_answer_in_time_fails() {
        let config = ProbeConfig {
            timeout_ms: 50,
            ..probe("exec sleep 3600")
        };
        let err = probe_once(&config).await.unwrap_err();
        assert_eq!(err, "no answer within 50 ms");
    }
}

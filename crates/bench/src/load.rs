//! The closed-loop write load shared by `regent bench cluster` and `regent bench peers`: the
//! same threads, the same keys, the same clock and the same percentiles for every system
//! measured, so that only the system under test differs.
//!
//! Invariant: a latency is recorded only for a write the system acknowledged within the run
//! (answers after its end are dropped, and the rate is over the run's length, so a client stuck
//! past the end cannot stretch it); a refused or failed write is counted apart and never enters
//! the percentiles.

use anyhow::Context;
use regent_client::Conn;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes of every written value.
pub(super) const VALUE_BYTES: usize = 256;

/// One client's connection to the system under test.
pub(super) trait Writer: Send {
    /// Writes `value` under `key` (a new key each call); `Ok(true)` once acknowledged,
    /// `Ok(false)` when the system refused it (not the leader, busy).
    fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<bool>;
}

/// The outcome of one load run.
pub(super) struct LoadResult {
    pub clients: usize,
    pub writes_per_sec: f64,
    /// Acknowledged writes' latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Writes refused or failed (retried after a short pause).
    pub refused: u64,
    /// The first failure, to say what went wrong.
    pub first_error: Option<String>,
}

impl LoadResult {
    /// The `p` quantile (0..=1) in milliseconds; NaN without samples.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let n = self.latencies.len();
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.latencies[i].as_secs_f64() * 1e3
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "clients": self.clients,
            "writes_per_sec": self.writes_per_sec.round(),
            "p50_ms": round3(self.percentile_ms(0.50)),
            "p99_ms": round3(self.percentile_ms(0.99)),
            "p999_ms": round3(self.percentile_ms(0.999)),
        })
    }
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `clients` closed-loop writers for `seconds`, each on its own connection from `open`,
/// writing `VALUE_BYTES`-byte values under unique keys `{prefix}-{client}-{n}`.
pub(super) fn closed_loop<F>(open: F, clients: usize, seconds: f64, prefix: &str) -> LoadResult
where
    F: Fn() -> anyhow::Result<Box<dyn Writer>> + Sync,
{
    let stop = AtomicBool::new(false);
    let value = vec![b'v'; VALUE_BYTES];
    let (open, stop_ref, value_ref) = (&open, &stop, &value);
    let mut elapsed = Duration::ZERO;
    let outcomes: Vec<(Vec<Duration>, u64, Option<String>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(4096);
                    let mut refused = 0u64;
                    let mut first_error = None;
                    let mut conn = None;
                    let mut i = 0u64;
                    while !stop_ref.load(Ordering::Relaxed) {
                        let writer = match &mut conn {
                            Some(w) => w,
                            None => match open() {
                                Ok(w) => conn.insert(w),
                                Err(err) => {
                                    refused += 1;
                                    first_error.get_or_insert(format!("connecting: {err:#}"));
                                    std::thread::sleep(Duration::from_millis(10));
                                    continue;
                                }
                            },
                        };
                        i += 1;
                        let key = format!("{prefix}-{c}-{i}");
                        let t = Instant::now();
                        let outcome = writer.put(&key, value_ref);
                        if stop_ref.load(Ordering::Relaxed) {
                            // Answered after the run's end: not part of the run.
                            break;
                        }
                        match outcome {
                            Ok(true) => latencies.push(t.elapsed()),
                            Ok(false) => {
                                refused += 1;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            Err(err) => {
                                refused += 1;
                                first_error.get_or_insert(format!(
                                    "after {:.1} ms: {err:#}",
                                    t.elapsed().as_secs_f64() * 1e3
                                ));
                                conn = None;
                            }
                        }
                    }
                    (latencies, refused, first_error)
                })
            })
            .collect();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop_ref.store(true, Ordering::Relaxed);
        elapsed = started.elapsed();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or((Vec::new(), 0, None)))
            .collect()
    });
    let elapsed = elapsed.as_secs_f64();
    let refused = outcomes.iter().map(|(_, r, _)| r).sum();
    let first_error = outcomes.iter().find_map(|(_, _, e)| e.clone());
    let mut latencies: Vec<Duration> = outcomes.into_iter().flat_map(|(l, _, _)| l).collect();
    latencies.sort_unstable();
    LoadResult {
        clients,
        writes_per_sec: latencies.len() as f64 / elapsed,
        latencies,
        refused,
        first_error,
    }
}

/// How long a load client waits for one answer before it counts the write as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A kept-alive HTTP/1.1 connection to a Unix socket (regent's host API).
pub(super) fn unix(socket: &Path) -> anyhow::Result<Conn<UnixStream>> {
    Conn::unix(socket, Some(ANSWER_TIMEOUT))
        .with_context(|| format!("connecting to {}", socket.display()))
}

/// A kept-alive HTTP/1.1 connection to a TCP address (etcd's gateway).
pub(super) fn tcp(address: &str) -> anyhow::Result<Conn<TcpStream>> {
    Conn::tcp(address, Some(ANSWER_TIMEOUT)).with_context(|| format!("connecting to {address}"))
}

/// regent: `PUT /v1/kv/{key}` on the leader's host socket.
pub(super) struct RegentWriter {
    conn: Conn<UnixStream>,
    /// The request path, rebuilt in place for each write.
    path: String,
}

impl RegentWriter {
    pub fn connect(socket: &Path) -> anyhow::Result<RegentWriter> {
        Ok(RegentWriter {
            conn: unix(socket)?,
            path: String::new(),
        })
    }
}

impl Writer for RegentWriter {
    fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        self.path.clear();
        self.path.push_str("/v1/kv/");
        self.path.push_str(key);
        Ok(self.conn.call("PUT", &self.path, value)? == 200)
    }
}

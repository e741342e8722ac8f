//! The closed-loop write load shared by `regent bench cluster` and `regent bench peers`: the
//! same threads, the same keys, the same clock and the same percentiles for every system
//! measured, so that only the system under test differs.
//!
//! Invariant: a latency is recorded only for a write the system acknowledged within the run
//! (answers after its end are dropped, and the rate is over the run's length, so a client stuck
//! past the end cannot stretch it); a refused or failed write is counted apart and never enters
//! the percentiles. A `--writes N` run counts exactly the first N acknowledgements (`Quota`).

use crate::cpu::{self, CpuSample};
use anyhow::Context;
use regent_client::Conn;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

/// Bytes of every written value.
pub(super) const VALUE_BYTES: usize = 256;

/// One client's connection to the system under test.
pub(super) trait Writer: Send {
    /// Writes `value` under `key` (a new key each call); `Ok(true)` once acknowledged,
    /// `Ok(false)` when the system refused it (not the leader, busy).
    fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<bool>;
}

/// How long a write run lasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum RunLength {
    /// For this many seconds.
    Seconds(f64),
    /// Until this many writes are acknowledged (or `WRITES_RUN_LIMIT` has passed).
    Writes(u64),
}

/// The longest a `--writes N` run may take: it ends then with the writes acknowledged so far.
pub(super) const WRITES_RUN_LIMIT: Duration = Duration::from_secs(3600);

/// The largest `--writes` accepted (the latencies of a run are kept in memory, 16 bytes each).
pub(super) const WRITES_MAX: u64 = 10_000_000;

impl RunLength {
    /// `--writes N` when given, else `--seconds`.
    pub fn from_args(seconds: f64, writes: Option<u64>) -> RunLength {
        writes.map_or(RunLength::Seconds(seconds), RunLength::Writes)
    }

    /// For the heading of a table: "5 s per run", "100000 writes per run".
    pub fn describe(&self) -> String {
        match self {
            RunLength::Seconds(s) => format!("{s} s per run"),
            RunLength::Writes(n) => format!("{n} acknowledged writes per run"),
        }
    }
}

/// Checks `--writes`.
pub(super) fn validate_writes(writes: Option<u64>) -> anyhow::Result<()> {
    match writes {
        Some(n) if n == 0 || n > WRITES_MAX => {
            anyhow::bail!("--writes must be within 1..={WRITES_MAX}")
        }
        _ => Ok(()),
    }
}

/// The count of acknowledged writes of a run of `RunLength::Writes(target)`, shared by its
/// clients: exactly the first `target` acknowledgements are counted, the one that reaches
/// `target` ends the run, any later one is dropped (answered after the run's end).
pub(super) struct Quota {
    target: u64,
    acked: AtomicU64,
    /// When the first `window` writes were acknowledged, and when the last `window` began
    /// (the `target − window`-th acknowledgement): the rates at the run's two ends.
    window: u64,
    marks: std::sync::Mutex<[Option<Instant>; 2]>,
}

/// The writes at each end of a `--writes` run whose rates are compared: 100,000, or half the
/// run when it is shorter than 200,000.
pub(super) const WINDOW_WRITES: u64 = 100_000;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ack {
    /// Counted; `last` when it was the run's last.
    Counted { last: bool },
    /// After the run's end: not counted.
    Over,
}

impl Quota {
    pub fn new(target: u64) -> Quota {
        Quota {
            target,
            acked: AtomicU64::new(0),
            window: WINDOW_WRITES.min(target / 2),
            marks: std::sync::Mutex::new([None; 2]),
        }
    }

    /// One more acknowledged write.
    pub fn ack(&self) -> Ack {
        let n = self.acked.fetch_add(1, Ordering::Relaxed) + 1;
        // (With a run of twice the window, one acknowledgement is both marks.)
        let ends = [n == self.window, n == self.target - self.window];
        if self.window > 0 && ends.contains(&true) {
            let now = Instant::now();
            let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
            for (mark, end) in marks.iter_mut().zip(ends) {
                if end {
                    *mark = Some(now);
                }
            }
        }
        match n.cmp(&self.target) {
            std::cmp::Ordering::Less => Ack::Counted { last: false },
            std::cmp::Ordering::Equal => Ack::Counted { last: true },
            std::cmp::Ordering::Greater => Ack::Over,
        }
    }
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
    /// The run's length: from the start to the stop (time-based), or to the last counted
    /// acknowledgement (`RunLength::Writes`).
    pub elapsed: Duration,
    /// What was asked.
    pub length: RunLength,
    /// CPU time (user + system) of the system's server processes over the run, in
    /// microseconds per acknowledged write; `None` when not measured.
    pub cpu_us_per_write: Option<f64>,
    /// A `--writes` run: the rate of its first and of its last `.0` writes (does the path
    /// slow down as the data grows, across compactions?).
    pub ends: Option<(u64, f64, f64)>,
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

    /// The largest latency in milliseconds; NaN without samples.
    pub fn max_ms(&self) -> f64 {
        self.latencies
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    /// Acknowledged writes (counted in the run).
    pub fn writes(&self) -> u64 {
        self.latencies.len() as u64
    }

    /// A `RunLength::Writes` run that reached `WRITES_RUN_LIMIT` before its count.
    pub fn cut_short(&self) -> Option<u64> {
        match self.length {
            RunLength::Writes(n) if self.writes() < n => Some(n),
            _ => None,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "clients": self.clients,
            "writes_per_sec": self.writes_per_sec.round(),
            "p50_ms": round3(self.percentile_ms(0.50)),
            "p99_ms": round3(self.percentile_ms(0.99)),
            "p999_ms": round3(self.percentile_ms(0.999)),
            "max_ms": round3(self.max_ms()),
            "writes": self.writes(),
            "seconds": round3(self.elapsed.as_secs_f64()),
            "cpu_us_per_write": self.cpu_us_per_write.map(|us| (us * 10.0).round() / 10.0),
            "window_writes": self.ends.map(|e| e.0),
            "first_window_writes_per_sec": self.ends.map(|e| e.1.round()),
            "last_window_writes_per_sec": self.ends.map(|e| e.2.round()),
        })
    }
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What one client thread hands back.
type Outcome = (Vec<Duration>, u64, Option<String>);

/// Runs `clients` closed-loop writers for `length`, each on its own connection from `open`,
/// writing `VALUE_BYTES`-byte values under unique keys `{prefix}-{client}-{n}`. The CPU time of
/// the processes `pids` (the system's servers) is read when the run starts and when it ends;
/// `cpu_us_per_write` is `None` when `pids` is empty or one could not be read.
///
/// The clients start together (after a barrier), the run's clock and the first CPU reading
/// right after; a time-based run ends when its seconds have passed, a `RunLength::Writes(n)`
/// run when the n-th write is acknowledged (or after `WRITES_RUN_LIMIT`).
pub(super) fn closed_loop<F>(
    open: F,
    clients: usize,
    length: RunLength,
    prefix: &str,
    pids: &[u32],
) -> LoadResult
where
    F: Fn() -> anyhow::Result<Box<dyn Writer>> + Sync,
{
    let stop = AtomicBool::new(false);
    let value = vec![b'v'; VALUE_BYTES];
    let quota = match length {
        RunLength::Writes(n) => Some(Quota::new(n)),
        RunLength::Seconds(_) => None,
    };
    let start = Barrier::new(clients + 1);
    let (last_tx, last_rx) = mpsc::channel::<Instant>();
    let (open, stop_ref, value_ref, quota_ref, start_ref) =
        (&open, &stop, &value, quota.as_ref(), &start);
    let mut elapsed = Duration::ZERO;
    let mut ends = None;
    let mut cpu_before = None;
    let mut cpu_after = None;
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let last_tx = last_tx.clone();
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(4096);
                    let mut refused = 0u64;
                    let mut first_error = None;
                    let mut conn = None;
                    let mut i = 0u64;
                    start_ref.wait();
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
                            Ok(true) => {
                                let latency = t.elapsed();
                                match quota_ref.map(Quota::ack) {
                                    None | Some(Ack::Counted { last: false }) => {
                                        latencies.push(latency)
                                    }
                                    Some(Ack::Counted { last: true }) => {
                                        latencies.push(latency);
                                        let _ = last_tx.send(Instant::now());
                                        stop_ref.store(true, Ordering::Relaxed);
                                    }
                                    Some(Ack::Over) => break,
                                }
                            }
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
        // Only the clients hold a sender now: if they all end, the wait below ends too.
        drop(last_tx);
        start_ref.wait();
        cpu_before = CpuSample::take(pids);
        let started = Instant::now();
        let ended = match length {
            RunLength::Seconds(seconds) => {
                std::thread::sleep(Duration::from_secs_f64(seconds));
                Instant::now()
            }
            RunLength::Writes(_) => last_rx
                .recv_timeout(WRITES_RUN_LIMIT)
                .unwrap_or_else(|_| Instant::now()),
        };
        stop_ref.store(true, Ordering::Relaxed);
        cpu_after = CpuSample::take(pids);
        elapsed = ended.saturating_duration_since(started);
        if let Some(q) = quota_ref {
            let marks = *q.marks.lock().unwrap_or_else(|e| e.into_inner());
            if let [Some(first), Some(last)] = marks {
                let rate = |d: Duration| q.window as f64 / d.as_secs_f64().max(1e-9);
                ends = Some((
                    q.window,
                    rate(first.saturating_duration_since(started)),
                    rate(ended.saturating_duration_since(last)),
                ));
            }
        }
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or((Vec::new(), 0, None)))
            .collect()
    });
    let refused = outcomes.iter().map(|(_, r, _)| r).sum();
    let first_error = outcomes.iter().find_map(|(_, _, e)| e.clone());
    let mut latencies: Vec<Duration> = outcomes.into_iter().flat_map(|(l, _, _)| l).collect();
    latencies.sort_unstable();
    let writes = latencies.len() as u64;
    LoadResult {
        clients,
        writes_per_sec: writes as f64 / elapsed.as_secs_f64(),
        latencies,
        refused,
        first_error,
        elapsed,
        length,
        cpu_us_per_write: cpu::cpu_us_per_write(cpu_before.as_ref(), cpu_after.as_ref(), writes),
        ends,
    }
}

/// How long a load client waits for one answer before it counts the write as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A kept-alive HTTP/1.1 connection to a Unix socket (regent's host API).
pub(super) fn unix(socket: &Path) -> anyhow::Result<regent_client::http::UnixConn> {
    Conn::unix(socket, Some(ANSWER_TIMEOUT))
        .with_context(|| format!("connecting to {}", socket.display()))
}

/// A kept-alive HTTP/1.1 connection to a TCP address (etcd's gateway).
pub(super) fn tcp(address: &str) -> anyhow::Result<Conn<TcpStream>> {
    Conn::tcp(address, Some(ANSWER_TIMEOUT)).with_context(|| format!("connecting to {address}"))
}

/// regent: `PUT /v1/kv/{key}` on the leader's host socket.
pub(super) struct RegentWriter {
    conn: regent_client::http::UnixConn,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_quota_counts_exactly_its_target() {
        let quota = Quota::new(3);
        assert_eq!(quota.ack(), Ack::Counted { last: false });
        assert_eq!(quota.ack(), Ack::Counted { last: false });
        assert_eq!(quota.ack(), Ack::Counted { last: true });
        assert_eq!(quota.ack(), Ack::Over);
        assert_eq!(quota.ack(), Ack::Over);
    }

    #[test]
    fn the_quota_counts_exactly_its_target_across_threads() {
        let quota = Quota::new(10_000);
        let (counted, last) = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let (mut counted, mut last) = (0u64, 0u64);
                        for _ in 0..2_000 {
                            match quota.ack() {
                                Ack::Counted { last: l } => {
                                    counted += 1;
                                    last += u64::from(l);
                                }
                                Ack::Over => {}
                            }
                        }
                        (counted, last)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("no panic"))
                .fold((0, 0), |(c, l), (c2, l2)| (c + c2, l + l2))
        });
        assert_eq!((counted, last), (10_000, 1));
    }

    /// Acknowledges every write, except that every `refuse_every`-th is refused and every
    /// `fail_every`-th fails (the connection is then dropped and opened again).
    struct Fake {
        calls: Arc<AtomicU64>,
        refuse_every: u64,
        fail_every: u64,
    }

    impl Writer for Fake {
        fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<bool> {
            assert_eq!(value.len(), VALUE_BYTES);
            assert!(key.starts_with("t-"));
            let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(self.fail_every) {
                anyhow::bail!("fake failure");
            }
            Ok(!n.is_multiple_of(self.refuse_every))
        }
    }

    fn run(clients: usize, writes: u64, refuse_every: u64, fail_every: u64) -> LoadResult {
        let calls = Arc::new(AtomicU64::new(0));
        let open = || -> anyhow::Result<Box<dyn Writer>> {
            Ok(Box::new(Fake {
                calls: calls.clone(),
                refuse_every,
                fail_every,
            }))
        };
        closed_loop(open, clients, RunLength::Writes(writes), "t", &[])
    }

    #[test]
    fn a_writes_run_stops_after_exactly_n_acknowledged_writes() {
        for (clients, writes) in [(1, 1), (1, 500), (4, 3), (8, 5_000), (16, 1)] {
            let result = run(clients, writes, u64::MAX, u64::MAX);
            assert_eq!(result.writes(), writes, "{clients} clients");
            assert_eq!(result.latencies.len() as u64, writes);
            assert_eq!(result.refused, 0);
            assert_eq!(result.cut_short(), None);
            assert_eq!(result.cpu_us_per_write, None);
            // Both ends of the run are measured once it has two writes.
            match result.ends {
                Some((window, first, last)) => {
                    assert_eq!(window, WINDOW_WRITES.min(writes / 2));
                    assert!(first > 0.0 && last > 0.0, "{first} {last}");
                }
                None => assert!(writes < 2, "{clients} clients, {writes} writes"),
            }
        }
    }

    #[test]
    fn refused_and_failed_writes_do_not_count_towards_n() {
        let result = run(4, 2_000, 7, 11);
        assert_eq!(result.writes(), 2_000);
        assert!(result.refused > 0);
        assert_eq!(
            result
                .first_error
                .as_deref()
                .map(|e| e.contains("fake failure")),
            Some(true)
        );
    }

    #[test]
    fn percentiles_and_max() {
        let result = LoadResult {
            clients: 1,
            writes_per_sec: 0.0,
            latencies: (1..=1000).map(Duration::from_millis).collect(),
            refused: 0,
            first_error: None,
            elapsed: Duration::from_secs(1),
            length: RunLength::Writes(1000),
            cpu_us_per_write: Some(123.45),
            ends: Some((500, 2_000.4, 1_900.6)),
        };
        assert_eq!(result.percentile_ms(0.5), 500.0);
        assert_eq!(result.percentile_ms(0.99), 990.0);
        assert_eq!(result.max_ms(), 1000.0);
        let json = result.json();
        assert_eq!(json["max_ms"], 1000.0);
        assert_eq!(json["writes"], 1000);
        assert_eq!(json["cpu_us_per_write"], 123.5);
        assert_eq!(json["window_writes"], 500);
        assert_eq!(json["first_window_writes_per_sec"], 2_000.0);
        assert_eq!(json["last_window_writes_per_sec"], 1_901.0);
        for field in ["clients", "writes_per_sec", "p50_ms", "p99_ms", "p999_ms"] {
            assert!(!json[field].is_null(), "{field}");
        }
    }

    #[test]
    fn an_empty_run_has_no_max_and_no_cpu_figure() {
        let result = LoadResult {
            clients: 1,
            writes_per_sec: 0.0,
            latencies: Vec::new(),
            refused: 3,
            first_error: None,
            elapsed: Duration::from_secs(1),
            length: RunLength::Writes(10),
            cpu_us_per_write: None,
            ends: None,
        };
        assert!(result.max_ms().is_nan());
        assert_eq!(result.cut_short(), Some(10));
        let json = result.json();
        assert!(json["max_ms"].is_null());
        assert!(json["cpu_us_per_write"].is_null());
    }

    #[test]
    fn run_length_from_the_flags() {
        assert_eq!(RunLength::from_args(5.0, None), RunLength::Seconds(5.0));
        assert_eq!(RunLength::from_args(5.0, Some(7)), RunLength::Writes(7));
        assert!(validate_writes(None).is_ok());
        assert!(validate_writes(Some(1)).is_ok());
        assert!(validate_writes(Some(0)).is_err());
        assert!(validate_writes(Some(WRITES_MAX + 1)).is_err());
    }
}

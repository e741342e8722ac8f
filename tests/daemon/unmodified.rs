//! `examples/unmodified/`: a master that knows nothing of regent (a key-value server on a TCP
//! port, its state in a directory all nodes share, as a shared disk would be), started by
//! `pre_promote`, stopped by `on_demote`, fenced by the next leader after a failover. Under
//! kill -9 and SIGSTOP of the leader's regent and a SIGTERM, judged from the masters' own logs
//! on one clock (CLOCK_MONOTONIC): never two masters serving at once; the clients reach the new
//! master within the failover bound `explain-timing` prints plus the hooks' time; every
//! acknowledged write is in the state afterwards.

use crate::support::{Cluster, TEST_SETTINGS};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(30);
const TIMING: &str = "timing:\n  election_timeout_min_ms: 2000\n  heartbeat_interval_ms: 200\n";
/// The hooks' own time on top of the failover bound: the fence method and `pre_promote` (a
/// Python start), each bounded by its timeout below, plus a busy machine's scheduling.
const HOOKS_SLACK: Duration = Duration::from_secs(6);

fn now_ns() -> u64 {
    regent_daemon::clock::now()
}

/// The failover bound `regent explain-timing` prints for this configuration.
fn failover_bound(config: &Path) -> Duration {
    let config = regent_daemon::config::DaemonConfig::load_unvalidated(config).unwrap();
    Duration::from_millis(config.explain_timing().failover_worst_ms().ceil() as u64)
}

/// One acknowledged write: which master acknowledged it, and when (CLOCK_MONOTONIC).
#[derive(Clone, Debug)]
struct Ack {
    key: u64,
    master: String,
    at_ns: u64,
}

/// Writes `SET kN vN` to whichever master answers, in a loop, on a thread.
fn client(ports: Vec<u16>, stop: Arc<AtomicBool>, acks: Arc<Mutex<Vec<Ack>>>) {
    let mut n = 0u64;
    let mut target = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let port = ports[target % ports.len()];
            let sent = (|| -> std::io::Result<String> {
                let addr = format!("127.0.0.1:{port}").parse().unwrap();
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                writeln!(s, "SET k{n} v{n}")?;
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line)?;
                Ok(line)
            })();
            match sent {
                Ok(line) if line.starts_with("OK ") => {
                    acks.lock().unwrap().push(Ack {
                        key: n,
                        master: line[3..].trim().to_string(),
                        at_ns: now_ns(),
                    });
                    break;
                }
                _ => {
                    target += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// The masters' lives from their log: (name, serving from, until) on CLOCK_MONOTONIC; a life
/// still going ends at `end`.
fn lives(log: &Path, end: u64) -> Vec<(String, u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let (event, at, name) = (f[0], f[1].parse::<u64>().unwrap_or(0), f[2].to_string());
        match event {
            "serving" => {
                assert!(
                    !open.contains_key(&name),
                    "{name} started twice without stopping:\n{text}"
                );
                open.insert(name, at);
            }
            "killed" | "stopping" => {
                if let Some(from) = open.remove(&name) {
                    out.push((name, from, at));
                }
            }
            _ => {}
        }
    }
    out.extend(open.into_iter().map(|(name, from)| (name, from, end)));
    out
}

#[test]
fn an_unmodified_master_moves_with_leadership_and_never_serves_twice() {
    let root = env!("CARGO_MANIFEST_DIR");
    let hooks_sh = format!("{root}/examples/unmodified/hooks.sh");
    let shared = tempfile::tempdir().unwrap();
    let state = shared.path().join("state");
    let master_log = shared.path().join("masters.log");
    let hooks = format!(
        "hooks:\n  pre_promote: {{exec: [\"sh\", \"{hooks_sh}\", \"start\", \".\"], timeout_ms: 1800}}\n  on_demote: {{exec: [\"sh\", \"{hooks_sh}\", \"stop\", \".\"], timeout_ms: 1800}}\n\
         fencing:\n  required: true\n  retry_interval_ms: 500\n  methods:\n    - {{exec: [\"sh\", \"{hooks_sh}\", \"fence\", \".\"], timeout_ms: 5000}}\n"
    );
    let mut c = Cluster::init(3, "unmodified", &format!("{TEST_SETTINGS}{TIMING}{hooks}"));
    // The masters outlive the daemons that started them: killed when the test ends, however.
    struct Masters(String);
    impl Drop for Masters {
        fn drop(&mut self) {
            let _ = Command::new("pkill").args(["-9", "-f", &self.0]).status();
        }
    }
    let _masters = Masters(state.display().to_string());
    let mut ports = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        ports.push(port);
        std::fs::write(
            node.dir.join("master.env"),
            format!(
                "PORT={port}\nSTATE_DIR={}\nMASTER_LOG={}\nNAME=m{}\n",
                state.display(),
                master_log.display(),
                i + 1
            ),
        )
        .unwrap();
    }
    let bound = failover_bound(&c.nodes[0].config) + HOOKS_SLACK;
    c.start_all();
    let (mut leader, _) = c.wait_writable_leader(ELECTION);

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (ports, stop, acks) = (ports.clone(), stop.clone(), acks.clone());
        std::thread::spawn(move || client(ports, stop, acks))
    };
    let acked_since = |at: u64, not_by: &str| {
        acks.lock()
            .unwrap()
            .iter()
            .find(|a| a.at_ns > at && a.master != not_by)
            .cloned()
    };
    let wait_acks = |count: usize| {
        let started = Instant::now();
        while acks.lock().unwrap().len() < count {
            assert!(started.elapsed() < ELECTION, "the clients made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_acks(20);

    // Faults on the leader's regent: kill -9 (its master keeps running until the next leader
    // fences it), SIGSTOP for longer than the failover, and a clean SIGTERM (hand-over).
    for fault in ["kill", "stop", "term"] {
        let old_master = format!("m{leader}");
        let at = now_ns();
        let pid = c.pid(leader).unwrap() as libc::pid_t;
        match fault {
            "kill" => c.kill(leader),
            // SAFETY: signals to a child this test started.
            "stop" => unsafe {
                libc::kill(pid, libc::SIGSTOP);
            },
            _ => {
                assert_eq!(c.stop(leader), Some(0));
            }
        }
        let started = Instant::now();
        let reached = loop {
            if let Some(ack) = acked_since(at, &old_master) {
                break ack;
            }
            assert!(
                started.elapsed() < bound * 2,
                "{fault}: no write acknowledged by another master within {:?}:\n{}",
                bound * 2,
                c.all_logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = Duration::from_nanos(reached.at_ns - at);
        assert!(
            took <= bound,
            "{fault}: the clients reached {} after {took:?}, past the bound {bound:?}",
            reached.master
        );
        match fault {
            // SAFETY: as above.
            "stop" => unsafe {
                libc::kill(pid, libc::SIGCONT);
            },
            _ => c.start(leader),
        }
        let next = c.wait_writable_other_than(leader, ELECTION);
        leader = next;
        let count = acks.lock().unwrap().len();
        wait_acks(count + 10);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Never two masters serving at once, on one clock, from their own logs.
    let mut lives = lives(&master_log, now_ns());
    lives.sort_by_key(|l| l.1);
    for pair in lives.windows(2) {
        assert!(
            pair[0].2 <= pair[1].1,
            "{} served until {} after {} started at {}: {lives:?}\n{}",
            pair[0].0,
            pair[0].2,
            pair[1].0,
            pair[1].1,
            c.all_logs()
        );
    }
    assert!(lives.len() >= 4, "a master per leadership: {lives:?}");
    // Every acknowledged write is in the state the masters share.
    let data = std::fs::read_to_string(state.join("data.log")).unwrap();
    let stored: std::collections::BTreeSet<&str> =
        data.lines().filter_map(|l| l.split(' ').next()).collect();
    for ack in acks.lock().unwrap().iter() {
        assert!(
            stored.contains(format!("k{}", ack.key).as_str()),
            "k{} acknowledged by {} is not stored",
            ack.key,
            ack.master
        );
    }
}

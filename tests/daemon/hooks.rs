//! Hooks and fencing on real processes: a master that knows nothing of regent is started and
//! stopped by the hooks; `pre_promote` gates `writable`; a failed `pre_promote` hands
//! leadership away; fence methods run against the previous leader after a failover, not after
//! a hand-over, and `fencing.required` holds the new leader unwritable until one succeeds.
//!
//! Every hook appends a line to a file: `HOOK TERM NODE LEASE_DEADLINE_NS MONOTONIC_NS`, the
//! last taken when the hook started (CLOCK_MONOTONIC, the clock of the daemons' deadlines).

use crate::support::{http, Cluster, TEST_SETTINGS};
use std::path::Path;
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(30);
/// Election timeouts long enough that a hook (a shell and a Python start, a few tens of ms on
/// an idle machine) ends well within the lease on a busy one.
const TIMING: &str = "timing:\n  election_timeout_min_ms: 2000\n  heartbeat_interval_ms: 200\n";

/// A hook that records its start, then runs `extra`: `["sh", "-c", SCRIPT]` as YAML.
fn recorder(log: &Path, extra: &str) -> String {
    format!(
        "{{exec: [\"sh\", \"-c\", \"echo $REGENT_HOOK $REGENT_TERM $REGENT_NODE_ID x$REGENT_LEASE_DEADLINE_NS $(python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC))') >> {}; {extra}\"]}}",
        log.display()
    )
}

#[derive(Debug, Clone)]
struct Line {
    hook: String,
    term: u64,
    node: u64,
    started_ns: u64,
}

fn lines(log: &Path) -> Vec<Line> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5).then(|| Line {
                hook: f[0].into(),
                term: f[1].parse().unwrap_or(0),
                node: f[2].parse().unwrap_or(0),
                started_ns: f[4].parse().unwrap_or(0),
            })
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hooks_follow_leadership_and_pre_promote_gates_writable() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let fail = dir.path().join("fail-");
    let hooks = format!(
        "hooks:\n  pre_promote: {}\n  on_promote: {}\n  on_demote: {}\n  on_leader_change: {}\n  promote_failure_backoff_ms: 20000\n",
        // pre_promote fails on a node whose flag file exists.
        recorder(&log, &format!("test ! -e {}$REGENT_NODE_ID || exit 7", fail.display())),
        recorder(&log, "true"),
        recorder(&log, "true"),
        recorder(&log, "true"),
    );
    let mut c = Cluster::init(3, "hooks", &format!("{TEST_SETTINGS}{TIMING}{hooks}"));
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let term = c.status(leader).unwrap()["term"].as_u64().unwrap();
    wait_for("on_promote on the leader", ELECTION, || {
        lines(&log)
            .iter()
            .any(|l| l.hook == "on_promote" && l.node == leader && l.term == term)
    });
    // pre_promote ran first, in the same term, and every node heard of the leader.
    let seen = lines(&log);
    let pre = seen
        .iter()
        .position(|l| l.hook == "pre_promote" && l.node == leader && l.term == term)
        .expect("pre_promote ran");
    let on = seen
        .iter()
        .position(|l| l.hook == "on_promote" && l.node == leader && l.term == term)
        .unwrap();
    assert!(pre < on, "{seen:?}");
    wait_for("on_leader_change on every node", ELECTION, || {
        (1..=3).all(|n| {
            lines(&log)
                .iter()
                .any(|l| l.hook == "on_leader_change" && l.node == n)
        })
    });
    let status = c.status(leader).unwrap();
    assert_eq!(status["hooks"]["pre_promote"]["result"], "ok", "{status}");
    let metrics = http(
        &c.nodes[(leader - 1) as usize].socket,
        "GET",
        "/metrics",
        b"",
    )
    .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("regent_hook_runs_total{hook=\"pre_promote\",result=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("regent_hook_duration_seconds_count{hook=\"on_promote\"}"));

    // kill -9: the new leader's pre_promote starts after the old lease's deadline.
    let old = c.status(leader).unwrap();
    let old_deadline = old["lease"]["deadline_monotonic_ns"].as_u64().unwrap();
    c.kill(leader);
    let next = c.wait_writable_other_than(leader, ELECTION);
    let next_term = c.status(next).unwrap()["term"].as_u64().unwrap();
    let next_pre = lines(&log)
        .into_iter()
        .find(|l| l.hook == "pre_promote" && l.node == next && l.term == next_term)
        .expect("the new leader ran pre_promote");
    assert!(
        next_pre.started_ns > old_deadline,
        "pre_promote started at {} before the old lease's end {old_deadline}",
        next_pre.started_ns
    );
    c.start(leader);

    // A node whose pre_promote fails: asked to take over, it hands leadership away and the
    // failure shows; another node is writable.
    let target = (1..=3).find(|&n| n != next).unwrap();
    std::fs::write(format!("{}{target}", fail.display()), b"").unwrap();
    wait_for("the restarted node to catch up", ELECTION, || {
        c.status(target)
            .is_some_and(|s| s["leader_id"].as_u64() == Some(next))
    });
    let answer = http(
        &c.nodes[(next - 1) as usize].socket,
        "POST",
        &format!("/v1/admin/switchover?to={target}"),
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    wait_for("the failed pre_promote to show", ELECTION, || {
        c.status(target)
            .is_some_and(|s| s["hooks"]["pre_promote"]["result"] == "failed")
    });
    // A graceful hand-over demotes the old leader's host before the target is told to take
    // over: `next`'s on_demote came before the target's pre_promote.
    let seen = lines(&log);
    let demoted = seen
        .iter()
        .find(|l| l.hook == "on_demote" && l.node == next && l.term == next_term)
        .expect("on_demote ran on the leader handing over");
    let promoting = seen
        .iter()
        .find(|l| l.hook == "pre_promote" && l.node == target && l.term > next_term)
        .expect("the target's pre_promote ran");
    assert!(demoted.started_ns < promoting.started_ns, "{seen:?}");
    let now_leader = c.wait_writable_other_than(target, ELECTION);
    assert_ne!(now_leader, target);
    let s = c.status(target).unwrap();
    assert_eq!(s["writable"], false, "{s}");
    assert_eq!(s["hooks"]["pre_promote"]["exit"], 7, "{s}");

    // SIGTERM on the leader: on_demote runs there before it exits.
    let demotes = |n: u64| {
        lines(&log)
            .iter()
            .filter(|l| l.hook == "on_demote" && l.node == n)
            .count()
    };
    let before = demotes(now_leader);
    assert_eq!(c.stop(now_leader), Some(0));
    assert!(demotes(now_leader) > before, "{:?}", lines(&log));
}

#[test]
fn fence_methods_run_after_a_failover_and_required_fencing_holds_writable() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fence.log");
    let ok = dir.path().join("fence-ok");
    let fencing = format!(
        "fencing:\n  required: true\n  retry_interval_ms: 300\n  methods:\n    - {{exec: [\"sh\", \"-c\", \"echo fence $REGENT_NODE_ID $REGENT_FENCE_NODE_ID $REGENT_FENCE_ADDRESS >> {}; test -e {}\"], timeout_ms: 5000}}\n",
        log.display(),
        ok.display()
    );
    let mut c = Cluster::init(3, "fencing", &format!("{TEST_SETTINGS}{TIMING}{fencing}"));
    c.start_all();
    // The first leader has no previous leader to fence.
    let (first, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");

    // An acknowledged hand-over fences nobody.
    let to = (1..=3).find(|&n| n != first).unwrap();
    let answer = http(
        &c.nodes[(first - 1) as usize].socket,
        "POST",
        &format!("/v1/admin/switchover?to={to}"),
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}\n{}", c.all_logs());
    let (leader, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(leader, to);
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");

    // A failover: the new leader fences the old one, and with every method failing it stays
    // unwritable, showing fence_pending, until one succeeds.
    c.kill(leader);
    let mut new = 0;
    wait_for("a new leader waiting on fencing", ELECTION, || {
        new = (1..=3)
            .filter(|&n| n != leader)
            .find(|&n| {
                c.status(n)
                    .is_some_and(|s| s["role"] == "leader" && s["fence_pending"] == true)
            })
            .unwrap_or(0);
        new != 0
    });
    let s = c.status(new).unwrap();
    assert_eq!(s["writable"], false, "{s}");
    let fenced = std::fs::read_to_string(&log).unwrap();
    assert!(
        fenced.contains(&format!("fence {new} {leader} 127.0.0.1:")),
        "{fenced}"
    );
    // `regent fence` by hand fails too while the method fails.
    let by_hand = http(
        &c.nodes[(new - 1) as usize].socket,
        "POST",
        &format!("/v1/admin/fence?node={leader}"),
        b"",
    )
    .unwrap();
    assert_eq!(by_hand.status, 409, "{by_hand:?}");
    // The method succeeds from now on: the new leader becomes writable.
    std::fs::write(&ok, b"").unwrap();
    let writable = c.wait_writable_other_than(leader, ELECTION);
    assert_eq!(writable, new);
    let s = c.status(new).unwrap();
    assert_eq!(s["fence_pending"], false, "{s}");
}

/// What a watchdog device saw: each byte written, with when it arrived.
struct Dog {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u8)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Dog {
    /// A FIFO at `path` standing for the device, read by a thread of its own.
    fn new(path: &Path) -> Dog {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo(3) and open(2) with a valid NUL-terminated path.
        let fd = unsafe {
            assert_eq!(libc::mkfifo(c.as_ptr(), 0o600), 0);
            libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK)
        };
        assert!(fd >= 0);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: reading into a buffer we own from the fd we opened.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    let now = Instant::now();
                    s.lock()
                        .unwrap()
                        .extend(buf[..n as usize].iter().map(|&b| (now, b)));
                } else {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            // SAFETY: closing the fd this thread owns.
            unsafe { libc::close(fd) };
        });
        Dog { seen, stop }
    }

    fn bytes(&self) -> Vec<(Instant, u8)> {
        self.seen.lock().unwrap().clone()
    }

    fn feeds(&self) -> usize {
        self.bytes().iter().filter(|(_, b)| *b == b'1').count()
    }

    fn closes(&self) -> usize {
        self.bytes().iter().filter(|(_, b)| *b == b'V').count()
    }
}

impl Drop for Dog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn the_watchdog_is_fed_only_while_writable_and_would_reset_a_stalled_leader_in_time() {
    // Lease 1900 ms, margin 500 ms: a 1 s device timeout. Each node's device is `dog` in its
    // own directory (the daemons run there).
    let watchdog = "watchdog:\n  mode: required\n  device: dog\n  safety_margin_ms: 500\n";
    let mut c = Cluster::init(3, "watchdog", &format!("{TEST_SETTINGS}{TIMING}{watchdog}"));
    let dogs: Vec<Dog> = (1..=3)
        .map(|id| Dog::new(&c.nodes[id - 1].dir.join("dog")))
        .collect();
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let dog = |id: u64| &dogs[(id - 1) as usize];
    // Every node checked its device at start (armed, disarmed); only the leader feeds it.
    wait_for("the start-up probes", ELECTION, || {
        (1..=3).all(|id| dog(id).closes() >= 1)
    });
    wait_for("feeds on the leader's device", ELECTION, || {
        dog(leader).feeds() >= 8
    });
    for id in (1..=3).filter(|&id| id != leader) {
        assert_eq!(dog(id).feeds(), 1, "n{id} is not writable: only its probe");
    }

    // SIGSTOP the leader: its feeds stop. The device would reset that machine one timeout
    // (1 s) after the last feed, before any other node becomes writable.
    let pid = c.pid(leader).unwrap() as libc::pid_t;
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let next = c.wait_writable_other_than(leader, ELECTION);
    let writable_at = Instant::now();
    let last_feed = dog(leader)
        .bytes()
        .iter()
        .rev()
        .find(|(_, b)| *b == b'1')
        .unwrap()
        .0;
    assert!(
        writable_at.duration_since(last_feed) > Duration::from_secs(1),
        "node {next} was writable {:?} after the stalled leader's last feed",
        writable_at.duration_since(last_feed)
    );
    let closes = dog(leader).closes();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // Resumed, the old leader finds its lease gone and disarms.
    wait_for("the deposed leader's magic close", ELECTION, || {
        dog(leader).closes() > closes
    });
    // A clean stop of the new leader disarms its device too.
    wait_for("feeds on the new leader's device", ELECTION, || {
        dog(next).feeds() >= 3
    });
    let closes = dog(next).closes();
    assert_eq!(c.stop(next), Some(0));
    assert!(dog(next).closes() > closes);
}

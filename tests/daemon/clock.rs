//! Clocks at different rates on real processes: every node runs under libfaketime (Debian's
//! `faketime` package) with CLOCK_MONOTONIC at its own rate, the leader is cut off from the
//! others by the fault-injecting relay, and every node's status is polled on the test's one
//! real clock. Within the clock check's threshold nothing changes: the old lease ends before a
//! new leader is writable. Outside the bound the bad clock is detected, and no two hosts are
//! ever writable at once.
//!
//! A node's writable interval, as its host sees it, runs from the first poll that found it
//! writable to the deadline it last published: the poll's start plus the lease remaining on
//! the node's clock, turned into real time with the node's rate. Two nodes' intervals that
//! surely overlap fail the test; the figures of the failover are printed.
//!
//! Without libfaketime the tests are skipped with a message, unless `CI` is set: then they
//! fail (CI must install the package).

use crate::support::{http, Cluster, TEST_SETTINGS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// libfaketime's path, or `None` (the test is skipped) when it is missing outside CI.
fn libfaketime() -> Option<&'static str> {
    if Path::new(LIBFAKETIME).exists() {
        return Some(LIBFAKETIME);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{LIBFAKETIME} is missing: CI must install Debian's faketime package (apt-get install -y faketime)"
    );
    eprintln!(
        "SKIPPED: {LIBFAKETIME} is missing; install Debian's faketime package \
         (apt-get install -y faketime) to run the clock-rate tests"
    );
    None
}

/// Starts every node with CLOCK_MONOTONIC (and the wall clock) running at its rate.
fn start_at_rates(c: &mut Cluster, lib: &str, rates: &BTreeMap<u64, f64>) {
    for (&id, &rate) in rates {
        let env = [
            ("LD_PRELOAD", lib.to_string()),
            ("FAKETIME", format!("+0 x{rate}")),
            ("FAKETIME_NO_CACHE", "1".to_string()),
        ];
        c.start_with_env(id, &env);
    }
}

/// One poll of one node's status.
#[derive(Clone, Debug)]
struct Sample {
    id: u64,
    /// Real time (since the watch began) before the request and after the answer.
    before: Duration,
    after: Duration,
    writable: bool,
    /// The lease left on the node's clock, in its milliseconds.
    remaining_ms: u64,
    reason: Option<String>,
}

/// A run of polls that found a node writable: from the first such poll's answer to the
/// latest deadline those polls published, in real time.
#[derive(Clone, Copy, Debug)]
struct Interval {
    id: u64,
    start: Duration,
    /// The earliest poll that found it writable began here (the interval may have begun
    /// before, since the previous poll).
    seen: Duration,
    end: Duration,
}

struct Watch {
    origin: Instant,
    rates: BTreeMap<u64, f64>,
    samples: Vec<Sample>,
}

impl Watch {
    fn new(rates: &BTreeMap<u64, f64>) -> Watch {
        Watch {
            origin: Instant::now(),
            rates: rates.clone(),
            samples: Vec::new(),
        }
    }

    /// Polls every node once; returns the statuses that answered.
    fn sweep(&mut self, c: &Cluster) -> BTreeMap<u64, Value> {
        let mut seen = BTreeMap::new();
        for &id in self.rates.keys() {
            let before = self.origin.elapsed();
            let status = http(&c.nodes[(id - 1) as usize].socket, "GET", "/v1/status", b"")
                .ok()
                .filter(|a| a.status == 200)
                .map(|a| a.json());
            let after = self.origin.elapsed();
            let Some(s) = status else { continue };
            self.samples.push(Sample {
                id,
                before,
                after,
                writable: s["writable"] == true,
                remaining_ms: s["lease"]["remaining_ms"].as_u64().unwrap_or(0),
                reason: s["reason"].as_str().map(str::to_string),
            });
            seen.insert(id, s);
        }
        seen
    }

    /// Polls until `done` says so for a sweep, at most `timeout`; returns the last sweep.
    fn until(
        &mut self,
        c: &Cluster,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&BTreeMap<u64, Value>) -> bool,
    ) -> BTreeMap<u64, Value> {
        let started = Instant::now();
        loop {
            let sweep = self.sweep(c);
            if done(&sweep) {
                return sweep;
            }
            assert!(
                started.elapsed() < timeout,
                "{what}: not within {timeout:?}; last statuses: {sweep:#?}\nlogs:\n{}",
                c.all_logs()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn for_a_while(&mut self, c: &Cluster, how_long: Duration) {
        let started = Instant::now();
        while started.elapsed() < how_long {
            self.sweep(c);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Every node's writable intervals, in order of their start.
    fn intervals(&self) -> Vec<Interval> {
        let mut open: BTreeMap<u64, Interval> = BTreeMap::new();
        let mut closed = Vec::new();
        for s in &self.samples {
            if !s.writable {
                if let Some(i) = open.remove(&s.id) {
                    closed.push(i);
                }
                continue;
            }
            let rate = self.rates[&s.id];
            let deadline = s.before + Duration::from_secs_f64(s.remaining_ms as f64 / 1e3 / rate);
            let i = open.entry(s.id).or_insert(Interval {
                id: s.id,
                start: s.after,
                seen: s.before,
                end: deadline,
            });
            i.end = i.end.max(deadline);
        }
        closed.extend(open.into_values());
        closed.sort_by_key(|i| i.start);
        closed
    }

    /// Fails if two nodes were surely writable at one real instant.
    fn assert_never_two_writable(&self) {
        let intervals = self.intervals();
        for (k, a) in intervals.iter().enumerate() {
            for b in &intervals[k + 1..] {
                let overlap = a.id != b.id && b.start < a.end && a.start < b.end;
                assert!(
                    !overlap,
                    "n{} and n{} were writable at once: {a:?} and {b:?}",
                    a.id, b.id
                );
            }
        }
    }
}

/// The peer `peer`'s rate as `s` (a status) measures it, with its verdict.
fn measured(s: &Value, peer: u64) -> Option<(i64, String)> {
    s["clock"]["peers"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == peer)
        .and_then(|p| Some((p["rate_ppm"].as_i64()?, p["verdict"].as_str()?.to_string())))
}

fn every_clock_agrees(sweep: &BTreeMap<u64, Value>, n: u64) -> bool {
    sweep.len() as u64 == n
        && sweep.iter().all(|(&id, s)| {
            (1..=n)
                .filter(|&p| p != id)
                .all(|p| measured(s, p).is_some_and(|(_, v)| v == "agrees"))
        })
}

#[test]
fn within_the_threshold_the_old_lease_ends_before_a_new_leader_is_writable() {
    let Some(lib) = libfaketime() else { return };
    // 0.99× against 1.01×: 2% apart, within the check's threshold (2.5%) and the bound (5%).
    let rates = BTreeMap::from([(1, 0.99), (2, 1.01), (3, 1.01)]);
    let mut c = Cluster::init(3, "clockok", TEST_SETTINGS);
    let relay = c.route_through_relay();
    start_at_rates(&mut c, lib, &rates);
    let mut w = Watch::new(&rates);
    w.until(
        &c,
        Duration::from_secs(30),
        "every clock measured and agreeing",
        |s| every_clock_agrees(s, 3) && s.values().any(|s| s["writable"] == true),
    );
    // n1 (the slowest clock: the shortest lease on real time) leads.
    let leader = w
        .sweep(&c)
        .iter()
        .find(|(_, s)| s["writable"] == true)
        .map(|(&id, _)| id)
        .expect("a writable leader");
    if leader != 1 {
        let socket = &c.nodes[(leader - 1) as usize].socket;
        let answer = http(socket, "POST", "/v1/admin/switchover?to=1", b"").unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.json());
    }
    w.until(&c, Duration::from_secs(20), "n1 writable", |s| {
        s.get(&1).is_some_and(|s| s["writable"] == true)
    });
    let sweep = w.sweep(&c);
    let (rate, verdict) = measured(&sweep[&2], 1).expect("n2 measures n1");
    assert_eq!(verdict, "agrees");
    assert!(
        (-25_000..=-15_000).contains(&rate),
        "n2 measures n1 at {rate} ppm (−19,802 expected)"
    );
    assert!(sweep.values().all(|s| s["clock"]["healthy"] == true));
    // Only what follows is checked: during a switchover the old leader's host may still hold
    // the deadline it read (it stops when its watch tells it), which is not this test's matter.
    w.samples.clear();
    w.for_a_while(&c, Duration::from_secs(1));
    let cut = w.origin.elapsed();
    relay.isolate(1);
    w.until(&c, Duration::from_secs(20), "a new writable leader", |s| {
        s.iter().any(|(&id, s)| id != 1 && s["writable"] == true)
    });
    w.for_a_while(&c, Duration::from_millis(500));
    w.assert_never_two_writable();
    let intervals = w.intervals();
    let old = intervals
        .iter()
        .rfind(|i| i.id == 1 && i.start < cut)
        .expect("n1's lease");
    let new = intervals
        .iter()
        .find(|i| i.id != 1 && i.start > cut)
        .expect("the new leader's");
    let gap_ms = new.seen.as_secs_f64() * 1e3 - old.end.as_secs_f64() * 1e3;
    let failover_ms = (new.start - cut).as_millis();
    eprintln!(
        "clock rates 0.99/1.01: the old lease ended {gap_ms:.1} ms before n{} was seen \
         writable ({failover_ms} ms after the cut)",
        new.id
    );
    // The sure form of the same (the poll's answer, not its start): never both writable.
    assert!(new.start > old.end, "{old:?} {new:?}");
    relay.heal_all();
}

#[test]
fn clocks_outside_the_bound_are_detected_and_never_two_hosts_are_writable() {
    let Some(lib) = libfaketime() else { return };
    // 0.8× against 1.2×: 50% apart, ten times the bound.
    let rates = BTreeMap::from([(1, 0.8), (2, 1.2), (3, 1.2)]);
    let mut c = Cluster::init(3, "clockbad", TEST_SETTINGS);
    let relay = c.route_through_relay();
    start_at_rates(&mut c, lib, &rates);
    let mut w = Watch::new(&rates);
    let detected = w.until(
        &c,
        Duration::from_secs(30),
        "n1's clock seen drifting",
        |s| {
            let by_others = [2, 3].iter().all(|id| {
                s.get(id)
                    .and_then(|s| measured(s, 1))
                    .is_some_and(|(_, v)| v == "drifts")
            });
            by_others && s.get(&1).is_some_and(|s| s["clock"]["healthy"] == false)
        },
    );
    let (rate, _) = measured(&detected[&2], 1).unwrap();
    assert!(
        (-360_000..=-300_000).contains(&rate),
        "n2 measures n1 at {rate} ppm (−333,333 expected)"
    );
    eprintln!(
        "clock rates 0.8/1.2: drift seen by every node {:.1} s after the start (n2 measures n1 \
         at {rate} ppm)",
        w.origin.elapsed().as_secs_f64()
    );
    // The two agreeing clocks lead; n1 never claims a lease.
    let sweep = w.until(&c, Duration::from_secs(20), "n2 or n3 writable", |s| {
        s.iter().any(|(&id, s)| id != 1 && s["writable"] == true)
    });
    let leader = *sweep.iter().find(|(_, s)| s["writable"] == true).unwrap().0;
    w.for_a_while(&c, Duration::from_secs(1));
    // Cut the leader off: the other fast clock's only partner is n1, whose clock it does not
    // trust, so no lease is claimed until the leader is back.
    let cut = w.origin.elapsed();
    relay.isolate(leader);
    w.for_a_while(&c, Duration::from_secs(4));
    let after_cut = w.sweep(&c);
    for (&id, s) in &after_cut {
        if id != leader {
            assert_eq!(s["writable"], false, "n{id}: {s}");
        }
    }
    relay.heal_all();
    w.until(
        &c,
        Duration::from_secs(20),
        "a writable leader after the heal",
        |s| s.values().any(|s| s["writable"] == true),
    );
    w.for_a_while(&c, Duration::from_millis(500));
    w.assert_never_two_writable();
    assert!(
        w.samples.iter().all(|s| s.id != 1 || !s.writable),
        "n1, whose clock no quorum agrees with, was writable"
    );
    let reasons: Vec<&str> = w
        .samples
        .iter()
        .filter_map(|s| s.reason.as_deref())
        .collect();
    let writable_after_cut = w
        .intervals()
        .iter()
        .filter(|i| i.id != leader && i.start > cut)
        .count();
    eprintln!(
        "after the cut: {writable_after_cut} writable intervals of other nodes; reasons seen: \
         {} clock_drift, {} clock_unmeasured",
        reasons.iter().filter(|r| **r == "clock_drift").count(),
        reasons.iter().filter(|r| **r == "clock_unmeasured").count()
    );
}

//! The leadership watch streams of every node (`GET /v1/leadership/watch`), recorded on
//! CLOCK_MONOTONIC, and what they say: when each node was writable, whether two ever were at
//! once, and how long after a fault or a heal a writable leader appeared.
//!
//! A node's writable interval starts at an event saying `writable: true` and ends at the first
//! later event saying `writable: false` — at that event's time or at the lease deadline it
//! carries, whichever is earlier (a paused leader's stream speaks only when it wakes, but its
//! lease ended at the deadline) — or, when the stream breaks (the process died), when the
//! break was seen. Invariant: an interval never ends before the node could last have written.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One event of one node's stream (or the stream's end).
#[derive(Clone, Debug)]
pub struct Event {
    pub node: u64,
    pub monotonic_ns: u64,
    pub writable: bool,
    pub term: u64,
    pub lease_deadline_ns: Option<u64>,
    /// The stream ended here (the node died or closed it).
    pub closed: bool,
}

pub struct Watchers {
    events: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watchers {
    /// One thread per node, reconnecting until stopped.
    pub fn start(sockets: Vec<(u64, PathBuf)>) -> Watchers {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = sockets
            .into_iter()
            .map(|(node, socket)| {
                let (events, stop) = (events.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut saw_any = false;
                        let _ = regent_client::stream(&socket, "/v1/leadership/watch", |line| {
                            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                                saw_any = true;
                                events.lock().unwrap().push(Event {
                                    node,
                                    monotonic_ns: v["monotonic_ns"].as_u64().unwrap_or(0),
                                    writable: v["writable"].as_bool() == Some(true),
                                    term: v["term"].as_u64().unwrap_or(0),
                                    lease_deadline_ns: v["lease"]["deadline_monotonic_ns"].as_u64(),
                                    closed: false,
                                });
                            }
                            !stop.load(Ordering::Relaxed)
                        });
                        if saw_any {
                            events.lock().unwrap().push(Event {
                                node,
                                monotonic_ns: regent_daemon::clock::now(),
                                writable: false,
                                term: 0,
                                lease_deadline_ns: None,
                                closed: true,
                            });
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        Watchers {
            events,
            stop,
            threads,
        }
    }

    /// Whether some node's latest event says it is writable (and its stream is open).
    pub fn someone_writable(&self) -> Option<u64> {
        let events = self.events.lock().unwrap();
        let mut latest: std::collections::BTreeMap<u64, &Event> = Default::default();
        for e in events.iter() {
            latest.insert(e.node, e);
        }
        latest
            .values()
            .find(|e| e.writable && !e.closed)
            .map(|e| e.node)
    }

    /// Stops the threads (they end when their node's stream ends: kill the nodes first, or
    /// they end at their next event) and returns every event.
    pub fn finish(self) -> Vec<Event> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let events = self.events.lock().unwrap().clone();
        events
    }
}

/// When a node was writable, [start, end] in CLOCK_MONOTONIC ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub node: u64,
    pub term: u64,
    pub start: u64,
    pub end: u64,
}

/// A SIGSTOP of `node` (at `stopped`, read once the process was seen stopped) and its SIGCONT
/// (at `resumed`, read before the signal was sent).
#[derive(Clone, Copy, Debug)]
pub struct Pause {
    pub node: u64,
    pub stopped: u64,
    pub resumed: u64,
}

enum Obs<'a> {
    Event(&'a Event),
    Stopped(u64),
    Resumed(u64),
}

impl Obs<'_> {
    fn time(&self) -> u64 {
        match self {
            Obs::Event(e) => e.monotonic_ns,
            Obs::Stopped(t) | Obs::Resumed(t) => *t,
        }
    }
}

/// Every writable interval, from the events (in any order) and the pauses.
///
/// A paused process starts no heartbeat round, so its lease ends at most `lease_ns` after it
/// stopped: an interval open at a pause ends there. When it wakes, it is writable again from
/// the wake-up only if its stream's first word after it says so (or it says nothing at all,
/// which means it still judges itself writable).
pub fn intervals(
    events: &[Event],
    pauses: &[Pause],
    lease_ns: u64,
    open_until: u64,
) -> Vec<Interval> {
    let mut by_node: std::collections::BTreeMap<u64, Vec<Obs<'_>>> = Default::default();
    for e in events {
        by_node.entry(e.node).or_default().push(Obs::Event(e));
    }
    for p in pauses {
        let list = by_node.entry(p.node).or_default();
        list.push(Obs::Stopped(p.stopped));
        list.push(Obs::Resumed(p.resumed));
    }
    let mut out = Vec::new();
    for (node, mut list) in by_node {
        list.sort_by_key(Obs::time);
        let mut open: Option<(u64, u64)> = None; // (start, term)
        let mut last_term = 0;
        let mut writable_at_stop = false;
        let mut first_after_wake = false;
        for o in list {
            let e = match o {
                Obs::Stopped(t) => {
                    writable_at_stop = open.is_some();
                    if let Some((start, term)) = open.take() {
                        let end = t.saturating_add(lease_ns).max(start);
                        out.push(Interval {
                            node,
                            term,
                            start,
                            end,
                        });
                    }
                    continue;
                }
                Obs::Resumed(t) => {
                    if std::mem::take(&mut writable_at_stop) {
                        open = Some((t, last_term));
                        first_after_wake = true;
                    }
                    continue;
                }
                Obs::Event(e) => e,
            };
            if e.term > 0 {
                last_term = e.term;
            }
            if std::mem::take(&mut first_after_wake) && !e.writable && !e.closed {
                // Its first judgement after waking: not writable (its lease had run out).
                open = None;
                continue;
            }
            match (open, e.writable) {
                (None, true) => open = Some((e.monotonic_ns, e.term)),
                (Some((start, term)), false) => {
                    let end = match e.lease_deadline_ns {
                        Some(d) if !e.closed && d >= start => d.min(e.monotonic_ns),
                        _ => e.monotonic_ns,
                    };
                    out.push(Interval {
                        node,
                        term,
                        start,
                        end,
                    });
                    open = None;
                }
                _ => {}
            }
        }
        if let Some((start, term)) = open {
            out.push(Interval {
                node,
                term,
                start,
                end: open_until.max(start),
            });
        }
    }
    out.sort_by_key(|i| i.start);
    out
}

/// Pairs of intervals of different nodes that overlap (two hosts writable at once).
pub fn overlaps(intervals: &[Interval]) -> Vec<(Interval, Interval)> {
    let mut found = Vec::new();
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            if b.start >= a.end {
                continue;
            }
            if a.node != b.node && b.start < a.end && a.start < b.end {
                found.push((*a, *b));
            }
        }
    }
    found
}

/// How long after `from` some node was writable: 0 when one was at `from`, None if none was
/// by `until`. `except` excludes a node (the leader that was killed or paused).
pub fn writable_after(intervals: &[Interval], from: u64, except: Option<u64>) -> Option<u64> {
    intervals
        .iter()
        .filter(|i| Some(i.node) != except && i.end > from)
        .map(|i| i.start.saturating_sub(from))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(node: u64, t: u64, writable: bool, deadline: Option<u64>) -> Event {
        Event {
            node,
            monotonic_ns: t,
            writable,
            term: 1,
            lease_deadline_ns: deadline,
            closed: false,
        }
    }

    #[test]
    fn a_paused_leader_ends_at_its_deadline_not_when_it_wakes() {
        let events = vec![
            ev(1, 100, true, Some(500)),
            // Paused; wakes at 2000 and says not writable, its deadline was 600.
            ev(1, 2000, false, Some(600)),
            ev(2, 1500, true, Some(2000)),
        ];
        let iv = intervals(&events, &[], 1000, 3000);
        assert_eq!(
            iv[0],
            Interval {
                node: 1,
                term: 1,
                start: 100,
                end: 600
            }
        );
        assert!(overlaps(&iv).is_empty());
        assert_eq!(writable_after(&iv, 700, Some(1)), Some(800));
    }

    #[test]
    fn a_paused_leader_that_wakes_stepped_down_ends_a_lease_after_its_stop() {
        let pause = Pause {
            node: 1,
            stopped: 1000,
            resumed: 5000,
        };
        let events = vec![
            ev(1, 100, true, Some(600)),
            // Woke up and stepped down: no deadline in its status any more.
            ev(1, 5001, false, None),
            ev(2, 1600, true, None),
        ];
        let iv = intervals(&events, &[pause], 500, 9000);
        assert_eq!(
            iv[0],
            Interval {
                node: 1,
                term: 1,
                start: 100,
                end: 1500
            }
        );
        assert!(overlaps(&iv).is_empty());
        // A leader that wakes and still says it may write (no word at all) overlaps.
        let iv = intervals(&events[..1], &[pause], 500, 9000);
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[1].start, 5000);
        let mut both = iv.clone();
        both.extend(intervals(&events[2..], &[], 500, 9000));
        assert_eq!(overlaps(&both).len(), 1);
    }

    #[test]
    fn two_writable_at_once_is_found() {
        let events = vec![ev(1, 100, true, Some(5000)), ev(2, 200, true, Some(700))];
        let iv = intervals(&events, &[], 1000, 1000);
        assert_eq!(overlaps(&iv).len(), 1);
    }

    #[test]
    fn a_closed_stream_ends_the_interval_when_seen() {
        let mut close = ev(1, 900, false, None);
        close.closed = true;
        let events = vec![ev(1, 100, true, Some(300)), close, ev(2, 950, true, None)];
        let iv = intervals(&events, &[], 1000, 2000);
        assert_eq!(iv[0].end, 900);
        assert!(overlaps(&iv).is_empty());
        assert_eq!(writable_after(&iv, 500, None), Some(0));
    }
}

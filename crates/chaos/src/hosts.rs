//! The host simulation on the client library: beside every node, a master's `Leadership`
//! (regent-client) as a host would hold it, and the intervals in which its `is_writable()`
//! could have been true. Two of them overlapping means two masters could have written at
//! once: what the library promises never happens.
//!
//! An interval starts at an `Active` event and ends at the next `Inactive` one, or at the lease
//! deadline that event names if earlier (`is_writable()` is false from the deadline on,
//! whenever the library noticed); one still open when the run ends ends then. Invariant: an
//! interval never ends before the host could last have written.

use crate::watch::Interval;
use regent_client::{Leadership, LeadershipEvent, LeadershipOptions};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct Hosts {
    leaderships: Vec<Leadership>,
    /// (node, event) in the order they came, per node.
    events: Arc<Mutex<Vec<(u64, LeadershipEvent)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hosts {
    /// One Leadership per node, each followed by a thread that records its events.
    pub fn start(sockets: Vec<(u64, PathBuf)>) -> Hosts {
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut leaderships = Vec::new();
        let mut threads = Vec::new();
        for (node, socket) in sockets {
            let (leadership, rx) = Leadership::start(&socket, LeadershipOptions::default());
            leaderships.push(leadership);
            let events = events.clone();
            threads.push(std::thread::spawn(move || {
                for event in rx {
                    events.lock().unwrap().push((node, event));
                }
            }));
        }
        Hosts {
            leaderships,
            events,
            threads,
        }
    }

    /// Ends the Leaderships and returns each host's writable intervals (`now` ends one still
    /// open).
    pub fn finish(self, now: u64) -> Vec<Interval> {
        // Intervals open at the end are closed at `now`, before `close` adds its own event.
        let events = self.events.lock().unwrap().clone();
        for leadership in &self.leaderships {
            leadership.close();
        }
        drop(self.leaderships);
        // The channels end once the Leaderships' threads drop their senders: do not wait on
        // threads still blocked on a stream that a stopped node keeps open.
        drop(self.threads);
        intervals(&events, now)
    }
}

/// The writable intervals of the hosts, from their events (in the order each host got them).
pub fn intervals(events: &[(u64, LeadershipEvent)], now: u64) -> Vec<Interval> {
    let mut open: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
    let mut out = Vec::new();
    for (node, event) in events {
        match event {
            LeadershipEvent::Active { term, at_ns, .. } => {
                // A second Active without an Inactive cannot happen; if it did, the first
                // interval is kept open (the longer one).
                open.entry(*node).or_insert((*at_ns, *term));
            }
            LeadershipEvent::Inactive {
                at_ns, deadline_ns, ..
            } => {
                if let Some((start, term)) = open.remove(node) {
                    let end = if *deadline_ns >= start {
                        (*at_ns).min(*deadline_ns)
                    } else {
                        *at_ns
                    };
                    out.push(Interval {
                        node: *node,
                        term,
                        start,
                        end: end.max(start),
                    });
                }
            }
        }
    }
    for (node, (start, term)) in open {
        out.push(Interval {
            node,
            term,
            start,
            end: now.max(start),
        });
    }
    out.sort_by_key(|i| i.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::overlaps;

    fn active(term: u64, at_ns: u64) -> LeadershipEvent {
        LeadershipEvent::Active {
            term,
            catch_up_index: None,
            at_ns,
        }
    }

    fn inactive(at_ns: u64, deadline_ns: u64) -> LeadershipEvent {
        LeadershipEvent::Inactive {
            reason: String::new(),
            at_ns,
            deadline_ns,
        }
    }

    #[test]
    fn an_interval_ends_at_the_deadline_when_the_library_noticed_later() {
        let events = vec![
            (1, active(2, 100)),
            (1, inactive(900, 600)),
            (2, active(3, 700)),
        ];
        let iv = intervals(&events, 2000);
        assert_eq!(
            iv[0],
            Interval {
                node: 1,
                term: 2,
                start: 100,
                end: 600
            }
        );
        assert_eq!(iv[1].end, 2000);
        assert!(overlaps(&iv).is_empty());
    }

    #[test]
    fn two_hosts_writable_at_once_are_found() {
        let events = vec![
            (1, active(2, 100)),
            (2, active(3, 500)),
            (1, inactive(800, 900)),
        ];
        assert_eq!(overlaps(&intervals(&events, 1000)).len(), 1);
    }
}

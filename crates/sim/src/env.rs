//! What every part of a run shares: the timeline, the one random generator, and the trace.
//!
//! Invariant: the parts draw from `rng` and schedule on `time` in the order the run's events
//! call them, and nothing else does: that order is what a seed reproduces.

use super::time::{Event, Time};
use regent_raft::{Nanos, SplitMix64};
use std::collections::VecDeque;

pub struct Env {
    pub rng: SplitMix64,
    pub time: Time,
    trace: Option<VecDeque<String>>,
    /// The last lines kept.
    trace_lines_max: usize,
}

impl Env {
    /// Keeps a readable trace of the last `trace_lines_max` events (none if 0).
    pub fn new(rng: SplitMix64, trace_lines_max: usize) -> Env {
        Env {
            rng,
            time: Time::default(),
            trace: (trace_lines_max > 0).then(VecDeque::new),
            trace_lines_max,
        }
    }

    pub fn now(&self) -> Nanos {
        self.time.now()
    }

    pub fn schedule(&mut self, after: Nanos, event: Event) {
        self.time.schedule(after, event);
    }

    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// Adds a line to the trace (when tracing), stamped with the simulated time.
    pub fn note(&mut self, line: String) {
        let now = self.time.now();
        if let Some(trace) = &mut self.trace {
            trace.push_back(format!("{:>10.3} ms  {line}", now as f64 / 1e6));
            if trace.len() > self.trace_lines_max {
                trace.pop_front();
            }
        }
    }

    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.take().map(Vec::from).unwrap_or_default()
    }
}

//! Configuration: every refusal names the field and the rule, and the core refuses to start
//! with an invalid configuration rather than panic.

use super::*;

/// A name, a way to break a valid config, and the words its error must contain.
type ConfigCase = (&'static str, fn(&mut Config), &'static [&'static str]);

#[test]
fn errors_name_the_field_and_the_rule() {
    let cases: Vec<ConfigCase> = vec![
        ("id 0", |c| c.id = n(0), &["id must not be 0"]),
        (
            "election timeout too short",
            |c| c.election_timeout_min_ms = 2,
            &["election_timeout_min_ms", "at least 3"],
        ),
        (
            "election timeout too long",
            |c| c.election_timeout_min_ms = 3_600_001,
            &["election_timeout_min_ms", "at most"],
        ),
        (
            "no heartbeat",
            |c| c.heartbeat_interval_ms = 0,
            &["heartbeat_interval_ms", "at least 1"],
        ),
        (
            "heartbeat above a third of the election timeout",
            |c| c.heartbeat_interval_ms = 34,
            &["heartbeat_interval_ms", "election_timeout_min_ms", "third"],
        ),
        (
            "drift",
            |c| c.clock_drift_max_ppm = 500_001,
            &["clock_drift_max_ppm"],
        ),
        ("no inflight", |c| c.inflight_max = 0, &["inflight_max"]),
        (
            "too much inflight",
            |c| c.inflight_max = 1025,
            &["inflight_max"],
        ),
        (
            "no append bytes",
            |c| c.append_bytes_max = 0,
            &["append_bytes_max"],
        ),
        (
            "no append entries",
            |c| c.append_entries_max = 0,
            &["append_entries_max"],
        ),
        (
            "uncommitted below one append",
            |c| c.uncommitted_bytes_max = c.append_bytes_max - 1,
            &["uncommitted_bytes_max"],
        ),
        (
            "persist stall below a heartbeat",
            |c| c.persist_stall_max_ms = HEARTBEAT_MS - 1,
            &["persist_stall_max_ms"],
        ),
    ];
    assert_eq!(config(1).validate(), Ok(()));
    for (name, break_it, words) in cases {
        let mut c = config(1);
        break_it(&mut c);
        let err = c.validate().expect_err(name).to_string();
        for word in words {
            assert!(err.contains(word), "{name}: {err:?} does not say {word:?}");
        }
        // The core refuses to start with it, with the same error rather than a panic.
        let refused = RaftNode::new(c, restored(3, 0, &[], 0), Box::new(SplitMix64::new(1)), 0);
        assert_eq!(refused.err().map(|e| e.to_string()), Some(err), "{name}");
    }
}

//! Clocks outside the drift bound, from the start and switched mid-run: the lease checks stay
//! strict (never two writable nodes at one simulated instant; a writable leader always has a
//! quorum that would refuse any vote), and the drift is detected.

use regent_sim::campaign::{self, campaign};
use regent_sim::{nodes_for, run_seed};

/// A campaign from `REGENT_SIM_FIRST` over `REGENT_SIM_SEEDS` seeds (a tool for a long run:
/// `cargo test --release -p regent-sim --test clock_faults -- --ignored --nocapture`).
#[test]
#[ignore]
fn campaign_from_the_environment() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let summary = campaign(
        var("REGENT_SIM_FIRST", 1),
        var("REGENT_SIM_SEEDS", 200),
        None,
    );
    println!("{}", summary.line());
    for failure in &summary.failures {
        println!(
            "{failure} (replay: seed {} nodes {})",
            failure.replay.seed, failure.replay.nodes
        );
    }
    assert_eq!(summary.violations, 0);
}

#[test]
fn seeds_with_clocks_outside_the_bound_keep_the_lease_safe_and_see_the_drift() {
    let (mut faults, mut seen, mut false_alarms) = (0, 0, 0);
    for seed in 1..=60u64 {
        let outcome = run_seed(seed, nodes_for(seed, None), false);
        assert!(
            outcome.violations.is_empty(),
            "seed {seed}: {:?}",
            outcome.violations
        );
        if outcome.clock_fault.is_some() {
            faults += 1;
            seen += u64::from(outcome.clock_drift_seen);
        } else {
            if outcome.clock_drift_seen {
                eprintln!("false alarm: seed {seed}");
            }
            false_alarms += u64::from(outcome.clock_drift_seen);
        }
    }
    eprintln!("60 seeds: {faults} clock faults, drift seen in {seen}; {false_alarms} false alarms");
    assert!(faults >= 20, "only {faults} of 60 seeds drew a clock fault");
    // A faulty clock on a spare or a learner, or on a node down at the time, is not a voter's
    // to check.
    assert!(seen * 4 >= faults * 3, "drift seen in {seen} of {faults}");
    assert!(
        false_alarms * 10 <= 60 - faults,
        "{false_alarms} false alarms"
    );
}

/// Replays `REGENT_SIM_REPLAY=SEED:NODES` with the last `REGENT_SIM_TRACE` events traced.
#[test]
#[ignore]
fn replay_from_the_environment() {
    let Ok(spec) = std::env::var("REGENT_SIM_REPLAY") else {
        return;
    };
    let (seed, nodes) = spec.split_once(':').expect("SEED:NODES");
    let lines = std::env::var("REGENT_SIM_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let outcome = campaign::replay(seed.parse().unwrap(), nodes.parse().unwrap(), lines);
    for line in &outcome.trace {
        println!("{line}");
    }
    println!("clock fault: {:?}", outcome.clock_fault);
    for v in &outcome.violations {
        println!("{v}");
    }
}

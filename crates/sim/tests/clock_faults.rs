//! Clocks outside the drift bound, from the start and switched mid-run: the lease checks stay
//! strict (never two writable nodes at one simulated instant; a writable leader always has a
//! quorum that would refuse any vote), and the drift is detected.

use regent_sim::{campaign, nodes_for, run_seed};

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
    let summary = campaign(var("REGENT_SIM_FIRST", 1), var("REGENT_SIM_SEEDS", 200), None);
    println!("{}", summary.line());
    for failure in &summary.failures {
        println!("{failure}");
    }
    assert_eq!(summary.violations, 0);
}

#[test]
fn seeds_with_clocks_outside_the_bound_keep_the_lease_safe_and_see_the_drift() {
    let (mut faults, mut seen) = (0, 0);
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
        }
    }
    assert!(faults >= 20, "only {faults} of 60 seeds drew a clock fault");
    assert!(seen * 10 >= faults * 9, "drift seen in {seen} of {faults}");
}

//! Simulator campaigns: the deterministic simulator runs the real core over thousands of seeds,
//! with message loss, duplication, reordering, partitions (full, one-way, partial), crashes that
//! lose unwritten data, restarts and clock drift, checking every safety property after every
//! step, liveness after healing, and the clients' history for linearizability.

use regent_sim::{campaign, run_seed, Summary};

fn assert_clean(summary: &Summary) {
    for violation in &summary.failures {
        eprintln!("FAIL {violation}");
        eprintln!("  replay: {}", violation.replay);
    }
    assert_eq!(summary.violations, 0, "{}", summary.line());
    // A campaign that elected nobody or committed nothing proved nothing.
    assert!(summary.elections >= summary.seeds, "{}", summary.line());
    assert!(summary.commits >= summary.seeds, "{}", summary.line());
}

// 2,500 seeds in five slices so that both cores work.
#[test]
fn three_nodes_first_500_seeds() {
    assert_clean(&campaign(0, 500, Some(3)));
}

#[test]
fn three_nodes_next_500_seeds() {
    assert_clean(&campaign(500, 500, Some(3)));
}

#[test]
fn five_nodes_first_500_seeds() {
    assert_clean(&campaign(0, 500, Some(5)));
}

#[test]
fn five_nodes_next_500_seeds() {
    assert_clean(&campaign(500, 500, Some(5)));
}

// Seven nodes: room for learners as many as the voters and spares outside the configuration.
#[test]
fn seven_nodes_first_500_seeds() {
    assert_clean(&campaign(0, 500, Some(7)));
}

#[test]
fn a_seed_replays_identically() {
    for (seed, nodes) in [(7, 3), (8, 5)] {
        let a = run_seed(seed, nodes, false);
        let b = run_seed(seed, nodes, false);
        assert_eq!(
            (
                a.elections,
                a.commits,
                a.election_after_heal_ns,
                a.violations
            ),
            (
                b.elections,
                b.commits,
                b.election_after_heal_ns,
                b.violations
            )
        );
    }
}

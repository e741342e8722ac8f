//! The deterministic cluster simulator: runs the real Raft core under seeded faults and checks
//! safety after every step, liveness after healing, and the clients' history at the end.
//!
//! Invariant: a seed alone reproduces a run, so every failure is replayed with one command.

pub mod checker;
pub mod cluster;
pub mod linearizability;

pub use cluster::{Cluster, SimConfig, SimOutcome};

use clap::Args;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Number of seeds to run (consecutive, starting at --seed).
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Cluster size, 3 or 5; without it, seeds alternate between the two.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub nodes: Option<u64>,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print a trace of the last events of each failing seed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub trace: bool,
}

/// Totals of a campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub seeds: u64,
    pub violations: u64,
    pub elections: u64,
    pub commits: u64,
    pub max_election_ms: u64,
    pub transfers: u64,
    pub reads: u64,
    pub conf_changes: u64,
    pub snapshots: u64,
    pub retries: u64,
    /// (seed, nodes, first violation) of each failing seed.
    pub failures: Vec<(u64, usize, String)>,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "sim: seeds={} violations={} elections={} commits={} max_election_ms={} snapshots={} conf_changes={} transfers={} reads={} retries={}",
            self.seeds,
            self.violations,
            self.elections,
            self.commits,
            self.max_election_ms,
            self.snapshots,
            self.conf_changes,
            self.transfers,
            self.reads,
            self.retries
        )
    }
}

/// The cluster size for a seed when none is forced: alternate 3 and 5.
pub fn nodes_for(seed: u64, forced: Option<usize>) -> usize {
    forced.unwrap_or(if seed.is_multiple_of(2) { 3 } else { 5 })
}

/// Runs one seed.
pub fn run_seed(seed: u64, nodes: usize, trace: bool) -> SimOutcome {
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.trace = trace;
    Cluster::new(cfg).run()
}

/// Runs `count` consecutive seeds from `first`.
pub fn campaign(first: u64, count: u64, nodes: Option<usize>) -> Summary {
    let mut summary = Summary::default();
    for seed in first..first + count {
        let n = nodes_for(seed, nodes);
        let outcome = run_seed(seed, n, false);
        summary.seeds += 1;
        summary.elections += outcome.elections;
        summary.commits += outcome.commits;
        summary.transfers += outcome.transfers;
        summary.reads += outcome.reads;
        summary.conf_changes += outcome.conf_changes;
        summary.retries += outcome.retries;
        summary.snapshots += outcome.snapshots;
        summary.max_election_ms = summary
            .max_election_ms
            .max(outcome.election_after_heal_ns / 1_000_000);
        if !outcome.violations.is_empty() {
            summary.violations += outcome.violations.len() as u64;
            summary
                .failures
                .push((seed, n, outcome.violations[0].clone()));
        }
    }
    summary
}

pub fn run_cli(args: SimArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let nodes = args.nodes.map(|n| n as usize);
    let summary = campaign(args.seed, args.seeds, nodes);
    for (seed, n, violation) in &summary.failures {
        println!("FAIL seed={seed} nodes={n}: {violation}");
        println!("  replay: cargo run --release -- sim --seed {seed} --nodes {n}");
        if args.trace {
            println!("  last events:");
            for line in run_seed(*seed, *n, true).trace {
                println!("    {line}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "sim: {:.0} seeds/s ({} seeds in {secs:.1} s)",
        summary.seeds as f64 / secs.max(1e-9),
        summary.seeds
    );
    println!("{}", summary.line());
    Ok(if summary.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

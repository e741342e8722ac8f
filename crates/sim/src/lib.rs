//! The deterministic cluster simulator: runs the real replica (Raft core and its glue) under
//! seeded faults and checks safety after every step, liveness after healing, and the clients'
//! history at the end.
//!
//! Built from parts, each one thing (after TigerBeetle's `src/testing/`): the packet simulator
//! ([`network`]), the storage simulator ([`storage`]), time and clocks ([`time`]), the
//! [`workload`], the [`operator`] and the fault schedule ([`nemesis`]), snapshot streams
//! ([`snapshot`]) and the [`checker`]s; [`cluster`] only assembles them, and [`campaign`] runs
//! many seeds.
//!
//! Invariant: a seed alone reproduces a run, so every failure is replayed with one command.

pub mod campaign;
pub mod checker;
pub mod cluster;
pub mod config;
mod env;
mod hosts;
mod layout;
mod maintenance;
mod nemesis;
mod network;
mod node;
mod operator;
mod panics;
mod roles;
mod snapshot;
mod storage;
mod time;
mod workload;

pub use campaign::{campaign, nodes_for, run_config, run_seed, run_seed_caught, Summary};
pub use checker::{Class, Violation, ViolationKind};
pub use cluster::{Cluster, SimOutcome};
pub use config::{raft_config, SimConfig};
pub use time::ClockFault;

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
    /// How many of the last events that trace shows.
    #[arg(long, default_value_t = campaign::TRACE_LINES)]
    pub trace_lines: usize,
}

pub fn run_cli(args: SimArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let nodes = args.nodes.map(|n| n as usize);
    let summary = campaign(args.seed, args.seeds, nodes);
    for violation in &summary.failures {
        let Violation { replay, .. } = violation;
        println!(
            "FAIL seed={} nodes={}: {violation}",
            replay.seed, replay.nodes
        );
        println!("  replay: {replay}");
        if args.trace {
            println!("  last events:");
            for line in campaign::replay(replay.seed, replay.nodes, args.trace_lines).trace {
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

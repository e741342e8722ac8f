//! The command line: one subcommand per job, help text from the doc comments.

pub mod admin;
pub mod bench;
pub mod client;
pub mod cluster_init;
pub mod config_check;
pub mod demo;
pub mod host;
pub mod journal;
mod load;
pub mod peers;
pub mod recover;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// regent keeps one master process writable at a time, with Raft over QUIC and mutual TLS.
#[derive(Parser, Debug)]
#[command(name = "regent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a three-node cluster on loopback with nothing set up, and show a failover.
    Demo(demo::DemoArgs),
    /// Run the daemon: Raft over QUIC with its peers, the host API on the Unix socket.
    Run {
        /// The configuration file (YAML; see config/regent.yaml).
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// The cluster as this node sees it (a table, or --json).
    Status(host::StatusArgs),
    /// Read and write the replicated key-value store.
    Kv(host::KvArgs),
    /// The host's operation journal: append, tail, state.
    Journal(journal::JournalArgs),
    /// Leadership of this node, for scripts.
    Leader(host::LeaderArgs),
    /// Membership: list, add a learner, promote, remove, abort (against the leader's socket).
    Members(host::MembersArgs),
    /// A planned hand-over of leadership (run against the leader's socket).
    Switchover(host::SwitchoverArgs),
    /// Take a snapshot now on this node: compact its log through the applied index. Prints
    /// the snapshot's index.
    Snapshot(host::MaintenanceArgs),
    /// Snapshot as `regent snapshot`, then compact this node's database file (redb never
    /// shrinks it on its own). Prints the index and the file's bytes before and after.
    Compact(host::MaintenanceArgs),
    /// UNSAFE, offline: make a stopped survivor the only voter of its cluster after a
    /// majority is lost for good (`--force-new-cluster`). Prints what it will do; does it only
    /// with --i-accept-losing-writes.
    Recover(recover::RecoverArgs),
    /// Run a deterministic simulator campaign of the real Raft core under faults.
    Sim(crate::sim::SimArgs),
    /// Certificates: create a CA, issue, inspect and rotate node certificates.
    Admin(admin::AdminArgs),
    /// Check a configuration file as `regent run` would: settings, files, certificate.
    CheckConfig(config_check::CheckConfigArgs),
    /// Print what a configuration's timing means: lease, failover and switchover times.
    ExplainTiming(config_check::ExplainTimingArgs),
    /// A chaos campaign on real processes: faults from a seed, then linearizability, lost
    /// writes, state digests, double leadership and failover time checked (docs/chaos.md).
    Chaos(crate::chaos::ChaosArgs),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable log appends per second and snapshot throughput on redb.
    Storage(crate::storage::bench::BenchArgs),
    /// Round-trip latency and message rate over QUIC with mutual TLS.
    Transport(crate::transport::bench::BenchArgs),
    /// A three-node cluster of real processes: writes/s and latency per client count, reads/s,
    /// failover and switchover.
    Cluster(bench::ClusterBenchArgs),
    /// The cluster bench's write workload against regent, etcd and ZooKeeper side by side
    /// (bench/peers.sh installs the latter two).
    Peers(peers::PeersBenchArgs),
}

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run { config } => crate::daemon::run(&config),
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => host::status(args),
        Command::Kv(args) => host::kv(args),
        Command::Journal(args) => journal::run(args),
        Command::Leader(args) => host::leader(args),
        Command::Switchover(args) => host::switchover(args),
        Command::Members(args) => host::members(args),
        Command::Snapshot(args) => host::maintenance(args, false),
        Command::Recover(args) => recover::run(args),
        Command::Compact(args) => host::maintenance(args, true),
        Command::Sim(args) => crate::sim::run_cli(args),
        Command::Chaos(args) => crate::chaos::run(args),
        Command::Admin(args) => admin::run(args),
        Command::CheckConfig(args) => config_check::check_config(args),
        Command::ExplainTiming(args) => config_check::explain_timing(args),
        Command::Bench { which } => match which {
            BenchCommand::Storage(args) => crate::storage::bench::run(args),
            BenchCommand::Transport(args) => crate::transport::bench::run(args),
            BenchCommand::Cluster(args) => bench::run(args),
            BenchCommand::Peers(args) => peers::run(args),
        },
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("regent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    crate::daemon::logging::init();
}

//! The command line: one subcommand per job, help text from the doc comments.

pub mod admin;
pub mod backup;
pub mod cluster_init;
pub mod config_check;
pub mod demo;
pub mod history;
pub mod host;
pub mod journal;
pub mod maintenance;
pub mod recover;
pub mod version;

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
    /// The cluster as this node sees it (a table, or --json), with every member's election
    /// role (candidate, nofailover, witness) and priority.
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
    /// The failover history: every leadership change (term, leader, previous leader, cause:
    /// election, switchover, sigterm, health, ...; time), oldest first, as this node applied it.
    History(history::HistoryArgs),
    /// Maintenance: pause automatic failover cluster-wide (replicated; leadership moves only
    /// by `regent switchover --force` until `regent resume` or the TTL ends it).
    Pause(maintenance::PauseArgs),
    /// End a pause: health, disk stalls and stops move leadership again.
    Resume(maintenance::ResumeArgs),
    /// Make a node ineligible to lead (it hands leadership away if it leads) until undrained.
    Drain(maintenance::DrainArgs),
    /// Make a drained node eligible to lead again.
    Undrain(maintenance::DrainArgs),
    /// Run the fence methods (`fencing.methods`) against a node now, in order until one
    /// succeeds; a promotion waiting for that node to be fenced then goes on.
    Fence(host::FenceArgs),
    /// Take a snapshot now on this node: compact its log through the applied index. Prints
    /// the snapshot's index.
    Snapshot(host::MaintenanceArgs),
    /// Snapshot as `regent snapshot`, then compact this node's database file (redb never
    /// shrinks it on its own). Prints the index and the file's bytes before and after.
    Compact(host::MaintenanceArgs),
    /// Write a backup of this node's state machine (KV, sessions, journal, members, applied
    /// index and term) to --out FILE, checked before it appears there; `backup verify FILE`
    /// checks a backup without a node and prints its digest. Best taken on a follower.
    Backup(backup::BackupArgs),
    /// Offline: build the data directories of a NEW cluster from a backup (certificates and
    /// configurations as `admin cluster init` writes them, each database holding the backup's
    /// state machine). Then start each node.
    Restore(backup::RestoreArgs),
    /// UNSAFE, offline: make a stopped survivor the only voter of its cluster after a
    /// majority is lost for good (`--force-new-cluster`). Prints what it will do; does it only
    /// with --i-accept-losing-writes.
    Recover(recover::RecoverArgs),
    /// Run a deterministic simulator campaign of the real Raft core under faults.
    #[cfg(feature = "harness")]
    Sim(regent_sim::SimArgs),
    /// Certificates: create a CA, issue, inspect and rotate node certificates.
    Admin(admin::AdminArgs),
    /// This build's version and the wire and command versions it speaks; with a daemon on the
    /// socket, the daemon's and the cluster version (the newest every voter speaks). See
    /// docs/operations.md, "Rolling upgrade and downgrade".
    Version(version::VersionArgs),
    /// Check a configuration file as `regent run` would: settings, files, certificate, and
    /// that some voter may lead (`election:` roles, `members[].election`).
    CheckConfig(config_check::CheckConfigArgs),
    /// Print what a configuration's timing means: lease, failover and switchover times.
    ExplainTiming(config_check::ExplainTimingArgs),
    /// A chaos campaign on real processes: faults from a seed, then linearizability, lost
    /// writes, state digests, double leadership and failover time checked (docs/chaos.md).
    #[cfg(feature = "harness")]
    Chaos(regent_chaos::ChaosArgs),
    /// Benchmarks that print figures.
    #[cfg(feature = "harness")]
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[cfg(feature = "harness")]
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable log appends per second and snapshot throughput on redb.
    Storage(regent_bench::storage::BenchArgs),
    /// Round-trip latency and message rate over QUIC with mutual TLS.
    Transport(regent_bench::transport::BenchArgs),
    /// A three-node cluster of real processes: writes/s and latency per client count, reads/s,
    /// failover and switchover.
    Cluster(regent_bench::cluster::ClusterBenchArgs),
    /// The cluster bench's write workload against regent, etcd and ZooKeeper side by side
    /// (bench/peers.sh installs the latter two).
    Peers(regent_bench::peers::PeersBenchArgs),
}

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A command whose output goes to a pipe closed early (`| head -1`, a pager quit) ends as
    // Unix tools do, by SIGPIPE, quietly; Rust ignores SIGPIPE and panics on the failed print
    // instead. The daemon keeps ignoring it (a peer or client that goes away is an error to
    // handle, not a reason to die), and so do the socket writes of every command
    // (`regent_client::http::UnixSocket` sends with MSG_NOSIGNAL); children that must not
    // outlive such an end are started with `die_with_parent`.
    if !matches!(cli.command, Command::Run { .. }) {
        // SAFETY: signal(2) at start-up, before any thread of ours exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The simulator's replicas log as the daemon's do, for thousands of nodes a second: a
    // campaign prints its own summary and traces, and logs only when REGENT_LOG asks for them.
    #[cfg(feature = "harness")]
    let quiet = matches!(cli.command, Command::Sim(_)) && std::env::var_os("REGENT_LOG").is_none();
    #[cfg(not(feature = "harness"))]
    let quiet = false;
    if !quiet {
        init_tracing();
    }
    let result = match cli.command {
        // The daemon's error keeps its cause as its `source`; anyhow prints the whole chain.
        Command::Run { config } => regent_daemon::run(&config).map_err(anyhow::Error::from),
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => host::status(args),
        Command::Kv(args) => host::kv(args),
        Command::Journal(args) => journal::run(args),
        Command::Leader(args) => host::leader(args),
        Command::Switchover(args) => host::switchover(args),
        Command::History(args) => history::run(args),
        Command::Fence(args) => host::fence(args),
        Command::Pause(args) => maintenance::pause(args),
        Command::Resume(args) => maintenance::resume(args),
        Command::Drain(args) => maintenance::drain(args, true),
        Command::Undrain(args) => maintenance::drain(args, false),
        Command::Members(args) => host::members(args),
        Command::Snapshot(args) => host::maintenance(args, false),
        Command::Recover(args) => recover::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => backup::restore(args),
        Command::Compact(args) => host::maintenance(args, true),
        #[cfg(feature = "harness")]
        Command::Sim(args) => regent_sim::run_cli(args),
        #[cfg(feature = "harness")]
        Command::Chaos(args) => regent_chaos::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Version(args) => version::run(args),
        Command::CheckConfig(args) => config_check::check_config(args),
        Command::ExplainTiming(args) => config_check::explain_timing(args),
        #[cfg(feature = "harness")]
        Command::Bench { which } => match which {
            BenchCommand::Storage(args) => regent_bench::storage::run(args),
            BenchCommand::Transport(args) => regent_bench::transport::run(args),
            BenchCommand::Cluster(args) => regent_bench::cluster::run(args),
            BenchCommand::Peers(args) => regent_bench::peers::run(args),
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
    regent_daemon::logging::init();
}

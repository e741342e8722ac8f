//! `regent chaos`: real `regent run` processes (each in its own network namespace, or on
//! loopback behind a fault-injecting relay), clients writing and reading through their sockets,
//! faults from a seed, and checks of what the clients and the nodes saw. See docs/chaos.md.
//!
//! A campaign is a sequence of *runs*, each on a fresh cluster with its own seed: the
//! workload, then episodes of faults (every kind once alone, then random single and mixed
//! ones), then a heal, and the checks:
//! - the clients' history is linearizable (the simulator's WGL checker,
//!   `sim::checker::linearizability`);
//! - no acknowledged write is lost (each read back on every node);
//! - every node ends with the same state digest (`GET /v1/status?digest=true`);
//! - every node's journal holds the same dense sequence, in which every acknowledged append
//!   appears exactly once at the index it was answered with, and nothing twice; every node's
//!   live tail, kept open through the faults, saw a dense prefix of it ([`journal`]);
//! - never two hosts writable at once (every node's leadership watch stream, one clock, the
//!   lease deadlines: [`watch`]);
//! - a writable leader within the `explain-timing` failover bound after each heal (and after
//!   a kill or pause of the leader);
//! - the node configured `election: {role: nofailover}` (node n−1 of every run) is never
//!   writable, though it votes, replicates and may have to lead for a moment to hand over;
//! - no node panicked.
//!
//! Besides process and network faults, an episode may put the cluster in maintenance
//! (`regent pause` through any node, `regent resume` at the heal).
//!
//! Invariant: any violation makes the command exit non-zero and print the seed that replays
//! the run's schedule.

pub mod cluster;
mod faults;
mod hosts;
mod journal;
pub mod net;
mod relay;
mod watch;
mod workload;

/// The fault-injecting UDP relay, also used by the transport's own tests.
pub use relay::{Netem, Relay};

use anyhow::Context;
use clap::Args;
use cluster::Cluster;
use faults::Fault;
use net::{Net, NetChoice};
use regent_raft::{RaftRng, SplitMix64};
use regent_sim::checker::linearizability::{self as lin, Verdict};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use workload::{OpKind, Record, Workload};

static INTERRUPTED: std::sync::LazyLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The longest run of a campaign; longer campaigns are several runs.
const RUN_SECONDS_MAX: u64 = 60;
/// WGL search steps per key.
const SEARCH_STEPS_MAX: u64 = 20_000_000;
/// Extra YAML for every node: small compaction thresholds, so restarts catch up by snapshot.
const NODE_SETTINGS: &str = "raft:\n  compaction_entries_max: 2000\n";

#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// How long the campaign runs (runs of at most 60 s each, on fresh clusters).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Nodes per cluster: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    pub nodes: u64,
    /// The seed of the fault schedule (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    pub clients: u64,
    /// The network: namespaces (root, `ip`), loopback with the UDP relay, or auto.
    #[arg(long, value_enum, default_value_t = NetChoice::Auto)]
    pub network: NetChoice,
    /// Keep each run's directory (logs, data) under this directory.
    #[arg(long)]
    pub keep: Option<std::path::PathBuf>,
    /// Time allowed past the `explain-timing` failover bound before a slow failover counts as
    /// a (liveness) violation. 0, the default, holds the campaign to the bound itself; a test on
    /// a machine loaded by other work may allow some. Safety checks never get slack.
    #[arg(long, default_value_t = 0)]
    pub failover_slack_ms: u64,
}

/// What one run found.
#[derive(Default, Debug)]
struct RunOutcome {
    faults: u64,
    acked: u64,
    lost: u64,
    linearizable: bool,
    double_writable: u64,
    max_failover_ms: u64,
    journal_acked: u64,
    journal_ok: bool,
    /// Writes and appends acknowledged through a follower's relay (`forward=true`).
    forwarded_acked: u64,
    /// Pairs of the library hosts' writable intervals (`hosts.rs`) that overlap.
    hosts_double_writable: u64,
    /// The library hosts' writable intervals (activations): the check above saw that many.
    hosts_active: u64,
    /// Writable intervals of the `nofailover` node (it must have none).
    nofailover_writable: u64,
    violations: Vec<String>,
}

pub fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 4 {
        anyhow::bail!("--nodes 4: a chaos cluster has 3 or 5 nodes");
    }
    // SIGINT/SIGTERM end the campaign through its Drop guards (processes, namespaces, tmpfs).
    signal_hook::flag::register(signal_hook::consts::SIGINT, INTERRUPTED.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, INTERRUPTED.clone())?;
    let bin = std::env::current_exe().context("finding the regent binary")?;
    let seed = args
        .seed
        .unwrap_or_else(|| regent_daemon::clock::now() ^ ((std::process::id() as u64) << 32));
    let started = Instant::now();
    let mut total = RunOutcome {
        linearizable: true,
        journal_ok: true,
        ..Default::default()
    };
    let mut runs = 0u64;
    let mut failed_seeds = Vec::new();
    println!(
        "chaos: seed {seed}, {} nodes, {} s",
        args.nodes, args.seconds
    );
    loop {
        let left = args.seconds.saturating_sub(started.elapsed().as_secs());
        if interrupted() {
            total
                .violations
                .push("interrupted (SIGINT or SIGTERM)".into());
            break;
        }
        if runs > 0 && left < 15 {
            break;
        }
        let seconds = left.clamp(10, RUN_SECONDS_MAX);
        let run_seed = if runs == 0 {
            seed
        } else {
            SplitMix64::new(seed ^ runs).next_u64()
        };
        runs += 1;
        let outcome = match one_run(&args, &bin, run_seed, seconds, runs) {
            Ok(o) => o,
            Err(err) => RunOutcome {
                linearizable: true,
                journal_ok: true,
                violations: vec![format!("the run could not be carried out: {err:#}")],
                ..Default::default()
            },
        };
        println!(
            "chaos: run {runs} seed {run_seed}: faults={} acked={} lost={} linearizable={} double_writable={} max_failover_ms={} journal_acked={} journal_ok={} forwarded_acked={} hosts_active={} hosts_double_writable={} nofailover_writable={}",
            outcome.faults, outcome.acked, outcome.lost, yes_no(outcome.linearizable), outcome.double_writable, outcome.max_failover_ms, outcome.journal_acked, yes_no(outcome.journal_ok), outcome.forwarded_acked, outcome.hosts_active, outcome.hosts_double_writable, outcome.nofailover_writable
        );
        if !outcome.violations.is_empty() {
            for v in &outcome.violations {
                println!("chaos: VIOLATION (run {runs}): {v}");
            }
            println!(
                "chaos: replay: regent chaos --seconds {seconds} --nodes {} --seed {run_seed}",
                args.nodes
            );
            failed_seeds.push(run_seed);
        }
        total.faults += outcome.faults;
        total.acked += outcome.acked;
        total.lost += outcome.lost;
        total.linearizable &= outcome.linearizable;
        total.double_writable += outcome.double_writable;
        total.max_failover_ms = total.max_failover_ms.max(outcome.max_failover_ms);
        total.journal_acked += outcome.journal_acked;
        total.journal_ok &= outcome.journal_ok;
        total.forwarded_acked += outcome.forwarded_acked;
        total.hosts_double_writable += outcome.hosts_double_writable;
        total.hosts_active += outcome.hosts_active;
        total.nofailover_writable += outcome.nofailover_writable;
        total.violations.extend(outcome.violations);
    }
    println!(
        "chaos: runs={runs} faults={} acked={} lost={} linearizable={} double_writable={} max_failover_ms={} journal_acked={} journal_ok={} forwarded_acked={} hosts_active={} hosts_double_writable={} nofailover_writable={}",
        total.faults, total.acked, total.lost, yes_no(total.linearizable), total.double_writable, total.max_failover_ms, total.journal_acked, yes_no(total.journal_ok), total.forwarded_acked, total.hosts_active, total.hosts_double_writable, total.nofailover_writable
    );
    if total.violations.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "chaos: {} violation(s); failing seeds: {failed_seeds:?}",
            total.violations.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One episode as it happened (CLOCK_MONOTONIC ns).
struct Happened {
    faults: Vec<Fault>,
    pauses: Vec<watch::Pause>,
    leader: Option<u64>,
    at: u64,
    healed: u64,
}

fn one_run(
    args: &ChaosArgs,
    bin: &std::path::Path,
    seed: u64,
    seconds: u64,
    number: u64,
) -> anyhow::Result<RunOutcome> {
    let temp = tempfile::Builder::new().prefix("regent-chaos-").tempdir()?;
    let dir = temp.path().join("cluster");
    let net = Net::setup(args.nodes, args.network)?;
    let mut c = Cluster::init(&dir, bin, args.nodes, net, NODE_SETTINGS)?;
    // One node votes and replicates but may never lead (Patroni's nofailover).
    let nofailover = args.nodes - 1;
    c.set_role(nofailover, "nofailover")?;
    let disk_node = args.nodes;
    let tmpfs = matches!(c.net, Net::Namespaces(_)) && c.mount_tmpfs(disk_node).is_ok();
    let network = c.net.name();
    let config = regent_daemon::config::DaemonConfig::load_unvalidated(&c.config(1))?;
    let bound_ms = config.explain_timing().failover_worst_ms().ceil() as u64;
    let lease_ns = config.timing.lease_ns();
    println!("chaos: run {number}: {} nodes on {network}, failover bound {bound_ms} ms (explain-timing) + slack {} ms, seed {seed}, n{nofailover} nofailover", args.nodes, args.failover_slack_ms);
    if let Some(tag) = c.net.tag() {
        println!(
            "chaos: run {number}: namespaces, bridge and veths named rc{tag}*, network tag {tag}"
        );
    }
    for id in 1..=args.nodes {
        c.start(id)?;
    }
    let watchers = watch::Watchers::start((1..=args.nodes).map(|id| (id, c.socket(id))).collect());
    // The masters' side: a Leadership of the client library beside every node.
    let hosts = hosts::Hosts::start((1..=args.nodes).map(|id| (id, c.socket(id))).collect());
    let mut outcome = RunOutcome {
        linearizable: true,
        journal_ok: true,
        ..Default::default()
    };
    if wait_writable(&watchers, Duration::from_secs(30)).is_none() {
        anyhow::bail!("no writable leader within 30 s of the start");
    }
    let sockets: Vec<_> = (1..=args.nodes).map(|id| c.socket(id)).collect();
    let followers =
        journal::Followers::start((1..=args.nodes).map(|id| (id, c.socket(id))).collect());
    let load = Workload::start(sockets.clone(), args.clients, seed);
    let mut rng = SplitMix64::new(seed);
    let order = faults::alone_order(&mut rng);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut happened = Vec::new();
    let mut i = 0;
    // Every fault kind once alone, however short the run; then random ones until the deadline.
    while (Instant::now() < deadline || i < order.len()) && !interrupted() {
        let mut episode = faults::episode(&mut rng, i, &order);
        i += 1;
        if !tmpfs {
            episode.faults.retain(|f| *f != Fault::DiskFull);
            if episode.faults.is_empty() {
                episode.faults.push(Fault::KillFollower);
            }
        }
        let h = run_episode(
            &mut c,
            &watchers,
            &episode,
            &mut rng,
            &mut outcome.violations,
        )?;
        outcome.faults += h.faults.len() as u64;
        happened.push(h);
    }
    // Settle: the workload stops, every node catches up.
    let forwarded_acked = load.forwarded_acked();
    let history = load.stop();
    c.reap_and_restart()?;
    let leader = wait_writable(&watchers, Duration::from_secs(20));
    let Some(leader) = leader else {
        outcome
            .violations
            .push("no writable leader after the last heal".into());
        c.kill_all();
        watchers.finish();
        hosts.finish(regent_daemon::clock::now());
        followers.finish();
        return Ok(outcome);
    };
    outcome.forwarded_acked = forwarded_acked;
    let mut history = history;
    history.extend(workload::final_reads(&c.socket(leader), args.clients));
    check_history(&history, &mut outcome);
    check_digests_and_writes(&c, &history, &mut outcome);
    let journal = check_journal(&c, &history, &mut outcome);
    for id in 1..=args.nodes {
        if c.logs(id).contains("panicked at") {
            outcome
                .violations
                .push(format!("n{id} panicked; see its log"));
        }
    }
    for (id, status) in &c.unexpected_exits {
        println!("chaos: note: n{id} exited on its own ({status}) and was restarted");
    }
    // The streams end when the nodes do.
    c.kill_all();
    let events = watchers.finish();
    check_hosts(&hosts.finish(regent_daemon::clock::now()), &mut outcome);
    check_live_tails(followers, &journal, &mut outcome);
    check_leadership(
        &events,
        &happened,
        (lease_ns, bound_ms, args.failover_slack_ms),
        nofailover,
        &mut outcome,
    );
    if let Some(keep) = &args.keep {
        let target = keep.join(format!("run{number}-seed{seed}"));
        std::fs::create_dir_all(keep)?;
        let _ = std::process::Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&target)
            .output();
    }
    drop(c);
    Ok(outcome)
}

/// `preferred` if it runs and is not stopped, else the first node that does (else node 1).
fn live_node(c: &Cluster, preferred: u64) -> u64 {
    std::iter::once(preferred)
        .chain(1..=c.n)
        .find(|&id| c.is_running(id) && !c.is_paused(id))
        .unwrap_or(1)
}

fn wait_writable(watchers: &watch::Watchers, timeout: Duration) -> Option<u64> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Some(id) = watchers.someone_writable() {
            return Some(id);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn run_episode(
    c: &mut Cluster,
    watchers: &watch::Watchers,
    episode: &faults::Episode,
    rng: &mut SplitMix64,
    violations: &mut Vec<String>,
) -> anyhow::Result<Happened> {
    let leader = wait_writable(watchers, Duration::from_secs(5));
    let n = c.n;
    let pick_follower = |rng: &mut SplitMix64| {
        let others: Vec<u64> = (1..=n).filter(|&id| Some(id) != leader).collect();
        others[rng.below(others.len() as u64) as usize]
    };
    let victim_leader = leader.unwrap_or_else(|| 1 + rng.below(n));
    let at = regent_daemon::clock::now();
    let mut killed = Vec::new();
    let mut paused = Vec::new();
    let mut filler = None;
    let mut restart_all = false;
    let mut maintenance_paused = false;
    let names: Vec<&str> = episode.faults.iter().map(|f| f.name()).collect();
    println!(
        "chaos:   episode: {} (leader {leader:?}, hold {} ms)",
        names.join(" + "),
        episode.hold_ms
    );
    for fault in &episode.faults {
        match fault {
            Fault::KillLeader => {
                c.kill(victim_leader);
                killed.push(victim_leader);
            }
            Fault::KillFollower => {
                let f = pick_follower(rng);
                c.kill(f);
                killed.push(f);
            }
            Fault::PauseLeader => {
                let stopped = c.pause(victim_leader);
                paused.push((victim_leader, stopped));
            }
            Fault::PartitionLeader => {
                for id in (1..=n).filter(|&id| id != victim_leader) {
                    c.net.cut(victim_leader, id)?;
                    c.net.cut(id, victim_leader)?;
                }
            }
            Fault::OneWayFromLeader => {
                for id in (1..=n).filter(|&id| id != victim_leader) {
                    c.net.cut(victim_leader, id)?;
                }
            }
            Fault::OneWayToLeader => {
                for id in (1..=n).filter(|&id| id != victim_leader) {
                    c.net.cut(id, victim_leader)?;
                }
            }
            Fault::PartialPartition => {
                let f = pick_follower(rng);
                c.net.cut(victim_leader, f)?;
                c.net.cut(f, victim_leader)?;
            }
            Fault::Netem => {
                let (loss_percent, delay_ms, jitter_ms, reorder_percent) = episode.netem;
                c.net.netem(Netem {
                    loss_percent,
                    delay_ms,
                    jitter_ms,
                    reorder_percent,
                })?;
            }
            Fault::RestartAll => {
                c.kill_all();
                restart_all = true;
            }
            Fault::DiskFull => {
                if let Some((_, data)) = &c.tmpfs {
                    filler = Some(cluster::fill_disk(data)?);
                }
            }
            Fault::RotateCerts => {
                for id in 1..=n {
                    if !c.is_running(id) || c.is_paused(id) {
                        continue;
                    }
                    let dir = c.node_dir(id);
                    let out = std::process::Command::new(&c.bin)
                        .args(["admin", "rotate-certs", "--ca-dir"])
                        .arg(c.dir.join("ca"))
                        .arg("--cert")
                        .arg(dir.join("node.pem"))
                        .arg("--key")
                        .arg(dir.join("node.key"))
                        .arg("--reload")
                        .arg(c.socket(id))
                        .output()?;
                    if !out.status.success() {
                        violations.push(format!(
                            "rotate-certs --reload on n{id} failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                }
            }
            Fault::MaintenancePause => {
                // Through any live node: the CLI relays it to the leader.
                let out = std::process::Command::new(&c.bin)
                    .args(["pause", "--ttl-s", "120", "--reason", "chaos", "--socket"])
                    .arg(c.socket(live_node(c, victim_leader)))
                    .output()?;
                let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if out.status.success() {
                    maintenance_paused = true;
                } else if episode.faults.len() == 1 && leader.is_some() {
                    violations.push(format!(
                        "pause failed with no other fault (leader n{victim_leader}): {text}"
                    ));
                } else {
                    println!("chaos:   pause refused under other faults: {text}");
                }
            }
            Fault::Switchover => {
                let out = std::process::Command::new(&c.bin)
                    .args(["switchover", "--socket"])
                    .arg(c.socket(victim_leader))
                    .output()?;
                if !out.status.success() {
                    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    if episode.faults.len() == 1 && leader.is_some() {
                        violations.push(format!("switchover on the leader n{victim_leader} failed with no other fault: {text}"));
                    } else {
                        println!("chaos:   switchover refused under other faults: {text}");
                    }
                }
            }
        }
    }
    std::thread::sleep(Duration::from_millis(episode.hold_ms));
    // Heal.
    let mut pauses = Vec::new();
    for (node, stopped) in paused {
        let resumed = regent_daemon::clock::now();
        c.resume(node);
        pauses.push(watch::Pause {
            node,
            stopped,
            resumed,
        });
    }
    c.net.heal()?;
    if let Some(filler) = filler {
        std::fs::remove_file(filler)?;
    }
    if restart_all {
        for id in 1..=n {
            c.start(id)?;
        }
        for id in 1..=n {
            c.wait_socket(id, Duration::from_secs(20));
        }
    } else {
        for id in killed {
            c.start(id)?;
        }
    }
    c.reap_and_restart()?;
    if maintenance_paused {
        // Resumed through any live node (the CLI waits for a leader and relays to it).
        let out = std::process::Command::new(&c.bin)
            .args(["resume", "--socket"])
            .arg(c.socket(live_node(c, victim_leader)))
            .output()?;
        if !out.status.success() {
            violations.push(format!(
                "resume after a maintenance pause failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let healed = regent_daemon::clock::now();
    wait_writable(watchers, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(episode.rest_ms));
    Ok(Happened {
        faults: episode.faults.clone(),
        pauses,
        leader,
        at,
        healed,
    })
}

/// The clients' history through the simulator's WGL checker.
fn check_history(history: &[Record], outcome: &mut RunOutcome) {
    let mut ops = Vec::new();
    for r in history {
        match r.kind {
            OpKind::Write { key, value } => {
                if r.complete.is_some() {
                    outcome.acked += 1;
                }
                ops.push(lin::Operation {
                    client: r.client,
                    key,
                    kind: lin::OpKind::Write { value },
                    invoke: r.invoke,
                    complete: r.complete,
                });
            }
            OpKind::Read { key, observed, .. } => {
                if r.complete.is_some() {
                    ops.push(lin::Operation {
                        client: r.client,
                        key,
                        kind: lin::OpKind::Read { observed },
                        invoke: r.invoke,
                        complete: r.complete,
                    });
                }
            }
            OpKind::Unique { .. } => {
                if r.complete.is_some() {
                    outcome.acked += 1;
                }
            }
            // Counted and checked by `check_journal`.
            OpKind::Append { .. } => {}
        }
    }
    match lin::check(&ops, SEARCH_STEPS_MAX) {
        Verdict::Linearizable => {}
        Verdict::Violation { key, explanation } => {
            outcome.linearizable = false;
            outcome.violations.push(format!(
                "linearizability, key {}: {explanation}",
                workload::register_key(key)
            ));
        }
        Verdict::Inconclusive { key } => {
            outcome.linearizable = false;
            outcome.violations.push(format!(
                "linearizability inconclusive on key {} (search budget {SEARCH_STEPS_MAX} steps)",
                workload::register_key(key)
            ));
        }
    }
}

/// Waits until every node applied the same index, then compares their digests and reads every
/// acknowledged unique write back on every node.
fn check_digests_and_writes(c: &Cluster, history: &[Record], outcome: &mut RunOutcome) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    let mut settled = false;
    while Instant::now() < until {
        last = (1..=c.n)
            .map(|id| {
                regent_client::request(
                    &c.socket(id),
                    "GET",
                    "/v1/status?digest=true",
                    b"",
                    Duration::from_secs(5),
                )
                .ok()
                .filter(|a| a.status == 200)
                .and_then(|a| a.json().ok())
                .map(|v| v["digest"].clone())
                .filter(serde_json::Value::is_object)
            })
            .collect::<Vec<_>>();
        if last.iter().all(Option::is_some) && last.windows(2).all(|w| w[0] == w[1]) {
            settled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !settled {
        outcome.violations.push(format!(
            "the nodes' state digests differ after settling for 30 s: {last:?}"
        ));
    }
    let mut lost = 0;
    for r in history {
        if let (OpKind::Unique { n, value }, Some(_)) = (&r.kind, r.complete) {
            let key = workload::unique_key(r.client, *n);
            for id in 1..=c.n {
                let got = workload::read_value(&c.socket(id), &key, "local");
                if got != Some(Some(value.to_string().into_bytes())) {
                    lost += 1;
                    if lost <= 5 {
                        outcome.violations.push(format!(
                            "acknowledged write {key}={value} missing on n{id} (read {got:?})"
                        ));
                    }
                    break;
                }
            }
        }
    }
    outcome.lost = lost;
    if lost > 5 {
        outcome
            .violations
            .push(format!("{lost} acknowledged writes lost in all"));
    }
}

/// Reads every node's journal (after `check_digests_and_writes` let the nodes settle) and
/// checks it against the others and the clients' appends. Returns the tails read.
fn check_journal(
    c: &Cluster,
    history: &[Record],
    outcome: &mut RunOutcome,
) -> Vec<journal::NodeTail> {
    let appends = journal::appends(history);
    outcome.journal_acked = appends.iter().filter(|a| a.ack.is_some()).count() as u64;
    let mut tails = Vec::new();
    for id in 1..=c.n {
        match journal::read_tail(id, &c.socket(id)) {
            Ok(tail) => tails.push(tail),
            Err(err) => {
                outcome.journal_ok = false;
                outcome.violations.push(format!("journal: {err}"));
            }
        }
    }
    let report = journal::check(&tails, &appends);
    assert_eq!(report.acked, outcome.journal_acked);
    println!(
        "chaos:   journal: {} operations held, {} appends acknowledged, {} of them compacted away",
        report.held, report.acked, report.compacted
    );
    if !report.ok() {
        outcome.journal_ok = false;
        outcome
            .violations
            .extend(report.problems.into_iter().map(|p| format!("journal: {p}")));
    }
    tails
}

/// What the live tails saw (stopped once the nodes are killed) against the final journal.
fn check_live_tails(
    followers: journal::Followers,
    journal: &[journal::NodeTail],
    outcome: &mut RunOutcome,
) {
    let (live, ended) = followers.finish();
    let seen: Vec<String> = live
        .iter()
        .map(|t| format!("n{} {}", t.node, t.ops.len()))
        .collect();
    println!(
        "chaos:   journal: the live tails saw {} operations",
        seen.join(", ")
    );
    // A tail ends early only when retention truncated the index it needed next.
    for e in ended {
        println!("chaos:   journal note: {e}");
    }
    let problems = journal::check_live(&live, journal);
    if !problems.is_empty() {
        outcome.journal_ok = false;
        outcome
            .violations
            .extend(problems.into_iter().map(|p| format!("journal: {p}")));
    }
}

/// Never two library hosts writable at once (`hosts.rs`): a master that writes only while its
/// `Leadership::is_writable()` never writes outside its lease.
fn check_hosts(intervals: &[watch::Interval], outcome: &mut RunOutcome) {
    let overlaps = watch::overlaps(intervals);
    outcome.hosts_active = intervals.len() as u64;
    outcome.hosts_double_writable = overlaps.len() as u64;
    for (a, b) in overlaps.iter().take(5) {
        outcome.violations.push(format!(
            "two library hosts writable at once: beside n{} (term {}) over [{}, {}] and beside n{} (term {}) over [{}, {}] (CLOCK_MONOTONIC ns)",
            a.node, a.term, a.start, a.end, b.node, b.term, b.start, b.end
        ));
    }
}

/// Never two writable at once; a writable leader within the bound after each heal (and after
/// a kill or pause of the leader when that was the only fault).
fn check_leadership(
    events: &[watch::Event],
    happened: &[Happened],
    (lease_ns, bound_ms, slack_ms): (u64, u64, u64),
    nofailover: u64,
    outcome: &mut RunOutcome,
) {
    let now = regent_daemon::clock::now();
    let pauses: Vec<watch::Pause> = happened
        .iter()
        .flat_map(|h| h.pauses.iter().copied())
        .collect();
    let intervals = watch::intervals(events, &pauses, lease_ns, now);
    let overlaps = watch::overlaps(&intervals);
    outcome.double_writable = overlaps.len() as u64;
    let nofailover_intervals: Vec<_> = intervals.iter().filter(|i| i.node == nofailover).collect();
    outcome.nofailover_writable = nofailover_intervals.len() as u64;
    for i in nofailover_intervals.iter().take(3) {
        outcome.violations.push(format!(
            "the nofailover node n{} was writable (term {}) over [{}, {}] (CLOCK_MONOTONIC ns)",
            i.node, i.term, i.start, i.end
        ));
    }
    for (a, b) in overlaps.iter().take(5) {
        outcome.violations.push(format!(
            "two writable at once: n{} (term {}) over [{}, {}] and n{} (term {}) over [{}, {}] (CLOCK_MONOTONIC ns)",
            a.node, a.term, a.start, a.end, b.node, b.term, b.start, b.end
        ));
    }
    for h in happened {
        let names: Vec<&str> = h.faults.iter().map(|f| f.name()).collect();
        let mut check = |what: &str, from: u64, except: Option<u64>| match watch::writable_after(
            &intervals, from, except,
        ) {
            Some(ns) => {
                let ms = ns.div_ceil(1_000_000);
                outcome.max_failover_ms = outcome.max_failover_ms.max(ms);
                if ms * 2 > bound_ms {
                    println!(
                        "chaos:   {}: a writable leader {ms} ms after {what}",
                        names.join(" + ")
                    );
                }
                if ms > bound_ms + slack_ms {
                    outcome.violations.push(format!(
                        "{}: a writable leader {ms} ms after {what}, over the bound of {bound_ms} ms (+ {slack_ms} ms slack)",
                        names.join(" + ")
                    ));
                }
            }
            None => outcome.violations.push(format!(
                "{}: no writable leader after {what}",
                names.join(" + ")
            )),
        };
        check("the heal", h.healed, None);
        if h.faults.len() == 1
            && matches!(h.faults[0], Fault::KillLeader | Fault::PauseLeader)
            && h.leader.is_some()
        {
            check("the leader's kill or pause", h.at, h.leader);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(client: u64, kind: OpKind, invoke: u64, complete: Option<u64>) -> Record {
        Record {
            client,
            kind,
            invoke,
            complete,
        }
    }

    #[test]
    fn a_stale_read_fails_the_history_check() {
        let write = |v, i, c| record(0, OpKind::Write { key: 1, value: v }, i, c);
        let read = |v, i, c| {
            let kind = OpKind::Read {
                key: 1,
                observed: Some(v),
                lease: true,
            };
            record(1, kind, i, c)
        };
        // 2 overwrote 1 before the read began, yet the read saw 1.
        let stale = vec![
            write(1, 0, Some(10)),
            write(2, 20, Some(30)),
            read(1, 40, Some(50)),
        ];
        let mut outcome = RunOutcome {
            linearizable: true,
            journal_ok: true,
            ..Default::default()
        };
        check_history(&stale, &mut outcome);
        assert!(!outcome.linearizable);
        assert_eq!(outcome.acked, 2);
        assert!(outcome.violations[0].contains("chaos-r1"));
        // The same read overlapping the second write is fine, and so is an unknown write.
        let fine = vec![
            write(1, 0, Some(10)),
            write(2, 20, None),
            read(1, 25, Some(50)),
            read(2, 60, Some(70)),
        ];
        let mut outcome = RunOutcome {
            linearizable: true,
            journal_ok: true,
            ..Default::default()
        };
        check_history(&fine, &mut outcome);
        assert!(outcome.linearizable, "{:?}", outcome.violations);
        assert_eq!(outcome.acked, 1);
    }
}

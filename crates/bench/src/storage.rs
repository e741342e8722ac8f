//! `regent bench storage`: durable log appends per second by batch size, the cost of applying
//! with the log or deferred, and snapshot build and install throughput. It prints figures; it
//! asserts nothing about speed.

use anyhow::Context;
use clap::Args;
use regent_raft::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};
use regent_storage::{
    ApplyMode, Batch, Command, Identity, InstallProgress, LogStorage, Proposal, RedbStorage,
    StateReader, StorageOptions,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Directory for the benchmark databases (default: a new directory in the system's
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds to spend on each append measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Bytes of each appended entry's payload.
    #[arg(long, default_value_t = 256)]
    pub entry_bytes: usize,
    /// Keys in the state machine for the snapshot measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Bytes of each key's value for the snapshot measurement.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
}

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
const APPLY_BATCH_SIZES: [usize; 3] = [1, 10, 100];
const APPLY_ROUNDS: u32 = 8;

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 600.0,
        "--seconds must be within (0, 600]"
    );
    anyhow::ensure!(
        (1..=1 << 20).contains(&args.entry_bytes),
        "--entry-bytes must be within 1..=1048576"
    );
    let (root, remove_root) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("regent-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    println!(
        "regent bench storage: redb 4.6, {} cores, databases under {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        root.display()
    );
    let duration = Duration::from_secs_f64(args.seconds);

    println!(
        "\n## Durable log appends ({}-byte entries, one durable commit per batch, no apply)",
        args.entry_bytes
    );
    println!(
        "{:>6} {:>14} {:>12} {:>12} {:>12}",
        "batch", "entries/s", "commits/s", "p50 commit", "p99 commit"
    );
    for (i, size) in BATCH_SIZES.iter().enumerate() {
        let dir = root.join(format!("append-{i}"));
        let mut s = open_fresh(&dir, ApplyMode::WithLog)?;
        let mut samples = Samples::default();
        appends(
            &mut s,
            *size,
            args.entry_bytes,
            duration,
            false,
            &mut samples,
        )?;
        drop(s);
        std::fs::remove_dir_all(&dir)?;
        let r = samples.rate();
        println!(
            "{:>6} {:>14.0} {:>12.0} {:>12} {:>12}",
            size,
            r.entries_per_s,
            r.commits_per_s,
            micros(r.p50),
            micros(r.p99)
        );
    }

    println!(
        "\n## Apply with the log or deferred ({}-byte puts, each batch committed and applied)",
        args.entry_bytes
    );
    println!(
        "{:>6} {:>10} {:>14} {:>12} {:>12}",
        "batch", "apply", "entries/s", "p50 batch", "p99 batch"
    );
    // The two modes take turns in short rounds, so that a burst of load from other processes
    // on the machine falls on both alike.
    for size in APPLY_BATCH_SIZES {
        let modes = [ApplyMode::WithLog, ApplyMode::Deferred];
        let mut stores = Vec::new();
        for mode in modes {
            stores.push(open_fresh(
                &root.join(format!("apply-{size}-{mode:?}")),
                mode,
            )?);
        }
        let mut samples = [Samples::default(), Samples::default()];
        for _ in 0..APPLY_ROUNDS {
            for (s, samples) in stores.iter_mut().zip(samples.iter_mut()) {
                appends(
                    s,
                    size,
                    args.entry_bytes,
                    duration / APPLY_ROUNDS,
                    true,
                    samples,
                )?;
            }
        }
        drop(stores);
        for (mode, samples) in modes.into_iter().zip(samples) {
            std::fs::remove_dir_all(root.join(format!("apply-{size}-{mode:?}")))?;
            let r = samples.rate();
            println!(
                "{:>6} {:>10} {:>14.0} {:>12} {:>12}",
                size,
                format!("{mode:?}"),
                r.entries_per_s,
                micros(r.p50),
                micros(r.p99)
            );
        }
    }

    if args.keys > 0 {
        snapshots(&root, args.keys, args.value_bytes)?;
    }
    if remove_root {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

struct Rate {
    entries_per_s: f64,
    commits_per_s: f64,
    p50: Duration,
    p99: Duration,
}

fn identity() -> Identity {
    Identity {
        cluster_id: "bench".into(),
        node_id: NodeId(1),
    }
}

/// A put of about `bytes` bytes once encoded.
fn put_payload(i: u64, bytes: usize) -> EntryPayload {
    let key = format!("key/{i:012}").into_bytes();
    let value = vec![b'v'; bytes.saturating_sub(key.len() + 8)];
    EntryPayload::Normal(Proposal::new(Command::Put { key, value }).encode())
}

/// Latencies of the batches written, and the entries they held.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    entries: u64,
    elapsed: Duration,
}

impl Samples {
    fn rate(mut self) -> Rate {
        self.latencies.sort();
        let at = |q: f64| self.latencies[((self.latencies.len() - 1) as f64 * q) as usize];
        let secs = self.elapsed.as_secs_f64();
        Rate {
            entries_per_s: self.entries as f64 / secs,
            commits_per_s: self.latencies.len() as f64 / secs,
            p50: at(0.5),
            p99: at(0.99),
        }
    }
}

fn open_fresh(dir: &std::path::Path, apply_mode: ApplyMode) -> anyhow::Result<RedbStorage> {
    let options = StorageOptions {
        apply_mode,
        ..StorageOptions::default()
    };
    Ok(RedbStorage::open(dir, &identity(), options)?.0)
}

/// Appends batches of `size` entries for `duration`; with `apply`, each batch also commits
/// and applies its entries.
fn appends(
    s: &mut RedbStorage,
    size: usize,
    entry_bytes: usize,
    duration: Duration,
    apply: bool,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut batches = 0;
    while start.elapsed() < duration || batches < 5 {
        let last = s.state().last_index;
        let entries: Vec<Entry> = (1..=size as u64)
            .map(|n| Entry {
                term: Term(1),
                index: LogIndex(last.0 + n),
                payload: if apply {
                    put_payload(last.0 + n, entry_bytes)
                } else {
                    EntryPayload::Normal(vec![b'e'; entry_bytes])
                },
            })
            .collect();
        let new_last = LogIndex(last.0 + size as u64);
        let batch = Batch {
            hard_state: Some(HardState {
                term: Term(1),
                vote: Some(NodeId(1)),
                commit: if apply { new_last } else { LogIndex(0) },
            }),
            truncate_from: None,
            committed: if apply { entries.clone() } else { Vec::new() },
            entries,
        };
        let t = Instant::now();
        s.write_batch(&batch)?;
        samples.latencies.push(t.elapsed());
        samples.entries += size as u64;
        batches += 1;
    }
    samples.elapsed += start.elapsed();
    Ok(())
}

fn snapshots(root: &std::path::Path, keys: u64, value_bytes: usize) -> anyhow::Result<()> {
    println!("\n## Snapshots of {keys} keys ({value_bytes}-byte values)");
    let source_dir = root.join("snapshot-source");
    let (mut s, _) = RedbStorage::open(&source_dir, &identity(), StorageOptions::default())?;
    let t = Instant::now();
    let mut next = 1u64;
    while next <= keys {
        let last = s.state().last_index;
        let count = 1000.min(keys - next + 1);
        let entries: Vec<Entry> = (0..count)
            .map(|n| Entry {
                term: Term(1),
                index: LogIndex(last.0 + 1 + n),
                payload: put_payload(next + n, value_bytes + 24),
            })
            .collect();
        let new_last = LogIndex(last.0 + count);
        s.write_batch(&Batch {
            hard_state: Some(HardState {
                term: Term(1),
                vote: Some(NodeId(1)),
                commit: new_last,
            }),
            truncate_from: None,
            committed: entries.clone(),
            entries,
        })?;
        next += count;
    }
    let applied = s.state().applied;
    s.compact_log(applied)?;
    println!(
        "loaded through the log (1000 puts per durable batch) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut source = s.snapshot()?;
    let mut chunks = Vec::new();
    let mut bytes = 0usize;
    while let Some(chunk) = source.next_chunk()? {
        bytes += chunk.len();
        chunks.push(chunk);
    }
    let build = t.elapsed().as_secs_f64();
    drop(source);
    let mb = bytes as f64 / 1e6;
    println!(
        "build:   {:>8.1} MB in {:>3} chunks, {:>6.2} s, {:>7.1} MB/s (read transaction, crc32c per chunk)",
        mb,
        chunks.len(),
        build,
        mb / build
    );

    let target_dir = root.join("snapshot-target");
    let (mut target, _) = RedbStorage::open(&target_dir, &identity(), StorageOptions::default())?;
    target.write_batch(&Batch {
        hard_state: Some(HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(0),
        }),
        ..Batch::default()
    })?;
    let t = Instant::now();
    let mut done = false;
    for chunk in &chunks {
        if let InstallProgress::Installed(_) = target.install_chunk(chunk)? {
            done = true;
        }
    }
    let install = t.elapsed().as_secs_f64();
    anyhow::ensure!(done, "the snapshot did not finish installing");
    println!(
        "install: {:>8.1} MB, {:>6.2} s, {:>7.1} MB/s (checked, staged, one durable swap)",
        mb,
        install,
        mb / install
    );
    let (a, b) = (s.digest()?, target.digest()?);
    anyhow::ensure!(a == b, "installed state differs: {a:?} vs {b:?}");
    println!(
        "installed state digest equals the source's ({} keys)",
        b.kv_count
    );
    drop((s, target));
    std::fs::remove_dir_all(&source_dir)?;
    std::fs::remove_dir_all(&target_dir)?;
    Ok(())
}

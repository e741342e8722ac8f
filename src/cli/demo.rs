//! `regent demo`: with nothing set up, a three-node cluster of real `regent run` processes on
//! loopback (fresh CA and certificates in a temporary directory), then the story: who leads,
//! a write and a read, kill -9 of the leader, the new leader and how long it took.
//!
//! Invariant: every process the demo starts is stopped when it ends, whichever way it ends.

use super::host::status_table;
use anyhow::bail;
use clap::Args;
use regent_client::fetch_status;
use regent_client::local::{init_cluster, wait_writable, Nodes, NODES};
use regent_client::{self as client, encode_key};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run the story and exit 0 (no waiting for Ctrl-C).
    #[arg(long)]
    pub once: bool,
    /// Keep the cluster's directory here (it must not exist yet) instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir = match &args.keep {
        Some(dir) => {
            if dir.exists() {
                bail!(
                    "--keep {}: it exists already; name a new directory",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)?;
            dir.canonicalize()?
        }
        None => {
            temp = tempfile::Builder::new().prefix("regent-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let cluster = dir.join("cluster");
    println!("regent demo: a three-node cluster in {}", cluster.display());
    init_cluster(&cluster)?;
    let mut nodes = Nodes::new(cluster.clone());
    for id in 1..=NODES {
        nodes.start(id)?;
    }
    let started = Instant::now();
    let leader = wait_writable(&nodes, None, TIMEOUT)?;
    println!(
        "\n1. Node {leader} was elected leader after {} ms; it holds the lease, so only its host may write.\n",
        started.elapsed().as_millis()
    );
    print!("{}", status_table(&fetch_status(&nodes.socket(leader))?));

    let revision = put(
        &nodes.socket(leader),
        "greeting",
        b"hello from the active master",
    )?;
    let follower = (1..=NODES).find(|&id| id != leader).expect("three nodes");
    let read = get(&nodes.socket(follower), "greeting")?;
    println!(
        "\n2. PUT greeting on node {leader} (revision {revision}), committed on a quorum; GET on node {follower} (linearizable): {:?}",
        String::from_utf8_lossy(&read)
    );

    println!("\n3. kill -9 of the leader, node {leader} ...");
    let killed_at = Instant::now();
    nodes.kill(leader);
    let new_leader = wait_writable(&nodes, Some(leader), TIMEOUT)?;
    let elected = killed_at.elapsed();
    let revision = put(
        &nodes.socket(new_leader),
        "greeting",
        b"hello after the failover",
    )?;
    let first_write = killed_at.elapsed();
    println!(
        "   node {new_leader} leads: writable {} ms after the kill, first write accepted after {} ms (revision {revision}).",
        elected.as_millis(),
        first_write.as_millis()
    );
    let before = get(&nodes.socket(new_leader), "greeting")?;
    println!(
        "   every acknowledged write is still there: greeting = {:?}",
        String::from_utf8_lossy(&before)
    );
    nodes.start(leader)?;
    println!("   node {leader} restarted; it rejoins as a follower and catches up.\n");
    std::thread::sleep(Duration::from_millis(500));
    print!(
        "{}",
        status_table(&fetch_status(&nodes.socket(new_leader))?)
    );

    if args.once {
        nodes.stop_all();
        println!("\ndemo: done (failover {} ms).", first_write.as_millis());
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nThe cluster stays up until Ctrl-C. From another terminal:");
    for id in 1..=NODES {
        println!(
            "  curl --unix-socket {} http://regent/v1/status",
            nodes.socket(id).display()
        );
    }
    println!(
        "  regent status --socket {}\n  regent kv put --socket {} key value",
        nodes.socket(new_leader).display(),
        nodes.socket(new_leader).display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nstopping the demo cluster ...");
    nodes.stop_all();
    if let Some(dir) = &args.keep {
        println!("kept {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn put(socket: &Path, key: &str, value: &[u8]) -> anyhow::Result<u64> {
    let path = format!("/v1/kv/{}", encode_key(key.as_bytes()));
    let answer = client::request(socket, "PUT", &path, value, TIMEOUT)?;
    if answer.status != 200 {
        bail!("PUT {key}: {}", answer.error_text());
    }
    Ok(answer.json()?["revision"].as_u64().unwrap_or(0))
}

/// A linearizable read; a follower that has not heard from the new leader yet answers 503,
/// so that is retried for a while.
fn get(socket: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let path = format!("/v1/kv/{}", encode_key(key.as_bytes()));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = client::request(socket, "GET", &path, b"", TIMEOUT)?;
        match answer.status {
            200 => return Ok(answer.body),
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => bail!("GET {key}: {}", answer.error_text()),
        }
    }
}

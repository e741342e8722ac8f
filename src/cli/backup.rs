//! `regent backup --out FILE`, `regent backup verify FILE` and `regent restore`: a backup file
//! of the state machine fetched from a node (`GET /v1/admin/backup`), checked without a node,
//! and turned into the data directories of a new cluster (certificates and configurations as
//! `regent admin cluster init` writes them, each database holding the image as its snapshot).
//!
//! Invariants: a fetched file appears under its name only once it was read back and every
//! check passed; `restore` checks the whole file before it writes anything, writes no node
//! unless every node's directory and data directory is free, and reads every database back
//! (its digest must be the backup's); a restored cluster gets a new cluster id unless
//! `--unsafe-keep-cluster-id` says otherwise.

use super::cluster_init::{self, InitArgs, NodeSpec};
use super::host::SocketArg;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use regent_client::http::{self, Conn};
use regent_daemon::api::members::member_address_key;
use regent_raft::Membership;
use regent_storage::{backup, BackupSummary, Identity, RedbStorage, Restored};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// A read of the backup stream that waits longer than this fails (a node reads a chunk in
/// milliseconds; a long wait means it is gone).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Where to write the backup (refused if it exists). Checked before it appears there.
    #[arg(long, value_name = "FILE", required = true)]
    pub out: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Check every checksum of a backup file, without a node, and print its index, term and
    /// state digest (the one `GET /v1/status?digest=true` reports on a node at that index).
    Verify {
        /// The backup file.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file (`regent backup --out`, or one of the `backup:` schedule's).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The directory to write the new cluster into, as `regent admin cluster init --dir`.
    #[arg(long)]
    pub dir: PathBuf,
    /// The new cluster's name (its cluster id). It must differ from the backup's (unless
    /// --unsafe-keep-cluster-id, with which it may be left out).
    #[arg(long, required_unless_present = "unsafe_keep_cluster_id")]
    pub cluster: Option<String>,
    /// A node of the new cluster, as ID=HOST:PORT (repeat for each node); all are voters.
    #[arg(long = "node", value_name = "ID=HOST:PORT", required = true, value_parser = cluster_init::parse_node_spec)]
    pub nodes: Vec<NodeSpec>,
    /// Data directories go to <D>/node<ID> instead of DIR/node<ID>/data.
    #[arg(long, value_name = "D")]
    pub data_root: Option<PathBuf>,
    /// Sockets go to <S>/node<ID>.sock instead of DIR/node<ID>/regent.sock.
    #[arg(long, value_name = "S")]
    pub socket_dir: Option<PathBuf>,
    /// Days the node certificates are valid.
    #[arg(long, default_value_t = super::admin::CERT_DAYS_DEFAULT)]
    pub days: u32,
    /// UNSAFE: give the new cluster the backup's cluster id (--cluster, if given, must name
    /// it). Nodes
    /// of the old cluster that trust the same CA could then talk to the new one and mix two
    /// histories; do it only when the old cluster is gone for good.
    #[arg(long)]
    pub unsafe_keep_cluster_id: bool,
}

pub fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(BackupCommand::Verify { file, json }) => verify(&file, json),
        None => {
            let out = args.out.context("--out FILE is required")?;
            fetch(
                &regent_client::socket_path(args.socket.socket),
                &out,
                args.json,
            )
        }
    }
}

/// `regent backup verify FILE`.
fn verify(file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let summary = verify_file(file)?;
    print_summary(file, &summary, as_json, "every checksum matches");
    Ok(ExitCode::SUCCESS)
}

fn verify_file(file: &Path) -> anyhow::Result<BackupSummary> {
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    backup::verify(BufReader::with_capacity(1 << 20, input))
        .with_context(|| format!("{} is not a good backup", file.display()))
}

/// `regent backup --out FILE`: streams the node's backup into FILE.partial, checks it, then
/// renames it into place.
fn fetch(socket: &Path, out: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    if out.exists() {
        bail!("{} exists; a backup never overwrites a file", out.display());
    }
    // Any node serves a backup; a follower's costs the leader nothing.
    if let Ok(status) = regent_client::fetch_status(socket) {
        let members = status["members"].as_array().map_or(0, Vec::len);
        if status["role"] == "leader" && members > 1 {
            eprintln!(
                "note: node {} leads; a backup taken on a follower costs the leader nothing",
                status["node_id"]
            );
        }
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        bail!(
            "{} exists (a backup cut short?); remove it first",
            partial.display()
        );
    }
    let result = download(socket, &partial).and_then(|()| verify_file(&partial));
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    std::fs::rename(&partial, out)
        .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    print_summary(out, &summary, as_json, "written and checked");
    Ok(ExitCode::SUCCESS)
}

fn download(socket: &Path, partial: &Path) -> anyhow::Result<()> {
    let mut conn = Conn::unix(socket, Some(READ_TIMEOUT))
        .with_context(|| format!("connecting to {}", socket.display()))?;
    conn.send_closing("GET", "/v1/admin/backup", b"")
        .with_context(|| format!("sending the request to {}", socket.display()))?;
    let status = conn
        .read_head()
        .with_context(|| format!("reading the answer from {}", socket.display()))?;
    if status != 200 {
        let body = conn.read_body().map(<[u8]>::to_vec).unwrap_or_default();
        let answer = regent_client::Answer {
            status,
            headers: Vec::new(),
            body,
        };
        bail!("backup: {}", answer.error_text());
    }
    // The whole state machine: readable by its owner only, as the data directory is.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut buffer = Vec::with_capacity(1 << 20);
    loop {
        buffer.clear();
        match conn.read_body_part(&mut buffer) {
            Ok(0) => break,
            Ok(_) => file
                .write_all(&buffer)
                .with_context(|| format!("writing {}", partial.display()))?,
            // The node ended the stream early: the check that follows says what is missing.
            Err(http::Error::Unterminated) => break,
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("reading the backup from {}", socket.display()))
            }
        }
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", partial.display()))?;
    Ok(())
}

/// The digest as `GET /v1/status?digest=true` shows it.
pub use regent_daemon::api::routes::digest_json;

fn summary_json(file: &Path, s: &BackupSummary) -> Value {
    json!({
        "file": file.display().to_string(),
        "cluster_id": s.header.cluster_id,
        "node_id": s.header.node_id.0,
        "index": s.header.index.0,
        "term": s.header.term.0,
        "taken_unix_ms": s.header.taken_unix_ms,
        "voters": s.membership.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
        "frames": s.frame_count,
        "bytes": s.bytes,
        "digest": digest_json(&s.digest),
    })
}

fn print_summary(file: &Path, s: &BackupSummary, as_json: bool, verdict: &str) {
    if as_json {
        println!("{}", summary_json(file, s));
        return;
    }
    println!(
        "{}: {verdict}: cluster {:?}, taken on node {} at {}, index {} term {}, {} frames, {} bytes",
        file.display(),
        s.header.cluster_id,
        s.header.node_id.0,
        regent_transport::pki::identity::format_unix((s.header.taken_unix_ms / 1000) as i64),
        s.header.index.0,
        s.header.term.0,
        s.frame_count,
        s.bytes
    );
    println!("digest: {}", digest_json(&s.digest));
}

/// `regent restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let summary = verify_file(&args.from)?;
    let old = &summary.header.cluster_id;
    let cluster = args.cluster.clone().unwrap_or_else(|| old.clone());
    match (args.unsafe_keep_cluster_id, &cluster == old) {
        (false, true) => bail!(
            "--cluster {old} is the backup's own cluster id: a restored cluster gets a new one, so \
             that its nodes never mix with the old cluster's; choose another name (or, only if the \
             old cluster is gone for good, add --unsafe-keep-cluster-id)"
        ),
        (true, false) => bail!(
            "--unsafe-keep-cluster-id keeps the backup's cluster id {old}: give --cluster {old}, or \
             drop the flag for a new cluster id"
        ),
        _ => {}
    }
    let plan = cluster_init::plan(InitArgs {
        dir: args.dir.clone(),
        cluster: cluster.clone(),
        nodes: args.nodes.clone(),
        data_root: args.data_root.clone(),
        socket_dir: args.socket_dir.clone(),
        days: args.days,
        system_paths: false,
        join: Vec::new(),
    })?;
    for config in plan.configs() {
        let db = config.data_dir.join(regent_storage::DB_FILE_NAME);
        if db.exists() {
            bail!(
                "{} exists: restore writes only into empty data directories (nothing was written)",
                db.display()
            );
        }
    }
    let created = plan.write()?;
    let membership = Membership::new(args.nodes.iter().map(|n| n.id));
    // The image's address records of the new cluster's node ids (members added at run time)
    // name the old cluster's machines, and a node prefers them to its configuration: they get
    // the new addresses.
    let addresses: BTreeMap<Vec<u8>, Vec<u8>> = created
        .configs()
        .next()
        .map(|config| {
            config
                .members
                .iter()
                .map(|m| (member_address_key(m.id), m.address.to_string().into_bytes()))
                .collect()
        })
        .unwrap_or_default();
    let mut restored = None;
    for config in created.configs() {
        let node = restore_node(&args.from, config, &membership, &summary, &addresses)
            .with_context(|| {
                format!(
                    "the nodes written into {} are incomplete: remove them before trying again",
                    args.dir.display()
                )
            })?;
        restored = Some(node);
    }
    let restored = restored.context("no node was restored")?;
    created.print();
    println!(
        "restored the backup of cluster {old:?} at index {} (term {}) into every node's data \
         directory: cluster {:?}, voters {:?}",
        summary.header.index.0,
        summary.header.term.0,
        cluster,
        args.nodes.iter().map(|n| n.id.0).collect::<Vec<_>>()
    );
    if !restored.replaced.is_empty() {
        let keys: Vec<String> = restored
            .replaced
            .iter()
            .map(|k| String::from_utf8_lossy(k).escape_debug().to_string())
            .collect();
        println!(
            "note: the address records {keys:?} now hold the new addresses, so the digest \
             differs from the backup's ({})",
            digest_json(&summary.digest)
        );
    }
    println!("digest: {}", digest_json(&restored.digest));
    Ok(ExitCode::SUCCESS)
}

/// Installs the backup into one new node's database and checks it.
fn restore_node(
    from: &Path,
    config: &regent_daemon::config::DaemonConfig,
    membership: &Membership,
    expected: &BackupSummary,
    addresses: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> anyhow::Result<Restored> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let identity = Identity {
        cluster_id: config.cluster.clone(),
        node_id: config.node_id,
    };
    let (mut storage, _) = RedbStorage::open(dir, &identity, config.storage_options())
        .with_context(|| format!("creating the database in {}", dir.display()))?;
    let input = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let restored = backup::restore(
        BufReader::with_capacity(1 << 20, input),
        &mut storage,
        membership.clone(),
        addresses,
    )
    .with_context(|| format!("restoring into {}", dir.display()))?;
    // The file was read again: it must still be the one checked first.
    if restored.backup != *expected {
        bail!(
            "{} changed while it was restored (node {}): do not start this cluster",
            from.display(),
            config.node_id.0
        );
    }
    Ok(restored)
}

//! `regent recover --force-new-cluster --config PATH`: the unsafe, explicit way out when a
//! majority is lost for good (etcd's `--force-new-cluster`). Offline, on one survivor's data
//! directory: appends a configuration entry naming this node as the only voter, in a new term,
//! and marks everything in the log committed. Started again, the node leads a one-node cluster
//! holding every entry it had (those it did not know were committed included) and can add
//! members.
//!
//! Invariants: nothing is written unless `--force-new-cluster` and the confirming flag are
//! both given; it refuses while a daemon serves on the configured socket or holds the
//! database open (redb's lock); no entry is removed or rewritten — one entry and the hard
//! state are added, through `LogStorage::write_batch` (one durable transaction), and read back.

use anyhow::{bail, Context};
use clap::Args;
use regent_daemon::config::DaemonConfig;
use regent_raft::{Batch, Entry, EntryPayload, HardState, LogIndex, Membership, Term};
use regent_storage::{Identity, LogStorage, RedbStorage};
use std::path::PathBuf;
use std::process::ExitCode;

/// The flag that confirms the operator accepts the risk.
pub const CONFIRM_FLAG: &str = "--i-accept-losing-writes";

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Make this node the only voter of its cluster (required: the only kind of recovery).
    #[arg(long)]
    pub force_new_cluster: bool,
    /// The surviving node's configuration (its data directory, socket and identity).
    #[arg(long)]
    pub config: PathBuf,
    /// Do it. Without this flag the command only prints what it would do.
    #[arg(long = "i-accept-losing-writes")]
    pub confirm: bool,
}

/// Exit code when the plan was printed but nothing was done (no confirmation).
const EXIT_NOT_CONFIRMED: u8 = 2;

pub fn run(args: RecoverArgs) -> anyhow::Result<ExitCode> {
    if !args.force_new_cluster {
        bail!("recover: say --force-new-cluster (the only recovery there is; see docs/operations.md, \"Losing a majority\")");
    }
    let config = DaemonConfig::load(&args.config)?;
    if std::os::unix::net::UnixStream::connect(&config.socket).is_ok() {
        bail!(
            "a regent is serving on {}: stop it first (systemctl stop regent); recovery works \
             only on a stopped node",
            config.socket.display()
        );
    }
    let identity = Identity {
        cluster_id: config.cluster.clone(),
        node_id: config.node_id,
    };
    if !config.data_dir.join(regent_storage::DB_FILE_NAME).exists() {
        bail!(
            "{} holds no database: there is nothing to recover here",
            config.data_dir.display()
        );
    }
    let (mut storage, recovered) =
        RedbStorage::open(&config.data_dir, &identity, config.storage_options())
            .with_context(|| format!("opening {}", config.data_dir.display()))?;
    let state = recovered.state.clone();
    let (membership, _) = recovered.latest_membership();
    let membership = membership.clone();
    if state.last_index.0 == 0 {
        bail!(
            "{} holds an empty log: there is nothing to recover",
            config.data_dir.display()
        );
    }
    let id = config.node_id;
    let index = state.last_index.next();
    let term = Term(state.hard_state.term.0.max(state.last_term.0) + 1);
    let only_me = Membership::new([id]);
    // An applied entry was committed, even when the stored commit index (written with the log,
    // not with the state machine's layers) is older.
    let known = state.hard_state.commit.0.max(state.applied.0);
    let unknown = state.last_index.0 - known.min(state.last_index.0);

    println!(
        "regent recover --force-new-cluster: {identity}, data directory {}",
        config.data_dir.display()
    );
    println!(
        "  the log holds entries {}..={} (last term {}); committed {} as far as this node knows; applied {}",
        state.first_index.0,
        state.last_index.0,
        state.last_term.0,
        known,
        state.applied.0
    );
    println!(
        "  the configuration in force: voters {:?}{}{}",
        membership.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
        if membership.is_joint() {
            format!(
                " (joint, leaving {:?})",
                membership
                    .voters_outgoing
                    .iter()
                    .map(|v| v.0)
                    .collect::<Vec<_>>()
            )
        } else {
            String::new()
        },
        if membership.learners.is_empty() {
            String::new()
        } else {
            format!(
                ", learners {:?}",
                membership.learners.iter().map(|v| v.0).collect::<Vec<_>>()
            )
        },
    );
    println!(
        "  will append at index {} (term {}) a configuration with node {} as the only voter, \
         and mark the log committed through it",
        index.0, term.0, id.0
    );
    if unknown > 0 {
        println!(
            "  the {unknown} entries after {} that this node holds without knowing them committed \
             are kept and will be applied",
            known
        );
    }
    println!(
        "  UNSAFE: writes the lost members committed but this node never received are gone for \
         good; do this only if a majority is lost for good. Never start the other members again \
         with their old data directories: wipe them and add them back as new members."
    );
    if !args.confirm {
        println!("nothing was changed; to do it, run again with {CONFIRM_FLAG}");
        return Ok(ExitCode::from(EXIT_NOT_CONFIRMED));
    }

    let entry = Entry {
        index,
        term,
        payload: EntryPayload::Config(only_me.clone()),
    };
    let batch = Batch {
        hard_state: Some(HardState {
            term,
            vote: Some(id),
            commit: index,
        }),
        truncate_from: None,
        entries: vec![entry],
        committed: Vec::new(),
    };
    storage
        .write_batch(&batch)
        .context("writing the new configuration")?;
    // Pair check: what a restart will read is what was meant.
    let back = storage
        .reload()
        .context("reading the data directory back")?;
    let (now, at) = back.latest_membership();
    if *now != only_me || at != index || back.state.hard_state.commit != index {
        bail!(
            "read back {now:?} at {at} with commit {}: not the configuration written; do not \
             start this node, and report this",
            back.state.hard_state.commit
        );
    }
    assert_eq!(back.state.last_index, LogIndex(index.0));
    println!(
        "done: node {} is the only voter from index {} on. Start it (systemctl start regent); it \
         leads a one-node cluster. Then add members with new ids: regent admin cluster init \
         --join ID ..., regent members add ID HOST:PORT, regent members promote ID.",
        id.0, index.0
    );
    Ok(ExitCode::SUCCESS)
}

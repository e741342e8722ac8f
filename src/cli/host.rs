//! Subcommands that talk to a running daemon over its socket: `status`, `kv`, `leader`.
//! Each mirrors one endpoint of the host API (docs/api.md).

use anyhow::bail;
use clap::{Args, Subcommand};
use regent_client::{self as client, encode_key, fetch_status, Answer};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Args, Debug, Clone)]
pub struct SocketArg {
    /// The daemon's socket (default: $REGENT_SOCKET, then /run/regent/regent.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
}

/// Writes and cluster changes go to the leader: a follower relays them over the peer link.
#[derive(Args, Debug, Clone, Copy)]
pub struct ForwardArg {
    /// Refuse (503 not_leader) instead of relaying to the leader when this node does not lead.
    #[arg(long, global = true)]
    pub no_forward: bool,
}

/// Sends a write or a cluster change. With forwarding (the default) the node relays it to the
/// leader when it does not lead (`forward=true`), and what surely was not carried out
/// (`not_leader` while no leader is known, `leader_unreachable`) is asked again until
/// `TIMEOUT`; an outcome that may have happened (`outcome_unknown`, a timeout) is never
/// retried here.
pub fn send_write(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: &[u8],
    forward: ForwardArg,
) -> anyhow::Result<Answer> {
    if forward.no_forward {
        return Ok(client::request(socket, method, path, body, TIMEOUT)?);
    }
    let separator = if path.contains('?') { '&' } else { '?' };
    let path = format!("{path}{separator}forward=true");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = client::request(
            socket,
            method,
            &path,
            body,
            left.max(Duration::from_secs(1)),
        )?;
        let retry = answer.status == 503
            && matches!(
                answer
                    .json()
                    .ok()
                    .as_ref()
                    .and_then(|v| v["error"].as_str()),
                Some("not_leader" | "leader_unreachable")
            );
        if !retry || Instant::now() + Duration::from_millis(100) >= deadline {
            return Ok(answer);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Which node answered: "node 3", or "node 3 (forwarded by node 1)".
pub fn answered_by(answer: &Answer) -> String {
    let node = answer.header("x-regent-node").unwrap_or("?");
    match answer.header("x-regent-forwarded-by") {
        Some(by) => format!("node {node} (forwarded by node {by})"),
        None => format!("node {node}"),
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the daemon's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KvArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub forward: ForwardArg,
    #[command(subcommand)]
    pub command: KvCommand,
}

#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Print a key's value (raw bytes to stdout).
    Get {
        key: String,
        /// linearizable (default), lease, or local.
        #[arg(long, default_value = "linearizable")]
        consistency: String,
    },
    /// Write a key (on a follower, relayed to the leader unless --no-forward).
    Put { key: String, value: String },
    /// Delete a key.
    Del { key: String },
    /// List keys under a prefix (JSON).
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Run a transaction given as JSON (see docs/api.md), from the argument or stdin ("-").
    Txn { json: String },
    /// Print the change feed under a prefix as it happens (NDJSON).
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// Start from this revision (default: from now).
        #[arg(long)]
        from_revision: Option<u64>,
    },
}

#[derive(Args, Debug)]
pub struct LeaderArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Without a subcommand: print which node leads, as this node knows it (exit 1 if none).
    #[command(subcommand)]
    pub command: Option<LeaderCommand>,
    /// Print only the leader's id (for scripts: `L=$(regent leader --id)`).
    #[arg(long)]
    pub id: bool,
}

#[derive(Subcommand, Debug)]
pub enum LeaderCommand {
    /// Exit 0 once this node is writable (for scripts and ExecStartPre); 1 on timeout.
    Wait {
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Print the leadership watch stream (NDJSON), one event a line.
    Watch,
}

#[derive(Args, Debug)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub forward: ForwardArg,
    /// The voter to hand leadership to (default: the most caught-up one that is not drained).
    #[arg(long)]
    pub to: Option<u64>,
    /// While paused: hand leadership to --to anyway and make it writable (it becomes the
    /// pause's holder; --to may name the current leader).
    #[arg(long, requires = "to")]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct FenceArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// The node to fence (usually the previous leader).
    #[arg(long)]
    pub node: u64,
}

/// `regent fence --node ID`: the fence methods, run by this node now.
pub fn fence(args: FenceArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    let path = format!("/v1/admin/fence?node={}", args.node);
    // The methods may take their whole timeouts, one after the other.
    let answer = client::request(&socket, "POST", &path, b"", Duration::from_secs(600))?;
    if answer.status != 200 {
        bail!("fence: {}", answer.error_text());
    }
    println!(
        "node {} fenced by {}",
        args.node,
        answer.json()?["method"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub forward: ForwardArg,
    #[command(subcommand)]
    pub command: MembersCommand,
}

#[derive(Subcommand, Debug)]
pub enum MembersCommand {
    /// The configuration in force, as this node sees it.
    List,
    /// Add a node as a learner. ADDR (HOST:PORT, where its peers reach it) is first recorded
    /// in the replicated state, so every running node learns it and dials it; no
    /// configuration file needs to change. The new node starts with `join: true` (see
    /// `regent admin cluster init --join`). Promote it once it has caught up.
    Add {
        id: u64,
        /// HOST:PORT of the new node's QUIC endpoint (a host name is resolved here).
        addr: Option<String>,
    },
    /// A member moved to a new address: record ADDR (HOST:PORT) in the replicated state; every
    /// node dials it there within seconds. Restart the member on its new address first.
    Update { id: u64, addr: String },
    /// Make a caught-up learner a voter (through a joint configuration).
    Promote { id: u64 },
    /// Remove a member, the leader included (it steps down once the removal commits).
    Remove { id: u64 },
    /// Abort a joint configuration, going back to the old voters.
    Abort,
}

/// `regent members ...` (changes go to the leader: a follower relays them unless
/// `--no-forward`).
pub fn members(args: MembersArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    let query = match args.command {
        MembersCommand::List => {
            print!("{}", status_table(&fetch_status(&socket)?));
            return Ok(ExitCode::SUCCESS);
        }
        MembersCommand::Add { id, addr: None } => format!("add={id}"),
        MembersCommand::Add {
            id,
            addr: Some(addr),
        } => format!("add={id}&address={}", query_address(&addr)?),
        MembersCommand::Update { id, addr } => {
            format!("update={id}&address={}", query_address(&addr)?)
        }
        MembersCommand::Promote { id } => format!("promote={id}"),
        MembersCommand::Remove { id } => format!("remove={id}"),
        MembersCommand::Abort => "abort".to_string(),
    };
    let is_update = query.starts_with("update=");
    let path = format!("/v1/admin/members?{query}");
    let answer = send_write(&socket, "POST", &path, b"", args.forward)?;
    if answer.status != 200 {
        bail!("members: {}", answer.error_text());
    }
    println!(
        "{} at index {} by {}",
        if is_update {
            "address recorded"
        } else {
            "configuration change proposed"
        },
        answer.json()?["index"],
        answered_by(&answer)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    pub socket: SocketArg,
}

/// `regent snapshot` (`file: false`) and `regent compact` (`file: true`), on any node: each
/// acts on its own node's storage.
pub fn maintenance(args: MaintenanceArgs, file: bool) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    let (path, what) = if file {
        ("/v1/admin/compact", "compact")
    } else {
        ("/v1/admin/snapshot", "snapshot")
    };
    // A file compaction of a large database may take a while.
    let answer = client::request(&socket, "POST", path, b"", Duration::from_secs(120))?;
    if answer.status != 200 {
        bail!("{what}: {}", answer.error_text());
    }
    let v = answer.json()?;
    let (previous, index) = (
        v["previous_index"].as_u64().unwrap_or(0),
        v["index"].as_u64().unwrap_or(0),
    );
    if index > previous {
        println!("snapshot at index {index}: the log through {index} is compacted (the previous snapshot was at {previous})");
    } else {
        println!("snapshot at index {index}: nothing applied since, the log is already compacted");
    }
    let f = &v["file"];
    if !f.is_null() {
        let mib = |key: &str| f[key].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
        println!(
            "database file: {:.1} MiB -> {:.1} MiB ({} -> {} bytes; free {:.1} MiB -> {:.1} MiB)",
            mib("bytes_before"),
            mib("bytes_after"),
            f["bytes_before"],
            f["bytes_after"],
            mib("free_bytes_before"),
            mib("free_bytes_after"),
        );
        if f["busy"] == true {
            println!("note: a snapshot being sent to a follower held the file; run compact again once it is done");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// HOST:PORT resolved to one socket address, percent-encoded for a query.
fn query_address(addr: &str) -> anyhow::Result<String> {
    use std::net::ToSocketAddrs;
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("members: address {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("members: {addr:?} resolves to no address"))?;
    Ok(resolved
        .to_string()
        .replace('[', "%5B")
        .replace(']', "%5D")
        .replace(':', "%3A"))
}

/// `regent switchover`: a planned hand-over, carried out by the leader (a follower relays it
/// unless `--no-forward`).
pub fn switchover(args: SwitchoverArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    let mut path = match args.to {
        Some(id) => format!("/v1/admin/switchover?to={id}"),
        None => "/v1/admin/switchover".to_string(),
    };
    if args.force {
        path.push_str("&force=true");
    }
    let answer = send_write(&socket, "POST", &path, b"", args.forward)?;
    if answer.status != 200 {
        bail!("switchover: {}", answer.error_text());
    }
    let v = answer.json()?;
    println!(
        "node {} handed leadership to node {}; writes paused {} ms (answered by {})",
        v["from"],
        v["to"],
        v["pause_ms"],
        answered_by(&answer)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    let status = fetch_status(&socket)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// The cluster as one node sees it: a line for the node, then one per member.
pub fn status_table(s: &Value) -> String {
    let me = s["node_id"].as_u64().unwrap_or(0);
    let leader = s["leader_id"].as_u64();
    let mut out = format!(
        "node {me}: {} in term {}, leader {}, commit {}, applied {}, writable {}, lease {} ms\n",
        s["role"].as_str().unwrap_or("?"),
        s["term"],
        leader.map_or("none".to_string(), |l| l.to_string()),
        s["commit_index"],
        s["applied_index"],
        s["writable"],
        s["lease_remaining_ms"],
    );
    if s["paused"] == true {
        let p = &s["pause"];
        out.push_str(&format!(
            "PAUSED by node {} (holder {}), until {}: {}\n",
            p["by"],
            p["holder"],
            p["until_ms"]
                .as_u64()
                .map_or("resumed".to_string(), |u| format!("log time {u} ms")),
            p["reason"].as_str().unwrap_or("")
        ));
    }
    if let Some(drained) = s["drained"].as_array().filter(|d| !d.is_empty()) {
        let ids: Vec<String> = drained.iter().map(|d| d.to_string()).collect();
        out.push_str(&format!("drained: {}\n", ids.join(", ")));
    }
    if s["version"].is_object() {
        let v = &s["version"];
        out.push_str(&format!(
            "version: regent {}, wire {}..={}, cluster_version {}\n",
            v["build"].as_str().unwrap_or("?"),
            v["wire"]["min"],
            v["wire"]["max"],
            v["cluster_version"],
        ));
    }
    if let Some(days) = s["certificate"]["days_left"].as_i64() {
        out.push_str(&format!("certificate: {days} days left\n"));
    }
    out.push_str(&format!(
        "{:<6} {:<22} {:<8} {:<7} {:<6} {:<8} {}\n",
        "NODE", "ADDRESS", "ROLE", "LEADER", "LAG", "LINK", "ELECTION"
    ));
    for m in s["members"].as_array().into_iter().flatten() {
        let id = m["id"].as_u64().unwrap_or(0);
        let lag = m["lag"].as_u64().map_or("-".to_string(), |l| l.to_string());
        let link = match m["connected"].as_bool() {
            Some(true) => "up",
            Some(false) => "down",
            None => "self",
        };
        // The election role and priority, as this node knows them (`-`: an older daemon).
        let election = match (
            m["election"]["role"].as_str(),
            m["election"]["priority"].as_u64(),
        ) {
            (Some(role), Some(priority)) => format!("{role} (priority {priority})"),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<6} {:<22} {:<8} {:<7} {:<6} {:<8} {}\n",
            id,
            m["address"].as_str().unwrap_or("-"),
            m["role"].as_str().unwrap_or("?"),
            if Some(id) == leader { "*" } else { "" },
            lag,
            link,
            election,
        ));
    }
    out
}

pub fn kv(args: KvArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    match args.command {
        KvCommand::Get { key, consistency } => {
            let path = format!(
                "/v1/kv/{}?consistency={consistency}",
                encode_key(key.as_bytes())
            );
            let answer = client::request(&socket, "GET", &path, b"", TIMEOUT)?;
            match answer.status {
                200 => {
                    std::io::stdout().write_all(&answer.body)?;
                    Ok(ExitCode::SUCCESS)
                }
                404 => {
                    eprintln!("regent: {key}: no such key");
                    Ok(ExitCode::from(2))
                }
                _ => bail!("get {key}: {}", answer.error_text()),
            }
        }
        KvCommand::Put { key, value } => {
            let path = format!("/v1/kv/{}", encode_key(key.as_bytes()));
            let answer = send_write(&socket, "PUT", &path, value.as_bytes(), args.forward)?;
            print_write(&key, &answer)
        }
        KvCommand::Ls { prefix, limit } => {
            let path = format!(
                "/v1/kv?prefix={}&limit={limit}",
                encode_key(prefix.as_bytes())
            );
            let answer = client::request(&socket, "GET", &path, b"", TIMEOUT)?;
            if answer.status != 200 {
                bail!("ls {prefix}: {}", answer.error_text());
            }
            println!("{}", serde_json::to_string_pretty(&answer.json()?)?);
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Txn { json } => {
            let body = if json == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
                text
            } else {
                json
            };
            let answer = send_write(&socket, "POST", "/v1/txn", body.as_bytes(), args.forward)?;
            if answer.status != 200 {
                bail!("txn: {}", answer.error_text());
            }
            println!("{}", serde_json::to_string_pretty(&answer.json()?)?);
            eprintln!("answered by {}", answered_by(&answer));
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Watch {
            prefix,
            from_revision,
        } => {
            let mut path = format!("/v1/watch?prefix={}", encode_key(prefix.as_bytes()));
            if let Some(r) = from_revision {
                path.push_str(&format!("&from_revision={r}"));
            }
            client::stream(&socket, &path, |line| {
                println!("{line}");
                true
            })?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Del { key } => {
            let path = format!("/v1/kv/{}", encode_key(key.as_bytes()));
            let answer = send_write(&socket, "DELETE", &path, b"", args.forward)?;
            print_write(&key, &answer)
        }
    }
}

fn print_write(key: &str, answer: &Answer) -> anyhow::Result<ExitCode> {
    if answer.status != 200 {
        bail!("{key}: {}", answer.error_text());
    }
    let v = answer.json()?;
    println!(
        "{key}: revision {} (index {}, term {}) by {}",
        v["revision"],
        v["index"],
        v["term"],
        answered_by(answer)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn leader(args: LeaderArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    match args.command {
        None => {
            let s = fetch_status(&socket)?;
            let Some(leader) = s["leader_id"].as_u64() else {
                eprintln!(
                    "regent: node {} knows no leader ({} in term {})",
                    s["node_id"],
                    s["role"].as_str().unwrap_or("?"),
                    s["term"]
                );
                return Ok(ExitCode::FAILURE);
            };
            if args.id {
                println!("{leader}");
            } else {
                let me = s["node_id"].as_u64();
                let address = s["leader_address"].as_str().unwrap_or("?");
                let this = if me == Some(leader) {
                    format!("this node; writable {}", s["writable"])
                } else {
                    format!("as node {} sees it", s["node_id"])
                };
                println!(
                    "node {leader} leads term {} at {address} ({this})",
                    s["term"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(LeaderCommand::Watch) => {
            client::stream(&socket, "/v1/leadership/watch", |line| {
                println!("{line}");
                true
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Some(LeaderCommand::Wait { timeout }) => {
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                if let Ok(s) = fetch_status(&socket) {
                    if s["writable"].as_bool() == Some(true) {
                        println!("node {} is writable in term {}", s["node_id"], s["term"]);
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                if Instant::now() > deadline {
                    eprintln!("regent: not writable within {timeout} s");
                    return Ok(ExitCode::FAILURE);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

//! `regent pause`, `regent resume`, `regent drain ID`, `regent undrain ID`: the operator's
//! maintenance records, replicated through the leader (relayed there by default, like
//! `regent switchover`). Each mirrors one handler of `api::maintenance`.

use super::host::{answered_by, send_write, ForwardArg, SocketArg};
use anyhow::bail;
use clap::Args;
use regent_client::{self as client, encode_key};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PauseArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub forward: ForwardArg,
    /// End the pause by itself after this many seconds of log time (default: until `regent
    /// resume`).
    #[arg(long)]
    pub ttl_s: Option<u64>,
    /// Why: shown in the status of every node.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub forward: ForwardArg,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub forward: ForwardArg,
    /// The node's id.
    pub id: u64,
}

/// `regent pause [--ttl-s N] [--reason TEXT]`.
pub fn pause(args: PauseArgs) -> anyhow::Result<ExitCode> {
    let mut path = "/v1/admin/pause?".to_string();
    if let Some(ttl) = args.ttl_s {
        path.push_str(&format!("ttl_s={ttl}&"));
    }
    if let Some(reason) = &args.reason {
        path.push_str(&format!("reason={}&", encode_key(reason.as_bytes())));
    }
    path.pop();
    let ttl = args
        .ttl_s
        .map_or("until resumed".to_string(), |t| format!("for {t} s"));
    run(&args.socket, args.forward, &path, &format!("paused {ttl}"))
}

/// `regent resume`.
pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    run(&args.socket, args.forward, "/v1/admin/resume", "resumed")
}

/// `regent drain ID` (`undrain`: false).
pub fn drain(args: DrainArgs, drain: bool) -> anyhow::Result<ExitCode> {
    let verb = if drain { "drain" } else { "undrain" };
    let path = format!("/v1/admin/{verb}?node={}", args.id);
    run(
        &args.socket,
        args.forward,
        &path,
        &format!("node {} {verb}ed", args.id),
    )
}

fn run(
    socket: &SocketArg,
    forward: ForwardArg,
    path: &str,
    done: &str,
) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(socket.socket.clone());
    let answer = send_write(&socket, "POST", path, b"", forward)?;
    if answer.status != 200 {
        bail!("{}", answer.error_text());
    }
    let v = answer.json()?;
    println!(
        "{done} at index {} (paused: {}, drained: {}; answered by {})",
        v["index"],
        v["paused"],
        v["drained"],
        answered_by(&answer)
    );
    Ok(ExitCode::SUCCESS)
}

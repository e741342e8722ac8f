//! `regent history`: the failover history (Patroni's `patronictl history`), as the node behind
//! the socket applied it. Mirrors `api::history`.

use super::host::{answered_by, SocketArg};
use anyhow::bail;
use clap::Args;
use regent_client as client;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Show the newest N leadership changes (1..=1000; default 20), oldest first.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Print the daemon's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

/// `regent history [--limit N] [--json]`.
pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    let path = match args.limit {
        Some(n) => format!("/v1/history?limit={n}"),
        None => "/v1/history".to_string(),
    };
    let answer = client::request(&socket, "GET", &path, b"", Duration::from_secs(15))?;
    if answer.status != 200 {
        bail!("history: {}", answer.error_text());
    }
    let v = answer.json()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", history_table(&v));
        println!(
            "(as applied by {} at index {})",
            answered_by(&answer),
            v["applied_index"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per leadership change, oldest first: term, leader, previous leader, cause, time.
pub fn history_table(v: &Value) -> String {
    let mut out = format!(
        "{:<6} {:<7} {:<9} {:<18} {}\n",
        "TERM", "LEADER", "PREVIOUS", "CAUSE", "TIME"
    );
    for r in v["history"].as_array().into_iter().flatten() {
        let previous = r["previous_leader"]
            .as_u64()
            .map_or("-".to_string(), |p| p.to_string());
        let number = |v: &Value| v.as_u64().map_or("?".to_string(), |n| n.to_string());
        out.push_str(&format!(
            "{:<6} {:<7} {:<9} {:<18} {}\n",
            number(&r["term"]),
            number(&r["leader"]),
            previous,
            r["cause"].as_str().unwrap_or("?"),
            r["time"].as_str().unwrap_or("?"),
        ));
    }
    out
}

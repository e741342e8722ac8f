//! `regent version`: this build's version and the wire and command versions it speaks, and,
//! when a daemon answers on the socket, the running daemon's and the cluster's version (the
//! mirror of `GET /v1/status`'s `version` object).

use clap::Args;
use regent_client::{self as client, fetch_status};
use regent_daemon::versions::BUILD_VERSION;
use regent_replica::{VERSION_MAX, VERSION_MIN};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// The daemon's socket (default: the socket of --config, then $REGENT_SOCKET, then
    /// /run/regent/regent.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// A node's configuration file: ask the daemon on its socket.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON: {"build", "wire": {"min", "max"}, "daemon": {...} or null}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VersionArgs) -> anyhow::Result<ExitCode> {
    let socket = match (args.socket, &args.config) {
        (Some(socket), _) => socket,
        (None, Some(config)) => regent_daemon::config::DaemonConfig::load(config)?.socket,
        (None, None) => client::socket_path(None),
    };
    // No daemon on the socket is no error: the build's own versions are still the answer.
    let daemon = fetch_status(&socket).ok().map(|s| s["version"].clone());
    let this = json!({
        "build": BUILD_VERSION,
        "wire": { "min": VERSION_MIN, "max": VERSION_MAX },
        "daemon": daemon,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&this)?);
    } else {
        print!("{}", version_text(&this, &socket));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human text: this binary, then the daemon (or why there is none).
fn version_text(v: &Value, socket: &std::path::Path) -> String {
    let mut out = format!(
        "regent {} (wire and command versions {}..={})\n",
        v["build"].as_str().unwrap_or("?"),
        v["wire"]["min"],
        v["wire"]["max"],
    );
    match &v["daemon"] {
        Value::Object(d) => out.push_str(&format!(
            "daemon on {}: regent {}, wire {}..={}, cluster_version {}\n",
            socket.display(),
            d.get("build").and_then(Value::as_str).unwrap_or("?"),
            d.get("wire").map_or(Value::Null, |w| w["min"].clone()),
            d.get("wire").map_or(Value::Null, |w| w["max"].clone()),
            d.get("cluster_version").unwrap_or(&Value::Null),
        )),
        _ => out.push_str(&format!("no daemon answered on {}\n", socket.display())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_the_build_the_daemon_and_the_cluster_version() {
        let v = json!({
            "build": "0.1.0",
            "wire": { "min": 2, "max": 3 },
            "daemon": { "build": "0.1.0", "wire": { "min": 2, "max": 3 }, "cluster_version": 2 },
        });
        let text = version_text(&v, std::path::Path::new("/run/regent/regent.sock"));
        assert!(
            text.contains("regent 0.1.0 (wire and command versions 2..=3)"),
            "{text}"
        );
        assert!(text.contains("wire 2..=3, cluster_version 2"), "{text}");
        let none = version_text(
            &json!({"build": "0.1.0", "wire": {"min": 2, "max": 3}, "daemon": null}),
            std::path::Path::new("/x"),
        );
        assert!(none.contains("no daemon answered on /x"), "{none}");
    }
}

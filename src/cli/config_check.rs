//! `regent check-config` and `regent explain-timing`: the configuration file as the daemon
//! will read it, checked or explained, without starting anything.

use clap::Args;
use regent_daemon::config::DaemonConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CheckConfigArgs {
    /// The configuration file (regent.yaml).
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExplainTimingArgs {
    /// The configuration file (regent.yaml); only its timing section needs to be valid.
    pub path: PathBuf,
}

/// Loads and validates the file exactly as `regent run` does; any error fails the command.
pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let config = DaemonConfig::load(&args.path)?;
    println!(
        "{}: ok (node {} of cluster {}, {} members)",
        args.path.display(),
        config.node_id.0,
        config.cluster,
        config.members.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Parses the file, checks the timing rules only, and prints what the timing means.
pub fn explain_timing(args: ExplainTimingArgs) -> anyhow::Result<ExitCode> {
    let config = DaemonConfig::load_unvalidated(&args.path)?;
    config
        .validate_timing()
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.path.display()))?;
    print!("{}", config.explain_timing());
    Ok(ExitCode::SUCCESS)
}

//! The deterministic cluster simulator (placeholder).

pub mod linearizability;
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
}

pub fn run_cli(_args: SimArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("sim not built yet")
}

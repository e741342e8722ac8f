//! `regent admin`: certificate authority and node certificates (to be filled by the PKI work).

use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct AdminArgs {}

pub fn run(_args: AdminArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("regent admin is not built yet")
}

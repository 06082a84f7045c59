//! `cellnets status`: where each stage and run stands, from the files under out/.

use super::options::{ClaimTimeout, OutDir};
use crate::cluster::status;
use crate::study::manifest;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct StatusArgs {
    /// The manifest whose runs to show.
    #[arg(default_value = "experiments.yaml")]
    manifest: PathBuf,
    /// List every run of every stage, finished and waiting ones too.
    #[arg(long)]
    runs: bool,
    #[command(flatten)]
    out: OutDir,
    #[command(flatten)]
    claims: ClaimTimeout,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let manifest = manifest::load(&args.manifest)?;
    let detail = if args.runs {
        status::Detail::EveryRun
    } else {
        status::Detail::Training
    };
    let text = status::describe(
        &manifest,
        &args.out.of(&manifest),
        args.claims.duration(),
        detail,
    )?;
    print!("{text}");
    Ok(())
}

//! `cellnets clean`: drops the resume files of a manifest's runs that will not continue.

use super::options::{ClaimTimeout, OutDir};
use crate::cluster::clean;
use crate::study::manifest;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CleanArgs {
    /// The manifest whose runs to clean.
    #[arg(default_value = "experiments.yaml")]
    manifest: PathBuf,
    /// Only say what would be dropped.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    out: OutDir,
    #[command(flatten)]
    claims: ClaimTimeout,
}

pub fn run(args: CleanArgs) -> Result<()> {
    let manifest = manifest::load(&args.manifest)?;
    let out_dir = args.out.of(&manifest);
    let runs = clean::droppable(&manifest, &out_dir)?;
    let (mut freed, mut dropped) = (0, 0);
    for run in &runs {
        let megabytes = run.bytes as f64 / 1e6;
        if args.dry_run {
            println!("would drop {}: {megabytes:.1} MB", run.run);
        } else if clean::drop_resume(run, args.claims.duration())? {
            println!("dropped {}: {megabytes:.1} MB", run.run);
        } else {
            println!("kept {}: a live process holds it", run.run);
            continue;
        }
        freed += run.bytes;
        dropped += 1;
    }
    let verb = if args.dry_run { "would free" } else { "freed" };
    println!(
        "{verb} {:.1} MB of resume files in {dropped} run(s) under {}",
        freed as f64 / 1e6,
        out_dir.display()
    );
    Ok(())
}

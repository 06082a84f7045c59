//! `cellnets list`: each stage's runs with their parameter counts, without training.

use super::options::{DataDir, OutDir};
use crate::report::listing::describe;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ListArgs {
    /// The manifest to describe.
    #[arg(default_value = "experiments.yaml")]
    manifest: PathBuf,
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    out: OutDir,
}

pub fn run(args: ListArgs) -> Result<()> {
    let manifest = crate::study::manifest::load(&args.manifest)?;
    print!(
        "{}",
        describe(&manifest, &args.data.resolve(), &args.out.of(&manifest))?
    );
    Ok(())
}

//! `cellnets report`: writes out/report.md and out/report.html from a manifest's outputs.

use super::options::{DataOptions, DeviceOption, OutDir};
use crate::report;
use crate::study::manifest;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReportArgs {
    /// The manifest whose outputs to report.
    #[arg(default_value = "experiments.yaml")]
    manifest: PathBuf,
    #[command(flatten)]
    data: DataOptions,
    #[command(flatten)]
    out: OutDir,
    #[command(flatten)]
    device: DeviceOption,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let manifest = manifest::load(&args.manifest)?;
    let settings = report::ReportSettings {
        out_dir: args.out.of(&manifest),
        data_dir: args.data.apply(),
        device: args.device.device()?,
    };
    let written = report::write(&manifest, &args.manifest, &settings)?;
    println!("wrote {}", written.markdown.display());
    println!("wrote {}", written.html.display());
    Ok(())
}

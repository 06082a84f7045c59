//! `cellnets export`: writes a saved run's model as TorchScript.

use crate::inference::eval::Saved;
use crate::inference::export::{self, Format};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// A run folder (out/<stage>/<run>) or the best.safetensors inside one.
    run: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Torchscript)]
    format: Format,
    /// The file to write [default: <run>/model.pt].
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let saved = Saved::open(&args.run)?;
    let output = args.output.unwrap_or_else(|| saved.dir().join("model.pt"));
    export::export(&saved, args.format, &output)?;
    println!("wrote {}", output.display());
    Ok(())
}

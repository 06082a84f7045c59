//! `cellnets predict`: classifies image files with a saved run.

use super::options::DeviceOption;
use crate::inference::eval::Saved;
use crate::inference::predict;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PredictArgs {
    /// A run folder (out/<stage>/<run>) or the best.safetensors inside one.
    run: PathBuf,
    /// Image files, or folders searched for them (by ending, in every subfolder).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The CSV file to write.
    #[arg(long, default_value = "predictions.csv")]
    output: PathBuf,
    /// How many of the most probable classes to print per image.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    top: u16,
    #[command(flatten)]
    device: DeviceOption,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let saved = Saved::open(&args.run)?;
    let device = args.device.device()?;
    let text = predict::run(&saved, &args.images, &args.output, args.top.into(), device)?;
    print!("{text}");
    Ok(())
}

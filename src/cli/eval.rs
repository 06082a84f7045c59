//! `cellnets eval`: scores a saved run's best checkpoint on a data file, and on request
//! writes each image's prediction.

use super::options::{DataOptions, DeviceOption};
use crate::data;
use crate::inference::eval::{self, EvalSplit, Saved};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EvalArgs {
    /// A run folder (out/<stage>/<run>) or the best.safetensors inside one.
    run: PathBuf,
    /// An npz file of the same image size and classes [default: the run's own data
    /// file in --data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which images of the file to score.
    #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
    split: EvalSplit,
    /// Also write every image's prediction to this CSV file: its row in the file, true
    /// and predicted class, and each class's probability.
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
    #[command(flatten)]
    data_options: DataOptions,
    #[command(flatten)]
    device: DeviceOption,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let saved = Saved::open_best_so_far(&args.run)?;
    let spec = saved.dataset();
    let device = args.device.device()?;
    let data_dir = args.data_options.apply();
    let data = match &args.data {
        Some(file) => data::load(file, spec, file.parent().unwrap_or(Path::new(".")), device)?,
        None => data::open(&data_dir, spec, device)?,
    };
    let predictions = args.predictions.as_deref();
    print!(
        "{}",
        eval::eval(&saved, &data, args.split, predictions, device)?
    );
    Ok(())
}

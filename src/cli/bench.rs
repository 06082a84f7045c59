//! `cellnets bench`: times training epochs of the study's models on the real data.

use super::options::{DataOptions, DeviceOption, ThreadsOption};
use crate::data;
use crate::runner::bench;
use crate::study::manifest::DatasetSpec;
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Comma-separated: mlp256, mlp4096, cnn8x3, cnn64x9, deep.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mlp256,mlp4096,cnn8x3,cnn64x9,deep"
    )]
    models: Vec<String>,
    /// Timed epochs per model, after one warm-up epoch.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Times the textbook training step, without cellnets' fused SGD update.
    #[arg(long)]
    textbook: bool,
    /// sgd (the study's, 0.01), momentum (SGD 0.01, momentum 0.9) or adam (0.001).
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    #[command(flatten)]
    data: DataOptions,
    #[command(flatten)]
    device: DeviceOption,
    #[command(flatten)]
    threads: ThreadsOption,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let spec: DatasetSpec = serde_yaml::from_str("name: bloodmnist").expect("a valid dataset");
    let data = data::open(&args.data.apply(), &spec, args.device.device()?)?;
    if let Some(threads) = args.threads.threads {
        tch::set_num_threads(threads.into());
    }
    let results = bench::bench(
        &args.models,
        args.epochs,
        &data,
        args.textbook,
        &args.optimizer,
    )?;
    print!("{}", bench::table(&results));
    Ok(())
}

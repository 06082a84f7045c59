//! `cellnets bench`: times training epochs of the study's models on the real data.

use super::options::{DataOptions, DeviceOption, ThreadsOption};
use crate::data;
use crate::precision::Precision;
use crate::runner::bench;
use crate::study::manifest::DatasetSpec;
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Comma-separated: mlp256, mlp4096, cnn8x3, cnn64x9, deep, resnet18, resnet9 and
    /// resnet9w16 (the fast recipe's net; the last three left out by default: minutes an
    /// epoch on a laptop's CPU).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mlp256,mlp4096,cnn8x3,cnn64x9,deep"
    )]
    models: Vec<String>,
    /// Timed epochs per model, after one warm-up epoch.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Training batch size (default the study's 32; the fast recipe trains at 128).
    #[arg(long)]
    batch_size: Option<usize>,
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
    #[command(flatten)]
    precision: Precision,
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
    args.precision.apply_to_process()?;
    eprintln!(
        "{}",
        describe_device(data.train.images.device(), args.precision)
    );
    let settings = bench::BenchSettings {
        epochs: args.epochs,
        batch_size: args.batch_size,
        textbook: args.textbook,
        optimizer: &args.optimizer,
        precision: args.precision,
    };
    let results = bench::bench(&args.models, &data, &settings)?;
    print!("{}", bench::table(&results));
    Ok(())
}

/// The line a bench log starts with: where it ran and how, since its numbers mean
/// nothing without it.
fn describe_device(device: tch::Device, precision: Precision) -> String {
    let device = match device {
        tch::Device::Cuda(index) => format!(
            "cuda:{index} (of {} CUDA devices, cuDNN {})",
            tch::Cuda::device_count(),
            if tch::Cuda::cudnn_is_available() {
                "available"
            } else {
                "missing"
            }
        ),
        other => format!("{other:?}").to_lowercase(),
    };
    let switches = match precision.flags() {
        flags if flags.is_empty() => " none (IEEE float32)".to_string(),
        flags => flags,
    };
    format!(
        "bench on {device}, {} libtorch threads, precision switches:{switches}",
        tch::get_num_threads(),
    )
}

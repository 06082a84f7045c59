//! `cellnets [MANIFEST]` and `cellnets only STAGE...`: train a manifest's stages.

use super::options::TrainingOptions;
use crate::cluster::interrupt;
use crate::runner;
use crate::study::manifest;
use crate::train::stop;
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct TrainArgs {
    /// The manifest to run.
    #[arg(default_value = "experiments.yaml")]
    manifest: PathBuf,
    #[command(flatten)]
    options: TrainingOptions,
}

#[derive(Args)]
pub struct OnlyArgs {
    /// Stages of the manifest, by name.
    #[arg(required = true)]
    stages: Vec<String>,
    /// The manifest that defines them [default: experiments.yaml, which it names]
    #[arg(long)]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    options: TrainingOptions,
}

pub fn run(args: TrainArgs) -> Result<()> {
    train(&args.manifest, &[], &args.options)
}

pub fn run_only(args: OnlyArgs) -> Result<()> {
    let manifest = match args.manifest {
        Some(manifest) => manifest,
        None => {
            // `only` is typed after a study of another manifest as often as not: say
            // which one this is before it trains for hours.
            eprintln!(
                "cellnets only: no --manifest given, so running stages of {DEFAULT_MANIFEST}"
            );
            PathBuf::from(DEFAULT_MANIFEST)
        }
    };
    train(&manifest, &args.stages, &args.options)
}

/// The manifest `cellnets` and `cellnets only` run when given none.
const DEFAULT_MANIFEST: &str = "experiments.yaml";

/// A training process stopped by a signal: its message says what became of it, and
/// the process exits with `interrupt::EXIT_CODE`.
#[derive(Debug, thiserror::Error)]
#[error("stopped: {0}")]
pub struct Stopped(interrupt::Requeue);

fn train(manifest_path: &Path, only: &[String], options: &TrainingOptions) -> Result<()> {
    let manifest = manifest::load(manifest_path)?;
    let settings = runner::TrainSettings {
        data_dir: options.data.apply(),
        out_dir: options.out.of(&manifest),
        device: options.device.device()?,
        fresh: options.fresh,
        jobs: options.jobs.into(),
        threads: options.threads.threads.map(usize::from),
        retry_failed: options.retry_failed,
        precision: options.precision,
        tensorboard: options.tensorboard || manifest.tensorboard,
    };
    options.precision.apply_to_process()?;
    let sharing = runner::Sharing {
        shard: options.sharing.shard,
        claim_timeout: options.sharing.claims.duration(),
        leave_when_idle: options.sharing.leave_when_idle,
    };
    interrupt::install()?;
    match runner::run_shared(&manifest, only, &settings, &sharing) {
        Ok(_) => {
            if let Some(peak) = peak_memory() {
                eprintln!("peak memory: {} MB", peak >> 20);
            }
            Ok(())
        }
        // The runs' claims are released by now: a requeued task may take them at once.
        Err(error) if stop::requested() && is_interrupted(&error) => {
            interrupt::ignore_further_signals();
            eprintln!("stopping on a signal: every committed epoch is kept");
            let requeue = interrupt::requeue_self(options.sharing.max_requeues);
            Err(Stopped(requeue).into())
        }
        Err(error) => Err(error),
    }
}

/// The process's peak resident memory in bytes (`VmHWM`), where Linux tells it.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes << 10)
}

fn is_interrupted(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<stop::Interrupted>())
}

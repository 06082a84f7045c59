//! `cellnets slurm`: writes a study's SLURM scripts, and submits them when asked.

use super::options::{DataOptions, DeviceOption, OutDir};
use crate::cluster::slurm::{self, Invocation, JobOptions};
use crate::precision::Precision;
use crate::study::manifest;
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SlurmArgs {
    /// [MANIFEST] [STAGES...]: the manifest (a .yaml or .yml file, default
    /// experiments.yaml), then the stages to submit (default all).
    args: Vec<String>,
    #[command(flatten)]
    job: JobOptions,
    /// Submit the scripts with sbatch and print the job ids.
    #[arg(long)]
    submit: bool,
    #[command(flatten)]
    data: DataOptions,
    #[command(flatten)]
    out: OutDir,
    #[command(flatten)]
    device: DeviceOption,
    #[command(flatten)]
    precision: Precision,
}

pub fn run(args: SlurmArgs) -> Result<()> {
    let is_manifest = |arg: &String| arg.ends_with(".yaml") || arg.ends_with(".yml");
    let (manifest_path, stages) = match args.args.first() {
        Some(first) if is_manifest(first) => (PathBuf::from(first), &args.args[1..]),
        _ => (PathBuf::from("experiments.yaml"), &args.args[..]),
    };
    let manifest = manifest::load(&manifest_path)?;
    let out_dir = &args.out.of(&manifest);
    std::fs::create_dir_all(out_dir)?;
    let absolute = |path: &Path| {
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))
    };
    let invocation = Invocation {
        binary: std::env::current_exe().context("cannot find the cellnets binary")?,
        manifest: absolute(&manifest_path)?,
        out_dir: absolute(out_dir)?,
        // The data folder may not exist yet: its files download on first use.
        data_dir: {
            let dir = args.data.apply();
            std::fs::canonicalize(&dir).or_else(|_| std::path::absolute(&dir))?
        },
        device: args.device.name().to_string(),
        precision: args.precision,
        data_memory: args.data.data_memory,
    };
    let (jobs, given_up) = slurm::plan_jobs(
        &manifest,
        stages,
        &invocation.out_dir,
        args.job.retry_failed,
    )?;
    for run in &given_up {
        println!("not submitted: {run}; fix the cause, then rerun with --retry-failed");
    }
    let (report, written) = slurm::write_scripts(&jobs, &args.job, &invocation)?;
    print!("{written}");
    if jobs.is_empty() {
        println!("every run has finished: only the report is left");
    }
    if args.submit {
        print!("{}", slurm::submit(&jobs, &report)?);
    }
    Ok(())
}

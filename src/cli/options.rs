//! Option groups that several commands share: each command flattens the groups it uses
//! (`#[command(flatten)]`), so no command copies an option by hand and none offers one
//! it ignores.

use crate::cluster::claim;
use crate::cluster::shard::Shard;
use crate::data;
use crate::precision::Precision;
use crate::study::manifest::Manifest;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use tch::Device;

/// Where data sets are found.
#[derive(Args, Clone, Debug)]
pub struct DataDir {
    /// Folder with the npz files [default: $CELLNETS_DATA_DIR, else data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DataDir {
    pub fn resolve(&self) -> PathBuf {
        data::data_dir(self.data_dir.as_deref())
    }
}

/// Where data sets are found, and how much memory their pixels may take.
#[derive(Args, Clone, Debug)]
pub struct DataOptions {
    #[command(flatten)]
    pub dir: DataDir,
    /// Memory a data set's uint8 pixels may take (e.g. 512M, 2G); a larger set is read
    /// from an uncompressed copy on disk per batch [default: $CELLNETS_DATA_MEMORY, else
    /// half the memory available]
    #[arg(long, value_parser = data::parse_bytes)]
    pub data_memory: Option<u64>,
}

impl DataOptions {
    /// The data folder, with the budget for pixels in memory set for this process.
    pub fn apply(&self) -> PathBuf {
        if let Some(bytes) = self.data_memory {
            data::set_memory_budget(bytes);
        }
        self.dir.resolve()
    }
}

/// Where outputs are written and read.
#[derive(Args, Clone, Debug)]
pub struct OutDir {
    /// Folder that receives every output [default: the manifest's `out`, else out]
    #[arg(long)]
    out: Option<PathBuf>,
}

impl OutDir {
    /// The folder for `manifest`'s outputs: `--out`, else the manifest's own `out`.
    pub fn of(&self, manifest: &Manifest) -> PathBuf {
        manifest.out_dir(self.out.as_deref())
    }
}

/// Where models run.
#[derive(Args, Clone, Copy, Debug)]
pub struct DeviceOption {
    /// Where to run: auto takes CUDA when present.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceOption {
    pub fn device(self) -> Result<Device> {
        match self.device {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => bail!(
                "--device cuda: no CUDA device is visible to libtorch; use --device cpu or auto"
            ),
        }
    }

    /// The option's value as the command line spells it, for the commands SLURM runs.
    pub fn name(self) -> &'static str {
        match self.device {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        }
    }
}

/// libtorch's threads.
#[derive(Args, Clone, Copy, Debug)]
pub struct ThreadsOption {
    /// libtorch threads per run [default: the cores, shared among --jobs]. Runs give
    /// the same numbers bit for bit on the CPU only with the same thread count.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

/// How a training process trains.
#[derive(Args, Clone, Debug)]
pub struct TrainingOptions {
    #[command(flatten)]
    pub data: DataOptions,
    #[command(flatten)]
    pub out: OutDir,
    #[command(flatten)]
    pub device: DeviceOption,
    /// Retrain runs that already finished with the same settings instead of reusing them.
    #[arg(long)]
    pub fresh: bool,
    /// Train this many runs of a stage at once (threads sharing the device). Pays off
    /// on a GPU and for small models on many cores. Each run draws from its own seeds,
    /// so its numbers do not depend on what trains beside it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    #[command(flatten)]
    pub threads: ThreadsOption,
    #[command(flatten)]
    pub precision: Precision,
    /// Retry runs that failed 3 times in a row (without it they are skipped, and the
    /// command fails naming them).
    #[arg(long)]
    pub retry_failed: bool,
    /// Also write each run's scalars and hyperparameters as TensorBoard event files in
    /// its folder (`tensorboard --logdir out` shows them, with the HParams plugin).
    #[arg(long)]
    pub tensorboard: bool,
    #[command(flatten)]
    pub sharing: SharingOptions,
}

/// How a training process shares out/ with others (see docs/cluster.md).
#[derive(Args, Clone, Debug)]
pub struct SharingOptions {
    /// Take only share I of N of each stage's runs (run positions I, I+N, ...), for N
    /// processes on one out/ (e.g. one per GPU). Without it, a process takes every run
    /// that no other process holds.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Halving stages: stop, instead of waiting, when every run left to train at a rung
    /// is held by another process (each of `cellnets slurm`'s tasks does, so that an idle
    /// task gives its allocation back). Those processes train the rungs after it.
    #[arg(long, conflicts_with = "shard")]
    pub leave_when_idle: bool,
    #[command(flatten)]
    pub claims: ClaimTimeout,
    /// Under SLURM: how often a task stopped by SIGUSR1 or SIGTERM requeues itself.
    #[arg(long, default_value_t = 3)]
    pub max_requeues: u32,
}

/// When a silent claim counts as stale.
#[derive(Args, Clone, Copy, Debug)]
pub struct ClaimTimeout {
    /// Seconds without a heartbeat after which another process's claim on a run is
    /// stale and taken over (a process of this host that is gone is taken over at once).
    #[arg(long, default_value_t = claim::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_timeout: u64,
}

impl ClaimTimeout {
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.claim_timeout)
    }
}

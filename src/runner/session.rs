//! The state of one `cellnets` invocation running stages: its settings, how it shares
//! out/ with other processes, the winners it knows, and what an attempt on a run can do
//! and become. The work is in files of their own, each an `impl Session` block: the
//! stage order (`stages`), attempts on runs (`attempt`), winners (`settle`), and halving
//! stages (`halving`).

use crate::cluster::claim::{self, ClaimLost, Holder};
use crate::cluster::shard::Shard;
use crate::data::{Dataset, Datasets};
use crate::outputs::run_folder::{Failure, RunFolder};
use crate::outputs::summary::RunSummary;
use crate::outputs::winners::{read_winner, Winner};
use crate::precision::Precision;
use crate::runner::progress::Progress;
use crate::study::plan::{RunId, RunPlan, StagePlan};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tch::Device;

#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: Device,
    /// Retrain runs that finished before the retraining began instead of reusing them;
    /// processes on one out/ with `fresh` at the same time are one retraining (see
    /// `cluster::fresh`).
    pub fresh: bool,
    /// Runs of a stage trained at once, each in its own thread with its own VarStore.
    pub jobs: usize,
    /// libtorch threads per run; by default the cores are shared among the jobs.
    pub threads: Option<usize>,
    /// Retry runs that failed `FAILURES_BEFORE_GIVING_UP` times in a row.
    pub retry_failed: bool,
    /// TF32, cuDNN's autotuner and bf16 autocast; `train` sets the process-wide ones.
    pub precision: Precision,
    /// Write each run's scalars and hyperparameters as TensorBoard event files too.
    pub tensorboard: bool,
}

/// How this process shares out/ with others.
#[derive(Debug, Clone)]
pub struct Sharing {
    /// The share of each stage's runs this process takes.
    pub shard: Shard,
    /// A claim silent this long is taken over; and a process waiting for another's
    /// runs gives up after this long without any live claim on them.
    pub claim_timeout: Duration,
    /// A halving stage's worker stops instead of waiting for a rung whose open runs
    /// other processes hold: they go on to the next rungs, which have fewer runs.
    pub leave_when_idle: bool,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing {
            shard: Shard::ALL,
            claim_timeout: claim::DEFAULT_TIMEOUT,
            leave_when_idle: false,
        }
    }
}

pub(super) struct Session<'a> {
    pub(super) settings: &'a TrainSettings,
    pub(super) sharing: &'a Sharing,
    pub(super) progress: Progress,
    /// Winners of the stages run so far in this invocation.
    pub(super) winners: HashMap<String, Winner>,
    /// Stages run in this invocation whose other runs other processes still train.
    pub(super) unsettled: HashMap<String, StagePlan>,
    /// Under `--fresh`, when the retraining began: results committed before do not count.
    pub(super) fresh_since: Option<SystemTime>,
    /// Runs skipped for failing too often in a row.
    pub(super) given_up: Mutex<Vec<RunId>>,
}

/// What an attempt on a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goal {
    /// Train it to its budget, or reuse a finished run of its settings.
    Whole,
    /// A halving stage's step: train it until epoch `until`, pausing there below its
    /// budget; its resume point stays after it ends, for a larger budget to continue.
    Rung { until: usize },
    /// Commit a run paused at a rung as halted there.
    Halt,
}

/// What became of a run this process tried to complete.
pub(super) enum Done {
    Finished,
    /// It trained to its rung and paused there.
    Paused,
    /// Another process or thread holds its claim.
    Held(Holder),
    /// Another process took the claim over while this one trained it.
    Lost(ClaimLost),
    /// It failed too often in a row to be retried without `--retry-failed`.
    GaveUp(Failure),
}

impl Session<'_> {
    pub(super) fn winner(&self, stage: &str) -> Result<Winner> {
        if let Some(winner) = self.winners.get(stage) {
            return Ok(winner.clone());
        }
        read_winner(&self.settings.out_dir, stage)?.with_context(|| {
            format!("stage `{stage}` has not run: run `cellnets only {stage}` first")
        })
    }

    /// The runs of `runs` that this process's shard takes.
    pub(super) fn my_share(&self, runs: &[RunPlan]) -> Vec<RunPlan> {
        let shard = self.sharing.shard;
        runs.iter()
            .enumerate()
            .filter(|(position, _)| shard.takes(*position))
            .map(|(_, run)| run.clone())
            .collect()
    }

    /// The recorded summary of `run` in its own folder, when it finished with these settings.
    pub(super) fn result_of(&self, run: &RunPlan, data: &Dataset) -> Result<Option<RunSummary>> {
        let folder = RunFolder::of(&self.settings.out_dir, run);
        if !folder.finished_since(self.fresh_since) {
            return Ok(None);
        }
        Ok(folder
            .read_result()?
            .filter(|finished| finished.is_run_of(run, &data.md5))
            .map(|finished| finished.summary))
    }

    /// Who holds live claims on `runs`.
    pub(super) fn live_holders(&self, runs: &[RunPlan]) -> Result<Vec<String>> {
        let mut holders = Vec::new();
        for run in runs {
            let path = RunFolder::of(&self.settings.out_dir, run).claim_file();
            if let Some(seen) = claim::inspect(&path, self.sharing.claim_timeout)? {
                if !seen.stale {
                    holders.push(format!("{}: {}", run.name, seen.holder.describe()));
                }
            }
        }
        Ok(holders)
    }
}

/// What a run skipped for its failures says.
pub(super) fn given_up(run: &RunPlan, failure: &Failure) -> String {
    format!(
        "{} {}; not retried: fix the cause, then rerun with --retry-failed",
        run.id(),
        failure.describe()
    )
}

/// `, trained by <holder>; <holder>` for a waiting message; empty without holders.
pub(super) fn trained_by(holders: &[String]) -> String {
    match holders {
        [] => String::new(),
        _ => format!(", trained by {}", holders.join("; ")),
    }
}

/// `a, b, c`: run names for messages.
pub(super) fn names(runs: &[RunPlan]) -> String {
    runs.iter()
        .map(|run| run.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn dataset_for<'d>(datasets: &'d Datasets, run: &RunPlan) -> &'d Dataset {
    datasets
        .opened(&run.dataset)
        .expect("every run's dataset was opened")
}

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
use crate::outputs::winners::Winner;
use crate::precision::Precision;
use crate::runner::progress::Progress;
use crate::study::manifest::Manifest;
use crate::study::plan::{RunId, RunPlan, StagePlan};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The commands this invocation's messages suggest.
    pub(super) hint: Hint,
}

/// A command a message suggests, with the manifest and out/ of the invocation that
/// prints it, so that pasting it runs the same study: `cellnets only s --manifest
/// quick.yaml --out out/quick`, never the full-length experiments.yaml into out/.
#[derive(Debug, Clone)]
pub struct Hint {
    manifest: Option<PathBuf>,
    out: PathBuf,
}

impl Hint {
    pub fn of(manifest: &Manifest, out: &Path) -> Hint {
        Hint {
            manifest: manifest.source.clone(),
            out: out.to_path_buf(),
        }
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    /// `cellnets only STAGE... --manifest M --out O`.
    pub fn only(&self, stages: &[&str]) -> String {
        let mut command = format!("cellnets only {}", stages.join(" "));
        if let Some(manifest) = &self.manifest {
            command += &format!(" --manifest {}", quoted(manifest));
        }
        command + &format!(" --out {}", quoted(&self.out))
    }
}

/// A path as a shell word: quoted when it holds anything but plain characters.
fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c);
    match !text.is_empty() && text.chars().all(plain) {
        true => text,
        false => format!("'{}'", text.replace('\'', r"'\''")),
    }
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
    /// The winner of `stage`, settled in this invocation or before its stages ran
    /// (`settle_sources`).
    pub(super) fn winner(&self, stage: &str) -> Result<Winner> {
        self.winners.get(stage).cloned().with_context(|| {
            format!(
                "stage `{stage}` has no winner for this manifest: run `{}` first",
                self.hint.only(&[stage])
            )
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

/// Runs `worker` on `workers` threads (on this one when 1) and gathers what each
/// returns. Each thread gets its own handles on the data: tensors may move between
/// threads but not be shared. A worker that fails sets `failed`, which the others
/// check between runs, so they stop at their next one; the first error is returned.
pub(super) fn on_workers<T: Send>(
    workers: usize,
    datasets: &Datasets,
    worker: impl Fn(&Datasets, &AtomicBool) -> Result<Vec<T>> + Sync,
) -> Result<Vec<T>> {
    let failed = AtomicBool::new(false);
    if workers <= 1 {
        return worker(datasets, &failed);
    }
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let own = datasets.shallow_clone();
                let (worker, failed) = (&worker, &failed);
                scope.spawn(move || {
                    let result = worker(&own, failed);
                    failed.fetch_or(result.is_err(), Ordering::Relaxed);
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a worker does not panic"))
            .collect()
    });
    let mut gathered = Vec::new();
    for result in results {
        gathered.extend(result?);
    }
    Ok(gathered)
}

pub(super) fn dataset_for<'d>(datasets: &'d Datasets, run: &RunPlan) -> &'d Dataset {
    datasets
        .opened(&run.dataset)
        .expect("every run's dataset was opened")
}

#[cfg(test)]
mod tests {
    use super::Hint;

    #[test]
    fn a_hint_carries_the_manifest_and_out_and_quotes_them_for_a_shell() {
        let hint = Hint {
            manifest: Some("experiments/quick.yaml".into()),
            out: "out/quick".into(),
        };
        assert_eq!(
            hint.only(&["cnn_grid", "cnn_best"]),
            "cellnets only cnn_grid cnn_best --manifest experiments/quick.yaml --out out/quick"
        );
        let odd = Hint {
            manifest: None,
            out: "my out/it's".into(),
        };
        assert_eq!(odd.only(&["s"]), r"cellnets only s --out 'my out/it'\''s'");
    }
}

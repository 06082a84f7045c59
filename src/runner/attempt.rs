//! One attempt on one run: claim it (or find another process holding it), reuse a
//! finished run of the same settings or train it (to its budget, or to a rung), record
//! its summary, or record why it failed; and `--jobs` attempts at a time.

use super::session::{dataset_for, Done, Goal, Session};
use crate::cluster::claim::{self, Attempt, Claim, ClaimLost, Holder};
use crate::cluster::file_lock::with_lock;
use crate::cluster::slurm;
use crate::data::{Dataset, Datasets};
use crate::outputs::run_folder::{find_finished, Failure, FinishedRun, RunFolder, StageFolder};
use crate::outputs::summary::{record_summary, RunSummary};
use crate::runner::trainer::{self, RunContext};
use crate::storage::files::is_disk_full;
use crate::study::plan::RunPlan;
use crate::train::stop::Interrupted;
use anyhow::{anyhow, Context, Result};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

impl Session<'_> {
    /// Completes those of `runs` that no other process holds, `--jobs` at a time,
    /// recording each summary as it arrives; returns what became of each, in order.
    pub(super) fn run_all(&self, runs: &[RunPlan], datasets: &Datasets) -> Result<Vec<Done>> {
        let attempt = |run: &RunPlan, data: &Dataset| {
            self.attempt(run, data, Goal::Whole)
                .with_context(|| format!("run {} failed", run.id()))
        };
        let jobs = self.settings.jobs.clamp(1, runs.len().max(1));
        if jobs == 1 {
            return runs
                .iter()
                .map(|run| attempt(run, dataset_for(datasets, run)))
                .collect();
        }
        let mut done: Vec<Option<Done>> = runs.iter().map(|_| None).collect();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let (sender, receiver) = mpsc::channel();
        let mut first_error = None;
        thread::scope(|scope| {
            for _ in 0..jobs {
                // Tensors may move between threads but not be shared: each worker
                // gets its own handles on the same data.
                let own = datasets.shallow_clone();
                let (sender, next, failed) = (sender.clone(), &next, &failed);
                let attempt = &attempt;
                scope.spawn(move || {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(run) = runs.get(i) else { break };
                        let result = attempt(run, dataset_for(&own, run));
                        failed.fetch_or(result.is_err(), Ordering::Relaxed);
                        let _ = sender.send((i, result));
                    }
                });
            }
            drop(sender);
            for (i, result) in receiver {
                match result {
                    Ok(outcome) => done[i] = Some(outcome),
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
        });
        if let Some(error) = first_error {
            return Err(error);
        }
        Ok(done
            .into_iter()
            .map(|outcome| outcome.expect("every run was attempted"))
            .collect())
    }

    /// Claims `run` and does `goal` on it, unless another process or thread holds it or
    /// it failed too often in a row. A failure (not a signal, not a lost claim) is
    /// recorded in the run's folder before the error goes on.
    pub(super) fn attempt(&self, run: &RunPlan, data: &Dataset, goal: Goal) -> Result<Done> {
        crate::train::stop::check()?;
        let folder = RunFolder::of(&self.settings.out_dir, run);
        if let Some((_, failure)) = self.gave_up_on(std::slice::from_ref(run)) {
            return Ok(Done::GaveUp(failure));
        }
        let mut taken_over = None;
        let claim = match claim::try_claim(
            &folder.claim_file(),
            self.sharing.claim_timeout,
            &mut taken_over,
        )? {
            Attempt::Claimed(claim) => claim,
            Attempt::Held(holder) => return Ok(Done::Held(holder)),
        };
        if let Some(stale) = taken_over {
            self.progress.note(&format!(
                "{}: took over the stale claim of {}",
                run.id(),
                stale.describe()
            ));
        }
        let summary = match self.complete(run, data, &claim, goal) {
            Ok(summary) => summary,
            Err(error) => {
                return match error.downcast::<ClaimLost>() {
                    Ok(lost) => Ok(Done::Lost(lost)),
                    Err(error) => {
                        // A signal is no failure, and a full disk none of the run's: it
                        // resumes once there is space, uncounted.
                        let interrupted = error.chain().any(|cause| cause.is::<Interrupted>());
                        if !interrupted && !is_disk_full(&error) {
                            self.record_failure(run, &folder, &error);
                        }
                        Err(error)
                    }
                };
            }
        };
        let Some(summary) = summary else {
            return Ok(Done::Paused);
        };
        self.record(&summary)?;
        drop(claim);
        Ok(Done::Finished)
    }

    /// Writes why `run` failed into its folder; when even that cannot be written (an
    /// unwritable folder), it is only said.
    fn record_failure(&self, run: &RunPlan, folder: &RunFolder, error: &anyhow::Error) {
        let reason = format!("{error:#}");
        let log = slurm::task_log(&self.settings.out_dir, &run.stage);
        let by = Holder::of_this_process().describe();
        if let Err(cannot) = folder.record_failure(reason, by, log) {
            self.progress.note(&format!(
                "{}: cannot record its failure: {cannot:#}",
                run.id()
            ));
        }
    }

    /// The first of `runs` that failed too often in a row to be retried now, with why.
    pub(super) fn gave_up_on(&self, runs: &[RunPlan]) -> Option<(RunPlan, Failure)> {
        if self.settings.retry_failed {
            return None;
        }
        runs.iter().find_map(|run| {
            let folder = RunFolder::of(&self.settings.out_dir, run);
            let failure = folder.read_failure().filter(Failure::gives_up)?;
            let finished = folder.read_result().ok().flatten();
            finished
                .is_none_or(|finished| !finished.plan.same_settings(run))
                .then(|| (run.clone(), failure))
        })
    }

    /// Adds a finished run to its stage's summary and to the progress display.
    pub(super) fn record(&self, summary: &RunSummary) -> Result<()> {
        self.record_row(summary)?;
        self.progress.finish_run(summary);
        Ok(())
    }

    /// Puts a summary into its stage's summary.csv, under the stage's lock.
    pub(super) fn record_row(&self, summary: &RunSummary) -> Result<()> {
        let stage = StageFolder::new(&self.settings.out_dir, &summary.stage);
        with_lock(&stage.lock(), || {
            record_summary(&stage.summary_csv(), summary)
        })
    }

    /// Does `goal` on `run`: reuses a finished run with the same settings and data, or
    /// trains it (none when it paused at a rung), or halts it. Commits what ended.
    fn complete(
        &self,
        run: &RunPlan,
        data: &Dataset,
        claim: &Claim,
        goal: Goal,
    ) -> Result<Option<RunSummary>> {
        if goal != Goal::Halt {
            if let Some(summary) = self.reuse(run, data)? {
                return Ok(Some(summary));
            }
        }
        let folder = RunFolder::of(&self.settings.out_dir, run);
        if matches!(goal, Goal::Rung { .. }) && !folder.resumable_since(self.fresh_since) {
            // Under --fresh a halving run's kept resume point is from before the
            // retraining: it starts over instead.
            folder.clear_resume()?;
        }
        let transfer_checkpoint = self.transfer_checkpoint(run)?;
        let context = RunContext {
            device: self.settings.device,
            precision: self.settings.precision,
            progress: &self.progress,
            transfer_checkpoint: transfer_checkpoint.as_deref(),
            claim: Some(claim),
            tensorboard: self.settings.tensorboard,
            pause_at: match goal {
                Goal::Rung { until } if until < run.training.epochs => Some(until),
                _ => None,
            },
        };
        // libtorch reports some failures (an allocation too large, say) as panics in tch.
        let summary = panic::catch_unwind(AssertUnwindSafe(|| match goal {
            Goal::Halt => trainer::halt(run, data, &folder, &context).map(Some),
            _ => trainer::train(run, data, &folder, &context),
        }))
        .unwrap_or_else(|payload| {
            Err(anyhow!(
                "libtorch failed: {}",
                crate::panic_summary(payload.as_ref())
            ))
        })?;
        let Some(summary) = summary else {
            return Ok(None);
        };
        claim.check_held()?;
        let finished = FinishedRun {
            plan: run.clone(),
            data_md5: data.md5.clone(),
            summary: summary.clone(),
            input: Some(data.input),
            task: Some(data.task),
        };
        match goal {
            Goal::Whole => folder.commit(&finished)?,
            Goal::Rung { .. } | Goal::Halt => folder.commit_continuable(&finished)?,
        }
        Ok(Some(summary))
    }

    /// The summary of a finished run with the same settings and data, taken into this
    /// run's folder; none when there is none, or under `--fresh` none committed since
    /// the retraining began (by this process or another).
    fn reuse(&self, run: &RunPlan, data: &Dataset) -> Result<Option<RunSummary>> {
        let out = &self.settings.out_dir;
        let found = find_finished(out, run, &data.md5, self.fresh_since)?;
        let Some((source, finished)) = found else {
            return Ok(None);
        };
        let own = source == RunFolder::of(out, run);
        // Named after the run that trained it, not a run that reused it in turn.
        let origin = (finished.summary.reused_from.clone())
            .unwrap_or_else(|| finished.plan.id().to_string());
        let summary = RunFolder::of(out, run).adopt(run, &source, finished)?;
        self.progress.note(&match own {
            // Killed between its result and the cleanup of its resume files.
            true => format!("{}: finished before; its result is kept", run.id()),
            false => format!(
                "{}: same settings as {origin}, which finished: reused, not retrained",
                run.id()
            ),
        });
        Ok(Some(summary))
    }

    /// The best checkpoint of the winner that `run`'s transfer takes its layers from.
    fn transfer_checkpoint(&self, run: &RunPlan) -> Result<Option<PathBuf>> {
        let Some(transfer) = &run.transfer else {
            return Ok(None);
        };
        let source = self.winner(&transfer.from)?;
        let folder = StageFolder::new(&self.settings.out_dir, &transfer.from).run(&source.run);
        Ok(Some(folder.checkpoint()))
    }
}

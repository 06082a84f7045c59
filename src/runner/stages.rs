//! Runs a manifest's stages: plans them, loads their data, trains each run (or reuses
//! a finished run with the same settings), records the outcome and each stage's
//! winner. Bad input fails before anything is written under out/.
//!
//! Several processes may share out/ (threads of `--jobs`, `--shard`ed processes, SLURM
//! array tasks): each run is claimed before it trains and skipped while another holds
//! it; summary rows are merged under a stage lock; a stage's winner is written by the
//! process that sees its last run finish, from the runs' results on disk.

use crate::cluster::claim::{self, Attempt, Claim, ClaimLost, Holder};
use crate::cluster::file_lock::with_lock;
use crate::cluster::fresh;
use crate::cluster::shard::Shard;
use crate::cluster::slurm;
use crate::data::{Dataset, Datasets};
use crate::outputs::run_folder::{
    find_finished, Failure, FinishedRun, RunFolder, StageFolder, FAILURES_BEFORE_GIVING_UP,
};
use crate::outputs::summary::{record_summary, RunSummary};
use crate::outputs::winners::{self, read_winner, write_winner, Winner};
use crate::precision::Precision;
use crate::runner::ensemble;
use crate::runner::progress::Progress;
use crate::runner::trainer::{self, RunContext};
use crate::storage::files::{can_write_in, is_disk_full};
use crate::study::ensemble::Ensemble;
use crate::study::manifest::{Manifest, Stage};
use crate::study::plan::{self, RunPlan, StagePlan};
use crate::train::stop::Interrupted;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};
use tch::Device;

#[derive(Debug, Clone)]
pub struct Settings {
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

/// Runs the stages named in `only` (all when empty), in manifest order, and returns
/// the summaries of their runs.
pub fn run(manifest: &Manifest, only: &[String], settings: &Settings) -> Result<Vec<RunSummary>> {
    run_shared(manifest, only, settings, &Sharing::default())
}

/// `run`, taking `sharing.shard` of each stage's runs, beside other processes. Returns
/// the summaries of the stages' finished runs, in plan order.
pub fn run_shared(
    manifest: &Manifest,
    only: &[String],
    settings: &Settings,
    sharing: &Sharing,
) -> Result<Vec<RunSummary>> {
    let out = &settings.out_dir;
    let selected = plan::select(manifest, only)?;
    // Every stage is planned before anything trains, so a bad grid anywhere fails at once.
    let provisional = winners::plan_with_recorded_winners(manifest, out)?;
    check_sources(&selected, out)?;
    // Every data file is opened before anything is written, so a bad one fails first.
    let mut datasets = Datasets::new(&settings.data_dir, settings.device);
    // An ensemble stage tests on its members' data.
    let needed = |stage: &Stage, name: &str| {
        let members = stage.ensemble.as_ref().map(|ensemble| ensemble.stages());
        stage.name == name || members.is_some_and(|stages| stages.contains(&name))
    };
    let selected_runs = provisional
        .iter()
        .filter(|(plan, _)| selected.iter().any(|stage| needed(stage, &plan.name)))
        .flat_map(|(plan, _)| &plan.runs);
    for run in selected_runs {
        datasets.open(&run.dataset)?;
    }
    crate::runner::transfer::check_transfers(&provisional, &selected, &datasets, out)?;
    prepare_out_dir(out)?;
    let retraining = match settings.fresh {
        true => Some(fresh::join(out, sharing.claim_timeout)?),
        false => None,
    };
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    match settings.threads {
        Some(threads) => tch::set_num_threads(threads as i32),
        // Parallel runs share the cores: one libtorch thread pool per run's worth of them.
        None if settings.jobs > 1 => tch::set_num_threads((cores / settings.jobs).max(1) as i32),
        None => {}
    }

    let mut session = Session {
        settings,
        sharing,
        progress: Progress::new(),
        winners: HashMap::new(),
        unsettled: HashMap::new(),
        fresh_since: retraining.as_ref().map(|retraining| retraining.since),
        given_up: Mutex::new(Vec::new()),
    };
    let mut summaries = Vec::new();
    for stage in selected {
        summaries.extend(session.run_stage(manifest, stage, &datasets)?);
    }
    let given_up = session.given_up.into_inner().expect("no panic holds it");
    if !given_up.is_empty() {
        bail!(
            "not retried, each having failed {FAILURES_BEFORE_GIVING_UP} times in a row: {} \
             (`cellnets status` says why): fix the cause, then rerun with --retry-failed",
            given_up.join(", ")
        );
    }
    Ok(summaries)
}

/// A stage's `from` and `transfer` sources must run earlier in this invocation or have
/// run before.
fn check_sources(selected: &[&Stage], out: &Path) -> Result<()> {
    for (i, stage) in selected.iter().enumerate() {
        let transfer = stage
            .transfer
            .as_ref()
            .map(|transfer| transfer.from.as_str());
        let members = stage.ensemble.iter().flat_map(|ensemble| ensemble.stages());
        for source in stage
            .from
            .as_deref()
            .into_iter()
            .chain(transfer)
            .chain(members)
        {
            let runs_first = selected[..i].iter().any(|earlier| earlier.name == source);
            if !runs_first && read_winner(out, source)?.is_none() {
                bail!(
                    "stage `{}` needs the winner of stage `{source}`, which has not run \
                     (no {}): run `cellnets only {source}` first, or both: \
                     `cellnets only {source} {}`",
                    stage.name,
                    StageFolder::new(out, source).winner_yaml().display(),
                    stage.name
                );
            }
        }
    }
    Ok(())
}

fn prepare_out_dir(dir: &Path) -> Result<()> {
    let fix = "choose another folder with --out, or make it writable";
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output folder {}: {fix}", dir.display()))?;
    can_write_in(dir).with_context(|| {
        format!(
            "cannot write into the output folder {}: {fix}",
            dir.display()
        )
    })
}

pub(super) struct Session<'a> {
    pub(super) settings: &'a Settings,
    pub(super) sharing: &'a Sharing,
    pub(super) progress: Progress,
    /// Winners of the stages run so far in this invocation.
    winners: HashMap<String, Winner>,
    /// Stages run in this invocation whose other runs other processes still train.
    unsettled: HashMap<String, StagePlan>,
    /// Under `--fresh`, when the retraining began: results committed before do not count.
    pub(super) fresh_since: Option<SystemTime>,
    /// Runs skipped for failing too often in a row, as `stage/run`.
    pub(super) given_up: Mutex<Vec<String>>,
}

/// What an attempt on a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Task {
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

/// A stage's runs as the files under out/ show them.
enum Settled {
    Winner(Box<Winner>),
    /// Every run finished, none with a usable checkpoint.
    NoWinner,
    /// Runs without a result yet.
    Unfinished(Vec<RunPlan>),
}

impl Session<'_> {
    fn run_stage(
        &mut self,
        manifest: &Manifest,
        stage: &Stage,
        datasets: &Datasets,
    ) -> Result<Vec<RunSummary>> {
        if let Some(ensemble) = &stage.ensemble {
            return self.run_ensemble(manifest, &stage.name, ensemble, datasets);
        }
        let transfer = stage.transfer.as_ref().map(|transfer| &transfer.from);
        for source in stage.from.iter().chain(transfer) {
            let winner = self.winner_or_wait(source, datasets)?;
            self.winners.insert(source.clone(), winner);
        }
        let start = stage
            .from
            .as_ref()
            .map(|source| self.winners[source].plan.clone());
        let plan = plan::plan_stage(manifest, stage, start.as_ref())
            .with_context(|| format!("stage `{}`", stage.name))?;
        let out = &self.settings.out_dir;
        StageFolder::new(out, &plan.name).create()?;
        let mine = self.my_share(&plan.runs);
        self.progress.start_stage(&plan.name, mine.len());
        let done = match &plan.halving {
            Some(rungs) => self.run_halving(&plan, rungs, datasets)?,
            None => mine
                .iter()
                .cloned()
                .zip(self.run_all(&mine, datasets)?)
                .collect(),
        };
        for (run, done) in &done {
            match done {
                Done::Held(holder) => self.progress.note(&format!(
                    "{}/{}: {} trains it; skipped",
                    run.stage,
                    run.name,
                    holder.describe()
                )),
                Done::Lost(lost) => self.progress.note(&format!("{lost}")),
                Done::GaveUp(failure) => {
                    self.progress.note(&given_up(run, failure));
                    self.given_up
                        .lock()
                        .expect("no panic holds it")
                        .push(format!("{}/{}", run.stage, run.name));
                }
                Done::Finished | Done::Paused => {}
            }
        }
        self.progress.finish_stage();
        match self.settle(&plan, datasets)? {
            Settled::Winner(winner) => {
                self.winners.insert(plan.name.clone(), *winner);
            }
            Settled::NoWinner => {}
            Settled::Unfinished(runs) => {
                self.progress.note(&format!(
                    "stage {}: {} run(s) of other processes not finished yet ({}); the process \
                     that finishes the last one writes the winner",
                    plan.name,
                    runs.len(),
                    names(&runs)
                ));
                self.unsettled.insert(plan.name.clone(), plan.clone());
            }
        }
        self.finished_summaries(&plan, datasets)
    }

    /// Tests an ensemble stage once its members' stages have finished (waiting for
    /// other processes' runs as a `from` stage does); the process whose shard takes a
    /// stage's first run does it. Reruns re-test it: that takes seconds, and members
    /// may have been retrained.
    fn run_ensemble(
        &mut self,
        manifest: &Manifest,
        stage: &str,
        ensemble: &Ensemble,
        datasets: &Datasets,
    ) -> Result<Vec<RunSummary>> {
        for source in ensemble.stages() {
            let winner = self.winner_or_wait(source, datasets)?;
            self.winners.insert(source.to_string(), winner);
        }
        if !self.sharing.shard.takes(0) {
            return Ok(Vec::new());
        }
        let out = &self.settings.out_dir;
        let plans = winners::plan_with_recorded_winners(manifest, out)?;
        let plans: Vec<StagePlan> = plans.into_iter().map(|(plan, _)| plan).collect();
        let members = ensemble::members(stage, ensemble, &plans, |run| {
            self.result_of(run, dataset_for(datasets, run))
        })?;
        let data = dataset_for(datasets, &members[0].0);
        StageFolder::new(out, stage).create()?;
        let summary = ensemble::evaluate(out, stage, &members, data, self.settings.device)
            .with_context(|| format!("stage `{stage}`"))?;
        self.record_row(&summary)?;
        let test = &summary.test;
        self.progress.note(&format!(
            "stage {stage}: the mean of {} runs' probabilities: test accuracy {:.4}, balanced \
             accuracy {:.4}, AUC {:.4} ({:.0} s)",
            members.len(),
            test.accuracy,
            test.balanced_accuracy,
            test.auc,
            summary.seconds
        ));
        Ok(vec![summary])
    }

    /// The runs of `runs` that this process's shard takes.
    fn my_share(&self, runs: &[RunPlan]) -> Vec<RunPlan> {
        let shard = self.sharing.shard;
        runs.iter()
            .enumerate()
            .filter(|(position, _)| shard.takes(*position))
            .map(|(_, run)| run.clone())
            .collect()
    }

    /// The summaries of the stage's runs that have finished, in plan order.
    fn finished_summaries(&self, plan: &StagePlan, datasets: &Datasets) -> Result<Vec<RunSummary>> {
        let mut summaries = Vec::new();
        for run in &plan.runs {
            if let Some(finished) = self.result_of(run, dataset_for(datasets, run))? {
                summaries.push(finished);
            }
        }
        Ok(summaries)
    }

    /// The recorded summary of `run` in its own folder, when it finished with these settings.
    fn result_of(&self, run: &RunPlan, data: &Dataset) -> Result<Option<RunSummary>> {
        let folder = RunFolder::of(&self.settings.out_dir, run);
        if !folder.finished_since(self.fresh_since) {
            return Ok(None);
        }
        Ok(folder
            .read_result()?
            .filter(|finished| finished.is_run_of(run, &data.md5))
            .map(|finished| finished.summary))
    }

    /// Writes the stage's winner when all its runs have finished, whichever process
    /// finished them: the winner is a function of the results on disk, so processes
    /// that see the same results write the same file, under the stage's lock.
    fn settle(&self, plan: &StagePlan, datasets: &Datasets) -> Result<Settled> {
        let mut finished = Vec::new();
        let mut unfinished = Vec::new();
        for run in &plan.runs {
            match self.result_of(run, dataset_for(datasets, run))? {
                Some(summary) => finished.push((run.clone(), summary)),
                None => unfinished.push(run.clone()),
            }
        }
        if !unfinished.is_empty() {
            return Ok(Settled::Unfinished(unfinished));
        }
        let Some(winner) = winners::choose_winner(&finished, plan.pinned_winner.as_deref()) else {
            self.progress.note(&format!(
                "stage {}: no run has a usable checkpoint (each diverged at once), so no winner",
                plan.name
            ));
            return Ok(Settled::NoWinner);
        };
        let out = &self.settings.out_dir;
        with_lock(&StageFolder::new(out, &plan.name).lock(), || {
            write_winner(out, &plan.name, &winner)
        })?;
        let pinned = if winner.pinned {
            ", pinned by the manifest"
        } else {
            ""
        };
        self.progress.note(&match &winner.plan.repeat_of {
            Some(configuration) => format!(
                "stage {}: winner {configuration} (by its mean over its seeds{pinned}); its \
                 first seed, {}, stands for it",
                plan.name, winner.run
            ),
            None => format!(
                "stage {}: winner {} (best val accuracy {:.4}{pinned})",
                plan.name, winner.run, winner.best_val_accuracy
            ),
        });
        Ok(Settled::Winner(Box::new(winner)))
    }

    /// The winner of `stage`; when other processes still train its runs, waits for them
    /// (taking over this shard's runs whose holder died), and gives up once no live
    /// process has held any of them for the claim timeout.
    fn winner_or_wait(&self, stage: &str, datasets: &Datasets) -> Result<Winner> {
        if let Some(winner) = self.winners.get(stage) {
            return Ok(winner.clone());
        }
        // A winner.yaml on disk may be an earlier study's: a stage run in this
        // invocation waits for its own runs.
        let Some(plan) = self.unsettled.get(stage) else {
            return self.winner(stage);
        };
        let timeout = self.sharing.claim_timeout;
        let poll = (timeout / 20).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut last_live = Instant::now();
        let mut last_note: Option<Instant> = None;
        loop {
            crate::train::stop::check()?;
            let unfinished = match self.settle(plan, datasets)? {
                Settled::Winner(winner) => return Ok(*winner),
                Settled::NoWinner => bail!(
                    "stage `{stage}` has no winner: every run diverged at once; change its \
                     settings and rerun it"
                ),
                Settled::Unfinished(runs) => runs,
            };
            if let Some((run, failure)) = self.gave_up_on(&unfinished) {
                bail!(
                    "stage `{stage}` cannot finish: {}",
                    given_up(&run, &failure)
                );
            }
            match &plan.halving {
                Some(rungs) => {
                    self.run_halving(plan, rungs, datasets)?;
                }
                None => {
                    let mine: Vec<RunPlan> = self
                        .my_share(&plan.runs)
                        .into_iter()
                        .filter(|run| unfinished.iter().any(|other| other.name == run.name))
                        .collect();
                    self.run_all(&mine, datasets)?;
                }
            }
            let holders = self.live_holders(&unfinished)?;
            if !holders.is_empty() {
                last_live = Instant::now();
            } else if last_live.elapsed() > timeout {
                bail!(
                    "stage `{stage}`: runs {} have not finished and no process has trained them \
                     for {} s: run them (`cellnets only {stage}`, with the --shard that takes \
                     them), then rerun this",
                    names(&unfinished),
                    timeout.as_secs()
                );
            }
            if last_note.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                self.progress.note(&format!(
                    "waiting for stage {stage}: {} run(s) not finished ({}){}",
                    unfinished.len(),
                    names(&unfinished),
                    trained_by(&holders)
                ));
                last_note = Some(Instant::now());
            }
            thread::sleep(poll);
        }
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

    /// Completes those of `runs` that no other process holds, `--jobs` at a time,
    /// recording each summary as it arrives; returns what became of each, in order.
    fn run_all(&self, runs: &[RunPlan], datasets: &Datasets) -> Result<Vec<Done>> {
        let attempt = |run: &RunPlan, data: &Dataset| {
            self.attempt(run, data, Task::Whole)
                .with_context(|| format!("run {}/{} failed", run.stage, run.name))
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

    /// Claims `run` and does `task` on it, unless another process or thread holds it or
    /// it failed too often in a row. A failure (not a signal, not a lost claim) is
    /// recorded in the run's folder before the error goes on.
    pub(super) fn attempt(&self, run: &RunPlan, data: &Dataset, task: Task) -> Result<Done> {
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
                "{}/{}: took over the stale claim of {}",
                run.stage,
                run.name,
                stale.describe()
            ));
        }
        let summary = match self.complete(run, data, &claim, task) {
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
                "{}/{}: cannot record its failure: {cannot:#}",
                run.stage, run.name
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
    fn record(&self, summary: &RunSummary) -> Result<()> {
        self.record_row(summary)?;
        self.progress.finish_run(summary);
        Ok(())
    }

    /// Puts a summary into its stage's summary.csv, under the stage's lock.
    fn record_row(&self, summary: &RunSummary) -> Result<()> {
        let stage = StageFolder::new(&self.settings.out_dir, &summary.stage);
        with_lock(&stage.lock(), || {
            record_summary(&stage.summary_csv(), summary)
        })
    }

    fn winner(&self, stage: &str) -> Result<Winner> {
        if let Some(winner) = self.winners.get(stage) {
            return Ok(winner.clone());
        }
        read_winner(&self.settings.out_dir, stage)?.with_context(|| {
            format!("stage `{stage}` has not run: run `cellnets only {stage}` first")
        })
    }

    /// Does `task` on `run`: reuses a finished run with the same settings and data, or
    /// trains it (none when it paused at a rung), or halts it. Commits what ended.
    fn complete(
        &self,
        run: &RunPlan,
        data: &Dataset,
        claim: &Claim,
        task: Task,
    ) -> Result<Option<RunSummary>> {
        if task != Task::Halt {
            if let Some(summary) = self.reuse(run, data)? {
                return Ok(Some(summary));
            }
        }
        let folder = RunFolder::of(&self.settings.out_dir, run);
        if matches!(task, Task::Rung { .. }) && !folder.resumable_since(self.fresh_since) {
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
            pause_at: match task {
                Task::Rung { until } if until < run.training.epochs => Some(until),
                _ => None,
            },
        };
        // libtorch reports some failures (an allocation too large, say) as panics in tch.
        let summary = panic::catch_unwind(AssertUnwindSafe(|| match task {
            Task::Halt => trainer::halt(run, data, &folder, &context).map(Some),
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
        match task {
            Task::Whole => folder.commit(&finished)?,
            Task::Rung { .. } | Task::Halt => folder.commit_continuable(&finished)?,
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
        let origin = format!("{}/{}", finished.plan.stage, finished.plan.name);
        let summary = RunFolder::of(out, run).adopt(run, &source, finished)?;
        self.progress.note(&format!(
            "{}/{}: same settings as {origin}, which finished: reused, not retrained",
            run.stage, run.name
        ));
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

/// What a run skipped for its failures says.
pub(super) fn given_up(run: &RunPlan, failure: &Failure) -> String {
    format!(
        "{}/{} {}; not retried: fix the cause, then rerun with --retry-failed",
        run.stage,
        run.name,
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

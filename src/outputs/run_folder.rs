//! The layout of out/: every stage and run path, a run's result, resume state and
//! slots, its epoch table, moving a run aside and adopting a finished one. A stage's
//! folder holds its summary table and its winner; a run's folder its epoch table, best
//! weights, test tables, the resume point while it trains, and its result, written last
//! as the run's commit point. Every path under out/ is joined here, and every file is
//! written whole.

use crate::metrics::{CONFUSION_CSV, PER_CLASS_CSV};
use crate::models::InputShape;
use crate::outputs::summary::RunSummary;
use crate::storage::files::{
    copy_atomically, read_table, read_yaml, remove_if_present, write_atomically, write_table,
    write_yaml,
};
use crate::study::plan::RunPlan;
use crate::study::task::Task;
use crate::train::{learning_rate, EpochRecord, OptimizerState, Outcome, ResumePoint};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;
use tch::{nn, Tensor};

pub const SUMMARY_CSV: &str = "summary.csv";
pub const WINNER_YAML: &str = "winner.yaml";
pub const EPOCHS_CSV: &str = "epochs.csv";
pub const CHECKPOINT: &str = "best.safetensors";
pub const RESULT_YAML: &str = "result.yaml";
pub const STATE_YAML: &str = "state.yaml";
/// Why the run's last attempts failed; gone once it finishes.
pub const FAILED_YAML: &str = "failed.yaml";
/// Failures in a row after which a run is not retried without `--retry-failed`.
pub const FAILURES_BEFORE_GIVING_UP: u32 = 3;
/// `<run>.claim`, beside the run's folder (moving a folder aside leaves its claim).
pub const CLAIM_EXTENSION: &str = "claim";
/// Held while a process rewrites the stage's summary.csv or winner.yaml.
const STAGE_LOCK: &str = ".stage.lock";
/// The latest epoch's weights and optimizer state alternate between two slots, so a
/// kill while one is written leaves the other, which `state.yaml` names, whole.
const SLOTS: [&str; 2] = ["resume-a.safetensors", "resume-b.safetensors"];
const OPTIMIZER_SLOTS: [&str; 2] = [
    "resume-a.optimizer.safetensors",
    "resume-b.optimizer.safetensors",
];

/// out/<stage>/
pub struct StageFolder {
    dir: PathBuf,
}

impl StageFolder {
    pub fn new(out_dir: &Path, stage: &str) -> Self {
        StageFolder {
            dir: out_dir.join(stage),
        }
    }

    pub fn summary_csv(&self) -> PathBuf {
        self.dir.join(SUMMARY_CSV)
    }

    pub fn winner_yaml(&self) -> PathBuf {
        self.dir.join(WINNER_YAML)
    }

    pub fn run(&self, name: &str) -> RunFolder {
        RunFolder::at(self.dir.join(name))
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join(STAGE_LOCK)
    }

    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }
}

/// A run that trained to the end: written last, so its presence means the run's other
/// files are complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishedRun {
    pub plan: RunPlan,
    /// MD5 of the data file it trained on.
    pub data_md5: String,
    pub summary: RunSummary,
    /// The images and classes it trained on, so that it can predict without its data
    /// file; runs written before this was recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputShape>,
    /// What its outputs mean (classes or independent labels), for the same reason;
    /// runs from before tasks were recorded trained multi-class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// Where an unfinished run stands after its last committed epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    pub plan: RunPlan,
    pub data_md5: String,
    #[serde(flatten)]
    pub point: ResumePoint,
}

/// Why a run stopped with an error (not a kill, a signal or a lost claim), recorded in
/// its folder; a rerun retries the run, and its result removes this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The error with its causes, as `cause: its cause: ...`.
    pub reason: String,
    /// Failures in a row, this one included.
    pub times: u32,
    /// The process that failed: `host pid N (SLURM job J)`.
    pub by: String,
    /// Where that process's output went, when cellnets knows (a SLURM task's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

impl Failure {
    pub fn first_line(&self) -> &str {
        self.reason.lines().next().unwrap_or("")
    }

    /// Whether it failed too often in a row to be retried without `--retry-failed`.
    pub fn gives_up(&self) -> bool {
        self.times >= FAILURES_BEFORE_GIVING_UP
    }

    /// `failed 2 times in a row (last by host pid 7): <first line>; log <path>`.
    pub fn describe(&self) -> String {
        let log = self
            .log
            .as_ref()
            .map_or(String::new(), |log| format!("; log {}", log.display()));
        let times = match self.times {
            1 => "once".to_string(),
            n => format!("{n} times in a row"),
        };
        format!(
            "failed {times} (last by {}): {}{log}",
            self.by,
            self.first_line()
        )
    }
}

/// Whether results recorded for (`plan`, `data_md5`) are those training `other` on
/// `other_md5` would give: same settings and revision, same data.
fn same_run(plan: &RunPlan, data_md5: &str, other: &RunPlan, other_md5: &str) -> bool {
    plan.same_settings(other) && data_md5 == other_md5
}

impl FinishedRun {
    pub fn is_run_of(&self, plan: &RunPlan, data_md5: &str) -> bool {
        same_run(&self.plan, &self.data_md5, plan, data_md5)
    }

    /// The task it trained for.
    pub fn task(&self) -> Task {
        self.task.unwrap_or_else(|| self.plan.dataset.known_task())
    }
}

impl ResumeState {
    pub fn is_run_of(&self, plan: &RunPlan, data_md5: &str) -> bool {
        same_run(&self.plan, &self.data_md5, plan, data_md5)
    }

    /// Whether the run continues from here as a run of `plan`: the same run, or one
    /// whose budget (`epochs`) alone changed, not below the epochs trained, where each
    /// epoch trained so far had the learning rate the new budget gives it (a cosine
    /// schedule's depends on the budget; then the run trains again).
    pub fn continues_as(&self, plan: &RunPlan, data_md5: &str) -> bool {
        let trained = self.point.last.epoch;
        let mut rebudgeted = self.plan.clone();
        rebudgeted.training.epochs = plan.training.epochs;
        same_run(&rebudgeted, &self.data_md5, plan, data_md5)
            && plan.training.epochs >= trained
            && (1..=trained).all(|epoch| {
                learning_rate(&self.plan.training, epoch) == learning_rate(&plan.training, epoch)
            })
    }
}

/// out/<stage>/<run>/
#[derive(Debug, Clone, PartialEq)]
pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    pub fn of(out_dir: &Path, plan: &RunPlan) -> Self {
        StageFolder::new(out_dir, &plan.stage).run(&plan.name)
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        RunFolder { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn epochs_csv(&self) -> PathBuf {
        self.dir.join(EPOCHS_CSV)
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join(CHECKPOINT)
    }

    /// The epoch table's rows as records; a row that does not parse (the one being
    /// written) is skipped.
    pub fn read_epochs(&self) -> Result<Vec<EpochRecord>> {
        let (header, rows) = read_table(&self.epochs_csv())?;
        Ok(rows
            .iter()
            .filter_map(|row| parse_epoch_row(&header, row))
            .collect())
    }

    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint().is_file()
    }

    pub fn confusion_csv(&self) -> PathBuf {
        self.dir.join(CONFUSION_CSV)
    }

    pub fn per_class_csv(&self) -> PathBuf {
        self.dir.join(PER_CLASS_CSV)
    }

    fn result_yaml(&self) -> PathBuf {
        self.dir.join(RESULT_YAML)
    }

    fn state_yaml(&self) -> PathBuf {
        self.dir.join(STATE_YAML)
    }

    /// The file a process creates to train this run (see `claim`).
    pub fn claim_file(&self) -> PathBuf {
        // Not `with_extension`: run names hold dots (`learning_rate=0.01`).
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        self.dir.with_file_name(format!("{name}.{CLAIM_EXTENSION}"))
    }

    /// The last committed epoch of an interrupted or training run, read without
    /// touching anything (for `cellnets status`).
    pub fn last_committed_epoch(&self) -> Option<usize> {
        let state = read_yaml::<ResumeState>(&self.state_yaml()).ok()??;
        Some(state.point.last.epoch)
    }

    fn slot(&self, epoch: usize) -> PathBuf {
        self.dir.join(SLOTS[epoch % 2])
    }

    fn optimizer_slot(&self, epoch: usize) -> PathBuf {
        self.dir.join(OPTIMIZER_SLOTS[epoch % 2])
    }

    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }

    /// The run's result; none while it has not finished, an error when it is damaged.
    pub fn read_result(&self) -> Result<Option<FinishedRun>> {
        read_yaml(&self.result_yaml())
    }

    /// Whether its result was committed at or after `time` (any result, with `None`):
    /// under `--fresh`, only results of the retraining under way count, whichever
    /// process committed them.
    pub fn finished_since(&self, time: Option<SystemTime>) -> bool {
        written_since(&self.result_yaml(), time)
    }

    /// Whether its resume point was committed at or after `time` (any, with `None`): a
    /// halving stage's run keeps one after it ends, which `--fresh` must not resume.
    pub fn resumable_since(&self, time: Option<SystemTime>) -> bool {
        written_since(&self.state_yaml(), time)
    }

    /// The run's commit point: its result, written when every other file is complete;
    /// then the resume files, no longer needed, go.
    pub fn commit(&self, finished: &FinishedRun) -> Result<()> {
        self.commit_continuable(finished)?;
        self.clear_resume()
    }

    /// Commits the result but keeps the resume point, from which a larger budget
    /// continues the run (halving stages, whose runs may be promoted later). Only the
    /// slot the resume point names stays: the other holds an older epoch.
    pub fn commit_continuable(&self, finished: &FinishedRun) -> Result<()> {
        write_yaml(&self.result_yaml(), finished)?;
        remove_if_present(&self.failed_yaml())?;
        if let Ok(Some(state)) = read_yaml::<ResumeState>(&self.state_yaml()) {
            let older = state.point.last.epoch + 1;
            remove_if_present(&self.slot(older))?;
            remove_if_present(&self.optimizer_slot(older))?;
        }
        Ok(())
    }

    fn failed_yaml(&self) -> PathBuf {
        self.dir.join(FAILED_YAML)
    }

    /// Why the run's last attempts failed; none when the last attempt did not fail. A
    /// damaged record counts as none: it only says why, and the run is retried anyway.
    pub fn read_failure(&self) -> Option<Failure> {
        read_yaml(&self.failed_yaml()).ok().flatten()
    }

    /// Records that the run failed with `reason`, counting the failures in a row.
    pub fn record_failure(
        &self,
        reason: String,
        by: String,
        log: Option<PathBuf>,
    ) -> Result<Failure> {
        let failure = Failure {
            reason,
            times: self.read_failure().map_or(0, |failure| failure.times) + 1,
            by,
            log,
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        };
        self.create()?;
        write_yaml(&self.failed_yaml(), &failure)?;
        Ok(failure)
    }

    /// Removes the result of an earlier training, before the run trains again.
    pub fn discard_result(&self) -> Result<()> {
        remove_if_present(&self.result_yaml())
    }

    /// The interrupted run's resume state, whose weights `resume_weights` gives; none
    /// when there is none. A kill between the state and the copy of a new best epoch
    /// leaves an older `best.safetensors`: the slot holds that epoch, so it is copied.
    pub fn read_resume(&self) -> Result<Option<ResumeState>> {
        let Some(state) = read_yaml::<ResumeState>(&self.state_yaml())? else {
            return Ok(None);
        };
        if !self.resume_weights(&state).is_file() {
            return Ok(None);
        }
        if is_best(&state.point) {
            copy_atomically(&self.resume_weights(&state), &self.checkpoint())?;
        }
        Ok(Some(state))
    }

    /// An unfinished run's resume state and the file that holds its best weights so far,
    /// read without writing anything (`read_resume` brings best.safetensors up to date
    /// first, which a reader beside a training process must not do).
    pub fn peek_resume(&self) -> Result<Option<(ResumeState, PathBuf)>> {
        let Some(state) = read_yaml::<ResumeState>(&self.state_yaml())? else {
            return Ok(None);
        };
        let latest = self.resume_weights(&state);
        let best = if is_best(&state.point) && latest.is_file() {
            latest
        } else {
            self.checkpoint()
        };
        Ok(Some((state, best)))
    }

    pub fn resume_weights(&self, state: &ResumeState) -> PathBuf {
        self.slot(state.point.last.epoch)
    }

    /// The optimizer's state at the interrupted run's last epoch; empty for a resume
    /// point from before cellnets saved one (plain SGD keeps none).
    pub fn read_optimizer_state(&self, state: &ResumeState) -> Result<OptimizerState> {
        let path = self.optimizer_slot(state.point.last.epoch);
        if !path.is_file() {
            return Ok(OptimizerState::default());
        }
        let tensors = Tensor::read_safetensors(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(OptimizerState(tensors))
    }

    /// Saves `vs` and `optimizer` as the state's last epoch, then the state naming them
    /// (the commit), then, when that epoch is the best so far, the best weights.
    pub fn save_resume(
        &self,
        state: &ResumeState,
        vs: &nn::VarStore,
        optimizer: &OptimizerState,
    ) -> Result<()> {
        let weights = self.resume_weights(state);
        let variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        write_atomically(&weights, |tmp| write_tensors(&variables, tmp))?;
        write_atomically(&self.optimizer_slot(state.point.last.epoch), |tmp| {
            write_tensors(&optimizer.0, tmp)
        })?;
        write_yaml(&self.state_yaml(), state)?;
        if is_best(&state.point) {
            copy_atomically(&weights, &self.checkpoint())?;
        }
        Ok(())
    }

    /// The paths of the resume state and both slots, whether they exist or not.
    fn resume_paths(&self) -> impl Iterator<Item = PathBuf> {
        let slots = [0, 1].map(|epoch| [self.slot(epoch), self.optimizer_slot(epoch)]);
        std::iter::once(self.state_yaml()).chain(slots.into_iter().flatten())
    }

    /// The resume files the run holds now (its state and both slots), with their sizes.
    pub fn resume_files(&self) -> Vec<(PathBuf, u64)> {
        self.resume_paths()
            .filter_map(|path| Some((path.clone(), fs::metadata(&path).ok()?.len())))
            .collect()
    }

    /// Removes the resume state and both slots.
    pub fn clear_resume(&self) -> Result<()> {
        for path in self.resume_paths() {
            remove_if_present(&path)?;
        }
        Ok(())
    }

    /// Whether the folder holds a committed result of `plan`'s settings (of any data
    /// file: for what reads no data, such as `slurm` and `clean`).
    pub fn has_result_of(&self, plan: &RunPlan) -> bool {
        let result = self.read_result().ok().flatten();
        result.is_some_and(|finished| finished.plan.same_settings(plan))
    }

    /// Renames the folder to a free `<run>.replaced-<time>-<n>` beside it, keeping
    /// results of other settings apart from the new ones; returns the new path.
    pub fn move_aside(&self) -> Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        let aside = (0..)
            .map(|n| {
                self.dir
                    .with_file_name(format!("{name}.replaced-{stamp}-{n}"))
            })
            .find(|candidate| !candidate.exists())
            .expect("some suffix is free");
        fs::rename(&self.dir, &aside).with_context(|| {
            format!(
                "cannot move {} aside to {}",
                self.dir.display(),
                aside.display()
            )
        })?;
        Ok(aside)
    }

    /// Makes this folder `plan`'s finished run with the results of `finished`, a run of
    /// the same settings in `source`; returns the summary, which names its origin.
    pub fn adopt(
        &self,
        plan: &RunPlan,
        source: &RunFolder,
        finished: FinishedRun,
    ) -> Result<RunSummary> {
        if self == source {
            // A kill between the result and its cleanup leaves resume files behind.
            self.clear_resume()?;
            return Ok(finished.summary);
        }
        self.copy_run(source, plan)?;
        let origin = finished.plan.id().to_string();
        let mut summary = finished.summary;
        summary.stage = plan.stage.clone();
        summary.run = plan.name.clone();
        summary.reused_from = Some(summary.reused_from.unwrap_or(origin));
        summary.repeat_of = plan.repeat_of.clone();
        self.commit(&FinishedRun {
            plan: plan.clone(),
            data_md5: finished.data_md5,
            summary: summary.clone(),
            input: finished.input,
            task: finished.task,
        })?;
        Ok(summary)
    }

    /// Gives this folder the files of the finished run in `source`, for `plan`: the
    /// checkpoint (hard-linked where possible), the epoch table under this stage and
    /// run name, and the test tables.
    fn copy_run(&self, source: &RunFolder, plan: &RunPlan) -> Result<()> {
        self.create()?;
        self.clear_resume()?;
        let checkpoint = self.checkpoint();
        remove_if_present(&checkpoint)?;
        if source.has_checkpoint() && fs::hard_link(source.checkpoint(), &checkpoint).is_err() {
            copy_atomically(&source.checkpoint(), &checkpoint)?;
        }
        let (header, mut rows) = read_table(&source.epochs_csv())?;
        for row in &mut rows {
            row[0] = plan.stage.clone();
            row[1] = plan.name.clone();
        }
        write_table(&self.epochs_csv(), &header, &rows)?;
        for (from, to) in [
            (source.confusion_csv(), self.confusion_csv()),
            (source.per_class_csv(), self.per_class_csv()),
        ] {
            if from.is_file() {
                copy_atomically(&from, &to)?;
            }
        }
        Ok(())
    }
}

/// Whether `path` was written at or after `time`; always, with `None`.
fn written_since(path: &Path, time: Option<SystemTime>) -> bool {
    let Some(time) = time else {
        return true;
    };
    fs::metadata(path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|written| written >= time)
}

fn is_best(point: &ResumePoint) -> bool {
    point.best.record().map(|best| best.epoch) == Some(point.last.epoch)
}

/// A finished run anywhere under `out_dir` whose settings and data equal `plan`'s,
/// committed `since` then when given; its own folder is looked at first. Unreadable
/// results elsewhere are passed over.
pub fn find_finished(
    out_dir: &Path,
    plan: &RunPlan,
    data_md5: &str,
    since: Option<SystemTime>,
) -> Result<Option<(RunFolder, FinishedRun)>> {
    let Ok(stages) = fs::read_dir(out_dir) else {
        return Ok(None);
    };
    let own = RunFolder::of(out_dir, plan);
    let mut candidates = vec![own.clone()];
    for stage in stages.flatten() {
        if let Ok(runs) = fs::read_dir(stage.path()) {
            candidates.extend(
                runs.flatten()
                    .map(|run| RunFolder::at(run.path()))
                    .filter(|folder| *folder != own),
            );
        }
    }
    for folder in candidates
        .into_iter()
        .filter(|folder| folder.finished_since(since))
    {
        let Ok(Some(finished)) = folder.read_result() else {
            continue;
        };
        let checkpoint_ok = finished.summary.best.is_none() || folder.has_checkpoint();
        // A halted run stopped short of its budget: it continues, it is not reused.
        let halted = finished.summary.status == Outcome::Halted;
        if finished.is_run_of(plan, data_md5) && checkpoint_ok && !halted {
            return Ok(Some((folder, finished)));
        }
    }
    Ok(None)
}

/// The columns of `epochs.csv` before the hyperparameters.
const EPOCH_COLUMNS: [&str; 8] = [
    "stage",
    "run",
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
];

/// The columns of `epochs.csv` after the hyperparameters: metrics measured since,
/// added at the end so that tables read by position keep their columns.
const LATER_EPOCH_COLUMNS: [&str; 5] = [
    "val_auc",
    "val_balanced_accuracy",
    "cpu_seconds",
    "cumulative_seconds",
    "cumulative_cpu_seconds",
];

/// `epochs.csv`, written a row per epoch as it ends and flushed at once, so a crash
/// loses at most the epoch in flight.
pub struct EpochTable {
    file: fs::File,
    path: PathBuf,
    /// Stage and run names, then the hyperparameters' values: the same in every row.
    fixed: Vec<String>,
}

impl EpochTable {
    /// Starts the table afresh with its header: stage, run, the metrics, then every
    /// hyperparameter.
    pub fn create(folder: &RunFolder, plan: &RunPlan) -> Result<Self> {
        let path = folder.epochs_csv();
        let hyperparameters = plan.hyperparameters();
        let header: Vec<String> = EPOCH_COLUMNS
            .iter()
            .map(|name| name.to_string())
            .chain(hyperparameters.iter().map(|(name, _)| name.clone()))
            .chain(LATER_EPOCH_COLUMNS.iter().map(|name| name.to_string()))
            .collect();
        write_table(&path, &header, &[])?;
        Self::append_to(path, plan)
    }

    /// Continues an interrupted run's table after its first `epochs` epochs: later rows
    /// (an epoch logged but never committed) are dropped. A table written before the
    /// later columns existed gets them, empty in its old rows.
    pub fn resume_after(folder: &RunFolder, plan: &RunPlan, epochs: usize) -> Result<Self> {
        let path = folder.epochs_csv();
        let (mut header, mut rows) = read_table(&path)?;
        let numbered = rows.len() >= epochs
            && rows[..epochs].iter().zip(1..).all(|(row, n)| {
                parse_epoch_row(&header, row).is_some_and(|record| record.epoch == n)
            });
        if !numbered {
            anyhow::bail!("{} does not hold epochs 1 to {epochs}", path.display());
        }
        for name in LATER_EPOCH_COLUMNS {
            if !header.iter().any(|column| column == name) {
                header.push(name.to_string());
            }
        }
        rows.truncate(epochs);
        // A run continued under a larger budget shows the budget it trains to now in
        // every row, as a run of that budget from the start would.
        let current: Vec<(String, String)> = plan.hyperparameters();
        for row in &mut rows {
            row.resize(header.len(), String::new());
            for (name, value) in &current {
                if let Some(column) = header.iter().position(|column| column == name) {
                    row[column] = value.clone();
                }
            }
        }
        write_table(&path, &header, &rows)?;
        Self::append_to(path, plan)
    }

    fn append_to(path: PathBuf, plan: &RunPlan) -> Result<Self> {
        let file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let fixed = [plan.stage.clone(), plan.name.clone()]
            .into_iter()
            .chain(plan.hyperparameters().into_iter().map(|(_, value)| value))
            .collect();
        Ok(EpochTable { file, path, fixed })
    }

    /// Appends the epoch's row whole: a write cut short (a full disk) is undone, so the
    /// table never ends in half a row.
    pub fn append(&mut self, record: &EpochRecord) -> Result<()> {
        let metrics = [
            record.epoch.to_string(),
            record.train_loss.to_string(),
            record.train_accuracy.to_string(),
            record.val_loss.to_string(),
            record.val_accuracy.to_string(),
            format!("{:.3}", record.seconds),
        ];
        let later = [
            record.val_auc.to_string(),
            record.val_balanced_accuracy.to_string(),
            format!("{:.3}", record.cpu_seconds),
            format!("{:.3}", record.cumulative_seconds),
            format!("{:.3}", record.cumulative_cpu_seconds),
        ];
        let (names, hyperparameters) = self.fixed.split_at(2);
        let row = names
            .iter()
            .cloned()
            .chain(metrics)
            .chain(hyperparameters.iter().cloned())
            .chain(later);
        let mut line = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        line.write_record(row)?;
        let line = line.into_inner().map_err(|error| error.into_error())?;
        let cannot = || format!("cannot write {}", self.path.display());
        let before = self.file.metadata().with_context(cannot)?.len();
        if let Err(error) = self.file.write_all(&line) {
            let _ = self.file.set_len(before);
            return Err(error).with_context(cannot);
        }
        Ok(())
    }
}

/// An epoch row of `epochs.csv` read back by its `header`'s names. A later column a
/// table lacks, or leaves empty, reads as undefined.
pub fn parse_epoch_row(header: &[String], row: &[String]) -> Option<EpochRecord> {
    let field = |name: &str| row.get(header.iter().position(|column| column == name)?);
    let number = |name: &str| f64::from_str(field(name)?).ok();
    let later = |name: &str| number(name).unwrap_or(f64::NAN);
    Some(EpochRecord {
        epoch: field("epoch")?.parse().ok()?,
        train_loss: number("train_loss")?,
        train_accuracy: number("train_accuracy")?,
        val_loss: number("val_loss")?,
        val_accuracy: number("val_accuracy")?,
        seconds: number("seconds")?,
        val_auc: later("val_auc"),
        val_balanced_accuracy: later("val_balanced_accuracy"),
        cpu_seconds: later("cpu_seconds"),
        cumulative_seconds: later("cumulative_seconds"),
        cumulative_cpu_seconds: later("cumulative_cpu_seconds"),
    })
}

/// Writes named tensors as safetensors, which stores them dense and row-major: a
/// channels-last weight (`precision::layout`) goes as a contiguous copy of the same
/// values, and loading copies them back into whatever layout the variable has.
fn write_tensors(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let dense: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(name, tensor)| (name.as_str(), tensor.contiguous()))
        .collect();
    Ok(Tensor::write_safetensors(&dense, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::{manifest, plan};

    fn record(epoch: usize, val_auc: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 0.9,
            val_accuracy: 0.6,
            seconds: 2.0,
            val_auc,
            val_balanced_accuracy: 0.55,
            cpu_seconds: 1.0,
            cumulative_seconds: 1.0,
            cumulative_cpu_seconds: 1.0,
        }
    }

    #[test]
    fn an_epoch_table_from_before_val_auc_resumes_with_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest::parse(
            "dataset: {name: bloodmnist}\ndefaults: {epochs: 3}\nstages:\n  - name: mlp\n    \
             model: {kind: mlp, hidden: 4}\n",
        )
        .unwrap();
        let (stage, _) = plan::plan_all(&manifest, |_| Ok(None)).unwrap().remove(0);
        let run = &stage.runs[0];
        let folder = RunFolder::of(dir.path(), run);
        folder.create().unwrap();
        // An older cellnets wrote the metrics and the hyperparameters, and no val_auc.
        let hyperparameters = run.hyperparameters();
        let header: Vec<String> = EPOCH_COLUMNS
            .iter()
            .map(|name| name.to_string())
            .chain(hyperparameters.iter().map(|(name, _)| name.clone()))
            .collect();
        let old_row: Vec<String> = ["mlp", "run", "1", "1.0", "0.5", "0.9", "0.6", "2.000"]
            .map(String::from)
            .into_iter()
            .chain(hyperparameters.iter().map(|(_, value)| value.clone()))
            .collect();
        write_table(&folder.epochs_csv(), &header, &[old_row]).unwrap();

        let mut table = EpochTable::resume_after(&folder, run, 1).unwrap();
        table.append(&record(2, 0.75)).unwrap();
        let epochs = folder.read_epochs().unwrap();
        assert_eq!(epochs.len(), 2);
        assert!(epochs[0].val_auc.is_nan() && epochs[0].val_balanced_accuracy.is_nan());
        assert!(epochs[0].cumulative_seconds.is_nan() && epochs[0].cpu_seconds.is_nan());
        assert_eq!(epochs[0].val_accuracy, 0.6);
        assert_eq!(epochs[1], record(2, 0.75));
        let (header, rows) = read_table(&folder.epochs_csv()).unwrap();
        let later = header.len() - LATER_EPOCH_COLUMNS.len();
        assert_eq!(&header[later..], LATER_EPOCH_COLUMNS);
        assert!(rows.iter().all(|row| row.len() == header.len()));
    }
}

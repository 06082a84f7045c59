//! Runs a manifest's stages: plans them, loads their data, trains each run (or reuses
//! a finished run with the same settings), records the outcome and each stage's
//! winner. Bad input fails before anything is written under out/.

use crate::data::{Dataset, Datasets};
use crate::manifest::{Manifest, Stage};
use crate::out_dir;
use crate::plan::{self, RunPlan};
use crate::progress::Progress;
use crate::run_folder::{find_finished, FinishedRun, RunFolder, StageFolder};
use crate::summary::{record_summary, RunSummary};
use crate::trainer::{self, RunContext};
use crate::winners::{self, read_winner, write_winner, Winner};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use tch::Device;

#[derive(Debug, Clone)]
pub struct Settings {
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: Device,
    /// Retrain runs that finished in an earlier invocation instead of reusing them.
    pub fresh: bool,
    /// Runs of a stage trained at once, each in its own thread with its own VarStore.
    pub jobs: usize,
    /// libtorch threads per run; by default the cores are shared among the jobs.
    pub threads: Option<usize>,
}

/// Runs the stages named in `only` (all when empty), in manifest order, and returns
/// the summaries of their runs.
pub fn run(manifest: &Manifest, only: &[String], settings: &Settings) -> Result<Vec<RunSummary>> {
    let out = &settings.out_dir;
    let selected = plan::select(manifest, only)?;
    // Every stage is planned before anything trains, so a bad grid anywhere fails at once.
    let provisional = winners::plan_with_recorded_winners(manifest, out)?;
    check_sources(&selected, out)?;
    // Every data file is opened before anything is written, so a bad one fails first.
    let mut datasets = Datasets::new(&settings.data_dir, settings.device);
    let selected_runs = provisional
        .iter()
        .filter(|(plan, _)| selected.iter().any(|stage| stage.name == plan.name))
        .flat_map(|(plan, _)| &plan.runs);
    for run in selected_runs {
        datasets.open(&run.dataset)?;
    }
    crate::transfer::check_transfers(&provisional, &selected, &datasets, out)?;
    prepare_out_dir(out)?;
    let _lock = lock_out_dir(out)?;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    match settings.threads {
        Some(threads) => tch::set_num_threads(threads as i32),
        // Parallel runs share the cores: one libtorch thread pool per run's worth of them.
        None if settings.jobs > 1 => tch::set_num_threads((cores / settings.jobs).max(1) as i32),
        None => {}
    }

    let mut session = Session {
        settings,
        progress: Progress::new(),
        winners: HashMap::new(),
        trained: Mutex::new(HashSet::new()),
    };
    let mut summaries = Vec::new();
    for stage in selected {
        summaries.extend(session.run_stage(manifest, stage, &datasets)?);
    }
    Ok(summaries)
}

/// A stage's `from` and `transfer` sources must run earlier in this invocation or have
/// run before.
fn check_sources(selected: &[&Stage], out: &Path) -> Result<()> {
    for (i, stage) in selected.iter().enumerate() {
        let transfer = stage.transfer.as_ref().map(|transfer| &transfer.from);
        for source in stage.from.iter().chain(transfer) {
            let runs_first = selected[..i].iter().any(|earlier| &earlier.name == source);
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
    let probe = dir.join(out_dir::WRITE_PROBE);
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "cannot write into the output folder {}: {fix}",
                dir.display()
            )
        })
}

/// Holds `out/.lock` for the life of the returned file: two processes writing one out/
/// would interleave rows and overwrite each other's checkpoints.
fn lock_out_dir(dir: &Path) -> Result<fs::File> {
    let path = dir.join(out_dir::LOCK);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::{Seek, Write};
            file.set_len(0)?;
            file.seek(std::io::SeekFrom::Start(0))?;
            write!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another cellnets process (pid {}) is writing to {}: wait for it to end, or use \
                 another folder with --out",
                holder.trim(),
                dir.display()
            )
        }
        Err(fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

struct Session<'a> {
    settings: &'a Settings,
    progress: Progress,
    /// Winners of the stages run so far in this invocation.
    winners: HashMap<String, Winner>,
    /// Run folders trained in this invocation: reusable even with `--fresh`.
    trained: Mutex<HashSet<PathBuf>>,
}

impl Session<'_> {
    fn run_stage(
        &mut self,
        manifest: &Manifest,
        stage: &Stage,
        datasets: &Datasets,
    ) -> Result<Vec<RunSummary>> {
        let start = match &stage.from {
            Some(source) => Some(self.winner(source)?.plan),
            None => None,
        };
        let plan = plan::plan_stage(manifest, stage, start.as_ref())
            .with_context(|| format!("stage `{}`", stage.name))?;
        let out = &self.settings.out_dir;
        self.progress.start_stage(&plan.name, plan.runs.len());
        let finished = self.run_all(&plan.runs, datasets)?;
        self.progress.finish_stage();

        let Some(winner) = winners::choose_winner(&finished, plan.pinned_winner.as_deref()) else {
            self.progress.note(&format!(
                "stage {}: no run has a usable checkpoint (each diverged at once), so no winner",
                plan.name
            ));
            return Ok(finished.into_iter().map(|(_, summary)| summary).collect());
        };
        write_winner(out, &plan.name, &winner)?;
        self.progress.note(&format!(
            "stage {}: winner {} (best val accuracy {:.4}{})",
            plan.name,
            winner.run,
            winner.best_val_accuracy,
            if winner.pinned {
                ", pinned by the manifest"
            } else {
                ""
            }
        ));
        self.winners.insert(plan.name.clone(), winner);
        Ok(finished.into_iter().map(|(_, summary)| summary).collect())
    }

    /// Completes `runs`, `--jobs` at a time, recording each summary as it arrives;
    /// returns them in plan order.
    fn run_all(&self, runs: &[RunPlan], datasets: &Datasets) -> Result<Vec<(RunPlan, RunSummary)>> {
        let complete = |run: &RunPlan, data: &Dataset| {
            self.complete(run, data)
                .with_context(|| format!("run {}/{} failed", run.stage, run.name))
        };
        let jobs = self.settings.jobs.clamp(1, runs.len().max(1));
        let mut summaries: Vec<Option<RunSummary>> = vec![None; runs.len()];
        if jobs == 1 {
            for (i, run) in runs.iter().enumerate() {
                let summary = complete(run, dataset_for(datasets, run))?;
                self.record(&summary)?;
                summaries[i] = Some(summary);
            }
        } else {
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
                    let complete = &complete;
                    scope.spawn(move || {
                        while !failed.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(run) = runs.get(i) else { break };
                            let result = complete(run, dataset_for(&own, run));
                            failed.fetch_or(result.is_err(), Ordering::Relaxed);
                            let _ = sender.send((i, result));
                        }
                    });
                }
                drop(sender);
                for (i, result) in receiver {
                    match result.and_then(|summary| self.record(&summary).map(|()| summary)) {
                        Ok(summary) => summaries[i] = Some(summary),
                        Err(error) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.get_or_insert(error);
                        }
                    }
                }
            });
            if let Some(error) = first_error {
                return Err(error);
            }
        }
        Ok(runs
            .iter()
            .cloned()
            .zip(
                summaries
                    .into_iter()
                    .map(|s| s.expect("every run completed")),
            )
            .collect())
    }

    /// Adds a finished run to its stage's summary and to the progress display.
    fn record(&self, summary: &RunSummary) -> Result<()> {
        let path = StageFolder::new(&self.settings.out_dir, &summary.stage).summary_csv();
        record_summary(&path, summary)?;
        self.progress.finish_run(summary);
        Ok(())
    }

    fn winner(&self, stage: &str) -> Result<Winner> {
        if let Some(winner) = self.winners.get(stage) {
            return Ok(winner.clone());
        }
        read_winner(&self.settings.out_dir, stage)?.with_context(|| {
            format!("stage `{stage}` has not run: run `cellnets only {stage}` first")
        })
    }

    /// Reuses a finished run with the same settings and data, or trains one.
    fn complete(&self, run: &RunPlan, data: &Dataset) -> Result<RunSummary> {
        if let Some(summary) = self.reuse(run, data)? {
            return Ok(summary);
        }
        let folder = RunFolder::of(&self.settings.out_dir, run);
        let transfer_checkpoint = self.transfer_checkpoint(run)?;
        let context = RunContext {
            device: self.settings.device,
            progress: &self.progress,
            transfer_checkpoint: transfer_checkpoint.as_deref(),
        };
        // libtorch reports some failures (an allocation too large, say) as panics in tch.
        let summary = panic::catch_unwind(AssertUnwindSafe(|| {
            trainer::train(run, data, &folder, &context)
        }))
        .unwrap_or_else(|payload| {
            Err(anyhow!(
                "libtorch failed: {}",
                crate::panic_summary(payload.as_ref())
            ))
        })?;
        folder.commit(&FinishedRun {
            plan: run.clone(),
            data_md5: data.md5.clone(),
            summary: summary.clone(),
            input: Some(data.input),
        })?;
        let mut trained = self.trained.lock().expect("no panic holds it");
        trained.insert(folder.dir().to_path_buf());
        Ok(summary)
    }

    /// The summary of a finished run with the same settings and data, taken into this
    /// run's folder; none when there is none, or when `--fresh` asks to retrain one that
    /// an earlier invocation trained.
    fn reuse(&self, run: &RunPlan, data: &Dataset) -> Result<Option<RunSummary>> {
        let out = &self.settings.out_dir;
        let Some((source, finished)) = find_finished(out, run, &data.md5)? else {
            return Ok(None);
        };
        let trained = self.trained.lock().expect("no panic holds it");
        if self.settings.fresh && !trained.contains(source.dir()) {
            return Ok(None);
        }
        drop(trained);
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

fn dataset_for<'d>(datasets: &'d Datasets, run: &RunPlan) -> &'d Dataset {
    datasets
        .opened(&run.dataset)
        .expect("every run's dataset was opened")
}

//! Runs a manifest's stages: plans them, loads their data, trains each run with its
//! observers (or reuses a finished run with the same settings), records the outcome
//! and each stage's winner. Bad input fails before anything is written under out/.

use crate::checkpoints::{self, Checkpoints, ResumeState};
use crate::data::{self, Dataset};
use crate::manifest::{DatasetSpec, Manifest, Stage};
use crate::metrics::{macro_auc, TestReport};
use crate::models::count_parameters;
use crate::outputs::{record_summary, CsvLogger, RunSummary, CHECKPOINT, EPOCHS_CSV, SUMMARY_CSV};
use crate::plan::{self, RunPlan};
use crate::progress::Progress;
use crate::records::{self, FinishedRun, Winner, RESULT_YAML, WINNER_YAML};
use crate::train::{fit, EarlyStopping, EpochObserver, FusedInputDense, Outcome};
use crate::transfer::{precompute, transfer_layers};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Instant;
use tch::{nn, Device};

#[derive(Debug, Clone)]
pub struct Settings {
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: Device,
    /// Retrain runs that finished in an earlier invocation instead of reusing them.
    pub fresh: bool,
    /// Runs of a stage trained at once, each in its own thread with its own VarStore.
    pub jobs: usize,
}

/// Runs the stages named in `only` (all when empty), in manifest order, and returns
/// the summaries of their runs.
pub fn run(manifest: &Manifest, only: &[String], settings: &Settings) -> Result<Vec<RunSummary>> {
    let out = &settings.out_dir;
    let selected = plan::select(manifest, only)?;
    // Every stage is planned before anything trains, so a bad grid anywhere fails at once.
    let provisional = plan::plan_all(manifest, |stage| {
        Ok(records::read_winner(out, stage)?.map(|winner| winner.plan))
    })?;
    check_sources(&selected, out)?;
    let specs = provisional
        .iter()
        .filter(|(plan, _)| selected.iter().any(|stage| stage.name == plan.name))
        .flat_map(|(plan, _)| plan.runs.iter().map(|run| &run.dataset));
    let datasets = open_datasets(specs, settings)?;
    crate::transfer::check_transfers(&provisional, &selected, &datasets, out)?;
    prepare_out_dir(out)?;
    let _lock = lock_out_dir(out)?;
    if settings.jobs > 1 {
        // Parallel runs share the cores: one libtorch thread pool per run's worth of them.
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        tch::set_num_threads((cores / settings.jobs).max(1) as i32);
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
            if !runs_first && records::read_winner(out, source)?.is_none() {
                bail!(
                    "stage `{}` needs the winner of stage `{source}`, which has not run \
                     (no {}): run `cellnets only {source}` first, or both: \
                     `cellnets only {source} {}`",
                    stage.name,
                    out.join(source).join(WINNER_YAML).display(),
                    stage.name
                );
            }
        }
    }
    Ok(())
}

/// Each distinct dataset, loaded once onto the device.
fn open_datasets<'a>(
    specs: impl Iterator<Item = &'a DatasetSpec>,
    settings: &Settings,
) -> Result<Vec<(DatasetSpec, Dataset)>> {
    let mut datasets: Vec<(DatasetSpec, Dataset)> = Vec::new();
    for spec in specs {
        if !datasets.iter().any(|(known, _)| known == spec) {
            let data = data::open(&settings.data_dir, spec, settings.device)?;
            datasets.push((spec.clone(), data));
        }
    }
    Ok(datasets)
}

fn prepare_out_dir(dir: &Path) -> Result<()> {
    let fix = "choose another folder with --out, or make it writable";
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output folder {}: {fix}", dir.display()))?;
    let probe = dir.join(".cellnets-write-test");
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
    let path = dir.join(".lock");
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
        datasets: &[(DatasetSpec, Dataset)],
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

        let Some(winner) = records::choose_winner(&finished, plan.pinned_winner.as_deref()) else {
            self.progress.note(&format!(
                "stage {}: no run has a usable checkpoint (each diverged at once), so no winner",
                plan.name
            ));
            return Ok(finished.into_iter().map(|(_, summary)| summary).collect());
        };
        records::write_yaml(&out.join(&plan.name).join(WINNER_YAML), &winner)?;
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
    fn run_all(
        &self,
        runs: &[RunPlan],
        datasets: &[(DatasetSpec, Dataset)],
    ) -> Result<Vec<(RunPlan, RunSummary)>> {
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
                    let own: Vec<(DatasetSpec, Dataset)> = datasets
                        .iter()
                        .map(|(spec, data)| (spec.clone(), data.shallow_clone()))
                        .collect();
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
        let path = self.settings.out_dir.join(&summary.stage).join(SUMMARY_CSV);
        record_summary(&path, summary)?;
        self.progress.finish_run(summary);
        Ok(())
    }

    fn winner(&self, stage: &str) -> Result<Winner> {
        if let Some(winner) = self.winners.get(stage) {
            return Ok(winner.clone());
        }
        records::read_winner(&self.settings.out_dir, stage)?.with_context(|| {
            format!("stage `{stage}` has not run: run `cellnets only {stage}` first")
        })
    }

    /// Reuses a finished run with the same settings and data, or trains one.
    fn complete(&self, run: &RunPlan, data: &Dataset) -> Result<RunSummary> {
        let out = &self.settings.out_dir;
        if let Some((source, finished)) = records::find_finished(out, run, &data.md5)? {
            let trained_now = self
                .trained
                .lock()
                .expect("no panic holds it")
                .contains(&source);
            if !self.settings.fresh || trained_now {
                let origin = format!("{}/{}", finished.plan.stage, finished.plan.name);
                let summary = records::adopt(out, run, &source, finished)?;
                self.progress.note(&format!(
                    "{}/{}: same settings as {origin}, which finished: reused, not retrained",
                    run.stage, run.name
                ));
                return Ok(summary);
            }
        }
        let dir = records::run_dir(out, &run.stage, &run.name);
        // libtorch reports some failures (an allocation too large, say) as panics in tch.
        let trained = panic::catch_unwind(AssertUnwindSafe(|| self.train(run, data, &dir)))
            .unwrap_or_else(|payload| {
                Err(anyhow!(
                    "libtorch failed: {}",
                    crate::panic_summary(payload.as_ref())
                ))
            })?;
        let finished = FinishedRun {
            plan: run.clone(),
            data_md5: data.md5.clone(),
            summary: trained.clone(),
        };
        // The result is the run's commit point: written last, then the resume files go.
        records::write_yaml(&dir.join(RESULT_YAML), &finished)?;
        checkpoints::clear_state(&dir)?;
        self.trained.lock().expect("no panic holds it").insert(dir);
        Ok(trained)
    }

    /// Readies the run folder: returns the state to resume from, if the folder holds an
    /// interrupted run of the same settings that can continue exactly. Results of other
    /// settings are moved aside, never mixed with the new ones.
    fn prepare(&self, run: &RunPlan, data: &Dataset, dir: &Path) -> Result<Option<ResumeState>> {
        let label = format!("{}/{}", run.stage, run.name);
        let previous_result: Option<FinishedRun> = fs::read_to_string(dir.join(RESULT_YAML))
            .ok()
            .and_then(|text| serde_yaml::from_str(&text).ok());
        let state = checkpoints::read_state(dir)?;
        let same = |plan: &RunPlan, md5: &str| plan.same_settings(run) && md5 == data.md5;
        let foreign = match (&previous_result, &state) {
            (Some(result), _) => !same(&result.plan, &result.data_md5),
            (None, Some(state)) => !same(&state.plan, &state.data_md5),
            (None, None) => false,
        };
        if foreign {
            let aside = aside_name(dir);
            fs::rename(dir, &aside).with_context(|| {
                format!("cannot move {} aside to {}", dir.display(), aside.display())
            })?;
            self.progress.note(&format!(
                "{label}: its settings or data changed since it ran; the old results were moved to {}",
                aside.display()
            ));
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let _ = fs::remove_file(dir.join(RESULT_YAML));
        match state.filter(|_| !foreign) {
            Some(state) if run.training.stateless_optimizer() => {
                self.progress
                    .note(&format!("{label}: resuming after epoch {}", state.epoch));
                Ok(Some(state))
            }
            Some(state) => {
                self.progress.note(&format!(
                    "{label}: interrupted after epoch {}, but {:?} keeps state that is not saved; \
                     restarting the run from epoch 1",
                    state.epoch, run.training.optimizer
                ));
                checkpoints::clear_state(dir)?;
                Ok(None)
            }
            None => {
                checkpoints::clear_state(dir)?;
                Ok(None)
            }
        }
    }

    fn train(&self, run: &RunPlan, data: &Dataset, dir: &Path) -> Result<RunSummary> {
        let resume = self.prepare(run, data, dir)?;
        let start = Instant::now();

        tch::manual_seed(run.training.seed as i64);
        let mut vs = nn::VarStore::new(self.settings.device);
        let model = run.model.build(&vs.root(), data.input);
        let frozen = match &run.transfer {
            Some(transfer) => {
                let source = self.winner(&transfer.from)?;
                let checkpoint =
                    records::run_dir(&self.settings.out_dir, &transfer.from, &source.run)
                        .join(CHECKPOINT);
                transfer_layers(&vs, transfer, &checkpoint)?
            }
            None => Vec::new(),
        };
        let (trainable_params, frozen_params) = count_parameters(&vs);

        let csv = dir.join(EPOCHS_CSV);
        let (mut logger, logged) = match &resume {
            Some(state) => {
                vs.load(state.weights(dir))
                    .with_context(|| format!("cannot load {}", state.weights(dir).display()))?;
                CsvLogger::resume(&csv, run, state.epoch)?
            }
            None => (CsvLogger::create(&csv, run)?, Vec::new()),
        };

        // Frozen leading layers give the same outputs every epoch: compute them once.
        let features;
        let (network, fused, data): (&dyn nn::ModuleT, _, &Dataset) =
            match model.split_frozen(&frozen) {
                Some((extractor, rest)) if !run.training.augment => {
                    let started = Instant::now();
                    features = precompute(extractor, data);
                    self.progress.note(&format!(
                        "{}/{}: outputs of the frozen {} computed once ({:.1} s), not every epoch",
                        run.stage,
                        run.name,
                        frozen.join(", "),
                        started.elapsed().as_secs_f64()
                    ));
                    (rest, None, &features)
                }
                _ => {
                    let parts = model.split_input_dense();
                    let fused = FusedInputDense::for_training(parts, &run.training);
                    (model.as_ref() as &dyn nn::ModuleT, fused, data)
                }
            };

        let mut checkpoints = Checkpoints::new(dir, run, &data.md5, &logged);
        let mut bar = self
            .progress
            .start_run(&run.name, run.training.epochs, logged.len());
        let mut stopper = run
            .training
            .patience
            .map(|patience| EarlyStopping::new(run.training.monitor, patience));
        let mut observers: Vec<&mut dyn EpochObserver> = vec![&mut logger, &mut checkpoints];
        if let Some(stopper) = stopper.as_mut() {
            for record in &logged {
                stopper.on_epoch_end(record, &vs)?;
            }
            observers.push(stopper);
        }
        observers.push(&mut bar);
        let outcome = fit(
            network,
            fused,
            &vs,
            data,
            &run.training,
            logged.len() + 1,
            &mut observers,
        )?;
        drop(observers);
        drop(bar);

        let best = checkpoints.best().cloned();
        let report = match &best {
            Some(_) => {
                let path = checkpoints.best_path();
                vs.load(&path)
                    .with_context(|| format!("cannot reload {}", path.display()))?;
                let report = TestReport::of(network, &data.test)?;
                report.write(dir)?;
                Some(report)
            }
            None => None,
        };
        let test = |metric: fn(&TestReport) -> f64| report.as_ref().map_or(f64::NAN, metric);
        if outcome == Outcome::Diverged {
            self.progress.note(&format!(
                "{}/{}: the loss became NaN or infinite at epoch {}: stopped and marked diverged",
                run.stage,
                run.name,
                checkpoints.epochs_seen()
            ));
        }
        Ok(RunSummary {
            stage: run.stage.clone(),
            run: run.name.clone(),
            hyperparameters: run.hyperparameters(),
            trainable_params,
            frozen_params,
            status: outcome.name().to_string(),
            best,
            test_loss: test(|report| report.loss),
            test_accuracy: test(|report| report.confusion.accuracy()),
            test_balanced_accuracy: test(|report| report.confusion.balanced_accuracy()),
            test_macro_f1: test(|report| report.confusion.macro_f1()),
            test_auc: test(|report| macro_auc(&report.aucs)),
            epochs: checkpoints.epochs_seen(),
            seconds: start.elapsed().as_secs_f64(),
            device: format!("{:?}", self.settings.device).to_lowercase(),
            reused_from: None,
        })
    }
}

fn dataset_for<'d>(datasets: &'d [(DatasetSpec, Dataset)], run: &RunPlan) -> &'d Dataset {
    let found = datasets.iter().find(|(spec, _)| *spec == run.dataset);
    found
        .map(|(_, data)| data)
        .expect("every run's dataset was opened")
}

/// A free sibling name for a run folder whose results are set aside.
fn aside_name(dir: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    (0..)
        .map(|n| dir.with_file_name(format!("{name}.replaced-{stamp}-{n}")))
        .find(|candidate| !candidate.exists())
        .expect("some suffix is free")
}

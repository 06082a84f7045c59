//! Runs a manifest's stages: plans them, loads their data, trains each run with its
//! observers (or reuses a finished run with the same settings), records the outcome
//! and each stage's winner. Bad input fails before anything is written under out/.

use crate::data::{self, Dataset, Split};
use crate::manifest::{DatasetSpec, Manifest, Stage, Transfer};
use crate::models::count_parameters;
use crate::outputs::{
    record_summary, BestCheckpoint, CsvLogger, RunSummary, CHECKPOINT, EPOCHS_CSV, SUMMARY_CSV,
};
use crate::plan::{self, RunPlan};
use crate::progress::Progress;
use crate::records::{self, FinishedRun, Winner, RESULT_YAML, WINNER_YAML};
use crate::train::{evaluate, fit, predict, EarlyStopping, EpochObserver};
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Tensor};

#[derive(Debug, Clone)]
pub struct Settings {
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: Device,
    /// Retrain runs that finished in an earlier invocation instead of reusing them.
    pub fresh: bool,
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
    prepare_out_dir(out)?;

    let mut session = Session {
        settings,
        progress: Progress::new(),
        winners: HashMap::new(),
        trained: HashSet::new(),
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

struct Session<'a> {
    settings: &'a Settings,
    progress: Progress,
    /// Winners of the stages run so far in this invocation.
    winners: HashMap<String, Winner>,
    /// Run folders trained in this invocation: reusable even with `--fresh`.
    trained: HashSet<PathBuf>,
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
        let mut finished = Vec::new();
        for run in &plan.runs {
            let data = &datasets
                .iter()
                .find(|(spec, _)| *spec == run.dataset)
                .expect("every run's dataset was opened")
                .1;
            let summary = self
                .complete(run, data)
                .with_context(|| format!("run {}/{} failed", run.stage, run.name))?;
            record_summary(&out.join(&run.stage).join(SUMMARY_CSV), &summary)?;
            self.progress.finish_run(&summary);
            finished.push((run.clone(), summary));
        }
        self.progress.finish_stage();

        let winner = records::choose_winner(&finished, plan.pinned_winner.as_deref())
            .context("a stage has at least one run")?;
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

    fn winner(&self, stage: &str) -> Result<Winner> {
        if let Some(winner) = self.winners.get(stage) {
            return Ok(winner.clone());
        }
        records::read_winner(&self.settings.out_dir, stage)?.with_context(|| {
            format!("stage `{stage}` has not run: run `cellnets only {stage}` first")
        })
    }

    /// Reuses a finished run with the same settings, or trains one.
    fn complete(&mut self, run: &RunPlan, data: &Dataset) -> Result<RunSummary> {
        let out = &self.settings.out_dir;
        if let Some((source, finished)) = records::find_finished(out, run)? {
            if !self.settings.fresh || self.trained.contains(&source) {
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
        let summary = self.train(run, data, &dir)?;
        let finished = FinishedRun {
            plan: run.clone(),
            summary: summary.clone(),
        };
        records::write_yaml(&dir.join(RESULT_YAML), &finished)?;
        self.trained.insert(dir);
        Ok(summary)
    }

    fn train(&mut self, run: &RunPlan, data: &Dataset, dir: &Path) -> Result<RunSummary> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // A stale result must not outlive the files this run is about to replace.
        let _ = fs::remove_file(dir.join(RESULT_YAML));
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

        // Frozen leading layers give the same outputs every epoch: compute them once.
        let features;
        let (network, data): (&dyn nn::ModuleT, &Dataset) = match model.split_frozen(&frozen) {
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
                (rest, &features)
            }
            _ => (model.as_ref() as &dyn nn::ModuleT, data),
        };

        let mut logger = CsvLogger::create(&dir.join(EPOCHS_CSV), run)?;
        let mut checkpoint = BestCheckpoint::new(dir.join(CHECKPOINT), run.training.monitor);
        let mut bar = self.progress.start_run(&run.name, run.training.epochs);
        let mut stopper = run
            .training
            .patience
            .map(|patience| EarlyStopping::new(run.training.monitor, patience));
        let mut observers: Vec<&mut dyn EpochObserver> =
            vec![&mut logger, &mut checkpoint, &mut bar];
        if let Some(stopper) = stopper.as_mut() {
            observers.push(stopper);
        }
        fit(network, &vs, data, &run.training, &mut observers)?;
        drop(observers);
        drop(bar);

        let best = checkpoint
            .best()
            .cloned()
            .context("training ended without a checkpoint")?;
        vs.load(checkpoint.path())
            .with_context(|| format!("cannot reload {}", checkpoint.path().display()))?;
        let test = evaluate(network, &data.test);
        Ok(RunSummary {
            stage: run.stage.clone(),
            run: run.name.clone(),
            hyperparameters: run.hyperparameters(),
            trainable_params,
            frozen_params,
            best,
            test_loss: test.loss,
            test_accuracy: test.accuracy,
            test_balanced_accuracy: test.balanced_accuracy,
            epochs: checkpoint.epochs_seen(),
            seconds: start.elapsed().as_secs_f64(),
            device: format!("{:?}", self.settings.device).to_lowercase(),
            reused_from: None,
        })
    }
}

/// Copies the layers under `transfer.layers` from `checkpoint` into `vs`, freezing them
/// when asked, and returns the frozen prefixes.
pub fn transfer_layers(
    vs: &nn::VarStore,
    transfer: &Transfer,
    checkpoint: &Path,
) -> Result<Vec<String>> {
    let tensors = Tensor::read_safetensors(checkpoint)
        .with_context(|| format!("cannot read the checkpoint {}", checkpoint.display()))?;
    let variables = vs.variables();
    for layer in &transfer.layers {
        let prefix = format!("{layer}.");
        let mut copied = 0;
        for (name, value) in tensors.iter().filter(|(name, _)| name.starts_with(&prefix)) {
            let variable = variables.get(name).with_context(|| {
                format!(
                    "this model has no `{name}` to take from {}",
                    checkpoint.display()
                )
            })?;
            if variable.size() != value.size() {
                bail!(
                    "cannot transfer `{name}`: {:?} in {} but {:?} in this model",
                    value.size(),
                    checkpoint.display(),
                    variable.size()
                );
            }
            let mut variable = variable.shallow_clone();
            tch::no_grad(|| variable.f_copy_(value))?;
            copied += 1;
        }
        if copied == 0 {
            bail!("{} has no layer `{layer}`", checkpoint.display());
        }
    }
    if !transfer.freeze {
        return Ok(Vec::new());
    }
    freeze(vs, &transfer.layers)?;
    Ok(transfer.layers.clone())
}

/// Stops gradients for every parameter under the given path prefixes.
pub fn freeze(vs: &nn::VarStore, layers: &[String]) -> Result<()> {
    for layer in layers {
        let prefix = format!("{layer}.");
        let mut found = false;
        for (_, variable) in vs
            .variables()
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
        {
            let _ = variable.set_requires_grad(false);
            found = true;
        }
        if !found {
            bail!("the model has no layer `{layer}` to freeze");
        }
    }
    Ok(())
}

/// The data as the layers after `extractor` see it.
fn precompute(extractor: &dyn nn::ModuleT, data: &Dataset) -> Dataset {
    let features = |split: &Split| Split {
        images: predict(extractor, &split.images),
        labels: split.labels.shallow_clone(),
    };
    Dataset {
        path: data.path.clone(),
        train: features(&data.train),
        val: features(&data.val),
        test: features(&data.test),
        input: data.input,
    }
}

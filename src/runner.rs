//! Runs planned stages: loads their data, trains each run with its observers, and
//! records the outcome. Bad data fails before anything is written under out/.

use crate::data::{self, Dataset};
use crate::manifest::DatasetSpec;
use crate::models::count_parameters;
use crate::outputs::{
    record_summary, BestCheckpoint, CsvLogger, RunSummary, CHECKPOINT, EPOCHS_CSV, SUMMARY_CSV,
};
use crate::plan::{RunPlan, StagePlan};
use crate::progress::Progress;
use crate::train::{evaluate, fit};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device};

#[derive(Debug, Clone)]
pub struct Settings {
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: Device,
}

/// Trains every run of `plans`, in order, and returns their summaries.
pub fn run(plans: &[StagePlan], settings: &Settings) -> Result<Vec<RunSummary>> {
    let datasets = open_datasets(plans, settings)?;
    prepare_out_dir(&settings.out_dir)?;
    let mut progress = Progress::new();
    let mut summaries = Vec::new();
    for stage in plans {
        progress.start_stage(&stage.name, stage.runs.len());
        for run in &stage.runs {
            let data = &datasets
                .iter()
                .find(|(spec, _)| *spec == run.dataset)
                .expect("every run's dataset was opened")
                .1;
            let summary = train_run(run, data, settings, &mut progress)
                .with_context(|| format!("run {}/{} failed", run.stage, run.name))?;
            record_summary(
                &settings.out_dir.join(&run.stage).join(SUMMARY_CSV),
                &summary,
            )?;
            progress.finish_run(&summary);
            summaries.push(summary);
        }
        progress.finish_stage();
    }
    Ok(summaries)
}

/// Each distinct dataset of the plans, loaded once onto the device.
fn open_datasets(plans: &[StagePlan], settings: &Settings) -> Result<Vec<(DatasetSpec, Dataset)>> {
    let mut datasets: Vec<(DatasetSpec, Dataset)> = Vec::new();
    for run in plans.iter().flat_map(|stage| &stage.runs) {
        if !datasets.iter().any(|(spec, _)| *spec == run.dataset) {
            let data = data::open(&settings.data_dir, &run.dataset, settings.device)?;
            datasets.push((run.dataset.clone(), data));
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

fn train_run(
    run: &RunPlan,
    data: &Dataset,
    settings: &Settings,
    progress: &mut Progress,
) -> Result<RunSummary> {
    let dir = settings.out_dir.join(&run.stage).join(&run.name);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let start = Instant::now();

    tch::manual_seed(run.training.seed as i64);
    let mut vs = nn::VarStore::new(settings.device);
    let model = run.model.build(&vs.root(), data.input);
    let (trainable_params, frozen_params) = count_parameters(&vs);

    let mut logger = CsvLogger::create(&dir.join(EPOCHS_CSV), run)?;
    let mut checkpoint = BestCheckpoint::new(dir.join(CHECKPOINT), run.training.monitor);
    let mut bar = progress.start_run(&run.name, run.training.epochs);
    fit(
        model.as_ref(),
        &vs,
        data,
        &run.training,
        &mut [&mut logger, &mut checkpoint, &mut bar],
    )?;
    drop(bar);

    let best = checkpoint
        .best()
        .cloned()
        .context("training ended without a checkpoint")?;
    vs.load(checkpoint.path())
        .with_context(|| format!("cannot reload {}", checkpoint.path().display()))?;
    let test = evaluate(model.as_ref(), &data.test);
    Ok(RunSummary {
        stage: run.stage.clone(),
        run: run.name.clone(),
        hyperparameters: run.hyperparameters(),
        trainable_params,
        frozen_params,
        best,
        test_loss: test.loss,
        test_accuracy: test.accuracy,
        epochs: run.training.epochs,
        seconds: start.elapsed().as_secs_f64(),
        device: format!("{:?}", settings.device).to_lowercase(),
    })
}

//! An ensemble stage evaluated: its members found, their mean probabilities tested on
//! the test split. The members are found among the finished runs of their stages, and
//! the result is written like a run's (out/<stage>/ensemble: the test tables and
//! ensemble.yaml; a row of the stage's summary.csv).

use crate::data::Dataset;
use crate::inference::ensemble::SavedEnsemble;
use crate::inference::saved::{Predictor, SavedRun};
use crate::outputs::ensemble::{ensemble_folder, write_ensemble_result, EnsembleResult};
use crate::outputs::run_folder::RunFolder;
use crate::outputs::summary::RunSummary;
use crate::outputs::winners;
use crate::runner::session::Hint;
use crate::study::ensemble::{split_member, Ensemble, Top, ENSEMBLE_RUN};
use crate::study::plan::{RunPlan, StagePlan};
use crate::train::Outcome;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::Device;

/// The runs an ensemble averages, each with its summary: the named runs, or the `top`
/// best of a stage. `finished` gives a run's summary once it has finished with its
/// planned settings.
pub fn members(
    stage: &str,
    ensemble: &Ensemble,
    plans: &[StagePlan],
    finished: impl Fn(&RunPlan) -> Result<Option<RunSummary>>,
    hint: &Hint,
) -> Result<Vec<(RunPlan, RunSummary)>> {
    let plan_of = |name: &str| {
        plans
            .iter()
            .find(|plan| plan.name == name)
            .with_context(|| format!("stage `{stage}`: no stage `{name}` to take runs from"))
    };
    match ensemble {
        Ensemble::Runs(names) => names
            .iter()
            .map(|member| {
                let (source, run) = split_member(member);
                let plan = plan_of(source)?
                    .runs
                    .iter()
                    .find(|planned| planned.name == run);
                let plan = plan.with_context(|| format!("`{member}` is not a planned run"))?;
                match finished(plan)? {
                    Some(summary) if summary.best.is_some() => Ok((plan.clone(), summary)),
                    Some(_) => bail!(
                        "stage `{stage}`: member `{member}` has no usable checkpoint (it \
                         diverged at once); leave it out of the ensemble"
                    ),
                    None => bail!(
                        "stage `{stage}`: member `{member}` has not finished: run `{}` first",
                        hint.only(&[source])
                    ),
                }
            })
            .collect(),
        Ensemble::Top(Top { top, of }) => {
            let mut done = Vec::new();
            for run in &plan_of(of)?.runs {
                if let Some(summary) = finished(run)? {
                    done.push((run.clone(), summary));
                }
            }
            let best = winners::top_runs(&done, *top);
            if best.len() < *top {
                bail!(
                    "stage `{stage}` takes the top {top} runs of `{of}`, which has {} finished \
                     run(s) with a checkpoint: run `{}` to finish it, or lower `top`",
                    best.len(),
                    hint.only(&[of])
                );
            }
            Ok(best
                .into_iter()
                .map(|plan| {
                    let found = done.iter().find(|(run, _)| run.name == plan.name);
                    found.cloned().expect("top_runs picks among the finished")
                })
                .collect())
        }
    }
}

/// Tests the mean of `members`' probabilities on `data`'s test split and writes the
/// result into out/<stage>/ensemble; returns its summary row, not yet recorded.
pub fn evaluate(
    out: &Path,
    stage: &str,
    members: &[(RunPlan, RunSummary)],
    data: &Dataset,
    device: Device,
) -> Result<RunSummary> {
    let start = Instant::now();
    let dir = ensemble_folder(out, stage);
    let saved = members
        .iter()
        .map(|(plan, _)| SavedRun::open(RunFolder::of(out, plan).dir()))
        .collect::<Result<Vec<_>>>()?;
    let ensemble = SavedEnsemble::of(dir.clone(), format!("{stage}/{ENSEMBLE_RUN}"), saved)?;
    let report = ensemble.evaluate(data, &data.test, device)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    report.write(&dir)?;
    let names: Vec<String> = members
        .iter()
        .map(|(plan, _)| plan.id().to_string())
        .collect();
    let summary = RunSummary {
        stage: stage.to_string(),
        run: ENSEMBLE_RUN.to_string(),
        hyperparameters: vec![
            ("model".into(), "ensemble".into()),
            ("members".into(), names.join(" ")),
        ],
        trainable_params: members.iter().map(|(_, s)| s.trainable_params).sum(),
        frozen_params: members.iter().map(|(_, s)| s.frozen_params).sum(),
        status: Outcome::Finished,
        best: None,
        test: report.metrics(),
        epochs: 0,
        seconds: start.elapsed().as_secs_f64(),
        // What the ensemble cost: every member's training, whether or not side by side.
        train_seconds: members.iter().map(|(_, s)| s.train_seconds).sum(),
        train_cpu_seconds: members.iter().map(|(_, s)| s.train_cpu_seconds).sum(),
        device: format!("{device:?}").to_lowercase(),
        reused_from: None,
        repeat_of: None,
    };
    write_ensemble_result(
        &dir,
        &EnsembleResult {
            members: names,
            dataset: ensemble.dataset().clone(),
            data_md5: data.md5.clone(),
            input: data.input,
            task: data.task,
            summary: summary.clone(),
            confusion: report.confusion().map(|confusion| confusion.matrix.clone()),
        },
    )?;
    Ok(summary)
}

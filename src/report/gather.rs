//! Gather: everything the report reads from disk, as plain data. Run outputs (results,
//! epoch tables, winners, saved runs) and data files are read here and nowhere else in
//! the report, so a change of the output layout only has to change this file.

use crate::data::{Dataset, Datasets, Images};
use crate::figures::Picture;
use crate::inference::ensemble::SavedEnsemble;
use crate::inference::saved::SavedRun;
use crate::models::InputShape;
use crate::outputs::ensemble::EnsembleResult;
use crate::outputs::proposals::read_proposals;
use crate::outputs::run_folder::{Failure, FinishedRun, RunFolder, StageFolder};
use crate::outputs::rungs::{read_stands, standing, Stand};
use crate::outputs::winners::{self, Winner};
use crate::study::manifest::{DatasetSpec, Manifest, Stage, Validation, GRID_KEYS};
use crate::study::plan::{RunPlan, StagePlan};
use crate::study::reference::{self, StudyModel};
use crate::study::search::rungs::{Rungs, Standing};
use crate::study::search::tpe::Drawn;
use crate::study::search::Distribution;
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use serde_yaml::Value;
use std::path::Path;
use tch::{Device, Tensor};

/// A run's settings as (key, value). Taken once per run: serialising a plan is not
/// free, and the tables look settings up cell by cell.
#[derive(Debug, Clone, Default)]
pub struct RunSettings(Vec<(String, String)>);

impl RunSettings {
    pub fn of(run: &RunPlan) -> Self {
        RunSettings(run.hyperparameters())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// A run that left its result.
pub struct RunResult {
    pub name: String,
    pub settings: RunSettings,
    pub result: FinishedRun,
    pub epochs: Vec<EpochRecord>,
}

/// What the outputs hold of one stage of the manifest.
pub struct StageResults<'a> {
    pub stage: &'a Stage,
    pub plan: &'a StagePlan,
    /// The settings of every planned run, finished or not, in plan order.
    pub planned: Vec<RunSettings>,
    /// The grid's keys, in the manifest's order.
    pub varied: Vec<String>,
    /// Whether the winner is a final model: the last stage naming its study model, or
    /// one no later stage starts from.
    pub is_final: bool,
    /// The study's model the stage reproduces, if it runs on the study's data set.
    pub study: Option<&'static StudyModel>,
    pub finished: Vec<RunResult>,
    /// Why each unreadable result was left out.
    pub left_out: Vec<String>,
    /// Runs whose last attempt failed with an error, by name, with why.
    pub failed: Vec<(String, Failure)>,
    pub winner: Option<Winner>,
    /// The winner's saved run, when the report tests it: a final model, or one whose
    /// mistakes the manifest asks to see.
    pub to_test: Option<SavedRun>,
    /// A halving stage's rungs, as its runs' folders show them.
    pub halving: Option<Halved>,
    /// An ensemble stage's result, once tested.
    pub ensemble: Option<EnsembleView>,
    /// A sampled stage's configurations in the order they were drawn.
    pub search: Option<Searched>,
}

/// A sampled stage (random or TPE, without a grid) as its runs' folders show it.
pub struct Searched {
    /// `random`, `TPE`, `random + halving` or `BOHB`.
    pub method: &'static str,
    pub space: Vec<(String, Distribution)>,
    /// Each configuration drawn so far, in order.
    pub configurations: Vec<SearchedRun>,
}

/// One drawn configuration and what became of it.
pub struct SearchedRun {
    pub run: String,
    /// Its value of each key of the space.
    pub values: Vec<Value>,
    /// Epochs trained so far (where halving stopped it, or its budget).
    pub epochs: usize,
    /// Its value by the stage's winner rule after those epochs; not a number without one.
    pub value: f64,
    /// How it was drawn, for a TPE stage's proposal: (by the model, in words).
    pub drawn: Option<(bool, String)>,
}

/// A configuration's values and, for a TPE proposal, how it was drawn.
type DrawnValues = (Vec<Value>, Option<(bool, String)>);

/// The stage's search, when it samples without a grid: its configurations in the
/// order drawn (a TPE stage's as far as they are proposed).
fn read_search(stage: &Stage, plan: &StagePlan, out: &Path) -> Result<Option<Searched>> {
    let Some(sample) = stage.sample.as_ref().filter(|_| stage.grid.is_empty()) else {
        return Ok(None);
    };
    let space = sample.distributions(&GRID_KEYS, &stage.grid)?;
    let records = read_proposals(out, plan)?;
    let drawn: Vec<DrawnValues> = match &plan.proposals {
        Some(proposals) => records
            .iter()
            .map(|record| {
                let how = (
                    !matches!(record.drawn, Drawn::Startup | Drawn::RandomFraction),
                    record.describe(),
                );
                Ok((record.ordered_values(proposals)?, Some(how)))
            })
            .collect::<Result<_>>()?,
        None => sample
            .draw(&space)
            .into_iter()
            .map(|draw| (draw.into_iter().map(|(_, value)| value).collect(), None))
            .collect(),
    };
    // A TPE stage's runs are those drawn; before any, none is.
    let runs = match &plan.proposals {
        Some(_) if records.is_empty() => &[][..],
        _ => &plan.runs[..],
    };
    let stands = read_stands(out, runs, |_| None, None)?;
    let ranking = winners::ranking_monitor(runs.iter());
    let configurations = runs
        .iter()
        .zip(&stands)
        .zip(drawn)
        .map(|((run, stand), (values, drawn))| SearchedRun {
            run: run.name.clone(),
            values,
            epochs: stand.trained,
            value: stand.value_at(stand.trained, ranking),
            drawn,
        })
        .collect();
    let method = match (plan.proposals.is_some(), plan.halving.is_some()) {
        (false, false) => "random",
        (true, false) => "TPE",
        (false, true) => "random + halving",
        (true, true) => "BOHB",
    };
    Ok(Some(Searched {
        method,
        space,
        configurations,
    }))
}

/// Where a halving stage's runs stand, rung by rung.
pub struct Halved {
    pub rungs: Rungs,
    /// Each planned run's stand, in plan order.
    pub stands: Vec<Stand>,
    pub standing: Standing,
}

/// An ensemble stage's tested result, with its members' own.
pub struct EnsembleView {
    pub result: EnsembleResult,
    /// Each member as `stage/run`, with its result when it can be read.
    pub members: Vec<(String, Option<FinishedRun>)>,
    /// The ensemble to test again, for the final models and their paired comparisons;
    /// none when a member cannot be opened.
    pub saved: Option<SavedEnsemble>,
}

/// The ensemble of stage `stage`, once tested, with its members' results.
fn read_ensemble(out: &Path, stage: &str) -> Result<Option<EnsembleView>> {
    let folder = crate::outputs::ensemble::ensemble_folder(out, stage);
    let Some(result) = crate::outputs::ensemble::read_ensemble_result(&folder)? else {
        return Ok(None);
    };
    let saved = SavedEnsemble::open(&folder).ok();
    let members = result
        .members
        .iter()
        .map(|member| {
            let finished = RunFolder::at(out.join(member)).read_result().ok().flatten();
            (member.clone(), finished)
        })
        .collect();
    Ok(Some(EnsembleView {
        result,
        members,
        saved,
    }))
}

impl StageResults<'_> {
    /// Whether any run left a result, readable or not.
    pub fn has_results(&self) -> bool {
        !self.finished.is_empty() || !self.left_out.is_empty()
    }

    pub fn dataset(&self) -> &DatasetSpec {
        &self.plan.runs[0].dataset
    }
}

/// Each stage's plan, from the winners the outputs record.
pub fn plans(manifest: &Manifest, out: &Path) -> Result<Vec<StagePlan>> {
    let plans = winners::plan_with_recorded_winners(manifest, out)?;
    Ok(plans.into_iter().map(|(plan, _)| plan).collect())
}

/// What the outputs hold of every stage, in manifest order.
pub fn stages<'a>(
    manifest: &'a Manifest,
    plans: &'a [StagePlan],
    out: &Path,
) -> Result<Vec<StageResults<'a>>> {
    let stages = &manifest.stages;
    (0..stages.len())
        .map(|index| {
            let stage = &stages[index];
            stage_results(stage, &plans[index], is_final(stages, index), out)
                .with_context(|| format!("report of stage `{}`", stage.name))
        })
        .collect()
}

/// The last stage naming its study model, or one (naming none) that no later stage
/// starts from.
fn is_final(stages: &[Stage], index: usize) -> bool {
    let (stage, later) = (&stages[index], &stages[index + 1..]);
    let started_from = later.iter().any(|s| s.from.as_ref() == Some(&stage.name));
    match &stage.report.study {
        Some(key) => !later.iter().any(|s| s.report.study.as_ref() == Some(key)),
        None => !started_from,
    }
}

fn stage_results<'a>(
    stage: &'a Stage,
    plan: &'a StagePlan,
    is_final: bool,
    out: &Path,
) -> Result<StageResults<'a>> {
    let (finished, left_out, failed) = read_results(plan, out)?;
    // A stage without results has no winner worth reading yet.
    let winner = if finished.is_empty() {
        None
    } else {
        winners::recorded_winner(out, plan)?.current()
    };
    let tested = is_final || stage.report.mistakes > 0;
    let to_test = match (&winner, tested) {
        (Some(winner), true) => {
            let folder = StageFolder::new(out, &stage.name).run(&winner.run);
            Some(SavedRun::open(folder.dir())?)
        }
        _ => None,
    };
    let halving = match &plan.halving {
        Some(rungs) => {
            let stands = read_stands(out, &plan.runs, |_| None, None)?;
            Some(Halved {
                standing: standing(rungs, &plan.runs, &stands, false),
                rungs: rungs.clone(),
                stands,
            })
        }
        None => None,
    };
    Ok(StageResults {
        halving,
        stage,
        plan,
        planned: plan.runs.iter().map(RunSettings::of).collect(),
        varied: stage
            .grid
            .keys()
            .filter_map(|key| key.as_str().map(String::from))
            .collect(),
        is_final,
        study: study_model(stage, plan),
        finished,
        left_out,
        failed,
        winner,
        to_test,
        ensemble: match plan.ensemble {
            Some(_) => read_ensemble(out, &stage.name)?,
            None => None,
        },
        search: read_search(stage, plan, out)?,
    })
}

/// The study's model the stage names, if it runs on the study's data set: the study's
/// numbers compare only with runs on its own data.
fn study_model(stage: &Stage, plan: &StagePlan) -> Option<&'static StudyModel> {
    let study = reference::study();
    let key = stage.report.study.as_ref()?;
    (plan.runs[0].dataset.name == study.dataset).then(|| &study.models[key])
}

/// The stage's finished runs with their epoch tables, and why any result that cannot
/// be read was left out: one damaged run should not hide the rest of the study.
type StageFiles = (Vec<RunResult>, Vec<String>, Vec<(String, Failure)>);

/// The stage's finished runs, why unreadable results were left out, and failed runs.
fn read_results(plan: &StagePlan, out: &Path) -> Result<StageFiles> {
    let mut finished = Vec::new();
    let mut left_out = Vec::new();
    let mut failed = Vec::new();
    for run in &plan.runs {
        let folder = RunFolder::of(out, run);
        match folder.read_result() {
            Ok(Some(result)) => finished.push(RunResult {
                name: run.name.clone(),
                settings: RunSettings::of(run),
                result,
                epochs: folder.read_epochs()?,
            }),
            Ok(None) => failed.extend(folder.read_failure().map(|why| (run.name.clone(), why))),
            Err(error) => left_out.push(format!("{error:#}")),
        }
    }
    Ok((finished, left_out, failed))
}

/// The four splits whose class counts the report shows: the images that train or
/// validate (the official train split, under the study's holdout), the test split,
/// and the images that train and those that validate.
pub fn splits(validation: Validation) -> [&'static str; 4] {
    match validation {
        Validation::Holdout => ["train", "test", "holdout_train", "holdout_val"],
        Validation::Official => ["train_and_val", "test", "train", "val"],
    }
}

/// A data file as the study showed it.
pub struct DataOverview {
    pub spec: DatasetSpec,
    pub input: InputShape,
    pub task: crate::study::task::Task,
    pub class_names: Vec<String>,
    /// Images per class (positives per label) of each of `splits`, in that order.
    pub counts: [Vec<u64>; 4],
    /// Images of each of `splits`.
    pub sizes: [u64; 4],
    /// The first training image of each class that has one.
    pub samples: Vec<(String, Picture)>,
}

/// An overview of each data file some stage has results on, in the order of the
/// stages; one per file, whatever train fraction the stages hold out.
pub fn data_overviews(stages: &[StageResults], files: &mut Datasets) -> Result<Vec<DataOverview>> {
    let mut specs: Vec<&DatasetSpec> = Vec::new();
    for stage in stages.iter().filter(|stage| stage.has_results()) {
        let spec = stage.dataset();
        if !specs
            .iter()
            .any(|known| known.file_name() == spec.file_name())
        {
            specs.push(spec);
        }
    }
    specs
        .into_iter()
        .map(|spec| data_overview(spec, files.open(spec)?))
        .collect()
}

fn data_overview(spec: &DatasetSpec, data: &Dataset) -> Result<DataOverview> {
    let classes = data.input.classes as usize;
    let class_names = crate::data::image_folder::class_names(spec, classes);
    let official_train = Tensor::cat(&[&data.train.labels, &data.val.labels], 0);
    let counts = [
        class_counts(&official_train, classes)?,
        class_counts(&data.test.labels, classes)?,
        class_counts(&data.train.labels, classes)?,
        class_counts(&data.val.labels, classes)?,
    ];
    let mut samples = Vec::new();
    for (class, name) in class_names.iter().enumerate() {
        if let Some(i) = first_of(&data.train.labels, class)? {
            samples.push((name.clone(), picture(&data.train.images, i)?));
        }
    }
    let train = data.train.len() + data.val.len();
    let sizes = [train, data.test.len(), data.train.len(), data.val.len()].map(|n| n as u64);
    Ok(DataOverview {
        spec: spec.clone(),
        input: data.input,
        task: data.task,
        class_names,
        counts,
        sizes,
        samples,
    })
}

/// Images per class, or positives per label (labels of 0/1 per column).
fn class_counts(labels: &Tensor, classes: usize) -> Result<Vec<u64>> {
    let labels = labels.to_device(Device::Cpu);
    let counts = match labels.dim() {
        1 => labels.bincount::<Tensor>(None, classes as i64),
        _ => labels.sum_dim_intlist(0, false, tch::Kind::Int64),
    };
    Ok(Vec::<i64>::try_from(counts)?
        .into_iter()
        .map(|n| n as u64)
        .collect())
}

/// The first image of a class (or with a label), if any.
pub fn first_of(labels: &Tensor, class: usize) -> Result<Option<usize>> {
    let hits = match labels.dim() {
        1 => labels.eq(class as i64),
        _ => labels.select(1, class as i64).gt(0.5),
    };
    let found = hits.nonzero().to_device(Device::Cpu);
    Ok((found.size()[0] > 0).then(|| found.int64_value(&[0, 0]) as usize))
}

/// Image `index` of a split's images.
pub fn picture(images: &Images, index: usize) -> Result<Picture> {
    let image = images
        .image(index as i64)
        .context("the split holds features, not images")?;
    Picture::from_tensor(&image)
}

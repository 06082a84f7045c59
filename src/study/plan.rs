//! Turns a manifest into the runs to train: stage settings over defaults (or over an
//! earlier stage's winner), grids and samples expanded into runs, each with its
//! revision, and a halving stage's rungs.

use crate::models::{InvalidModel, ModelSpec};
use crate::study::ensemble::Ensemble;
use crate::study::manifest::{
    check_path_safe_name, DatasetSpec, InvalidTraining, Manifest, Stage, Training,
    TrainingOverrides, Transfer, GRID_KEYS, TRAINING_KEYS,
};
use crate::study::search::rungs::Rungs;
use crate::study::search::tpe::{self, TpeSettings};
use crate::study::search::{short_text, Distribution, Halving};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::collections::{HashMap, HashSet};

/// Everything needed to train one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPlan {
    pub stage: String,
    pub name: String,
    pub model: ModelSpec,
    pub training: Training,
    pub dataset: DatasetSpec,
    pub transfer: Option<Transfer>,
    /// The latest change to cellnets' arithmetic that alters this run's numbers, when
    /// planned: part of the run's identity, so a run trained by an older arithmetic is
    /// not reused as if trained by today's. Changes are numbered in order: 2, BatchNorm
    /// as Keras starts it; 3, optimizers of cellnets' own and per-run random draws.
    #[serde(default = "first_revision")]
    pub revision: u32,
    /// The configuration this run repeats with a seed of its own, when its stage has
    /// `repeats` above 1: the name the run would have alone. Not part of its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_of: Option<String>,
}

/// A run's identity across a study: its stage and its name, shown as `stage/run` (its
/// folder under out/, and how ensembles and messages name it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId {
    pub stage: String,
    pub run: String,
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.stage, self.run)
    }
}

/// Results written before runs recorded a revision were all trained by the first one.
fn first_revision() -> u32 {
    1
}

#[derive(Debug, Clone)]
pub struct StagePlan {
    pub name: String,
    pub runs: Vec<RunPlan>,
    /// The run pinned as winner by the manifest, if any.
    pub pinned_winner: Option<String>,
    /// Successive halving over the runs, when the stage asks for it.
    pub halving: Option<Rungs>,
    /// An ensemble stage's members; such a stage plans no runs.
    pub ensemble: Option<Ensemble>,
    /// A TPE stage's proposals. Its `runs` are those drawn so far (`outputs::proposals`
    /// fills them in from out/), or before any, the first proposal, which no result
    /// can change.
    pub proposals: Option<Proposals>,
}

/// How a TPE stage draws its configurations, and how a drawn one becomes a run.
#[derive(Debug, Clone)]
pub struct Proposals {
    pub count: usize,
    pub seed: u64,
    pub settings: TpeSettings,
    pub space: Vec<(String, Distribution)>,
    template: RunTemplate,
}

/// What every run of a TPE stage shares: the stage's settings before a proposal's.
#[derive(Debug, Clone)]
struct RunTemplate {
    stage: Stage,
    base_training: TrainingOverrides,
    model: Value,
    training: Value,
    dataset: DatasetSpec,
}

impl Proposals {
    /// The run of proposal `index` (from 0) with `values` for the space's keys, named
    /// as a random sample's: `sample=<index + 1>,<key>=<value>,...`.
    pub fn run(&self, index: usize, values: &[Value]) -> Result<RunPlan> {
        let draw: Cell = self
            .space
            .iter()
            .zip(values)
            .map(|((key, _), value)| (key.clone(), value.clone()))
            .collect();
        let name = std::iter::once(format!("sample={}", index + 1))
            .chain(
                draw.iter()
                    .map(|(key, value)| format!("{key}={}", short_text(value))),
            )
            .collect::<Vec<_>>()
            .join(",");
        let template = &self.template;
        let (model, training) = apply(&draw, &template.model, &template.training);
        resolve_run(
            &template.stage,
            &template.base_training,
            model,
            training,
            &template.dataset,
            &name,
        )
        .with_context(|| format!("run `{name}`"))
    }

    /// The first proposal, drawn before any result exists.
    pub fn first(&self) -> Result<RunPlan> {
        let (values, _) = tpe::propose(&self.space, &self.settings, self.seed, 0, &[]);
        self.run(0, &values)
    }

    /// What the proposals depend on besides the results: changing any of it (the seed,
    /// TPE's settings, the space, the stage's other settings) draws a new series, kept
    /// apart from the old. `count` is not part of it: raising it draws on.
    pub fn fingerprint(&self) -> String {
        let template = &self.template;
        let text = format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.seed,
            self.settings,
            self.space,
            template.model,
            template.training,
            template.base_training,
            template.dataset,
            template.stage.transfer
        );
        format!("{:x}", md5::compute(text))[..12].to_string()
    }
}

/// The stage's model and training values with a configuration's settings put in.
fn apply(cell: &Cell, model: &Value, training: &Value) -> (Value, Value) {
    let (mut model, mut training) = (model.clone(), training.clone());
    for (key, value) in cell {
        let target = if TRAINING_KEYS.contains(&key.as_str()) {
            &mut training
        } else {
            &mut model
        };
        target
            .as_mapping_mut()
            .expect("specs serialise to mappings")
            .insert(Value::from(key.as_str()), value.clone());
    }
    (model, training)
}

impl StagePlan {
    /// A fingerprint of what decides the stage's winner: its runs with all their
    /// settings (a `from` stage's runs carry their source's winner), its pinned winner
    /// and its halving rungs. A winner.yaml settled for another fingerprint is another
    /// study's and is not taken (`outputs::winners::recorded_winner`).
    pub fn definition(&self) -> String {
        let runs = serde_yaml::to_string(&self.runs).expect("a plan serialises");
        let proposals = self.proposals.as_ref().map(Proposals::fingerprint);
        let text = format!(
            "{runs}\npinned: {:?}\nhalving: {:?}",
            self.pinned_winner, self.halving
        );
        // A TPE stage's runs are those drawn when its winner is settled: all of them.
        let text = match proposals {
            Some(proposals) => format!("{text}\nproposals: {proposals}"),
            None => text,
        };
        format!("{:x}", md5::compute(text))
    }
}

impl RunPlan {
    /// `stage/run`: which run this is, wherever it is named.
    pub fn id(&self) -> RunId {
        RunId {
            stage: self.stage.clone(),
            run: self.name.clone(),
        }
    }

    /// The configuration the run trains: its name, less the seed suffix of a repeat.
    pub fn configuration(&self) -> &str {
        self.repeat_of.as_deref().unwrap_or(&self.name)
    }

    /// Whether `name` (a run's, or a repeated configuration's) names this run.
    fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.repeat_of.as_deref() == Some(name)
    }

    /// Every model and training setting as (column, value), for tidy CSV tables.
    pub fn hyperparameters(&self) -> Vec<(String, String)> {
        let model = serde_yaml::to_value(&self.model).expect("a model spec serialises");
        let training = serde_yaml::to_value(&self.training).expect("training serialises");
        [model, training]
            .iter()
            .filter_map(Value::as_mapping)
            .flatten()
            .map(|(key, value)| {
                let key = scalar_text(key);
                let column = if key == "kind" { "model".into() } else { key };
                (column, scalar_text(value))
            })
            .collect()
    }

    /// Whether training `other` would repeat this run: same model, training, data,
    /// transferred layers and revision, whatever the stage and run are called.
    pub fn same_settings(&self, other: &RunPlan) -> bool {
        fn identity(
            plan: &RunPlan,
        ) -> (&ModelSpec, &Training, &DatasetSpec, &Option<Transfer>, u32) {
            (
                &plan.model,
                &plan.training,
                &plan.dataset,
                &plan.transfer,
                plan.revision,
            )
        }
        identity(self) == identity(other)
    }
}

/// The stages named in `only` (all when empty), in manifest order.
pub fn select<'m>(manifest: &'m Manifest, only: &[String]) -> Result<Vec<&'m Stage>> {
    for name in only {
        if !manifest.stages.iter().any(|stage| &stage.name == name) {
            let known: Vec<&str> = manifest.stages.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "no stage named `{name}` in the manifest; its stages are: {}",
                known.join(", ")
            );
        }
    }
    Ok(manifest
        .stages
        .iter()
        .filter(|stage| only.is_empty() || only.contains(&stage.name))
        .collect())
}

/// Plans every stage of the manifest without training anything. A stage that starts
/// `from` another takes that stage's winner from `recorded` (given the source as
/// planned) when it has one, else, provisionally, its pinned run or its first one. Returns each stage's plan and whether
/// it is provisional, in manifest order.
pub fn plan_all(
    manifest: &Manifest,
    recorded: impl Fn(&StagePlan) -> Result<Option<RunPlan>>,
) -> Result<Vec<(StagePlan, bool)>> {
    let mut planned: HashMap<&str, (StagePlan, bool)> = HashMap::new();
    let mut order = Vec::new();
    for stage in &manifest.stages {
        let (start, provisional) = match &stage.from {
            None => (None, false),
            Some(source) => {
                let (plan, _) = &planned[source.as_str()];
                match recorded(plan)? {
                    Some(winner) => (Some(winner), false),
                    None => (Some(provisional_winner(plan).clone()), true),
                }
            }
        };
        let plan = plan_stage(manifest, stage, start.as_ref()).map_err(|error| {
            let place = value_error_key(&error).and_then(|key| manifest.place(&stage.name, key));
            match place {
                Some(place) => error.context(format!("stage `{}` ({place})", stage.name)),
                None => error.context(format!("stage `{}`", stage.name)),
            }
        })?;
        if let Some(ensemble) = &plan.ensemble {
            crate::study::ensemble::check_members(&stage.name, ensemble, |name| {
                planned.get(name).map_or(Vec::new(), |(plan, _)| {
                    plan.runs.iter().map(|run| run.name.as_str()).collect()
                })
            })?;
        }
        planned.insert(&stage.name, (plan, provisional));
        order.push(stage.name.as_str());
    }
    Ok(order
        .into_iter()
        .map(|name| planned.remove(name).expect("planned above"))
        .collect())
}

/// The manifest key of a model or training value that cannot be used, when `error`
/// is one, so the message can point at where it is written.
fn value_error_key(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|cause| {
        let model = cause.downcast_ref::<InvalidModel>().map(InvalidModel::key);
        model.or_else(|| {
            cause
                .downcast_ref::<InvalidTraining>()
                .map(InvalidTraining::key)
        })
    })
}

/// The run that stands in for a stage's winner before the stage has run: the pinned
/// one (the first seed of a pinned configuration), else the first.
pub fn provisional_winner(plan: &StagePlan) -> &RunPlan {
    plan.pinned_winner
        .as_ref()
        .and_then(|name| plan.runs.iter().find(|run| run.answers_to(name)))
        .unwrap_or(&plan.runs[0])
}

/// Plans one stage. `start` is the winner of the stage's `from` source, when it has one.
pub fn plan_stage(
    manifest: &Manifest,
    stage: &Stage,
    start: Option<&RunPlan>,
) -> Result<StagePlan> {
    if let Some(ensemble) = &stage.ensemble {
        return Ok(StagePlan {
            name: stage.name.clone(),
            runs: Vec::new(),
            pinned_winner: None,
            halving: None,
            ensemble: Some(ensemble.clone()),
            proposals: None,
        });
    }
    let (model, base_training, dataset) = match (&stage.model, start) {
        (Some(model), _) => (model, manifest.defaults.clone(), &manifest.dataset),
        (None, Some(winner)) => (
            &winner.model,
            TrainingOverrides::from(&winner.training),
            &winner.dataset,
        ),
        (None, None) => bail!(
            "stage `{}` starts from `{}`, whose winner is unknown",
            stage.name,
            stage.from.as_deref().unwrap_or_default()
        ),
    };
    let dataset = stage.dataset.as_ref().unwrap_or(dataset).clone();
    if !(dataset.train_fraction > 0.0 && dataset.train_fraction < 1.0) {
        bail!(
            "dataset train_fraction must be between 0 and 1, got {}",
            dataset.train_fraction
        );
    }
    let model = serde_yaml::to_value(model)?;
    let training = serde_yaml::to_value(&stage.training)?;
    let proposals = tpe_proposals(stage, &base_training, &model, &training, &dataset)?;
    let runs = match &proposals {
        Some(proposals) => vec![proposals.first()?],
        None => configurations(stage)?
            .into_iter()
            .map(|(name, cell)| {
                let (model, training) = apply(&cell, &model, &training);
                let run = resolve_run(stage, &base_training, model, training, &dataset, &name);
                run.and_then(|run| repeat(run, stage.repeats.unwrap_or(1)))
                    .with_context(|| format!("run `{name}`"))
            })
            .collect::<Result<Vec<_>>>()?
            .concat(),
    };
    if let Some(pinned) = &stage.winner {
        if !runs.iter().any(|run| run.answers_to(pinned)) {
            let mut names: Vec<&str> = runs.iter().map(RunPlan::configuration).collect();
            names.dedup();
            bail!(
                "the pinned winner `{pinned}` is not one of the stage's runs: {}",
                names.join(", ")
            );
        }
    }
    let count = proposals
        .as_ref()
        .map_or(runs.len(), |proposals| proposals.count);
    let halving = stage
        .halving
        .map(|halving| rungs(halving, &runs, count))
        .transpose()?;
    Ok(StagePlan {
        name: stage.name.clone(),
        runs,
        pinned_winner: stage.winner.clone(),
        halving,
        ensemble: None,
        proposals,
    })
}

/// A TPE stage's proposals (none for any other stage): its space and TPE's settings,
/// with what every run of the stage shares.
fn tpe_proposals(
    stage: &Stage,
    base_training: &TrainingOverrides,
    model: &Value,
    training: &Value,
    dataset: &DatasetSpec,
) -> Result<Option<Proposals>> {
    let Some(sample) = &stage.sample else {
        return Ok(None);
    };
    let space = sample.distributions(&GRID_KEYS, &stage.grid)?;
    Ok(sample
        .tpe(&space, stage.halving.is_some())?
        .map(|settings| Proposals {
            count: sample.count,
            seed: sample.seed,
            settings,
            space,
            template: RunTemplate {
                stage: stage.clone(),
                base_training: base_training.clone(),
                model: model.clone(),
                training: training.clone(),
                dataset: dataset.clone(),
            },
        }))
}

/// The rungs of a halving stage over `runs` (`count` of them, with TPE's not yet
/// proposed), which must be several with one budget.
fn rungs(halving: Halving, runs: &[RunPlan], count: usize) -> Result<Rungs> {
    if count < 2 {
        bail!(
            "`halving` needs several runs to choose among, and the stage has {count}: give \
             it a grid or a `sample`, or remove `halving`"
        );
    }
    let budget = runs[0].training.epochs;
    if runs.iter().any(|run| run.training.epochs != budget) {
        bail!(
            "under `halving` every run has the stage's `epochs` as its budget, which the \
             rungs divide: take `epochs` out of the grid and the sample"
        );
    }
    Ok(Rungs {
        epochs: halving.rungs(budget)?,
        halving,
    })
}

/// The stage's configurations, each named, with the settings it sets: the grid's cells
/// in the order written, each crossed with the sampled configurations when the stage
/// samples (named `<cell>,sample=<i>,<key>=<value>...`, values shortened in the name
/// only); one unnamed configuration (`run`) when the stage has neither.
fn configurations(stage: &Stage) -> Result<Vec<(String, Cell)>> {
    let sampled = match &stage.sample {
        Some(sample) => sample.draw(&sample.distributions(&GRID_KEYS, &stage.grid)?),
        None => vec![Vec::new()],
    };
    let mut configurations = Vec::new();
    for cell in grid_cells(&stage.grid)? {
        for (i, draw) in sampled.iter().enumerate() {
            let mut parts: Vec<String> = cell
                .iter()
                .map(|(key, value)| format!("{key}={}", scalar_text(value)))
                .collect();
            if stage.sample.is_some() {
                parts.push(format!("sample={}", i + 1));
                parts.extend(
                    draw.iter()
                        .map(|(key, value)| format!("{key}={}", short_text(value))),
                );
            }
            let name = if parts.is_empty() {
                "run".to_string()
            } else {
                parts.join(",")
            };
            configurations.push((name, [cell.clone(), draw.clone()].concat()));
        }
    }
    Ok(configurations)
}

/// The runs of one configuration: itself alone, or `repeats` runs with seeds counting
/// up from its own, each named after its seed so that its folder says which it is.
fn repeat(run: RunPlan, repeats: usize) -> Result<Vec<RunPlan>> {
    if repeats <= 1 {
        return Ok(vec![run]);
    }
    (0..repeats as u64)
        .map(|offset| {
            let seed = run.training.seed.checked_add(offset).ok_or_else(|| {
                anyhow!(
                    "seed {} plus {repeats} repeats passes the largest seed; choose a smaller seed",
                    run.training.seed
                )
            })?;
            let mut repeated = run.clone();
            repeated.training.seed = seed;
            repeated.name = format!("{}-seed{seed}", run.name);
            repeated.repeat_of = Some(run.name.clone());
            Ok(repeated)
        })
        .collect()
}

fn resolve_run(
    stage: &Stage,
    base_training: &TrainingOverrides,
    model: Value,
    training: Value,
    dataset: &DatasetSpec,
    name: &str,
) -> Result<RunPlan> {
    check_path_safe_name(name)?;
    let model: ModelSpec = serde_yaml::from_value(model)?;
    model.validate()?;
    let training: TrainingOverrides = serde_yaml::from_value(training)?;
    let training = training.over(base_training).resolve()?;
    Ok(RunPlan {
        stage: stage.name.clone(),
        name: name.to_string(),
        revision: model.revision().max(training.revision()),
        model,
        training,
        dataset: dataset.clone(),
        transfer: stage.transfer.clone(),
        repeat_of: None,
    })
}

/// The settings one configuration sets, as (key, value).
type Cell = Vec<(String, Value)>;

/// The cartesian product of the grid's value lists, in the order written; one empty
/// cell when there is no grid.
fn grid_cells(grid: &Mapping) -> Result<Vec<Cell>> {
    let mut cells = vec![Vec::new()];
    for (key, values) in grid {
        let key = key
            .as_str()
            .ok_or_else(|| anyhow!("grid keys must be setting names, got {key:?}"))?;
        let values = match values {
            Value::Sequence(values) if !values.is_empty() => values,
            _ => bail!("grid `{key}` must be a non-empty list of values"),
        };
        if let Some(bad) = values.iter().find(|v| v.is_mapping() || v.is_sequence()) {
            bail!("grid `{key}` values must be plain values, got {bad:?}");
        }
        // Runs are named by their values' text, so a repeat would train one run under
        // one name and silently count as one cell; 0.1 and 0.10 also read the same.
        let mut seen = HashSet::new();
        if let Some(repeat) = values
            .iter()
            .map(scalar_text)
            .find(|text| !seen.insert(text.clone()))
        {
            bail!(
                "grid `{key}` lists the value `{repeat}` more than once: each value makes one \
                 run, so remove the repeat"
            );
        }
        cells = cells
            .into_iter()
            .flat_map(|cell| {
                values.iter().map(move |value| {
                    let mut cell = cell.clone();
                    cell.push((key.to_string(), value.clone()));
                    cell
                })
            })
            .collect();
    }
    Ok(cells)
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .map(|text| text.trim_end().to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::manifest::{parse, OptimizerKind, TrainingOverrides, GRID_KEYS};

    /// Plans of the stages named in `only`, with no winner recorded anywhere.
    fn plan(manifest: &Manifest, only: &[String]) -> Result<Vec<StagePlan>> {
        let selected = select(manifest, only)?;
        Ok(plan_all(manifest, |_| Ok(None))?
            .into_iter()
            .map(|(plan, _)| plan)
            .filter(|plan| selected.iter().any(|stage| stage.name == plan.name))
            .collect())
    }

    const STUDY: &str = "
dataset: {name: bloodmnist}
defaults: {epochs: 5, seed: 7}
stages:
  - name: grid
    model: {kind: cnn, kernels: 8, kernel_size: 3}
    grid: {kernels: [8, 16], kernel_size: [3, 5, 7]}
  - name: optimizer
    model: {kind: mlp, hidden: 64, dropout: 0.25}
    training: {epochs: 2}
    grid: {optimizer: [sgd, adam]}
";

    #[test]
    fn a_grid_expands_to_its_cartesian_product_in_written_order() {
        let plans = plan(&parse(STUDY).unwrap(), &[]).unwrap();
        let names: Vec<&str> = plans[0].runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kernels=8,kernel_size=3",
                "kernels=8,kernel_size=5",
                "kernels=8,kernel_size=7",
                "kernels=16,kernel_size=3",
                "kernels=16,kernel_size=5",
                "kernels=16,kernel_size=7",
            ]
        );
        assert_eq!(
            plans[0].runs[3].model,
            ModelSpec::Cnn {
                kernels: 16,
                kernel_size: 3,
                pool: crate::models::Pool::Max
            }
        );
    }

    #[test]
    fn training_keys_in_a_grid_set_training_and_keep_defaults() {
        let plans = plan(&parse(STUDY).unwrap(), &["optimizer".into()]).unwrap();
        assert_eq!(plans.len(), 1);
        let adam = &plans[0].runs[1];
        assert_eq!(adam.training.optimizer, OptimizerKind::Adam);
        assert_eq!(adam.training.learning_rate, 0.001);
        assert_eq!((adam.training.epochs, adam.training.seed), (2, 7));
    }

    #[test]
    fn hyperparameters_list_model_and_training_settings() {
        let plans = plan(&parse(STUDY).unwrap(), &["optimizer".into()]).unwrap();
        let columns = plans[0].runs[0].hyperparameters();
        let get = |name: &str| columns.iter().find(|(c, _)| c == name).unwrap().1.clone();
        assert_eq!(get("model"), "mlp");
        assert_eq!(get("dropout"), "0.25");
        assert_eq!(get("optimizer"), "sgd");
        assert_eq!(get("batch_size"), "32");
    }

    #[test]
    fn training_keys_cover_every_training_setting() {
        let full: TrainingOverrides = serde_yaml::from_str(
            "{epochs: 3, learning_rate: 0.5, patience: 3, optimizer: rmsprop, rho: 0.8,
              epsilon: 0.01, weight_decay: 0.1, crop_padding: 4, rotate: 15,
              color_jitter: 0.1, label_smoothing: 0.1, mixup: 0.2, cutmix: 1.0,
              warmup_epochs: 2, ema: 0.99}",
        )
        .unwrap();
        let full = TrainingOverrides {
            // Settings of other optimizers, only to name every key.
            beta_1: Some(0.8),
            beta_2: Some(0.9),
            ..TrainingOverrides::from(&full.resolve().unwrap())
        };
        let value = serde_yaml::to_value(full).unwrap();
        let keys: Vec<&str> = value
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys, TRAINING_KEYS);
    }

    #[test]
    fn grid_keys_are_every_model_setting_then_every_training_setting() {
        let models = [
            ModelSpec::Mlp {
                hidden: 1,
                activation: crate::models::Activation::Relu,
                dropout: 0.0,
            },
            serde_yaml::from_str("{kind: cnn, kernels: 1, kernel_size: 1}").unwrap(),
            serde_yaml::from_str("kind: dense_cnn").unwrap(),
            ModelSpec::Resnet18 {},
            ModelSpec::Resnet9 { width: 64 },
        ];
        let mut model_keys: Vec<String> = Vec::new();
        for model in models {
            let value = serde_yaml::to_value(model).unwrap();
            for key in value.as_mapping().unwrap().keys().filter_map(Value::as_str) {
                if !model_keys.iter().any(|known| known == key) {
                    model_keys.push(key.to_string());
                }
            }
        }
        let (model_part, training_part) = GRID_KEYS.split_at(model_keys.len());
        assert_eq!(model_part, model_keys);
        assert_eq!(training_part, TRAINING_KEYS);
    }

    #[test]
    fn a_runs_revision_is_the_latest_change_to_what_it_computes() {
        let manifest = parse(
            "dataset: {name: bloodmnist}
defaults: {epochs: 1}
stages:
  - name: mlp
    model: {kind: mlp, hidden: 8}
    grid: {dropout: [0.0, 0.5]}
  - name: deep
    model: {kind: dense_cnn}
    grid: {momentum: [0.0, 0.9]}
  - name: cnn
    model: {kind: cnn, kernels: 2, kernel_size: 3}
    grid: {optimizer: [sgd, adam], augment: [false, true]}
",
        )
        .unwrap();
        let revisions: Vec<u32> = plan(&manifest, &[])
            .unwrap()
            .iter()
            .flat_map(|stage| stage.runs.iter().map(|run| run.revision))
            .collect();
        // Plain SGD keeps what it computed (1, or 2 for BatchNorm models); own
        // optimizers, augmentation and dropout draws are revision 3.
        assert_eq!(revisions, [1, 3, 2, 3, 1, 3, 3, 3]);
    }

    #[test]
    fn bad_grids_and_unknown_stages_are_explained() {
        let manifest = parse(STUDY).unwrap();
        let unknown = plan(&manifest, &["nope".into()]).unwrap_err().to_string();
        assert!(
            unknown.contains("nope") && unknown.contains("grid, optimizer"),
            "{unknown}"
        );

        for (grid, expected) in [
            ("{hidden: [3]}", "unknown field `hidden`"),
            ("{kernels: []}", "non-empty list"),
            ("{kernel_size: [4]}", "odd"),
            ("{epochs: [0]}", "epochs"),
            (
                "{kernels: [8, 16, 8]}",
                "grid `kernels` lists the value `8` more than once",
            ),
        ] {
            let text = STUDY.replace("{kernels: [8, 16], kernel_size: [3, 5, 7]}", grid);
            let error = format!("{:#}", plan(&parse(&text).unwrap(), &[]).unwrap_err());
            assert!(
                error.contains(expected) && error.contains("stage `grid`"),
                "{error}"
            );
        }
    }
}

#[cfg(test)]
mod repeat_tests {
    use super::*;
    use crate::study::manifest::parse;

    #[test]
    fn a_repeated_grid_value_is_refused_with_its_key_and_value() {
        for (grid, repeat) in [
            ("{dropout: [0.1, 0.1]}", "`0.1`"),
            // Different spellings of one number would name the same run folder.
            ("{dropout: [0.1, 0.10]}", "`0.1`"),
            ("{activation: [relu, sigmoid, relu]}", "`relu`"),
        ] {
            let text = format!(
                "dataset: {{name: bloodmnist}}\ndefaults: {{epochs: 1}}\nstages:\n  - name: mlp\n    \
                 model: {{kind: mlp, hidden: 8}}\n    grid: {grid}\n"
            );
            let error = format!(
                "{:#}",
                plan_all(&parse(&text).unwrap(), |_| Ok(None)).unwrap_err()
            );
            assert!(
                error.contains("stage `mlp`")
                    && error.contains(repeat)
                    && error.contains("more than once"),
                "{error}"
            );
        }
    }
}

#[cfg(test)]
mod stepwise_tests {
    use super::*;
    use crate::models::Activation;
    use crate::study::manifest::parse;

    const STEPWISE: &str = "
dataset: {name: bloodmnist}
defaults: {epochs: 5}
stages:
  - name: hidden
    model: {kind: mlp, hidden: 16}
    grid: {hidden: [16, 32]}
  - name: activation
    from: hidden
    grid: {activation: [relu, sigmoid]}
  - name: longer
    from: activation
    training: {epochs: 9}
";

    #[test]
    fn a_stage_started_from_a_winner_trains_with_the_winners_values() {
        let manifest = parse(STEPWISE).unwrap();
        let plans = plan_all(&manifest, |_| Ok(None)).unwrap();
        let mut winner = plans[0].0.runs[1].clone();
        winner.training.learning_rate = 0.5;
        let recorded = |stage: &StagePlan| Ok((stage.name == "hidden").then(|| winner.clone()));
        let plans = plan_all(&manifest, recorded).unwrap();
        let (activation, provisional) = &plans[1];
        assert!(!provisional);
        for (run, expected) in activation
            .runs
            .iter()
            .zip([Activation::Relu, Activation::Sigmoid])
        {
            assert_eq!(
                run.model,
                ModelSpec::Mlp {
                    hidden: 32,
                    activation: expected,
                    dropout: 0.0
                }
            );
            assert_eq!(
                run.training.learning_rate, 0.5,
                "the winner's training carries over"
            );
        }
        let (longer, provisional) = &plans[2];
        assert!(provisional, "activation has no recorded winner yet");
        assert_eq!(longer.runs.len(), 1);
        assert_eq!(longer.runs[0].training.epochs, 9);
    }

    #[test]
    fn switching_the_optimizer_of_a_winner_takes_the_new_default_rate() {
        let text = STEPWISE.replace(
            "grid: {activation: [relu, sigmoid]}",
            "grid: {optimizer: [sgd, adam]}",
        );
        let plans = plan_all(&parse(&text).unwrap(), |_| Ok(None)).unwrap();
        let rates: Vec<f64> = plans[1]
            .0
            .runs
            .iter()
            .map(|run| run.training.learning_rate)
            .collect();
        assert_eq!(rates, [0.01, 0.001]);
    }

    #[test]
    fn repeats_train_each_configuration_with_consecutive_seeds() {
        let text = STEPWISE.replace(
            "grid: {hidden: [16, 32]}",
            "grid: {hidden: [16, 32]}\n    training: {seed: 7}\n    repeats: 3\n    winner: hidden=32",
        );
        let plans = plan_all(&parse(&text).unwrap(), |_| Ok(None)).unwrap();
        let hidden = &plans[0].0;
        let runs: Vec<(&str, &str, u64)> = hidden
            .runs
            .iter()
            .map(|run| (run.name.as_str(), run.configuration(), run.training.seed))
            .collect();
        assert_eq!(
            runs,
            [
                ("hidden=16-seed7", "hidden=16", 7),
                ("hidden=16-seed8", "hidden=16", 8),
                ("hidden=16-seed9", "hidden=16", 9),
                ("hidden=32-seed7", "hidden=32", 7),
                ("hidden=32-seed8", "hidden=32", 8),
                ("hidden=32-seed9", "hidden=32", 9),
            ]
        );
        // A pinned configuration stands in by its first seed; the next stage, which does
        // not repeat, starts from it under plain names.
        assert_eq!(provisional_winner(hidden).name, "hidden=32-seed7");
        let activation = &plans[1].0;
        assert_eq!(activation.runs[0].name, "activation=relu");
        assert_eq!(activation.runs[0].training.seed, 7);
        assert_eq!(activation.runs[0].repeat_of, None);

        // One repeat is no repeat: names and plans stay those of a stage without it.
        let once = STEPWISE.replace(
            "grid: {hidden: [16, 32]}",
            "grid: {hidden: [16, 32]}\n    repeats: 1",
        );
        let once = plan_all(&parse(&once).unwrap(), |_| Ok(None)).unwrap();
        let plain = plan_all(&parse(STEPWISE).unwrap(), |_| Ok(None)).unwrap();
        assert_eq!(once[0].0.runs, plain[0].0.runs);
    }

    #[test]
    fn a_pinned_winner_must_be_one_of_the_runs() {
        let text = STEPWISE.replace(
            "grid: {hidden: [16, 32]}",
            "grid: {hidden: [16, 32]}\n    winner: hidden=64",
        );
        let error = format!(
            "{:#}",
            plan_all(&parse(&text).unwrap(), |_| Ok(None)).unwrap_err()
        );
        assert!(
            error.contains("hidden=64") && error.contains("hidden=16, hidden=32"),
            "{error}"
        );
    }

    #[test]
    fn from_must_name_an_earlier_stage() {
        let text = STEPWISE.replace("from: hidden", "from: longer");
        let error = format!("{:#}", parse(&text).unwrap_err());
        assert!(error.contains("not an earlier stage"), "{error}");
    }

    #[test]
    fn same_settings_ignore_names() {
        let manifest = parse(STEPWISE).unwrap();
        let plans = plan_all(&manifest, |_| Ok(None)).unwrap();
        // activation=relu of the provisional winner hidden=16 repeats hidden=16.
        let repeat = &plans[1].0.runs[0];
        assert!(repeat.same_settings(&plans[0].0.runs[0]));
        assert!(!repeat.same_settings(&plans[0].0.runs[1]));
    }
}

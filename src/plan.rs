//! Turns a manifest into the list of runs to train: stage settings over defaults,
//! grids expanded into one run per cell.

use crate::manifest::{check_path_safe_name, DatasetSpec, Manifest, Stage, Training};
use crate::models::ModelSpec;
use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};

/// Grid keys that set training rather than the model.
const TRAINING_KEYS: [&str; 6] = [
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "monitor",
    "seed",
];

/// Everything needed to train one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    pub stage: String,
    pub name: String,
    pub model: ModelSpec,
    pub training: Training,
    pub dataset: DatasetSpec,
}

#[derive(Debug, Clone)]
pub struct StagePlan {
    pub name: String,
    pub runs: Vec<RunPlan>,
}

impl RunPlan {
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
}

/// Plans the stages named in `only` (all when empty), in manifest order.
pub fn plan(manifest: &Manifest, only: &[String]) -> Result<Vec<StagePlan>> {
    for name in only {
        if !manifest.stages.iter().any(|stage| &stage.name == name) {
            let known: Vec<&str> = manifest.stages.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "no stage named `{name}` in the manifest; its stages are: {}",
                known.join(", ")
            );
        }
    }
    manifest
        .stages
        .iter()
        .filter(|stage| only.is_empty() || only.contains(&stage.name))
        .map(|stage| {
            let runs =
                plan_stage(manifest, stage).with_context(|| format!("stage `{}`", stage.name))?;
            Ok(StagePlan {
                name: stage.name.clone(),
                runs,
            })
        })
        .collect()
}

fn plan_stage(manifest: &Manifest, stage: &Stage) -> Result<Vec<RunPlan>> {
    let dataset = stage.dataset.as_ref().unwrap_or(&manifest.dataset).clone();
    if !(dataset.train_fraction > 0.0 && dataset.train_fraction < 1.0) {
        bail!(
            "dataset train_fraction must be between 0 and 1, got {}",
            dataset.train_fraction
        );
    }
    let model = serde_yaml::to_value(&stage.model)?;
    let training = serde_yaml::to_value(&stage.training)?;
    grid_cells(&stage.grid)?
        .into_iter()
        .map(|cell| {
            let name = if cell.is_empty() {
                "run".to_string()
            } else {
                cell.iter()
                    .map(|(key, value)| format!("{key}={}", scalar_text(value)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let (mut model, mut training) = (model.clone(), training.clone());
            for (key, value) in &cell {
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
            let run = resolve_run(stage, &manifest.defaults, model, training, &dataset, &name);
            run.with_context(|| format!("run `{name}`"))
        })
        .collect()
}

fn resolve_run(
    stage: &Stage,
    defaults: &crate::manifest::TrainingOverrides,
    model: Value,
    training: Value,
    dataset: &DatasetSpec,
    name: &str,
) -> Result<RunPlan> {
    check_path_safe_name(name)?;
    let model: ModelSpec = serde_yaml::from_value(model)?;
    model.validate().map_err(|message| anyhow!(message))?;
    let training: crate::manifest::TrainingOverrides = serde_yaml::from_value(training)?;
    let training = training
        .over(defaults)
        .resolve()
        .map_err(|message| anyhow!(message))?;
    Ok(RunPlan {
        stage: stage.name.clone(),
        name: name.to_string(),
        model,
        training,
        dataset: dataset.clone(),
    })
}

/// The cartesian product of the grid's value lists, in the order written; one empty
/// cell when there is no grid.
fn grid_cells(grid: &Mapping) -> Result<Vec<Vec<(String, Value)>>> {
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
        other => serde_yaml::to_string(other)
            .map(|text| text.trim_end().to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse, Optimizer, TrainingOverrides};

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
        assert_eq!(adam.training.optimizer, Optimizer::Adam);
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
        let full = TrainingOverrides {
            epochs: Some(1),
            batch_size: Some(1),
            optimizer: Some(Optimizer::Sgd),
            learning_rate: Some(1.0),
            monitor: Some(crate::manifest::Monitor::ValLoss),
            seed: Some(1),
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
    fn bad_grids_and_unknown_stages_are_explained() {
        let manifest = parse(STUDY).unwrap();
        let unknown = plan(&manifest, &["nope".into()]).unwrap_err().to_string();
        assert!(
            unknown.contains("nope") && unknown.contains("grid, optimizer"),
            "{unknown}"
        );

        for (grid, expected) in [
            ("{kernel: [3]}", "unknown field `kernel`"),
            ("{kernels: []}", "non-empty list"),
            ("{kernel_size: [4]}", "odd"),
            ("{epochs: [0]}", "epochs"),
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

//! The YAML manifest, deserialised into typed structs. Unknown keys and wrong types
//! are errors that name the file, line and column.

use crate::models::ModelSpec;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub defaults: TrainingOverrides,
    pub stages: Vec<Stage>,
}

/// Which MedMNIST file a stage trains on, and how its train split is held out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// MedMNIST name, e.g. `bloodmnist`; a folder data set defaults to its folder's name.
    #[serde(default)]
    pub name: String,
    /// Image side in pixels: 28 reads `<name>.npz`, any other `<name>_<size>.npz`.
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// Leading share of the official train split that trains; the rest validates.
    #[serde(default = "default_train_fraction")]
    pub train_fraction: f64,
    /// Images in one subfolder per class instead of a MedMNIST file (`image_folder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<std::path::PathBuf>,
    /// How a `folder` without train/ and test/ subfolders is split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<crate::image_folder::FolderSplit>,
}

fn default_image_size() -> u32 {
    28
}

fn default_train_fraction() -> f64 {
    0.7
}

impl DatasetSpec {
    pub fn file_name(&self) -> String {
        match self.image_size {
            28 => format!("{}.npz", self.name),
            size => format!("{}_{size}.npz", self.name),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// The model; a stage that starts `from` another takes that stage's winner's.
    pub model: Option<ModelSpec>,
    /// An earlier stage whose winning run (model and training) this stage starts from.
    pub from: Option<String>,
    #[serde(default)]
    pub training: TrainingOverrides,
    /// Lists of values per model or training key; one run per cell of their product.
    #[serde(default)]
    pub grid: serde_yaml::Mapping,
    /// Replaces the manifest's `dataset` (or the `from` winner's) for this stage.
    pub dataset: Option<DatasetSpec>,
    /// Pins this stage's winner to the named run instead of the best val accuracy.
    pub winner: Option<String>,
    /// Starts layers from another stage's winning checkpoint.
    pub transfer: Option<Transfer>,
    /// What `cellnets report` shows for this stage; training ignores it.
    #[serde(default)]
    pub report: StageReport,
}

/// How `cellnets report` presents a stage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageReport {
    /// The study's model this stage reproduces (a key of `models` in src/study.yaml):
    /// its choices and grid are shown beside this stage's, and beside the last stage
    /// naming it, its test results.
    pub study: Option<String>,
    /// Error-analysis figures for this many of the winner's most confident test mistakes.
    #[serde(default)]
    pub mistakes: usize,
}

/// More pictures than anyone reads; a typo like 5000 fails here instead.
const MAX_MISTAKES: usize = 100;

/// Layers copied from the best checkpoint of another stage's winning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The stage whose winner's `best.safetensors` supplies the weights.
    pub from: String,
    /// VarStore path prefixes to copy, e.g. `[conv]`.
    pub layers: Vec<String>,
    /// Keeps the copied layers fixed while the rest trains.
    #[serde(default = "default_true")]
    pub freeze: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    Sgd,
    Adam,
}

impl Optimizer {
    /// The rate Keras gives the optimizer when none is set: SGD 0.01, Adam 0.001.
    pub fn keras_learning_rate(self) -> f64 {
        match self {
            Optimizer::Sgd => 0.01,
            Optimizer::Adam => 0.001,
        }
    }
}

/// How the learning rate moves over the epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Half a cosine from the initial rate down to zero at the last epoch.
    Cosine,
    /// Multiplied by `gamma` every `step_size` epochs.
    Step,
}

/// The validation metric whose best epoch is checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValAccuracy,
}

/// Training settings as written in `defaults` or a stage: any may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Optimizer>,
    /// Defaults to Keras' rate for the optimizer: SGD 0.01, Adam 0.001.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// SGD momentum (the study: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// L2 penalty added to the gradient by the optimizer (the study: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Epochs between learning-rate steps, for `schedule: step`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_size: Option<usize>,
    /// Factor of each learning-rate step, for `schedule: step`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Stops a run after this many epochs without a better `monitor` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Random flips and 90-degree rotations of training batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<bool>,
}

/// Fully resolved training settings of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub learning_rate: f64,
    pub monitor: Monitor,
    pub seed: u64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub step_size: usize,
    pub gamma: f64,
    pub patience: Option<usize>,
    pub augment: bool,
}

impl Training {
    /// Whether the optimizer keeps no state between steps (plain SGD), so that the
    /// weights alone let an interrupted run continue exactly. tch does not expose the
    /// state of libtorch's momentum and Adam buffers.
    pub fn stateless_optimizer(&self) -> bool {
        self.optimizer == Optimizer::Sgd && self.momentum == 0.0
    }
}

impl TrainingOverrides {
    /// `self` where set, else `base`.
    pub fn over(&self, base: &TrainingOverrides) -> TrainingOverrides {
        TrainingOverrides {
            epochs: self.epochs.or(base.epochs),
            batch_size: self.batch_size.or(base.batch_size),
            optimizer: self.optimizer.or(base.optimizer),
            learning_rate: self.learning_rate.or(base.learning_rate),
            monitor: self.monitor.or(base.monitor),
            seed: self.seed.or(base.seed),
            momentum: self.momentum.or(base.momentum),
            weight_decay: self.weight_decay.or(base.weight_decay),
            schedule: self.schedule.or(base.schedule),
            step_size: self.step_size.or(base.step_size),
            gamma: self.gamma.or(base.gamma),
            patience: self.patience.or(base.patience),
            augment: self.augment.or(base.augment),
        }
    }

    /// Fills what is still unset with the study's Keras settings and checks the values.
    pub fn resolve(&self) -> Result<Training, String> {
        let optimizer = self.optimizer.unwrap_or(Optimizer::Sgd);
        let training = Training {
            epochs: self
                .epochs
                .ok_or("epochs is not set: give it in `defaults` or the stage's `training`")?,
            batch_size: self.batch_size.unwrap_or(32),
            optimizer,
            learning_rate: self
                .learning_rate
                .unwrap_or(optimizer.keras_learning_rate()),
            monitor: self.monitor.unwrap_or(Monitor::ValLoss),
            seed: self.seed.unwrap_or(0),
            momentum: self.momentum.unwrap_or(0.0),
            weight_decay: self.weight_decay.unwrap_or(0.0),
            schedule: self.schedule.unwrap_or(Schedule::Constant),
            step_size: self.step_size.unwrap_or(30),
            gamma: self.gamma.unwrap_or(0.1),
            patience: self.patience,
            augment: self.augment.unwrap_or(false),
        };
        if !(1..=1_000_000).contains(&training.epochs) {
            return Err(format!(
                "epochs must be between 1 and 1000000, got {}",
                training.epochs
            ));
        }
        if !(1..=1 << 20).contains(&training.batch_size) {
            return Err(format!(
                "batch_size must be between 1 and 1048576, got {}",
                training.batch_size
            ));
        }
        if !(training.learning_rate.is_finite() && training.learning_rate > 0.0) {
            return Err(format!(
                "learning_rate must be a positive number, got {}",
                training.learning_rate
            ));
        }
        let unit = |name: &str, value: f64| {
            if (0.0..1.0).contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} must be in [0, 1), got {value}"))
            }
        };
        unit("momentum", training.momentum)?;
        unit("weight_decay", training.weight_decay)?;
        if training.momentum > 0.0 && training.optimizer != Optimizer::Sgd {
            return Err("momentum applies to optimizer sgd only".into());
        }
        if training.step_size == 0 || !(training.gamma > 0.0 && training.gamma <= 1.0) {
            return Err("step_size must be at least 1 and gamma in (0, 1]".into());
        }
        if training.patience == Some(0) {
            return Err("patience must be at least 1 epoch".into());
        }
        Ok(training)
    }
}

/// A run's settings as the base of a later stage. A learning rate that is the
/// optimizer's default stays a default, so a stage that switches the optimizer gets the
/// new optimizer's default rate.
impl From<&Training> for TrainingOverrides {
    fn from(training: &Training) -> Self {
        let default_rate = training.learning_rate == training.optimizer.keras_learning_rate();
        TrainingOverrides {
            epochs: Some(training.epochs),
            batch_size: Some(training.batch_size),
            optimizer: Some(training.optimizer),
            learning_rate: (!default_rate).then_some(training.learning_rate),
            monitor: Some(training.monitor),
            seed: Some(training.seed),
            momentum: Some(training.momentum),
            weight_decay: Some(training.weight_decay),
            schedule: Some(training.schedule),
            step_size: Some(training.step_size),
            gamma: Some(training.gamma),
            patience: training.patience,
            augment: Some(training.augment),
        }
    }
}

/// Reads and checks a manifest. Every error names the file.
pub fn load(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the manifest {}: give the path of an experiments YAML file",
            path.display()
        )
    })?;
    parse(&text).with_context(|| format!("invalid manifest {}", path.display()))
}

pub fn parse(text: &str) -> Result<Manifest> {
    let mut manifest: Manifest = serde_yaml::from_str(text)?;
    if manifest.stages.is_empty() {
        bail!("`stages` is empty: add at least one stage");
    }
    let stage_datasets = manifest
        .stages
        .iter_mut()
        .filter_map(|s| s.dataset.as_mut());
    for dataset in std::iter::once(&mut manifest.dataset).chain(stage_datasets) {
        crate::image_folder::complete(dataset).context("bad dataset")?;
    }
    let datasets = std::iter::once(&manifest.dataset).chain(
        manifest
            .stages
            .iter()
            .filter_map(|stage| stage.dataset.as_ref()),
    );
    for dataset in datasets {
        check_path_safe_name(&dataset.name).context("bad dataset name")?;
    }
    let mut seen = HashSet::new();
    for stage in &manifest.stages {
        check_path_safe_name(&stage.name).context("bad stage name")?;
        let earlier = |name: &str, role: &str| {
            if seen.contains(name) {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "stage `{}` {role} `{name}`, which is not an earlier stage of the manifest",
                    stage.name
                ))
            }
        };
        match (&stage.model, &stage.from) {
            (Some(_), Some(_)) => bail!(
                "stage `{}` has both `model` and `from`: a stage starting from another takes its \
                 winner's model; vary it with `grid`",
                stage.name
            ),
            (None, None) => bail!("stage `{}` needs a `model` or a `from` stage", stage.name),
            (None, Some(from)) => earlier(from, "starts from")?,
            (Some(_), None) => {}
        }
        if let Some(transfer) = &stage.transfer {
            earlier(&transfer.from, "transfers layers from")?;
            if transfer.layers.is_empty() {
                bail!("stage `{}`: `transfer.layers` is empty", stage.name);
            }
        }
        if let Some(key) = &stage.report.study {
            let models = &crate::study::study().models;
            if !models.contains_key(key) {
                let known: Vec<&str> = models.keys().map(String::as_str).collect();
                bail!(
                    "stage `{}`: `report.study: {key}` is not a model of the study; use one of {}",
                    stage.name,
                    known.join(", ")
                );
            }
        }
        if stage.report.mistakes > MAX_MISTAKES {
            bail!(
                "stage `{}`: `report.mistakes: {}` is more than {MAX_MISTAKES} pictures",
                stage.name,
                stage.report.mistakes
            );
        }
        if !seen.insert(stage.name.as_str()) {
            bail!(
                "two stages are named `{}`: stage names must be unique",
                stage.name
            );
        }
    }
    Ok(manifest)
}

/// Stage and run names become folders under out/: only plain names may pass.
pub fn check_path_safe_name(name: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '=' | ',');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(plain) {
        bail!(
            "`{name}` cannot be used as a folder name: use letters, digits and `_-.=,`, \
             not starting with `.`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
dataset: {name: bloodmnist}
defaults: {epochs: 2}
stages:
  - name: mlp
    model: {kind: mlp, hidden: 16}
";

    #[test]
    fn a_minimal_manifest_gets_the_study_defaults() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.dataset.file_name(), "bloodmnist.npz");
        assert_eq!(manifest.dataset.train_fraction, 0.7);
        let training = manifest.stages[0]
            .training
            .over(&manifest.defaults)
            .resolve()
            .unwrap();
        assert_eq!(training.batch_size, 32);
        assert_eq!(training.optimizer, Optimizer::Sgd);
        assert_eq!(training.learning_rate, 0.01);
        assert_eq!(training.monitor, Monitor::ValLoss);
    }

    #[test]
    fn epochs_must_be_given() {
        let message = TrainingOverrides::default().resolve().unwrap_err();
        assert!(message.contains("epochs"), "{message}");
    }

    #[test]
    fn adam_defaults_to_keras_learning_rate() {
        let adam = TrainingOverrides {
            epochs: Some(1),
            optimizer: Some(Optimizer::Adam),
            ..Default::default()
        };
        assert_eq!(adam.resolve().unwrap().learning_rate, 0.001);
    }

    #[test]
    fn stage_settings_override_defaults() {
        let stage = TrainingOverrides {
            epochs: Some(3),
            ..Default::default()
        };
        let defaults = TrainingOverrides {
            epochs: Some(500),
            batch_size: Some(64),
            ..Default::default()
        };
        let merged = stage.over(&defaults).resolve().unwrap();
        assert_eq!((merged.epochs, merged.batch_size), (3, 64));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_line_and_column() {
        let unknown = parse(&MINIMAL.replace("hidden: 16", "hiden: 16")).unwrap_err();
        let message = format!("{unknown:#}");
        // An internally tagged enum is buffered: serde_yaml points at its stage entry.
        assert!(
            message.contains("hiden") && message.contains("line 5"),
            "{message}"
        );
        let wrong_type = parse(&format!("{MINIMAL}    training: {{epochs: many}}\n")).unwrap_err();
        let message = format!("{wrong_type:#}");
        assert!(message.contains("line 7"), "{message}");
    }

    #[test]
    fn unsafe_or_duplicate_stage_names_are_rejected() {
        for name in ["../escape", "a/b", "", ".hidden", "/abs"] {
            let text = MINIMAL.replace("name: mlp", &format!("name: '{name}'"));
            assert!(parse(&text).is_err(), "{name:?} was accepted");
        }
        let twice = format!("{MINIMAL}  - name: mlp\n    model: {{kind: mlp, hidden: 8}}\n");
        assert!(format!("{:#}", parse(&twice).unwrap_err()).contains("unique"));
    }
}

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
    /// MedMNIST name, e.g. `bloodmnist`.
    pub name: String,
    /// Image side in pixels: 28 reads `<name>.npz`, any other `<name>_<size>.npz`.
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// Leading share of the official train split that trains; the rest validates.
    #[serde(default = "default_train_fraction")]
    pub train_fraction: f64,
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
    pub model: ModelSpec,
    #[serde(default)]
    pub training: TrainingOverrides,
    /// Lists of values per model or training key; one run per cell of their product.
    #[serde(default)]
    pub grid: serde_yaml::Mapping,
    /// Replaces the manifest's `dataset` for this stage.
    pub dataset: Option<DatasetSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    Sgd,
    Adam,
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
}

/// Fully resolved training settings of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Training {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub learning_rate: f64,
    pub monitor: Monitor,
    pub seed: u64,
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
            learning_rate: self.learning_rate.unwrap_or(match optimizer {
                Optimizer::Sgd => 0.01,
                Optimizer::Adam => 0.001,
            }),
            monitor: self.monitor.unwrap_or(Monitor::ValLoss),
            seed: self.seed.unwrap_or(0),
        };
        if training.epochs == 0 {
            return Err("epochs must be at least 1".into());
        }
        if training.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if !(training.learning_rate.is_finite() && training.learning_rate > 0.0) {
            return Err(format!(
                "learning_rate must be a positive number, got {}",
                training.learning_rate
            ));
        }
        Ok(training)
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
    let manifest: Manifest = serde_yaml::from_str(text)?;
    if manifest.stages.is_empty() {
        bail!("`stages` is empty: add at least one stage");
    }
    let mut seen = HashSet::new();
    for stage in &manifest.stages {
        check_path_safe_name(&stage.name).context("bad stage name")?;
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

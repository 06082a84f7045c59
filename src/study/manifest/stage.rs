//! What a manifest says, as typed structs: the data set, the stages and how the report
//! shows them. Training settings are in `training.rs`; the checks that need more than
//! one value at a time are in `checks.rs`.

use super::training::TrainingOverrides;
use super::yaml::grid_of_known_keys;
use crate::models::ModelSpec;
use crate::study::ensemble::Ensemble;
use crate::study::search::{Halving, Sample};
use crate::study::task::Task;
use serde::{Deserialize, Serialize};
use serde_yaml::Mapping;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub defaults: TrainingOverrides,
    pub stages: Vec<Stage>,
    /// The folder this manifest's outputs go to when no `--out` is given (relative to
    /// the working directory, as `--out` is); `out` by default. Two manifests whose
    /// stages share names keep apart by each having its own.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Write every run's scalars and hyperparameters as TensorBoard event files too,
    /// as `--tensorboard` does.
    #[serde(default)]
    pub tensorboard: bool,
    /// The file it was read from (`load`), for the commands messages suggest.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Manifest {
    /// `FILE, line L column C` of `key` in stage `stage` (or in `defaults`), when the
    /// manifest was read from a file that still says so: for errors found after parsing.
    pub fn place(&self, stage: &str, key: &str) -> Option<String> {
        let path = self.source.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        let entry = self.stages.iter().find(|entry| entry.name == stage)?;
        let varies = |keys: &Mapping| keys.contains_key(key);
        let within = if varies(&entry.grid) {
            Some("grid")
        } else if entry
            .sample
            .as_ref()
            .is_some_and(|sample| varies(&sample.space))
        {
            Some("space")
        } else {
            None
        };
        let (line, column) = super::yaml::locate(&text, stage, key, within)?;
        Some(format!("{}, line {line} column {column}", path.display()))
    }

    /// Where its outputs go: `--out` when given, else its own `out`, else `out`.
    pub fn out_dir(&self, given: Option<&Path>) -> PathBuf {
        given
            .map(Path::to_path_buf)
            .or_else(|| self.out.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT))
    }
}

/// The output folder of a manifest without `out`, and of commands given no manifest.
pub const DEFAULT_OUT: &str = "out";

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
    pub split: Option<FolderSplit>,
    /// Which images validate: the study's holdout of the train split, or the file's
    /// official val split (as the MedMNIST benchmark ran).
    #[serde(default, skip_serializing_if = "Validation::is_holdout")]
    pub validation: Validation,
    /// What the labels ask for, where the file does not say: a MedMNIST set's own task,
    /// else multi-label for several label columns, binary-class for two classes,
    /// multi-class for more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// Which images a run validates on (and picks its best epoch by).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// The trailing share of the official train split (`train_fraction` trains).
    #[default]
    Holdout,
    /// The file's val split; the whole train split trains.
    Official,
}

impl Validation {
    fn is_holdout(&self) -> bool {
        *self == Validation::Holdout
    }
}

/// How a folder without `train/` and `test/` subfolders is split: per class, these
/// shares of its images (in a seeded random order) go to the val and test splits, and
/// the rest trains. `train/` without `val/` gives `val` of each class to the val split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSplit {
    #[serde(default = "default_val")]
    pub val: f64,
    #[serde(default = "default_test")]
    pub test: f64,
    #[serde(default)]
    pub seed: u64,
}

fn default_val() -> f64 {
    0.1
}

fn default_test() -> f64 {
    0.2
}

impl Default for FolderSplit {
    fn default() -> Self {
        FolderSplit {
            val: default_val(),
            test: default_test(),
            seed: 0,
        }
    }
}

fn default_image_size() -> u32 {
    28
}

pub(super) fn default_train_fraction() -> f64 {
    0.7
}

impl DatasetSpec {
    /// The task the manifest or the MedMNIST collection gives this data set, else
    /// multi-class; a file's label columns can say more when it is read (`data::load`).
    pub fn known_task(&self) -> Task {
        self.task
            .or_else(|| self.collection_set().map(|set| set.task))
            .unwrap_or(Task::MultiClass)
    }

    /// The MedMNIST set this data set is, by name; a folder data set is the user's own.
    pub fn collection_set(&self) -> Option<&'static crate::study::catalog::MedMnistSet> {
        crate::study::catalog::set(&self.name).filter(|_| self.folder.is_none())
    }

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
    #[serde(default, deserialize_with = "grid_of_known_keys")]
    pub grid: Mapping,
    /// Replaces the manifest's `dataset` (or the `from` winner's) for this stage.
    pub dataset: Option<DatasetSpec>,
    /// Pins this stage's winner to the named run (or, with `repeats`, configuration)
    /// instead of the best val accuracy.
    pub winner: Option<String>,
    /// Trains each configuration this many times, with seeds `seed`, `seed + 1`, ...:
    /// each a run of its own, named `<configuration>-seed<seed>`. One (the default)
    /// trains each configuration once under its plain name.
    pub repeats: Option<usize>,
    /// Starts layers from another stage's winning checkpoint.
    pub transfer: Option<Transfer>,
    /// Draws configurations at random, crossed with the grid's cells.
    pub sample: Option<Sample>,
    /// Successive halving: rungs at which only the best runs train on.
    pub halving: Option<Halving>,
    /// What `cellnets report` shows for this stage; training ignores it.
    #[serde(default)]
    pub report: StageReport,
    /// Trains nothing: tests the mean of these runs' probabilities (`study::ensemble`).
    pub ensemble: Option<Ensemble>,
}

/// How `cellnets report` presents a stage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageReport {
    /// The study's model this stage reproduces (a key of `models` in src/study/reference.yaml):
    /// its choices and grid are shown beside this stage's, and beside the last stage
    /// naming it, its test results.
    pub study: Option<String>,
    /// A MedMNIST v2 benchmark method (a key of `baseline_methods` in src/study/medmnist.yaml,
    /// such as `resnet18_28`) whose published test ACC and AUC on the stage's data set
    /// are set beside the winner's, with the benchmark's other methods.
    pub baseline: Option<String>,
    /// Error-analysis figures for this many of the winner's most confident test mistakes.
    #[serde(default)]
    pub mistakes: usize,
}

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

impl Stage {
    /// The stages whose winners or runs this one needs: its `from` and `transfer`
    /// sources and an ensemble's member stages.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        let transfer = self
            .transfer
            .as_ref()
            .map(|transfer| transfer.from.as_str());
        let members = self.ensemble.iter().flat_map(|ensemble| ensemble.stages());
        self.from
            .as_deref()
            .into_iter()
            .chain(transfer)
            .chain(members)
    }
}

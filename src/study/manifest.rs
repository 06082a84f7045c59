//! The YAML manifest, deserialised into typed structs and checked: unknown keys and
//! wrong types are errors that name the file, line and column.

use crate::models::ModelSpec;
use crate::storage::out_dir;
use crate::study::search::{Halving, Sample};
use crate::study::task::Task;
use anyhow::{anyhow, bail, Context, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// Every key a grid may vary: the hyperparameters of each model kind, then
/// `TRAINING_KEYS`. Whether a model key fits the stage's model is known only once its
/// `from` winner is, at plan time; a key in none of them is a typo, refused while the
/// manifest is read, where its line is known.
pub const GRID_KEYS: [&str; 40] = [
    "kind",
    "hidden",
    "activation",
    "dropout",
    "kernels",
    "kernel_size",
    "pool",
    "stem_filters",
    "stem_kernel",
    "layers",
    "growth",
    "bottleneck",
    "width",
    // Training keys from here on: `TRAINING_KEYS`.
    "epochs",
    "batch_size",
    "optimizer",
    "update_rules",
    "learning_rate",
    "monitor",
    "seed",
    "momentum",
    "nesterov",
    "weight_decay",
    "beta_1",
    "beta_2",
    "epsilon",
    "rho",
    "schedule",
    "step_size",
    "gamma",
    "patience",
    "augment",
    "crop_padding",
    "rotate",
    "color_jitter",
    "label_smoothing",
    "mixup",
    "cutmix",
    "warmup_epochs",
    "ema",
];

/// Grid keys that set training rather than the model: the tail of `GRID_KEYS`.
pub const TRAINING_KEYS: &[&str] = GRID_KEYS.split_at(13).1;

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

fn default_train_fraction() -> f64 {
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
    pub ensemble: Option<crate::study::ensemble::Ensemble>,
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
    Adamw,
    Rmsprop,
}

/// Whose update rules an optimizer follows. The study ran Keras, so its settings mean
/// what they meant there; recipes written for PyTorch (weight decay added to the
/// gradient, epsilon outside the bias correction) need PyTorch's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateRules {
    #[default]
    Keras,
    Pytorch,
}

/// What an optimizer takes when a manifest leaves a setting unset: Keras 3's or
/// PyTorch's defaults. `None`: the optimizer has no such setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerDefaults {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub beta_1: Option<f64>,
    pub beta_2: Option<f64>,
    pub epsilon: Option<f64>,
    pub rho: Option<f64>,
}

impl Optimizer {
    pub fn defaults(self, rules: UpdateRules) -> OptimizerDefaults {
        let keras = rules == UpdateRules::Keras;
        let epsilon = Some(if keras { 1e-7 } else { 1e-8 });
        let adam = |weight_decay| OptimizerDefaults {
            learning_rate: 0.001,
            weight_decay,
            beta_1: Some(0.9),
            beta_2: Some(0.999),
            epsilon,
            rho: None,
        };
        match self {
            Optimizer::Sgd => OptimizerDefaults {
                learning_rate: if keras { 0.01 } else { 0.001 },
                weight_decay: 0.0,
                beta_1: None,
                beta_2: None,
                epsilon: None,
                rho: None,
            },
            Optimizer::Adam => adam(0.0),
            Optimizer::Adamw => adam(if keras { 0.004 } else { 0.01 }),
            Optimizer::Rmsprop => OptimizerDefaults {
                learning_rate: if keras { 0.001 } else { 0.01 },
                weight_decay: 0.0,
                beta_1: None,
                beta_2: None,
                epsilon,
                rho: Some(if keras { 0.9 } else { 0.99 }),
            },
        }
    }

    /// The optimizer as a manifest names it.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Adam => "adam",
            Optimizer::Adamw => "adamw",
            Optimizer::Rmsprop => "rmsprop",
        }
    }

    /// Whether `momentum` applies.
    fn has_momentum(self) -> bool {
        matches!(self, Optimizer::Sgd | Optimizer::Rmsprop)
    }
}

/// A view of each test image that a prediction averages over (`tta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestView {
    /// The image and its mirror image.
    Flips,
    /// The image and its three quarter turns.
    Rot90,
}

impl TestView {
    pub fn name(self) -> &'static str {
        match self {
            TestView::Flips => "flips",
            TestView::Rot90 => "rot90",
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
    /// Multiplied by `gamma` once each of `milestones` epochs are done (PyTorch's
    /// MultiStepLR, stepped after every epoch).
    Multistep,
}

/// The validation metric whose best epoch is checkpointed and early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValAccuracy,
    /// The MedMNIST evaluator's AUC, by which its benchmark selects epochs.
    ValAuc,
    /// Mean recall over the classes: a rare class counts as much as a common one.
    ValBalancedAccuracy,
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
    /// Keras' (the default) or PyTorch's update rules and defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_rules: Option<UpdateRules>,
    /// Defaults to the optimizer's rate under its rules (Keras: SGD 0.01, others 0.001).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// SGD or RMSprop momentum (the study: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Nesterov momentum, for SGD with `momentum`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// Keras: decoupled from the gradient for every optimizer. PyTorch: added to the
    /// gradient (L2) except for AdamW. The study: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Adam's and AdamW's decay of the first moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_1: Option<f64>,
    /// Adam's and AdamW's decay of the second moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_2: Option<f64>,
    /// Adam's, AdamW's and RMSprop's guard against dividing by zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// RMSprop's decay of the mean square (PyTorch calls it alpha).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Epochs between learning-rate steps, for `schedule: step`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_size: Option<usize>,
    /// Factor of each learning-rate step, for `schedule: step` or `multistep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Epoch counts after which the rate is multiplied once more by `gamma`, for
    /// `schedule: multistep` (`[50, 75]`: epochs 51 and 76 start at the lower rates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestones: Option<Vec<usize>>,
    /// Stops a run after this many epochs without a better `monitor` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Random flips and 90-degree rotations of training batches: with the flips, all
    /// eight symmetries of a square (horizontal and vertical flips among them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<bool>,
    /// Pixels of zero padding around each training image, cropped back to its size at a
    /// random offset: a random shift of up to this many pixels each way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_padding: Option<usize>,
    /// Largest angle, in degrees, of a random rotation of each training image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate: Option<f64>,
    /// Brightness, contrast and saturation of each training image scaled by random
    /// factors in [1 - j, 1 + j].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color_jitter: Option<f64>,
    /// The training loss's targets: 1 - e on the true class, e spread evenly over all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    /// Alpha of the Beta(alpha, alpha) weight that mixes pairs of training images and
    /// their targets (mixup); 0 is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixup: Option<f64>,
    /// Alpha of the Beta(alpha, alpha) share of an image kept when a box of its pair is
    /// pasted into it (cutmix); 0 is off. With `mixup`, each batch takes one of the two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutmix: Option<f64>,
    /// Epochs whose learning rate rises linearly to the schedule's, from 1/(n+1) of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    /// Decay of an exponential moving average of the weights, updated every step, which
    /// is what the run evaluates and keeps (0.999 is usual); 0 is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// Views of each image whose probabilities the run's predictions average: `[flips]`,
    /// `[rot90]` or both; in its test, `eval`, the report and `predict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<Vec<TestView>>,
}

/// Fully resolved training settings of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    /// Runs from before cellnets had rules of its own count as Keras'.
    #[serde(default)]
    pub update_rules: UpdateRules,
    pub learning_rate: f64,
    pub monitor: Monitor,
    pub seed: u64,
    pub momentum: f64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nesterov: bool,
    pub weight_decay: f64,
    /// The optimizer's own settings; none where it has no such setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    pub schedule: Schedule,
    pub step_size: usize,
    pub gamma: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<usize>,
    pub patience: Option<usize>,
    pub augment: bool,
    /// The training extras, each off at zero; runs recorded before them have none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crop_padding: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rotate: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub color_jitter: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mixup: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cutmix: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_epochs: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ema: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tta: Vec<TestView>,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Training {
    /// The training extras' values (augmentation, mixing, warm-up, test-time views).
    fn check_extras(&self) -> Result<(), InvalidTraining> {
        if self.crop_padding > 64 {
            return Err(InvalidTraining::CropPadding(self.crop_padding));
        }
        if !(0.0..=180.0).contains(&self.rotate) {
            return Err(InvalidTraining::Rotate(self.rotate));
        }
        for (name, alpha) in [("mixup", self.mixup), ("cutmix", self.cutmix)] {
            if !(0.0..=100.0).contains(&alpha) {
                return Err(InvalidTraining::MixingAlpha { name, alpha });
            }
        }
        if let Some(view) = self
            .tta
            .iter()
            .enumerate()
            .find_map(|(i, view)| self.tta[..i].contains(view).then_some(view))
        {
            return Err(InvalidTraining::RepeatedView(*view));
        }
        if self.warmup_epochs >= self.epochs {
            return Err(InvalidTraining::Warmup {
                warmup: self.warmup_epochs,
                epochs: self.epochs,
            });
        }
        Ok(())
    }

    /// Whether the optimizer is plain SGD: no state, no weight decay, a step of
    /// `-rate * gradient` under either rules.
    pub fn plain_sgd(&self) -> bool {
        self.optimizer == Optimizer::Sgd && self.momentum == 0.0 && self.weight_decay == 0.0
    }

    /// Whether training images change from epoch to epoch (augmentation, mixup,
    /// cutmix), so that what frozen layers make of them cannot be computed once.
    pub fn varies_inputs(&self) -> bool {
        self.augment
            || self.crop_padding > 0
            || self.rotate > 0.0
            || self.color_jitter > 0.0
            || self.mixes_images()
    }

    /// Whether batches mix pairs of images (mixup or cutmix).
    pub fn mixes_images(&self) -> bool {
        self.mixup > 0.0 || self.cutmix > 0.0
    }

    /// The latest change to cellnets' training arithmetic that alters such a run's
    /// numbers (see `RunPlan::revision`): 3, optimizers of cellnets' own (Keras' rules)
    /// and augmentation drawn from the run's own seeds. Plain SGD without augmentation
    /// computes what it always did.
    pub fn revision(&self) -> u32 {
        if self.plain_sgd()
            && !self.varies_inputs()
            && self.label_smoothing == 0.0
            && self.ema == 0.0
        {
            1
        } else {
            3
        }
    }
}

impl TrainingOverrides {
    /// `self` where set, else `base`. A `self` that switches the optimizer leaves the
    /// base optimizer's own settings (momentum, Nesterov, betas, epsilon, rho) behind:
    /// the new one starts from its defaults.
    pub fn over(&self, base: &TrainingOverrides) -> TrainingOverrides {
        let optimizer_of =
            |settings: &TrainingOverrides| settings.optimizer.unwrap_or(Optimizer::Sgd);
        let switched = self.optimizer.is_some() && optimizer_of(self) != optimizer_of(base);
        fn own<T>(value: Option<T>, inherited: Option<T>, switched: bool) -> Option<T> {
            value.or(inherited.filter(|_| !switched))
        }
        TrainingOverrides {
            epochs: self.epochs.or(base.epochs),
            batch_size: self.batch_size.or(base.batch_size),
            optimizer: self.optimizer.or(base.optimizer),
            update_rules: self.update_rules.or(base.update_rules),
            learning_rate: self.learning_rate.or(base.learning_rate),
            monitor: self.monitor.or(base.monitor),
            seed: self.seed.or(base.seed),
            momentum: own(self.momentum, base.momentum, switched),
            nesterov: own(self.nesterov, base.nesterov, switched),
            weight_decay: self.weight_decay.or(base.weight_decay),
            beta_1: own(self.beta_1, base.beta_1, switched),
            beta_2: own(self.beta_2, base.beta_2, switched),
            epsilon: own(self.epsilon, base.epsilon, switched),
            rho: own(self.rho, base.rho, switched),
            schedule: self.schedule.or(base.schedule),
            step_size: self.step_size.or(base.step_size),
            gamma: self.gamma.or(base.gamma),
            milestones: self.milestones.clone().or_else(|| base.milestones.clone()),
            patience: self.patience.or(base.patience),
            augment: self.augment.or(base.augment),
            crop_padding: self.crop_padding.or(base.crop_padding),
            rotate: self.rotate.or(base.rotate),
            color_jitter: self.color_jitter.or(base.color_jitter),
            label_smoothing: self.label_smoothing.or(base.label_smoothing),
            mixup: self.mixup.or(base.mixup),
            cutmix: self.cutmix.or(base.cutmix),
            warmup_epochs: self.warmup_epochs.or(base.warmup_epochs),
            ema: self.ema.or(base.ema),
            tta: self.tta.clone().or_else(|| base.tta.clone()),
        }
    }

    /// Fills what is still unset with the study's Keras settings (or the optimizer's
    /// defaults under its rules) and checks the values.
    pub fn resolve(&self) -> Result<Training, InvalidTraining> {
        let optimizer = self.optimizer.unwrap_or(Optimizer::Sgd);
        let update_rules = self.update_rules.unwrap_or_default();
        let defaults = optimizer.defaults(update_rules);
        let own_setting =
            |name: &'static str, value: Option<f64>, default: Option<f64>| match (value, default) {
                (Some(_), None) => Err(InvalidTraining::NotASetting { name, optimizer }),
                (value, default) => Ok(value.or(default)),
            };
        let training = Training {
            epochs: self.epochs.ok_or(InvalidTraining::EpochsUnset)?,
            batch_size: self.batch_size.unwrap_or(32),
            optimizer,
            update_rules,
            learning_rate: self.learning_rate.unwrap_or(defaults.learning_rate),
            monitor: self.monitor.unwrap_or(Monitor::ValLoss),
            seed: self.seed.unwrap_or(0),
            momentum: self.momentum.unwrap_or(0.0),
            nesterov: self.nesterov.unwrap_or(false),
            weight_decay: self.weight_decay.unwrap_or(defaults.weight_decay),
            beta_1: own_setting("beta_1", self.beta_1, defaults.beta_1)?,
            beta_2: own_setting("beta_2", self.beta_2, defaults.beta_2)?,
            epsilon: own_setting("epsilon", self.epsilon, defaults.epsilon)?,
            rho: own_setting("rho", self.rho, defaults.rho)?,
            schedule: self.schedule.unwrap_or(Schedule::Constant),
            step_size: self.step_size.unwrap_or(30),
            gamma: self.gamma.unwrap_or(0.1),
            milestones: self.milestones.clone().unwrap_or_default(),
            patience: self.patience,
            augment: self.augment.unwrap_or(false),
            crop_padding: self.crop_padding.unwrap_or(0),
            rotate: self.rotate.unwrap_or(0.0),
            color_jitter: self.color_jitter.unwrap_or(0.0),
            label_smoothing: self.label_smoothing.unwrap_or(0.0),
            mixup: self.mixup.unwrap_or(0.0),
            cutmix: self.cutmix.unwrap_or(0.0),
            warmup_epochs: self.warmup_epochs.unwrap_or(0),
            ema: self.ema.unwrap_or(0.0),
            tta: self.tta.clone().unwrap_or_default(),
        };
        if !(1..=1_000_000).contains(&training.epochs) {
            return Err(InvalidTraining::Epochs(training.epochs));
        }
        if !(1..=1 << 20).contains(&training.batch_size) {
            return Err(InvalidTraining::BatchSize(training.batch_size));
        }
        if !(training.learning_rate.is_finite() && training.learning_rate > 0.0) {
            return Err(InvalidTraining::LearningRate(training.learning_rate));
        }
        for (name, value) in [
            ("momentum", Some(training.momentum)),
            ("weight_decay", Some(training.weight_decay)),
            ("beta_1", training.beta_1),
            ("beta_2", training.beta_2),
            ("rho", training.rho),
            ("color_jitter", Some(training.color_jitter)),
            ("label_smoothing", Some(training.label_smoothing)),
            ("ema", Some(training.ema)),
        ] {
            if let Some(value) = value.filter(|value| !(0.0..1.0).contains(value)) {
                return Err(InvalidTraining::NotAFraction { name, value });
            }
        }
        if let Some(value) = training
            .epsilon
            .filter(|value| !(*value > 0.0 && *value < 1.0))
        {
            return Err(InvalidTraining::Epsilon(value));
        }
        if training.momentum > 0.0 && !training.optimizer.has_momentum() {
            return Err(InvalidTraining::NotASetting {
                name: "momentum",
                optimizer,
            });
        }
        if training.nesterov && !(training.optimizer == Optimizer::Sgd && training.momentum > 0.0) {
            return Err(InvalidTraining::NesterovWithoutMomentum);
        }
        if training.step_size == 0 || !(training.gamma > 0.0 && training.gamma <= 1.0) {
            return Err(InvalidTraining::StepSchedule);
        }
        let rising = training.milestones.windows(2).all(|pair| pair[0] < pair[1]);
        let multistep = training.schedule == Schedule::Multistep;
        let has_milestones = !training.milestones.is_empty();
        if multistep != has_milestones || !rising || training.milestones.first() == Some(&0) {
            return Err(InvalidTraining::Milestones);
        }
        if training.patience == Some(0) {
            return Err(InvalidTraining::ZeroPatience);
        }
        training.check_extras()?;
        Ok(training)
    }
}

/// Training settings that deserialise but cannot train.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidTraining {
    #[error("epochs is not set: give it in `defaults` or the stage's `training`")]
    EpochsUnset,
    #[error("epochs must be between 1 and 1000000, got {0}")]
    Epochs(usize),
    #[error("batch_size must be between 1 and 1048576, got {0}")]
    BatchSize(usize),
    #[error("learning_rate must be a positive number, got {0}")]
    LearningRate(f64),
    #[error("{name} must be in [0, 1), got {value}")]
    NotAFraction { name: &'static str, value: f64 },
    #[error("{name} is not a setting of optimizer {}: remove it, or choose an optimizer that has it (momentum: sgd, rmsprop; beta_1, beta_2: adam, adamw; epsilon: adam, adamw, rmsprop; rho: rmsprop)", optimizer.name())]
    NotASetting {
        name: &'static str,
        optimizer: Optimizer,
    },
    #[error("nesterov needs optimizer sgd with a momentum above 0")]
    NesterovWithoutMomentum,
    #[error("epsilon must be in (0, 1), got {0}")]
    Epsilon(f64),
    #[error("step_size must be at least 1 and gamma in (0, 1]")]
    StepSchedule,
    #[error(
        "`schedule: multistep` takes `milestones`, rising epochs from 1 on (e.g. [50, 75]), \
         and `milestones` takes `schedule: multistep`"
    )]
    Milestones,
    #[error("patience must be at least 1 epoch")]
    ZeroPatience,
    #[error("crop_padding must be between 0 and 64 pixels, got {0}")]
    CropPadding(usize),
    #[error("rotate is the largest angle in degrees, between 0 and 180; got {0}")]
    Rotate(f64),
    #[error("{name} is a Beta(alpha, alpha) parameter between 0 (off) and 100, got {alpha} (0.2 to 1 is usual)")]
    MixingAlpha { name: &'static str, alpha: f64 },
    #[error("tta lists {} twice: give each of flips and rot90 at most once", .0.name())]
    RepeatedView(TestView),
    #[error("warmup_epochs ({warmup}) must be fewer than epochs ({epochs})")]
    Warmup { warmup: usize, epochs: usize },
}

/// A run's settings as the base of a later stage. A setting at the optimizer's default
/// stays a default, so a stage that switches the optimizer or its rules gets the new
/// one's defaults (its learning rate, its epsilon).
impl From<&Training> for TrainingOverrides {
    fn from(training: &Training) -> Self {
        let defaults = training.optimizer.defaults(training.update_rules);
        let unless_default = |value: f64, default: f64| (value != default).then_some(value);
        let own = |value: Option<f64>, default: Option<f64>| value.filter(|_| value != default);
        TrainingOverrides {
            epochs: Some(training.epochs),
            batch_size: Some(training.batch_size),
            optimizer: Some(training.optimizer),
            update_rules: Some(training.update_rules),
            learning_rate: unless_default(training.learning_rate, defaults.learning_rate),
            monitor: Some(training.monitor),
            seed: Some(training.seed),
            momentum: Some(training.momentum),
            nesterov: Some(training.nesterov),
            weight_decay: unless_default(training.weight_decay, defaults.weight_decay),
            beta_1: own(training.beta_1, defaults.beta_1),
            beta_2: own(training.beta_2, defaults.beta_2),
            epsilon: own(training.epsilon, defaults.epsilon),
            rho: own(training.rho, defaults.rho),
            schedule: Some(training.schedule),
            step_size: Some(training.step_size),
            gamma: Some(training.gamma),
            milestones: Some(training.milestones.clone()).filter(|m| !m.is_empty()),
            patience: training.patience,
            augment: Some(training.augment),
            crop_padding: Some(training.crop_padding).filter(|&value| value > 0),
            rotate: Some(training.rotate).filter(|&value| value > 0.0),
            color_jitter: Some(training.color_jitter).filter(|&value| value > 0.0),
            label_smoothing: Some(training.label_smoothing).filter(|&value| value > 0.0),
            mixup: Some(training.mixup).filter(|&value| value > 0.0),
            cutmix: Some(training.cutmix).filter(|&value| value > 0.0),
            warmup_epochs: Some(training.warmup_epochs).filter(|&value| value > 0),
            ema: Some(training.ema).filter(|&value| value > 0.0),
            tta: Some(training.tta.clone()).filter(|views| !views.is_empty()),
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
    let mut manifest: Manifest = serde_yaml::from_str(text).map_err(explain_yaml_error)?;
    if manifest.stages.is_empty() {
        bail!("`stages` is empty: add at least one stage");
    }
    let stage_datasets = manifest
        .stages
        .iter_mut()
        .filter_map(|s| s.dataset.as_mut());
    for dataset in std::iter::once(&mut manifest.dataset).chain(stage_datasets) {
        complete_dataset(dataset).context("bad dataset")?;
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
    let mut ensembles = HashSet::new();
    for stage in &manifest.stages {
        crate::study::ensemble::check_not_started_from(stage, &ensembles)?;
        match &stage.ensemble {
            Some(ensemble) => {
                check_path_safe_name(&stage.name).context("bad stage name")?;
                check_not_reserved(&stage.name)?;
                crate::study::ensemble::check(stage, ensemble, &seen, &ensembles)?;
            }
            None => check_stage(stage, &seen)?,
        }
        // `seen` holds the stages that train, which `from`, `transfer` and members name.
        let name = stage.name.as_str();
        if seen.contains(name) || ensembles.contains(name) {
            bail!(
                "two stages are named `{}`: stage names must be unique",
                stage.name
            );
        }
        match stage.ensemble {
            Some(_) => ensembles.insert(name),
            None => seen.insert(name),
        };
    }
    Ok(manifest)
}

/// Names a folder data set after its folder when the manifest gives no name, and checks
/// what only folder data sets may set; a data set needs a name or a folder.
fn complete_dataset(spec: &mut DatasetSpec) -> Result<()> {
    if spec.validation == Validation::Official && spec.train_fraction != default_train_fraction() {
        bail!(
            "`train_fraction` sets the holdout, and `validation: official` validates on the \
             file's val split instead: remove one of them"
        );
    }
    let Some(folder) = &spec.folder else {
        if spec.split.is_some() {
            bail!("`split` applies to `folder` data sets only; a MedMNIST file has its own splits");
        }
        if spec.name.is_empty() {
            bail!(
                "a dataset needs a `name` (a MedMNIST file such as bloodmnist) or a `folder` \
                 (images in one subfolder per class)"
            );
        }
        return Ok(());
    };
    if spec.name.is_empty() {
        let last = folder
            .canonicalize()
            .unwrap_or_else(|_| folder.clone())
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
        spec.name = last
            .chars()
            .map(|c| if plain(c) { c } else { '_' })
            .collect::<String>()
            .trim_start_matches('_')
            .to_string();
        if spec.name.is_empty() {
            spec.name = "images".into();
        }
    }
    let split = spec.split.unwrap_or_default();
    let share = |value: f64| (0.0..1.0).contains(&value);
    if !(share(split.val) && share(split.test) && split.val + split.test < 1.0) {
        bail!(
            "dataset `split`: val ({}) and test ({}) must each be in [0, 1) and leave images \
             to train on",
            split.val,
            split.test
        );
    }
    Ok(())
}

/// Checks what one stage can be checked for on its own; `earlier_stages` holds the names of
/// the stages before it.
fn check_stage(stage: &Stage, earlier_stages: &HashSet<&str>) -> Result<()> {
    check_path_safe_name(&stage.name).context("bad stage name")?;
    check_not_reserved(&stage.name)?;
    let earlier = |name: &str, role: &str| {
        if earlier_stages.contains(name) {
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
        let models = &crate::study::reference::study().models;
        if !models.contains_key(key) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            bail!(
                "stage `{}`: `report.study: {key}` is not a model of the study; use one of {}",
                stage.name,
                known.join(", ")
            );
        }
    }
    if let Some(key) = &stage.report.baseline {
        if crate::study::catalog::method_name(key).is_none() {
            let known: Vec<&str> = crate::study::catalog::method_keys().collect();
            bail!(
                "stage `{}`: `report.baseline: {key}` is not a method of the MedMNIST v2 \
                 benchmark; use one of {}",
                stage.name,
                known.join(", ")
            );
        }
    }
    if stage.repeats == Some(0) {
        bail!(
            "stage `{}`: `repeats: 0` trains nothing; give 1 (the default) to train each \
             configuration once, or more to train it with that many seeds",
            stage.name
        );
    }
    if stage.repeats.is_some_and(|repeats| repeats > 1)
        && stage.grid.contains_key(Value::from("seed"))
    {
        bail!(
            "stage `{}` has both `repeats` and a grid over `seed`: repeats already trains \
             seeds seed, seed + 1, ..., so some seeds would train twice; set the first seed \
             in `training: {{seed: ...}}` and drop `seed` from the grid",
            stage.name
        );
    }
    if let Some(sample) = &stage.sample {
        sample
            .distributions(&GRID_KEYS, &stage.grid)
            .with_context(|| format!("stage `{}`", stage.name))?;
    }
    if let Some(halving) = &stage.halving {
        halving
            .check()
            .with_context(|| format!("stage `{}`", stage.name))?;
        if stage.winner.is_some() {
            bail!(
                "stage `{}` has both `halving` and a pinned `winner`: the pinned run may be \
                 halted before the budget; drop one of them",
                stage.name
            );
        }
        if stage.repeats.is_some_and(|repeats| repeats > 1) {
            bail!(
                "stage `{}` has both `halving` and `repeats`: halving ranks single runs at                  each rung, not configurations over seeds; drop one of them",
                stage.name
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
    Ok(())
}

/// Entries that cellnets itself writes directly under out/ beside the stage folders.
/// Names starting with `.` are already refused as folder names.
const RESERVED_UNDER_OUT: [&str; 4] = [
    out_dir::REPORT_DIR,
    out_dir::REPORT_MD,
    out_dir::REPORT_HTML,
    out_dir::SLURM_DIR,
];

/// A stage's folder is out/<stage>: it must not be one of cellnets' own entries there.
/// Compared ignoring case, since macOS and Windows file systems do.
fn check_not_reserved(stage: &str) -> Result<()> {
    if let Some(taken) = RESERVED_UNDER_OUT
        .iter()
        .find(|reserved| reserved.eq_ignore_ascii_case(stage))
    {
        bail!(
            "a stage cannot be named `{stage}`: its results would go to out/{taken}, which \
             cellnets writes itself (`cellnets report` out/{}, out/{} and the figures in \
             out/{}/, `cellnets slurm` out/{}/). Rename the stage",
            out_dir::REPORT_MD,
            out_dir::REPORT_HTML,
            out_dir::REPORT_DIR,
            out_dir::SLURM_DIR
        );
    }
    Ok(())
}

/// serde_yaml's message with two additions: the position also when it is the very
/// start of the file (serde_yaml leaves out line 1 column 1, so an unknown key on the
/// first line had none), and for an unknown key, the known one it nearly spells.
fn explain_yaml_error(error: serde_yaml::Error) -> anyhow::Error {
    use crate::study::ensemble::{FORMS, UNTAGGED_ERROR};
    let mut message = error.to_string().replace(UNTAGGED_ERROR, FORMS);
    if let Some(location) = error.location() {
        let at = format!("at line {} column {}", location.line(), location.column());
        if !message.contains(&at) {
            message = format!("{message} {at}");
        }
    }
    if let Some(near) = unknown_key_near_miss(&message) {
        message = format!("{message}: did you mean `{near}`?");
    }
    anyhow!(message)
}

/// The name nearest to the key in serde's "unknown field `typo`, expected one of
/// `a`, `b`", when it is near enough to be a typo of it.
fn unknown_key_near_miss(message: &str) -> Option<&str> {
    let (typed, expected) = message.split("unknown field `").nth(1)?.split_once('`')?;
    // The expected names are the back-quoted words after the unknown one.
    let known = expected.split('`').skip(1).step_by(2);
    nearest_name(typed, known)
}

/// The known name within two edits (a swap of neighbours counts as one) of `typed`,
/// the nearest first; none for names too short for two edits to mean a typo.
fn nearest_name<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|name| (strsim::damerau_levenshtein(typed, name), name))
        .filter(|&(edits, _)| edits <= 2 && edits < typed.chars().count())
        .min_by_key(|&(edits, _)| edits)
        .map(|(_, name)| name)
}

/// Reads a stage's `grid`, refusing a key that no model or training has while its
/// line and column are still known.
fn grid_of_known_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Mapping, D::Error> {
    struct GridVisitor;
    impl<'de> Visitor<'de> for GridVisitor {
        type Value = Mapping;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of setting names to lists of values")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Mapping, E> {
            Ok(Mapping::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Mapping, A::Error> {
            let mut grid = Mapping::new();
            while let Some(key) = map.next_key_seed(GridKey)? {
                let values: Value = map.next_value()?;
                if grid.insert(Value::from(key.as_str()), values).is_some() {
                    return Err(de::Error::custom(format!(
                        "grid `{key}` is given twice: list all its values once"
                    )));
                }
            }
            Ok(grid)
        }
    }
    deserializer.deserialize_map(GridVisitor)
}

/// A grid key, checked inside the key's own deserialisation: serde_yaml then reports
/// an unknown one at the key's line and column.
struct GridKey;

impl<'de> DeserializeSeed<'de> for GridKey {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for GridKey {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a model or training setting name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if GRID_KEYS.contains(&key) {
            Ok(key.to_string())
        } else {
            Err(E::unknown_field(key, &GRID_KEYS))
        }
    }
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
        let error = TrainingOverrides::default().resolve().unwrap_err();
        assert_eq!(error, InvalidTraining::EpochsUnset);
        assert!(
            error.to_string().contains("give it in `defaults`"),
            "{error}"
        );
    }

    #[test]
    fn impossible_training_values_are_told_apart() {
        let with = |text: &str| {
            serde_yaml::from_str::<TrainingOverrides>(&format!("{{epochs: 1, {text}}}"))
                .unwrap()
                .resolve()
                .unwrap_err()
        };
        assert_eq!(with("batch_size: 0"), InvalidTraining::BatchSize(0));
        assert_eq!(
            with("weight_decay: 1.5"),
            InvalidTraining::NotAFraction {
                name: "weight_decay",
                value: 1.5
            }
        );
        assert_eq!(
            with("optimizer: adam, momentum: 0.9"),
            InvalidTraining::NotASetting {
                name: "momentum",
                optimizer: Optimizer::Adam
            }
        );
        let message = with("optimizer: adam, momentum: 0.9").to_string();
        assert!(
            message.contains("momentum is not a setting of optimizer adam"),
            "{message}"
        );
        assert_eq!(
            with("rho: 0.9"),
            InvalidTraining::NotASetting {
                name: "rho",
                optimizer: Optimizer::Sgd
            }
        );
        assert_eq!(
            with("nesterov: true"),
            InvalidTraining::NesterovWithoutMomentum
        );
        assert_eq!(
            with("optimizer: adam, beta_2: 1.0"),
            InvalidTraining::NotAFraction {
                name: "beta_2",
                value: 1.0
            }
        );
        assert_eq!(
            with("optimizer: rmsprop, epsilon: 0"),
            InvalidTraining::Epsilon(0.0)
        );
        assert_eq!(with("patience: 0"), InvalidTraining::ZeroPatience);
        assert_eq!(with("crop_padding: 65"), InvalidTraining::CropPadding(65));
        assert_eq!(with("rotate: 200"), InvalidTraining::Rotate(200.0));
        assert_eq!(
            with("color_jitter: 1.5"),
            InvalidTraining::NotAFraction {
                name: "color_jitter",
                value: 1.5
            }
        );
        assert_eq!(
            with("label_smoothing: 1"),
            InvalidTraining::NotAFraction {
                name: "label_smoothing",
                value: 1.0
            }
        );
        assert_eq!(
            with("cutmix: -1"),
            InvalidTraining::MixingAlpha {
                name: "cutmix",
                alpha: -1.0
            }
        );
        let views = with("tta: [rot90, flips, rot90]");
        assert_eq!(views, InvalidTraining::RepeatedView(TestView::Rot90));
        assert!(views.to_string().contains("lists rot90 twice"), "{views}");
        let warmup = with("warmup_epochs: 20");
        assert!(matches!(warmup, InvalidTraining::Warmup { warmup: 20, .. }));
        assert!(warmup.to_string().contains("fewer than epochs"), "{warmup}");
    }

    #[test]
    fn adam_defaults_to_keras_learning_rate() {
        let adam = TrainingOverrides {
            epochs: Some(1),
            optimizer: Some(Optimizer::Adam),
            ..Default::default()
        };
        let adam = adam.resolve().unwrap();
        assert_eq!(adam.learning_rate, 0.001);
        assert_eq!(adam.epsilon, Some(1e-7));
    }

    #[test]
    fn each_optimizer_takes_the_defaults_of_its_rules() {
        let resolve = |text: &str| {
            serde_yaml::from_str::<TrainingOverrides>(&format!("{{epochs: 1, {text}}}"))
                .unwrap()
                .resolve()
                .unwrap()
        };
        let keras = resolve("optimizer: rmsprop");
        assert_eq!(
            (keras.learning_rate, keras.rho, keras.epsilon, keras.beta_1),
            (0.001, Some(0.9), Some(1e-7), None)
        );
        let pytorch = resolve("optimizer: rmsprop, update_rules: pytorch");
        assert_eq!(
            (pytorch.learning_rate, pytorch.rho, pytorch.epsilon),
            (0.01, Some(0.99), Some(1e-8))
        );
        assert_eq!(resolve("optimizer: adamw").weight_decay, 0.004);
        assert_eq!(
            resolve("optimizer: adamw, update_rules: pytorch").weight_decay,
            0.01
        );
        // A stage switching optimizer after an AdamW winner gets RMSprop's defaults, and
        // not the winner's own beta_1.
        let winner = TrainingOverrides::from(&resolve("optimizer: adamw, beta_1: 0.8"));
        assert_eq!((winner.weight_decay, winner.beta_1), (None, Some(0.8)));
        let switched = TrainingOverrides {
            optimizer: Some(Optimizer::Rmsprop),
            ..Default::default()
        }
        .over(&winner)
        .resolve()
        .unwrap();
        assert_eq!(
            (
                switched.weight_decay,
                switched.learning_rate,
                switched.beta_1
            ),
            (0.0, 0.001, None)
        );
        // A stage keeping the optimizer keeps its settings.
        let kept = TrainingOverrides {
            optimizer: Some(Optimizer::Adamw),
            ..Default::default()
        }
        .over(&winner)
        .resolve()
        .unwrap();
        assert_eq!(kept.beta_1, Some(0.8));
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
    fn monitors_and_repeats_are_checked_where_they_are_written() {
        for monitor in [
            "val_loss",
            "val_accuracy",
            "val_auc",
            "val_balanced_accuracy",
        ] {
            let text = format!("{MINIMAL}    training: {{monitor: {monitor}}}\n");
            assert!(parse(&text).is_ok(), "{monitor}");
        }
        let unknown = format!("{MINIMAL}    training: {{monitor: val_f1}}\n");
        let message = format!("{:#}", parse(&unknown).unwrap_err());
        assert!(
            message.contains("val_f1")
                && message.contains("val_auc")
                && message.contains("val_balanced_accuracy")
                && message.contains("line 7"),
            "{message}"
        );
        let none = format!(
            "{:#}",
            parse(&format!("{MINIMAL}    repeats: 0\n")).unwrap_err()
        );
        assert!(
            none.contains("repeats: 0") && none.contains("give 1"),
            "{none}"
        );
        let seeds = format!("{MINIMAL}    repeats: 3\n    grid: {{seed: [1, 2]}}\n");
        let both = format!("{:#}", parse(&seeds).unwrap_err());
        assert!(
            both.contains("repeats") && both.contains("drop `seed` from the grid"),
            "{both}"
        );
        let negative = format!("{MINIMAL}    repeats: -2\n");
        assert!(format!("{:#}", parse(&negative).unwrap_err()).contains("line 7"));
    }

    #[test]
    fn an_unknown_key_on_the_first_line_still_has_its_position() {
        let error = parse(&format!("name: study\n{MINIMAL}")).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("unknown field `name`") && message.contains("at line 1 column 1"),
            "{message}"
        );
    }

    #[test]
    fn near_misses_of_known_keys_are_named() {
        for (typo, meant, line) in [
            ("defaults: {epochs: 2}", "defualts: {epochs: 2}", 3),
            ("hidden: 16", "hiden: 16", 5),
            ("epochs: 2", "epoch: 2", 3),
        ] {
            let message = format!("{:#}", parse(&MINIMAL.replace(typo, meant)).unwrap_err());
            let key = typo.split(':').next().unwrap();
            assert!(
                message.contains(&format!("did you mean `{key}`?"))
                    && message.contains(&format!("line {line} column")),
                "{message}"
            );
        }
        let far = format!(
            "{:#}",
            parse(&MINIMAL.replace("defaults", "setup")).unwrap_err()
        );
        assert!(!far.contains("did you mean"), "{far}");
    }

    #[test]
    fn a_grid_key_that_no_model_or_training_has_is_named_where_it_is() {
        let text = format!("{MINIMAL}    grid: {{hidden: [8], dropuot: [0.1, 0.2]}}\n");
        let message = format!("{:#}", parse(&text).unwrap_err());
        assert!(
            message.contains("unknown field `dropuot`")
                && message.contains("line 7 column 25")
                && message.contains("did you mean `dropout`?"),
            "{message}"
        );
        let block = format!("{MINIMAL}    grid:\n      learning_rates: [0.1]\n");
        let message = format!("{:#}", parse(&block).unwrap_err());
        assert!(
            message.contains("line 8 column 7")
                && message.contains("did you mean `learning_rate`?"),
            "{message}"
        );
        let twice = format!("{MINIMAL}    grid: {{hidden: [8], hidden: [16]}}\n");
        assert!(parse(&twice).is_err());
    }

    #[test]
    fn every_model_and_training_key_may_be_varied() {
        let text = format!(
            "{MINIMAL}    grid: {{dropout: [0.1], learning_rate: [0.1], activation: [sigmoid]}}\n"
        );
        let grid = &parse(&text).unwrap().stages[0].grid;
        assert_eq!(grid.len(), 3);
    }

    #[test]
    fn stage_names_that_cellnets_writes_under_out_are_refused() {
        for name in ["report", "report.md", "Report", "slurm"] {
            let text = MINIMAL.replace("name: mlp", &format!("name: {name}"));
            let message = format!("{:#}", parse(&text).unwrap_err());
            assert!(
                message.contains(&format!("cannot be named `{name}`"))
                    && message.contains("Rename the stage"),
                "{message}"
            );
        }
        parse(&MINIMAL.replace("name: mlp", "name: reports")).unwrap();
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

//! Training settings: as a manifest writes them (`TrainingOverrides`, any left out,
//! layered defaults -> stage -> grid cell) and resolved for one run (`Training`), with
//! the optimizers' own defaults under Keras' or PyTorch's rules and why a value cannot
//! train (`InvalidTraining`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
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

impl OptimizerKind {
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
            OptimizerKind::Sgd => OptimizerDefaults {
                learning_rate: if keras { 0.01 } else { 0.001 },
                weight_decay: 0.0,
                beta_1: None,
                beta_2: None,
                epsilon: None,
                rho: None,
            },
            OptimizerKind::Adam => adam(0.0),
            OptimizerKind::Adamw => adam(if keras { 0.004 } else { 0.01 }),
            OptimizerKind::Rmsprop => OptimizerDefaults {
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
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
            OptimizerKind::Rmsprop => "rmsprop",
        }
    }

    /// Whether `momentum` applies.
    fn has_momentum(self) -> bool {
        matches!(self, OptimizerKind::Sgd | OptimizerKind::Rmsprop)
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
    pub optimizer: Option<OptimizerKind>,
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
    pub optimizer: OptimizerKind,
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
    /// The core settings' values: counts and rates in range, settings the optimizer
    /// has, schedules that can run.
    fn check_values(&self) -> Result<(), InvalidTraining> {
        if !(1..=1_000_000).contains(&self.epochs) {
            return Err(InvalidTraining::Epochs(self.epochs));
        }
        if !(1..=1 << 20).contains(&self.batch_size) {
            return Err(InvalidTraining::BatchSize(self.batch_size));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(InvalidTraining::LearningRate(self.learning_rate));
        }
        for (name, value) in [
            ("momentum", Some(self.momentum)),
            ("weight_decay", Some(self.weight_decay)),
            ("beta_1", self.beta_1),
            ("beta_2", self.beta_2),
            ("rho", self.rho),
            ("color_jitter", Some(self.color_jitter)),
            ("label_smoothing", Some(self.label_smoothing)),
            ("ema", Some(self.ema)),
        ] {
            if let Some(value) = value.filter(|value| !(0.0..1.0).contains(value)) {
                return Err(InvalidTraining::NotAFraction { name, value });
            }
        }
        if let Some(value) = self.epsilon.filter(|value| !(*value > 0.0 && *value < 1.0)) {
            return Err(InvalidTraining::Epsilon(value));
        }
        if self.momentum > 0.0 && !self.optimizer.has_momentum() {
            return Err(InvalidTraining::NotASetting {
                name: "momentum",
                optimizer: self.optimizer,
            });
        }
        if self.nesterov && !(self.optimizer == OptimizerKind::Sgd && self.momentum > 0.0) {
            return Err(InvalidTraining::NesterovWithoutMomentum);
        }
        if self.step_size == 0 || !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(InvalidTraining::StepSchedule);
        }
        let rising = self.milestones.windows(2).all(|pair| pair[0] < pair[1]);
        let multistep = self.schedule == Schedule::Multistep;
        let has_milestones = !self.milestones.is_empty();
        if multistep != has_milestones || !rising || self.milestones.first() == Some(&0) {
            return Err(InvalidTraining::Milestones);
        }
        if self.patience == Some(0) {
            return Err(InvalidTraining::ZeroPatience);
        }
        Ok(())
    }

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
        self.optimizer == OptimizerKind::Sgd && self.momentum == 0.0 && self.weight_decay == 0.0
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
            |settings: &TrainingOverrides| settings.optimizer.unwrap_or(OptimizerKind::Sgd);
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
        let optimizer = self.optimizer.unwrap_or(OptimizerKind::Sgd);
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
        training.check_values()?;
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
        optimizer: OptimizerKind,
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

impl InvalidTraining {
    /// The manifest key whose value is wrong, to point at it in the file.
    pub fn key(&self) -> &'static str {
        match self {
            InvalidTraining::EpochsUnset | InvalidTraining::Epochs(_) => "epochs",
            InvalidTraining::BatchSize(_) => "batch_size",
            InvalidTraining::LearningRate(_) => "learning_rate",
            InvalidTraining::NotAFraction { name, .. }
            | InvalidTraining::NotASetting { name, .. }
            | InvalidTraining::MixingAlpha { name, .. } => name,
            InvalidTraining::NesterovWithoutMomentum => "nesterov",
            InvalidTraining::Epsilon(_) => "epsilon",
            InvalidTraining::StepSchedule => "step_size",
            InvalidTraining::Milestones => "milestones",
            InvalidTraining::ZeroPatience => "patience",
            InvalidTraining::CropPadding(_) => "crop_padding",
            InvalidTraining::Rotate(_) => "rotate",
            InvalidTraining::RepeatedView(_) => "tta",
            InvalidTraining::Warmup { .. } => "warmup_epochs",
        }
    }
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

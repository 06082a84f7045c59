//! Training, free of I/O. It holds the loop (`fit`) with its callbacks and the one
//! point a run resumes from, a batch's step and evaluation (`step`), the random
//! transforms of its images (`augment`), its targets under label smoothing, mixup and
//! cutmix (`targets`), the optimizers and their state (`optimizer`) with the weights'
//! moving average (`average`), an epoch's CPU seconds (`cpu_time`), the request to stop
//! at the next batch (`stop`),
//! test-time augmentation (`tta`), and the debug check that a step's tensors share the
//! run's device (`device`).
//!
//! May import `metrics` (an epoch's val AUC), `data`, `study`, `models` and `random`; files are the business of the
//! callbacks and checkpointers that `runner` hands the loop.

mod augment;
mod average;
mod cpu_time;
pub mod device;
mod fit;
mod optimizer;
mod step;
pub mod stop;
mod targets;
mod tta;

pub use fit::{
    fit, monitored, BestEpoch, Callback, Checkpointer, EpochRecord, Fitted, Learner, Outcome,
    ResumePoint, Resumed,
};
pub use optimizer::{Optimizer, OptimizerState};
pub use step::{evaluate, learning_rate, predict, train_epoch, Evaluation, FusedInputDense};
pub use tta::{logits_of, predict_with_views};

/// A run's training settings from a YAML map, for the tests of the loop's parts.
#[cfg(test)]
fn training(text: &str) -> crate::study::manifest::Training {
    serde_yaml::from_str::<crate::study::manifest::TrainingOverrides>(text)
        .unwrap()
        .resolve()
        .unwrap()
}

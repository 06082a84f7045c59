//! The training loop, its `Callback` and `Checkpointer` interfaces and the best-epoch
//! rule. It knows nothing of files: what happens around it (the epoch table, the
//! progress bar, early stopping) are callbacks, as in Lightning, and each finished
//! epoch is committed through a `Checkpointer`, with the optimizer's state, the best
//! epoch so far and every callback's state, as the one point a killed run resumes from.

use super::cpu_time;
use super::{evaluate, learning_rate, train_epoch, FusedInputDense, Optimizer, OptimizerState};
use crate::data::Dataset;
use crate::study::manifest::{Monitor, Training};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::nn;

/// One epoch's metrics, as Keras logs them: train values are running means over the
/// epoch's batches (dropout active), validation values come from eval mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
    /// The MedMNIST evaluator's AUC on the validation split (undefined in records of
    /// cellnets versions before it was measured).
    #[serde(default = "undefined")]
    pub val_auc: f64,
    #[serde(default = "undefined")]
    pub val_balanced_accuracy: f64,
    /// CPU seconds (user and system, every thread of the process) the epoch took; with
    /// `--jobs` above 1 it counts the runs training beside it too.
    #[serde(default = "undefined")]
    pub cpu_seconds: f64,
    /// The run's wall seconds of training and validation through this epoch: its
    /// committed epochs' `seconds` summed, so a resumed run counts no lost work.
    #[serde(default = "undefined")]
    pub cumulative_seconds: f64,
    /// The same for `cpu_seconds`.
    #[serde(default = "undefined")]
    pub cumulative_cpu_seconds: f64,
}

fn undefined() -> f64 {
    f64::NAN
}

impl EpochRecord {
    fn is_finite(&self) -> bool {
        self.train_loss.is_finite() && self.val_loss.is_finite()
    }
}

/// How training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Finished,
    /// A callback (early stopping) ended it.
    StoppedEarly,
    /// A train or validation loss became NaN or infinite.
    Diverged,
    /// A callback paused it (at a rung of successive halving): it continues from its
    /// last epoch when trained again.
    Paused,
    /// Paused at a rung and not promoted: the runner's verdict on a paused run, never
    /// the loop's. The run keeps its resume point, so it can still continue.
    Halted,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Finished => "finished",
            Outcome::StoppedEarly => "stopped_early",
            Outcome::Diverged => "diverged",
            Outcome::Paused => "paused",
            Outcome::Halted => "halted",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best epoch so far by the run's monitor: Keras' MonitorCallback rule, the one
/// answer to "is this epoch better?" for checkpoints and early stopping alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    monitor: Monitor,
    record: Option<EpochRecord>,
}

impl BestEpoch {
    pub fn new(monitor: Monitor) -> Self {
        BestEpoch {
            monitor,
            record: None,
        }
    }

    /// Takes `record` if it improves on the best so far, and says whether it did. A
    /// value that is not finite never improves: a diverged epoch's weights are not kept.
    pub fn offer(&mut self, record: &EpochRecord) -> bool {
        let value = |record: &EpochRecord| monitored(self.monitor, record);
        let better = value(record).is_finite()
            && self
                .record
                .as_ref()
                .is_none_or(|best| value(record) > value(best));
        if better {
            self.record = Some(record.clone());
        }
        better
    }

    pub fn record(&self) -> Option<&EpochRecord> {
        self.record.as_ref()
    }
}

/// `record`'s value of `monitor`, oriented so that higher is better (a loss negated).
pub fn monitored(monitor: Monitor, record: &EpochRecord) -> f64 {
    match monitor {
        Monitor::ValLoss => -record.val_loss,
        Monitor::ValAccuracy => record.val_accuracy,
        Monitor::ValAuc => record.val_auc,
        Monitor::ValBalancedAccuracy => record.val_balanced_accuracy,
    }
}

/// What runs around the loop. Each callback may keep a state, saved with every resume
/// point and handed back by `restore` before `on_start` when a run continues.
pub trait Callback {
    /// The key of this callback's state in a resume point.
    fn name(&self) -> &'static str;

    /// Called once before the first epoch of this invocation; `resumed` is the last
    /// committed epoch when the run continues after it.
    fn on_start(&mut self, _resumed: Option<&EpochRecord>) -> Result<()> {
        Ok(())
    }

    fn on_epoch_end(&mut self, record: &EpochRecord) -> Result<()>;

    /// Asked after every epoch; true ends training early.
    fn should_stop(&self) -> bool {
        false
    }

    /// Asked after every epoch; true ends this invocation's training, to be continued.
    /// Stopping early, which ends the run, comes first.
    fn should_pause(&self) -> bool {
        false
    }

    fn on_end(&mut self, _outcome: Outcome) -> Result<()> {
        Ok(())
    }

    fn state(&self) -> Value {
        Value::Null
    }

    fn restore(&mut self, _state: &Value) -> Result<()> {
        Ok(())
    }
}

/// Everything a run needs to continue after an epoch exactly as if it had not stopped:
/// with the weights the checkpointer keeps beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumePoint {
    pub last: EpochRecord,
    pub best: BestEpoch,
    /// Each callback's state under its name.
    pub callbacks: BTreeMap<String, Value>,
}

/// Where a resumed run continues: its last committed point and the optimizer's state
/// there. Its weights are already in the VarStore.
pub struct Resumed {
    pub point: ResumePoint,
    pub optimizer: OptimizerState,
}

/// Commits each finished epoch: its weights, the optimizer's state and its resume point
/// together, and the weights again as the best ones when `point.best` is this epoch.
pub trait Checkpointer {
    fn commit(
        &mut self,
        point: &ResumePoint,
        vs: &nn::VarStore,
        optimizer: &OptimizerState,
    ) -> Result<()>;
}

/// How a run's training went.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub outcome: Outcome,
    /// The last epoch trained: fewer than planned when training stopped early.
    pub epochs: usize,
    pub best: Option<EpochRecord>,
    /// The last epoch's record, with the run's cumulative time.
    pub last: Option<EpochRecord>,
}

/// What the loop trains: the network, and the fused step of its first layer when it
/// applies.
#[derive(Clone, Copy)]
pub struct Learner<'a> {
    pub model: &'a dyn nn::ModuleT,
    pub fused: Option<FusedInputDense<'a>>,
}

/// Trains `network` (whose parameters are `vs`) on the holdout train split until
/// `training.epochs`, validating after each epoch; continues after `resumed` when
/// given (its weights already in `vs`, its optimizer's state in `resumed`). Each epoch
/// draws its randomness (shuffle, dropout, augmentation) from seeds of the run's seed
/// and the epoch alone (`random::with_stream`), so a resumed run continues exactly as
/// it would have, and runs trained side by side do not disturb each other.
pub fn fit(
    network: Learner,
    vs: &nn::VarStore,
    data: &Dataset,
    training: &Training,
    resumed: Option<Resumed>,
    callbacks: &mut [&mut dyn Callback],
    checkpointer: &mut dyn Checkpointer,
) -> Result<Fitted> {
    let mut optimizer = Optimizer::new(vs, training);
    let (mut last, mut best) = match resumed {
        Some(Resumed {
            point,
            optimizer: state,
        }) => {
            optimizer
                .restore(&state)
                .context("cannot restore the optimizer's state")?;
            for callback in callbacks.iter_mut() {
                let state = point.callbacks.get(callback.name()).unwrap_or(&Value::Null);
                callback
                    .restore(state)
                    .with_context(|| format!("cannot restore {}", callback.name()))?;
            }
            (Some(point.last), point.best)
        }
        None => (None, BestEpoch::new(training.monitor)),
    };
    for callback in callbacks.iter_mut() {
        callback.on_start(last.as_ref())?;
    }
    let mut stop = stop_reason(last.as_ref(), callbacks);
    let first = last.as_ref().map_or(1, |record| record.epoch + 1);
    for epoch in first..=training.epochs {
        if stop.is_some() {
            break;
        }
        let record = run_epoch(
            network,
            &mut optimizer,
            data,
            training,
            epoch,
            last.as_ref(),
        )?;
        // A signal cut the epoch short: it is not committed, the last one stays.
        crate::train::stop::check()?;
        best.offer(&record);
        for callback in callbacks.iter_mut() {
            callback.on_epoch_end(&record)?;
        }
        let point = ResumePoint {
            last: record,
            best: best.clone(),
            callbacks: callbacks
                .iter()
                .map(|callback| (callback.name().to_string(), callback.state()))
                .collect(),
        };
        checkpointer.commit(&point, vs, &optimizer.state())?;
        optimizer.swap_out_average();
        stop = stop_reason(Some(&point.last), callbacks);
        last = Some(point.last);
    }
    let outcome = stop.unwrap_or(Outcome::Finished);
    for callback in callbacks.iter_mut() {
        callback.on_end(outcome)?;
    }
    Ok(Fitted {
        outcome,
        epochs: last.as_ref().map_or(0, |record| record.epoch),
        best: best.record,
        last,
    })
}

/// Trains and validates epoch `epoch` (1-based), after the committed epoch `previous`.
fn run_epoch(
    network: Learner,
    optimizer: &mut Optimizer,
    data: &Dataset,
    training: &Training,
    epoch: usize,
    previous: Option<&EpochRecord>,
) -> Result<EpochRecord> {
    let start = Instant::now();
    let cpu_start = cpu_time::process_cpu_seconds();
    let rate = learning_rate(training, epoch);
    let seed = training.seed.wrapping_add(epoch as u64 * 1_000_003);
    let (train_loss, train_accuracy) = crate::random::with_stream(seed, || {
        train_epoch(
            network.model,
            network.fused,
            optimizer,
            rate,
            &data.train,
            training,
        )
    });
    // An epoch cut short by a signal is dropped: no need to validate it first (a deep
    // CNN's validation pass can outlast a scheduler's grace period).
    crate::train::stop::check()?;
    // Under `ema` the average is evaluated and committed; `fit` swaps it out after.
    optimizer.swap_in_average();
    let val = evaluate(network.model, &data.val)?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_time::process_cpu_seconds() - cpu_start;
    // A run resumed from a state written before these were recorded counts as unknown.
    let (before, cpu_before) = previous.map_or((0.0, 0.0), |previous| {
        (previous.cumulative_seconds, previous.cumulative_cpu_seconds)
    });
    Ok(EpochRecord {
        epoch,
        train_loss,
        train_accuracy,
        val_loss: val.loss,
        val_accuracy: val.accuracy,
        seconds,
        val_auc: val.auc,
        val_balanced_accuracy: val.balanced_accuracy,
        cpu_seconds,
        cumulative_seconds: before + seconds,
        cumulative_cpu_seconds: cpu_before + cpu_seconds,
    })
}

/// Why training must end after `last`, if it must: checked after every epoch and
/// before the first one of a resumed run, so a run killed after its stopping epoch
/// ends where an uninterrupted one did.
fn stop_reason(last: Option<&EpochRecord>, callbacks: &[&mut dyn Callback]) -> Option<Outcome> {
    let last = last?;
    if !last.is_finite() {
        Some(Outcome::Diverged)
    } else if callbacks.iter().any(|callback| callback.should_stop()) {
        Some(Outcome::StoppedEarly)
    } else if callbacks.iter().any(|callback| callback.should_pause()) {
        Some(Outcome::Paused)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;
    use crate::models::{InputShape, ModelSpec};
    use crate::study::manifest::TrainingOverrides;
    use tch::{Device, Kind, Tensor};

    /// Stops whenever asked; records what the loop told it.
    #[derive(Default)]
    struct Recorder {
        stop: bool,
        started_after: Option<Option<usize>>,
        epochs: Vec<usize>,
        outcome: Option<Outcome>,
    }

    impl Callback for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn on_start(&mut self, resumed: Option<&EpochRecord>) -> Result<()> {
            self.started_after = Some(resumed.map(|record| record.epoch));
            Ok(())
        }
        fn on_epoch_end(&mut self, record: &EpochRecord) -> Result<()> {
            self.epochs.push(record.epoch);
            Ok(())
        }
        fn should_stop(&self) -> bool {
            self.stop
        }
        fn on_end(&mut self, outcome: Outcome) -> Result<()> {
            self.outcome = Some(outcome);
            Ok(())
        }
        fn state(&self) -> Value {
            Value::Bool(self.stop)
        }
        fn restore(&mut self, state: &Value) -> Result<()> {
            self.stop = state.as_bool().context("a bool")?;
            Ok(())
        }
    }

    /// The epochs committed, with the callbacks' states.
    #[derive(Default)]
    struct Commits(Vec<ResumePoint>);

    impl Checkpointer for Commits {
        fn commit(
            &mut self,
            point: &ResumePoint,
            _vs: &nn::VarStore,
            _optimizer: &OptimizerState,
        ) -> Result<()> {
            self.0.push(point.clone());
            Ok(())
        }
    }

    fn tiny() -> (
        nn::VarStore,
        Box<dyn crate::models::Network>,
        Dataset,
        Training,
    ) {
        let input = InputShape {
            channels: 1,
            height: 2,
            width: 2,
            classes: 2,
        };
        let split = |rows: i64| Split {
            images: crate::data::Images::Pixels(
                Tensor::randint(256, [rows, 2, 2, 1], (Kind::Int64, Device::Cpu))
                    .to_kind(Kind::Uint8),
            ),
            labels: Tensor::arange(rows, (Kind::Int64, Device::Cpu)).remainder(2),
            task: crate::study::task::Task::BinaryClass,
        };
        let data = Dataset {
            path: "tiny.npz".into(),
            md5: String::new(),
            train: split(8),
            val: split(4),
            test: split(4),
            input,
            task: crate::study::task::Task::BinaryClass,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let spec: ModelSpec = serde_yaml::from_str("{kind: mlp, hidden: 3}").unwrap();
        let model = spec.build(&vs.root(), input);
        let training = serde_yaml::from_str::<TrainingOverrides>("{epochs: 5}")
            .unwrap()
            .resolve()
            .unwrap();
        (vs, model, data, training)
    }

    fn point(last: EpochRecord, stop: bool) -> ResumePoint {
        let mut best = BestEpoch::new(Monitor::ValLoss);
        best.offer(&last);
        ResumePoint {
            last,
            best,
            callbacks: [("recorder".to_string(), Value::Bool(stop))].into(),
        }
    }

    fn fit_tiny(resumed: Option<ResumePoint>) -> (Fitted, Recorder, Commits) {
        let resumed = resumed.map(|point| Resumed {
            point,
            optimizer: OptimizerState::default(),
        });
        let (vs, model, data, training) = tiny();
        let network = Learner {
            model: model.as_ref(),
            fused: None,
        };
        let (mut recorder, mut commits) = (Recorder::default(), Commits::default());
        let fitted = fit(
            network,
            &vs,
            &data,
            &training,
            resumed,
            &mut [&mut recorder],
            &mut commits,
        )
        .unwrap();
        (fitted, recorder, commits)
    }

    #[test]
    fn every_epoch_is_committed_with_the_callbacks_states() {
        let (fitted, recorder, commits) = fit_tiny(None);
        assert_eq!((fitted.outcome, fitted.epochs), (Outcome::Finished, 5));
        assert_eq!(recorder.started_after, Some(None));
        assert_eq!(recorder.epochs, [1, 2, 3, 4, 5]);
        assert_eq!(recorder.outcome, Some(Outcome::Finished));
        let committed: Vec<usize> = commits.0.iter().map(|point| point.last.epoch).collect();
        assert_eq!(committed, [1, 2, 3, 4, 5]);
        assert!(commits
            .0
            .iter()
            .all(|point| point.callbacks["recorder"] == Value::Bool(false)));
        assert_eq!(fitted.best.as_ref(), commits.0[4].best.record());
    }

    #[test]
    fn a_resumed_run_continues_after_its_last_epoch_with_its_restored_state() {
        let (fitted, recorder, commits) = fit_tiny(Some(point(record(3, 0.5, 0.5), false)));
        assert_eq!(recorder.started_after, Some(Some(3)));
        assert_eq!(recorder.epochs, [4, 5]);
        assert_eq!((fitted.outcome, fitted.epochs), (Outcome::Finished, 5));
        assert_eq!(commits.0.len(), 2);
    }

    #[test]
    fn a_run_resumed_after_its_stopping_epoch_ends_there() {
        let (fitted, recorder, commits) = fit_tiny(Some(point(record(3, 0.5, 0.5), true)));
        assert_eq!((fitted.outcome, fitted.epochs), (Outcome::StoppedEarly, 3));
        assert!(recorder.epochs.is_empty() && commits.0.is_empty());
        assert_eq!(fitted.best.map(|best| best.epoch), Some(3));

        let diverged = record(3, f64::NAN, 0.5);
        let (fitted, recorder, _) = fit_tiny(Some(point(diverged, false)));
        assert_eq!((fitted.outcome, fitted.epochs), (Outcome::Diverged, 3));
        assert!(recorder.epochs.is_empty());
    }

    fn record(epoch: usize, val_loss: f64, val_accuracy: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 0.0,
            train_accuracy: 0.0,
            val_loss,
            val_accuracy,
            seconds: 0.0,
            val_auc: f64::NAN,
            val_balanced_accuracy: f64::NAN,
            cpu_seconds: 1.0,
            cumulative_seconds: 1.0,
            cumulative_cpu_seconds: 1.0,
        }
    }

    #[test]
    fn the_best_epoch_follows_the_monitor_and_never_takes_a_non_finite_value() {
        let mut by_loss = BestEpoch::new(Monitor::ValLoss);
        let offers: Vec<bool> = [f64::NAN, 1.0, 0.8, 0.9, f64::NEG_INFINITY, 0.8, 0.7]
            .into_iter()
            .enumerate()
            .map(|(i, loss)| by_loss.offer(&record(i + 1, loss, 0.0)))
            .collect();
        assert_eq!(offers, [false, true, true, false, false, false, true]);
        assert_eq!(by_loss.record().unwrap().epoch, 7);

        let mut by_accuracy = BestEpoch::new(Monitor::ValAccuracy);
        for (i, accuracy) in [0.5, 0.7, 0.6, f64::NAN].into_iter().enumerate() {
            by_accuracy.offer(&record(i + 1, 1.0, accuracy));
        }
        assert_eq!(by_accuracy.record().unwrap().epoch, 2);

        let mut by_auc = BestEpoch::new(Monitor::ValAuc);
        for (i, auc) in [0.8, f64::NAN, 0.9, 0.85].into_iter().enumerate() {
            by_auc.offer(&EpochRecord {
                val_auc: auc,
                ..record(i + 1, 1.0, 0.9)
            });
        }
        assert_eq!(by_auc.record().unwrap().epoch, 3);
        let balanced = |epoch, value| EpochRecord {
            val_balanced_accuracy: value,
            cpu_seconds: 1.0,
            cumulative_seconds: 1.0,
            cumulative_cpu_seconds: 1.0,
            ..record(epoch, 1.0, 0.5)
        };
        let mut by_balanced = BestEpoch::new(Monitor::ValBalancedAccuracy);
        assert!(by_balanced.offer(&balanced(1, 0.6)));
        assert!(!by_balanced.offer(&balanced(2, 0.6)), "equal is not better");
        assert!(by_balanced.offer(&balanced(3, 0.7)));
    }
}

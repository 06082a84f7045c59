//! The training loop. It knows nothing of files: loggers, checkpoints and progress
//! bars are observers it calls at each epoch's end.

use crate::data::{Dataset, Split};
use crate::manifest::{Optimizer, Training};
use anyhow::Result;
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

/// Evaluation batches are large: no gradients are kept, so memory is not the limit.
const EVAL_BATCH: i64 = 1024;

/// One epoch's metrics, as Keras logs them: train values are running means over the
/// epoch's batches (dropout active), validation values come from eval mode.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

pub trait EpochObserver {
    fn on_epoch_end(&mut self, record: &EpochRecord, vs: &nn::VarStore) -> Result<()>;
}

/// Mean cross-entropy and accuracy over a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
}

/// Trains `model` (whose parameters are `vs`) for `training.epochs` epochs on the
/// holdout train split, validating after each.
pub fn fit(
    model: &dyn nn::ModuleT,
    vs: &nn::VarStore,
    data: &Dataset,
    training: &Training,
    observers: &mut [&mut dyn EpochObserver],
) -> Result<()> {
    let mut optimizer = match training.optimizer {
        Optimizer::Sgd => nn::Sgd::default().build(vs, training.learning_rate)?,
        // Keras' Adam epsilon is 1e-7, PyTorch's 1e-8.
        Optimizer::Adam => nn::Adam {
            eps: 1e-7,
            ..Default::default()
        }
        .build(vs, training.learning_rate)?,
    };
    for epoch in 1..=training.epochs {
        let start = Instant::now();
        let train = train_epoch(model, &mut optimizer, &data.train, training.batch_size);
        let val = evaluate(model, &data.val);
        let record = EpochRecord {
            epoch,
            train_loss: train.loss,
            train_accuracy: train.accuracy,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        for observer in observers.iter_mut() {
            observer.on_epoch_end(&record, vs)?;
        }
    }
    Ok(())
}

/// One pass over `split` in a fresh random order. Metrics accumulate on the device,
/// so the loop never waits for the device until the epoch ends.
fn train_epoch(
    model: &dyn nn::ModuleT,
    optimizer: &mut nn::Optimizer,
    split: &Split,
    batch_size: usize,
) -> Evaluation {
    let device = split.images.device();
    let rows = split.len();
    let order = Tensor::randperm(rows, (Kind::Int64, device));
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut correct = Tensor::zeros([], (Kind::Int64, device));
    for start in (0..rows).step_by(batch_size) {
        let index = order.narrow(0, start, (batch_size as i64).min(rows - start));
        let labels = split.labels.index_select(0, &index);
        let logits = model.forward_t(&split.images.index_select(0, &index), true);
        let loss = logits.cross_entropy_for_logits(&labels);
        optimizer.backward_step(&loss);
        tch::no_grad(|| {
            loss_sum += loss * index.size()[0] as f64;
            correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
        });
    }
    Evaluation {
        loss: loss_sum.double_value(&[]) / rows as f64,
        accuracy: correct.double_value(&[]) / rows as f64,
    }
}

/// Loss and accuracy of `model` in eval mode over a whole split.
pub fn evaluate(model: &dyn nn::ModuleT, split: &Split) -> Evaluation {
    let logits = predict(model, &split.images);
    tch::no_grad(|| Evaluation {
        loss: logits
            .cross_entropy_for_logits(&split.labels)
            .double_value(&[]),
        accuracy: logits
            .argmax(-1, false)
            .eq_tensor(&split.labels)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]),
    })
}

/// Class logits for every image, in eval mode, without gradients.
pub fn predict(model: &dyn nn::ModuleT, images: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let batches: Vec<Tensor> = images
            .split(EVAL_BATCH, 0)
            .iter()
            .map(|batch| model.forward_t(batch, false))
            .collect();
        Tensor::cat(&batches, 0)
    })
}

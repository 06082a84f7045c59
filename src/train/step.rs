//! One epoch's work: batches in a fresh order, the optimizer's step (fused for a first
//! dense layer under plain SGD), augmentation, the learning-rate schedule, and
//! evaluation in eval mode. Every random draw is the run's own (`random`).

use super::augment::augment;
use super::device;
use super::optimizer::Optimizer;
use super::targets;
use crate::data::{Images, Split};
use crate::metrics::TestReport;
use crate::random;
use crate::study::manifest::{Schedule, Training};
use crate::study::task::Task;
use tch::nn;
use tch::{Kind, Tensor};

/// A first dense layer trained by plain SGD without its weight gradient: autograd stops
/// at the layer's output, and the update W -= lr * dY^T X is one GEMM into W itself. For
/// the 4096-unit MLP this skips a 38 MB gradient that libtorch would allocate, add into
/// `.grad` and read again in the SGD step, every batch. The arithmetic is that of SGD.
#[derive(Clone, Copy)]
pub struct FusedInputDense<'a> {
    pub layer: &'a nn::Linear,
    pub rest: &'a dyn nn::ModuleT,
}

impl<'a> FusedInputDense<'a> {
    /// The fused step applies when the optimizer is plain SGD without weight decay and
    /// the layer trains.
    pub fn for_training(
        parts: Option<(&'a nn::Linear, &'a dyn nn::ModuleT)>,
        training: &Training,
    ) -> Option<Self> {
        let (layer, rest) = parts?;
        // The weight average updates after the optimizer's step, which the fused
        // layer's update follows.
        (training.plain_sgd() && training.ema == 0.0 && layer.ws.requires_grad())
            .then_some(FusedInputDense { layer, rest })
    }

    /// Forward and backward of one batch, updating the layer; returns the logits and
    /// loss, whose backward already ran through `rest`.
    fn step(
        &self,
        images: &Tensor,
        loss_of: impl Fn(&Tensor) -> Tensor,
        optimizer: &mut Optimizer,
        learning_rate: f64,
    ) -> (Tensor, Tensor) {
        let inputs = images.flatten(1, -1);
        let layer = self.layer;
        let pre_activation =
            tch::no_grad(|| inputs.linear(&layer.ws, layer.bs.as_ref())).set_requires_grad(true);
        let logits = self.rest.forward_t(&pre_activation, true);
        let loss = loss_of(&logits);
        let grads = optimizer.backward_step(&loss, learning_rate, &[&pre_activation]);
        tch::no_grad(|| {
            let step = &grads[0] * -learning_rate;
            let _ = layer.ws.shallow_clone().addmm_(&step.tr(), &inputs);
            if let Some(bias) = &layer.bs {
                let _ = bias
                    .shallow_clone()
                    .g_add_(&step.sum_dim_intlist(0, false, Kind::Float));
            }
        });
        (logits, loss)
    }
}

/// The learning rate of `epoch` (1-based) under the run's schedule, after a linear
/// warm-up over its first `warmup_epochs`: k/(n+1) of the scheduled rate in epoch k.
pub fn learning_rate(training: &Training, epoch: usize) -> f64 {
    let scheduled = scheduled_rate(training, epoch);
    let warmup = training.warmup_epochs;
    if epoch <= warmup {
        scheduled * epoch as f64 / (warmup + 1) as f64
    } else {
        scheduled
    }
}

fn scheduled_rate(training: &Training, epoch: usize) -> f64 {
    let done = (epoch - 1) as f64;
    match training.schedule {
        Schedule::Constant => training.learning_rate,
        Schedule::Cosine => {
            let progress = done / training.epochs as f64;
            training.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Schedule::Step => {
            let steps = (epoch - 1) / training.step_size;
            training.learning_rate * training.gamma.powi(steps as i32)
        }
        Schedule::Multistep => {
            let done = epoch - 1;
            let passed = training.milestones.iter().filter(|&&m| m <= done).count();
            training.learning_rate * training.gamma.powi(passed as i32)
        }
    }
}

/// One pass over `split` in a fresh random order; returns the running mean loss and
/// accuracy (of classes, or of every label decision). Metrics accumulate on the device,
/// so the loop never waits for the device until the epoch ends.
pub fn train_epoch(
    model: &dyn nn::ModuleT,
    fused: Option<FusedInputDense>,
    optimizer: &mut Optimizer,
    learning_rate: f64,
    split: &Split,
    training: &Training,
) -> (f64, f64) {
    let batch_size = training.batch_size;
    let device = split.images.device();
    let rows = split.len();
    let task = split.task;
    let order = random::draw(|| Tensor::randperm(rows, (Kind::Int64, device)));
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    // Double, since a mixed batch's right decisions come in shares of images.
    let mut correct = Tensor::zeros([], (Kind::Double, device));
    for start in (0..rows).step_by(batch_size) {
        if crate::train::stop::requested() {
            break; // fit drops this epoch
        }
        let index = order.narrow(0, start, (batch_size as i64).min(rows - start));
        let labels = split.labels.index_select(0, &index);
        let images = augment(&split.images.select(&index), training);
        let (images, targets) = BatchTargets::of(images, labels, training);
        let loss_of = |logits: &Tensor| targets.loss(task, logits);
        let (logits, loss) = match &fused {
            Some(fused) => fused.step(&images, loss_of, optimizer, learning_rate),
            None => {
                let logits = model.forward_t(&images, true);
                let loss = loss_of(&logits);
                optimizer.backward_step(&loss, learning_rate, &[]);
                (logits, loss)
            }
        };
        let labels = &targets.labels;
        device::debug_assert_on(
            device,
            &[
                ("batch order", &index),
                ("images", &images),
                ("labels", labels),
                ("logits", &logits),
                ("loss", &loss),
            ],
        );
        tch::no_grad(|| {
            loss_sum += loss * index.size()[0] as f64;
            correct += targets.correct(task, &logits);
        });
    }
    // A class per image, or a yes/no per label: one decision per label value.
    let decisions = split.labels.numel();
    (
        loss_sum.double_value(&[]) / rows as f64,
        correct.double_value(&[]) / decisions as f64,
    )
}

/// What a training batch's loss and accuracy are taken against: its labels, or soft
/// targets under label smoothing, mixup or cutmix.
struct BatchTargets {
    labels: Tensor,
    smoothing: f64,
    /// The share of each image's own labels when the batch was mixed; the rest are its
    /// partner's.
    own_share: Option<f64>,
}

impl BatchTargets {
    /// The batch's images (mixed, when the run mixes) and their targets.
    fn of(images: Tensor, labels: Tensor, training: &Training) -> (Tensor, Self) {
        let (images, own_share) = match targets::mix(&images, training) {
            Some(mixed) => (mixed.images, Some(mixed.own_share)),
            None => (images, None),
        };
        let targets = BatchTargets {
            labels,
            smoothing: training.label_smoothing,
            own_share,
        };
        (images, targets)
    }

    fn loss(&self, task: Task, logits: &Tensor) -> Tensor {
        if self.own_share.is_none() && self.smoothing == 0.0 {
            return task.loss(logits, &self.labels);
        }
        let outputs = logits.size()[1];
        let smoothed = targets::smoothed(task, &self.labels, outputs, self.smoothing);
        let soft = match self.own_share {
            Some(own_share) => targets::mixed(&smoothed, own_share),
            None => smoothed,
        };
        task.loss_against_probabilities(logits, &soft)
    }

    /// Right decisions against each image's own labels and, in its share, its partner's.
    fn correct(&self, task: Task, logits: &Tensor) -> Tensor {
        let own = task.correct(logits, &self.labels);
        let Some(own_share) = self.own_share else {
            return own;
        };
        let partner = task.correct(logits, &self.labels.flip([0]));
        own.to_kind(Kind::Double) * own_share + partner.to_kind(Kind::Double) * (1.0 - own_share)
    }
}

/// A model's scores on a whole split in eval mode: mean loss and accuracy (of classes,
/// or of every label decision), and the AUC and balanced accuracy the MedMNIST
/// evaluator would report for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub auc: f64,
    pub balanced_accuracy: f64,
}

/// Scores `model` in eval mode over a whole split. The AUC and balanced accuracy are
/// `TestReport`'s, so an epoch's val AUC is what `cellnets eval` says of its weights.
pub fn evaluate(model: &dyn nn::ModuleT, split: &Split) -> anyhow::Result<Evaluation> {
    let logits = predict(model, &split.images);
    let task = split.task;
    let device = split.labels.device();
    device::debug_assert_on(device, &[("logits", &logits), ("labels", &split.labels)]);
    let (loss, accuracy) = tch::no_grad(|| {
        let correct = task.correct(&logits, &split.labels).double_value(&[]);
        let decisions = split.labels.numel();
        // In float32, as the mean libtorch took of it before: logged val accuracies
        // stay the same to the last digit.
        let accuracy = correct as f32 / decisions as f32;
        (
            task.loss(&logits, &split.labels).double_value(&[]),
            f64::from(accuracy),
        )
    });
    let scores = TestReport::of(&logits, split)?.point_estimates();
    Ok(Evaluation {
        loss,
        accuracy,
        auc: scores.auc,
        balanced_accuracy: scores.balanced_accuracy,
    })
}

/// Logits for every image, in eval mode, without gradients; in float32 also under bf16
/// autocast, so that what reads them needs to know of one kind only.
pub fn predict(model: &dyn nn::ModuleT, images: &Images) -> Tensor {
    tch::no_grad(|| {
        let batches: Vec<Tensor> = images
            .batches()
            .map(|batch| model.forward_t(&batch, false).to_kind(Kind::Float))
            .collect();
        Tensor::cat(&batches, 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::training;
    use tch::Device;

    #[test]
    fn the_fused_input_layer_step_is_plain_sgd() {
        use crate::models::{Activation, ModelSpec};
        let spec = ModelSpec::Mlp {
            hidden: 16,
            activation: Activation::Relu,
            dropout: 0.0,
        };
        let input = crate::models::InputShape {
            channels: 2,
            height: 3,
            width: 3,
            classes: 4,
        };
        let plain = training("{epochs: 1, learning_rate: 0.5}");
        let images = Tensor::rand([8, 2, 3, 3], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 3, 2, 1, 0]);
        // Tests share libtorch's random generator across threads, so the second model
        // gets the first one's weights by copy, not by reseeding.
        let initial = nn::VarStore::new(Device::Cpu);
        spec.build(&initial.root(), input);
        let mut weights = Vec::new();
        for fuse in [false, true] {
            let mut vs = nn::VarStore::new(Device::Cpu);
            let model = spec.build(&vs.root(), input);
            vs.copy(&initial).unwrap();
            let mut optimizer = Optimizer::new(&vs, &plain);
            let fused = FusedInputDense::for_training(model.split_input_dense(), &plain);
            assert!(fused.is_some());
            for _ in 0..3 {
                match fused.filter(|_| fuse) {
                    Some(fused) => {
                        let loss_of = |logits: &Tensor| Task::MultiClass.loss(logits, &labels);
                        let _ = fused.step(&images, loss_of, &mut optimizer, 0.5);
                    }
                    None => {
                        let loss = model
                            .forward_t(&images, true)
                            .cross_entropy_for_logits(&labels);
                        optimizer.backward_step(&loss, 0.5, &[]);
                    }
                }
            }
            let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            variables.sort_by(|a, b| a.0.cmp(&b.0));
            weights.push(variables);
        }
        for ((name, textbook), (_, fused)) in weights[0].iter().zip(&weights[1]) {
            assert!(
                textbook.allclose(fused, 1e-5, 1e-6, false),
                "{name} differs"
            );
        }
        let hidden = weights[1]
            .iter()
            .find(|(name, _)| name == "hidden.weight")
            .unwrap();
        assert!(
            !hidden
                .1
                .allclose(&initial.variables()["hidden.weight"], 1e-5, 1e-6, false),
            "the fused step moved nothing"
        );
    }

    #[test]
    fn the_fused_step_is_off_for_stateful_optimizers_and_frozen_layers() {
        use crate::models::{Activation, ModelSpec};
        let spec = ModelSpec::Mlp {
            hidden: 4,
            activation: Activation::Relu,
            dropout: 0.0,
        };
        let input = crate::models::InputShape {
            channels: 1,
            height: 2,
            width: 2,
            classes: 2,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = spec.build(&vs.root(), input);
        for settings in [
            "{epochs: 1, momentum: 0.9}",
            "{epochs: 1, optimizer: adam}",
            "{epochs: 1, weight_decay: 0.1}",
        ] {
            let settings = training(settings);
            assert!(FusedInputDense::for_training(model.split_input_dense(), &settings).is_none());
        }
        crate::runner::transfer::freeze(&vs, &["hidden".to_string()]).unwrap();
        let plain = training("{epochs: 1}");
        assert!(FusedInputDense::for_training(model.split_input_dense(), &plain).is_none());
    }

    #[test]
    fn schedules_move_the_learning_rate() {
        let cosine = training("{epochs: 10, learning_rate: 0.1, schedule: cosine}");
        assert_eq!(learning_rate(&cosine, 1), 0.1);
        assert!((learning_rate(&cosine, 6) - 0.05).abs() < 1e-12);
        let step =
            training("{epochs: 10, learning_rate: 0.1, schedule: step, step_size: 3, gamma: 0.5}");
        let rates: Vec<f64> = (1..=7).map(|epoch| learning_rate(&step, epoch)).collect();
        assert_eq!(rates, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]);
        let multistep = training(
            "{epochs: 100, learning_rate: 0.001, schedule: multistep, milestones: [50, 75], gamma: 0.1}",
        );
        let at = |epoch| learning_rate(&multistep, epoch);
        // As PyTorch's MultiStepLR stepped after each epoch: 50 epochs at the full rate.
        assert_eq!(at(50), 0.001);
        assert!((at(51) - 1e-4).abs() < 1e-15 && (at(75) - 1e-4).abs() < 1e-15);
        assert!((at(76) - 1e-5).abs() < 1e-15 && (at(100) - 1e-5).abs() < 1e-15);
        let constant = training("{epochs: 10}");
        assert_eq!(learning_rate(&constant, 10), 0.01);
        // A linear warm-up: 1/4, 2/4, 3/4 of the cosine schedule's rate, then the schedule.
        let warm = training("{epochs: 10, learning_rate: 0.1, schedule: cosine, warmup_epochs: 3}");
        for epoch in 1..=3 {
            let expected = learning_rate(&cosine, epoch) * epoch as f64 / 4.0;
            assert!((learning_rate(&warm, epoch) - expected).abs() < 1e-15);
        }
        assert_eq!(learning_rate(&warm, 4), learning_rate(&cosine, 4));
    }

    #[test]
    fn every_model_trains_and_evaluates_under_bf16_autocast() {
        use crate::models::{InputShape, ModelSpec};
        use crate::precision::Bf16Autocast;
        let input = InputShape {
            channels: 3,
            height: 28,
            width: 28,
            classes: 4,
        };
        let split = Split {
            images: Images::Pixels(Tensor::randint(
                256,
                [8, 28, 28, 3],
                (Kind::Uint8, Device::Cpu),
            )),
            labels: Tensor::from_slice(&[0i64, 1, 2, 3, 3, 2, 1, 0]),
            task: Task::MultiClass,
        };
        let settings = training("{epochs: 1, batch_size: 4, momentum: 0.9}");
        for kind in [
            "{kind: mlp, hidden: 16}",
            "{kind: cnn, kernels: 4, kernel_size: 3}",
            "{kind: dense_cnn}",
            "{kind: resnet18}",
        ] {
            let spec: ModelSpec = serde_yaml::from_str(kind).unwrap();
            let vs = nn::VarStore::new(Device::Cpu);
            let model = spec.build(&vs.root(), input);
            let before: Vec<Tensor> = vs.trainable_variables().iter().map(Tensor::copy).collect();
            let mut optimizer = Optimizer::new(&vs, &settings);
            let _autocast = Bf16Autocast::enter(Device::Cpu).unwrap();
            let (loss, _) = train_epoch(
                model.as_ref(),
                None,
                &mut optimizer,
                0.01,
                &split,
                &settings,
            );
            let evaluation = evaluate(model.as_ref(), &split).unwrap();
            assert!(
                loss.is_finite() && evaluation.loss.is_finite(),
                "{kind}: {loss} {evaluation:?}"
            );
            assert_eq!(
                predict(model.as_ref(), &split.images).kind(),
                Kind::Float,
                "{kind}"
            );
            let after = vs.trainable_variables();
            assert!(
                after.iter().all(|v| v.kind() == Kind::Float),
                "{kind}: weights left float32"
            );
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| !b.equal(a))
                .count();
            assert_eq!(moved, after.len(), "{kind}: every variable steps");
        }
    }
}

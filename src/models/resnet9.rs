//! The DAWNBench ResNet-9: a small residual net that trains in minutes.

use super::batch_norm::{pytorch_batch_norm, ConvNorm};
use super::mlp::dense;
use super::network::{conv, InputShape, Network};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The DAWNBench ResNet-9 (Page's, which airbench descends from): a small residual net
/// that trains in minutes. Stages of `width`, 2, 4 and 8 times `width` channels, each
/// a 3x3 convolution, BatchNorm and ReLU; the second, third and fourth halve the
/// resolution with a max-pool, and the second and fourth add a residual pair of such
/// layers. A global max-pool and a linear head, whose logits are scaled by 1/8 (the
/// recipe's, so that a high learning rate stays stable). On 28x28 images: 28, 14, 7,
/// then 3 pixels a side.
#[derive(Debug)]
pub struct ResNet9 {
    layers: Vec<Stage>,
    head: nn::Linear,
}

#[derive(Debug)]
struct Stage {
    entry: ConvNorm<nn::BatchNorm>,
    pool: bool,
    residual: Option<(ConvNorm<nn::BatchNorm>, ConvNorm<nn::BatchNorm>)>,
}

/// A 3x3 convolution and its BatchNorm, under `conv` and `norm`; ReLU follows.
fn conv_norm(path: nn::Path, inputs: i64, outputs: i64) -> ConvNorm<nn::BatchNorm> {
    ConvNorm::new(
        conv(&path / "conv", inputs, outputs, 3, 1, false),
        pytorch_batch_norm(&path / "norm", outputs),
    )
}

/// The logits' scale in the recipe.
const LOGIT_SCALE: f64 = 0.125;

impl ResNet9 {
    pub fn new(path: &nn::Path, input: InputShape, width: i64) -> Self {
        let mut layers = Vec::new();
        let mut channels = input.channels;
        for (index, (multiple, pool, residual)) in [
            (1, false, false),
            (2, true, true),
            (4, true, false),
            (8, true, true),
        ]
        .into_iter()
        .enumerate()
        {
            let outputs = width * multiple;
            let stage = path / format!("layer{index}");
            layers.push(Stage {
                entry: conv_norm(&stage / "entry", channels, outputs),
                pool,
                residual: residual.then(|| {
                    (
                        conv_norm(&stage / "residual1", outputs, outputs),
                        conv_norm(&stage / "residual2", outputs, outputs),
                    )
                }),
            });
            channels = outputs;
        }
        ResNet9 {
            layers,
            head: dense(&(path / "head"), channels, input.classes),
        }
    }
}

impl ModuleT for ResNet9 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let features = self.layers.iter().fold(xs.shallow_clone(), |xs, stage| {
            let mut xs = stage.entry.forward_t(&xs, train).relu();
            if stage.pool {
                xs = xs.max_pool2d_default(2);
            }
            match &stage.residual {
                Some((first, second)) => {
                    let branch = first.forward_t(&xs, train).relu();
                    let branch = second.forward_t(&branch, train).relu();
                    xs + branch
                }
                None => xs,
            }
        });
        features.amax([2i64, 3].as_slice(), false).apply(&self.head) * LOGIT_SCALE
    }
}

impl Network for ResNet9 {
    fn fold_batch_norms(&mut self) {
        for stage in &mut self.layers {
            stage.entry.fold();
            if let Some((first, second)) = &mut stage.residual {
                first.fold();
                second.fold();
            }
        }
    }
}

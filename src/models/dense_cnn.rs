//! The study's deep CNN, DenseNet-style: a stem, one dense block and a linear head.

use super::batch_norm::{ConvNorm, KerasBatchNorm};
use super::mlp::dense;
use super::network::{conv, InputShape, Network};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The study's deep CNN, DenseNet-style: a 7x7 stem with BN, ReLU and 2x2 max pooling,
/// one dense block whose layers each add `growth` feature maps to their input, global
/// average pooling and a linear head.
#[derive(Debug)]
pub struct DenseCnn {
    stem: ConvNorm<KerasBatchNorm>,
    block: Vec<DenseLayer>,
    head: nn::Linear,
}

/// BN -> ReLU -> conv 1x1 (bottleneck) -> BN -> ReLU -> conv 3x3 (growth), concatenated to its input.
#[derive(Debug)]
struct DenseLayer {
    norm1: KerasBatchNorm,
    /// The bottleneck convolution and the norm right after it (only these fold: norm1
    /// follows a concatenation, not a convolution).
    bottleneck: ConvNorm<KerasBatchNorm>,
    conv2: nn::Conv2D,
}

impl DenseCnn {
    pub fn new(
        path: &nn::Path,
        input: InputShape,
        stem_filters: i64,
        stem_kernel: i64,
        layers: i64,
        growth: i64,
        bottleneck: i64,
    ) -> Self {
        let mut channels = stem_filters;
        let block = (0..layers)
            .map(|i| {
                let layer = path / format!("block{i}");
                let dense_layer = DenseLayer {
                    norm1: KerasBatchNorm::new(&layer / "norm1", channels),
                    bottleneck: ConvNorm::new(
                        conv(&layer / "conv1", channels, bottleneck, 1, 1, true),
                        KerasBatchNorm::new(&layer / "norm2", bottleneck),
                    ),
                    conv2: conv(&layer / "conv2", bottleneck, growth, 3, 1, true),
                };
                channels += growth;
                dense_layer
            })
            .collect();
        DenseCnn {
            stem: ConvNorm::new(
                conv(
                    path / "stem",
                    input.channels,
                    stem_filters,
                    stem_kernel,
                    1,
                    true,
                ),
                KerasBatchNorm::new(path / "stem_norm", stem_filters),
            ),
            block,
            head: dense(&(path / "head"), channels, input.classes),
        }
    }
}

impl ModuleT for DenseLayer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply_t(&self.norm1, train)
            .relu()
            .apply_t(&self.bottleneck, train)
            .relu()
            .apply(&self.conv2);
        Tensor::cat(&[xs, &ys], 1)
    }
}

impl ModuleT for DenseCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let stem = xs
            .apply_t(&self.stem, train)
            .relu()
            // ceil_mode: Keras' "same" pooling keeps the last row and column of odd sizes.
            .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true);
        let features = self
            .block
            .iter()
            .fold(stem, |xs, layer| layer.forward_t(&xs, train));
        features
            .mean_dim([2i64, 3].as_slice(), false, None)
            .apply(&self.head)
    }
}

impl Network for DenseCnn {
    fn fold_batch_norms(&mut self) {
        self.stem.fold();
        for layer in &mut self.block {
            layer.bottleneck.fold();
        }
    }
}

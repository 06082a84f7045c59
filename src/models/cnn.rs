//! The study's shallow CNN: one convolution, ReLU, pooling and a linear head.

use super::mlp::dense;
use super::network::{conv, InputShape, Network, Pool};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The study's shallow CNN: one "same"-padded convolution, ReLU, 2x2 pooling and a
/// linear head over the flattened feature map.
#[derive(Debug)]
pub struct ShallowCnn {
    features: ConvFeatures,
    head: nn::Linear,
}

/// conv -> ReLU -> pool -> flatten: everything in front of the head.
#[derive(Debug)]
struct ConvFeatures {
    conv: nn::Conv2D,
    pool: Pool,
}

impl ShallowCnn {
    pub fn new(
        path: &nn::Path,
        input: InputShape,
        kernels: i64,
        kernel_size: i64,
        pool: Pool,
    ) -> Self {
        let conv = conv(path / "conv", input.channels, kernels, kernel_size, 1, true);
        // Keras pools with "valid" padding: odd sizes lose their last row and column.
        let features = kernels * (input.height / 2) * (input.width / 2);
        ShallowCnn {
            features: ConvFeatures { conv, pool },
            head: dense(&(path / "head"), features, input.classes),
        }
    }
}

impl ModuleT for ConvFeatures {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let maps = xs.apply(&self.conv).relu();
        let pooled = match self.pool {
            Pool::Max => maps.max_pool2d_default(2),
            Pool::Avg => maps.avg_pool2d_default(2),
        };
        pooled.flatten(1, -1)
    }
}

impl ModuleT for ShallowCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train).apply(&self.head)
    }
}

impl Network for ShallowCnn {
    fn split_frozen(&self, frozen: &[String]) -> Option<(&dyn ModuleT, &dyn ModuleT)> {
        (frozen == ["conv"]).then_some((&self.features as &dyn ModuleT, &self.head as &dyn ModuleT))
    }
}

//! What every model shares: the `Network` interface the trainer runs, the input shape
//! a model is built for, its activations and pooling, Keras' initialiser and "same"
//! convolution, and parameter counts.

use serde::{Deserialize, Serialize};
use tch::nn;

/// A model the trainer can run. Beyond `nn::ModuleT`, it may say how it splits
/// around frozen layers.
pub trait Network: nn::ModuleT {
    /// When the layers under the `frozen` path prefixes are exactly a feature extractor
    /// in front of the trainable rest, returns (extractor, rest): the extractor's outputs
    /// then never change and can be computed once.
    fn split_frozen(&self, _frozen: &[String]) -> Option<(&dyn nn::ModuleT, &dyn nn::ModuleT)> {
        None
    }

    /// When the network starts with a dense layer on the flattened input, returns that
    /// layer and the rest: plain SGD can then update the layer with one fused GEMM
    /// (see `train::FusedInputDense`).
    fn split_input_dense(&self) -> Option<(&nn::Linear, &dyn nn::ModuleT)> {
        None
    }

    /// Folds each BatchNorm that directly follows a convolution into it
    /// (`batch_norm::ConvNorm::fold`), for a model that will only evaluate from now on.
    fn fold_batch_norms(&mut self) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Sigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    #[default]
    Max,
    Avg,
}

/// What a model needs to know about the data: channels, height, width and class count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

impl std::fmt::Display for InputShape {
    /// `3x28x28 images of 8 classes`.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let InputShape {
            channels,
            height,
            width,
            classes,
        } = self;
        write!(f, "{channels}x{height}x{width} images of {classes} classes")
    }
}

/// Keras' default kernel initialiser, `glorot_uniform`: U(-l, l), l = sqrt(6 / (fan_in + fan_out)).
pub fn glorot_uniform(fan_in: i64, fan_out: i64) -> nn::Init {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform {
        lo: -limit,
        up: limit,
    }
}

/// A k x k convolution with Keras' "same" padding (odd k) and initialisers.
pub fn conv(
    path: nn::Path,
    inputs: i64,
    outputs: i64,
    kernel: i64,
    stride: i64,
    bias: bool,
) -> nn::Conv2D {
    let window = kernel * kernel;
    let config = nn::ConvConfig {
        stride,
        padding: kernel / 2,
        bias,
        ws_init: glorot_uniform(inputs * window, outputs * window),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(path, inputs, outputs, kernel, config)
}

/// Trainable and frozen parameter counts of `vs`. BatchNorm's running statistics are
/// buffers, not parameters, and count as neither.
pub fn count_parameters(vs: &nn::VarStore) -> (i64, i64) {
    vs.trainable_variables()
        .iter()
        .fold((0, 0), |(trainable, frozen), tensor| {
            let n = tensor.numel() as i64;
            if tensor.requires_grad() {
                (trainable + n, frozen)
            } else {
                (trainable, frozen + n)
            }
        })
}

//! The study's multilayer perceptron: one hidden layer, dropout, a linear output.

use super::network::{glorot_uniform, Activation, InputShape, Network};
use tch::{nn, Tensor};

/// The study's multilayer perceptron: one hidden layer, dropout, a linear output.
#[derive(Debug)]
pub struct Mlp {
    hidden: nn::Linear,
    tail: MlpTail,
}

/// Everything after the hidden layer's affine map: activation, dropout, output layer.
#[derive(Debug)]
struct MlpTail {
    activation: Activation,
    dropout: f64,
    output: nn::Linear,
}

impl Mlp {
    pub fn new(
        path: &nn::Path,
        input: InputShape,
        hidden: i64,
        activation: Activation,
        dropout: f64,
    ) -> Self {
        let inputs = input.channels * input.height * input.width;
        Mlp {
            hidden: dense(&(path / "hidden"), inputs, hidden),
            tail: MlpTail {
                activation,
                dropout,
                output: dense(&(path / "output"), hidden, input.classes),
            },
        }
    }
}

pub(crate) fn dense(path: &nn::Path, inputs: i64, outputs: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: glorot_uniform(inputs, outputs),
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(path, inputs, outputs, config)
}

impl nn::ModuleT for MlpTail {
    fn forward_t(&self, hidden: &Tensor, train: bool) -> Tensor {
        let hidden = match self.activation {
            Activation::Relu => hidden.relu(),
            Activation::Sigmoid => hidden.sigmoid(),
        };
        crate::random::dropout(&hidden, self.dropout, train).apply(&self.output)
    }
}

impl nn::ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let hidden = xs.flatten(1, -1).apply(&self.hidden);
        self.tail.forward_t(&hidden, train)
    }
}

impl Network for Mlp {
    fn split_input_dense(&self) -> Option<(&nn::Linear, &dyn nn::ModuleT)> {
        Some((&self.hidden, &self.tail))
    }
}

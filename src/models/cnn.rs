use super::{glorot_uniform, mlp::dense, InputShape, Pool};
use tch::{nn, Tensor};

/// The study's shallow CNN: one "same"-padded convolution, ReLU, 2x2 pooling and a
/// linear head over the flattened feature map.
#[derive(Debug)]
pub struct ShallowCnn {
    conv: nn::Conv2D,
    head: nn::Linear,
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
        let window = kernel_size * kernel_size;
        let config = nn::ConvConfig {
            padding: kernel_size / 2,
            ws_init: glorot_uniform(input.channels * window, kernels * window),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let conv = nn::conv2d(path / "conv", input.channels, kernels, kernel_size, config);
        // Keras pools with "valid" padding: odd sizes lose their last row and column.
        let features = kernels * (input.height / 2) * (input.width / 2);
        ShallowCnn {
            conv,
            head: dense(&(path / "head"), features, input.classes),
            pool,
        }
    }
}

impl nn::ModuleT for ShallowCnn {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let maps = xs.apply(&self.conv).relu();
        let pooled = match self.pool {
            Pool::Max => maps.max_pool2d_default(2),
            Pool::Avg => maps.avg_pool2d_default(2),
        };
        pooled.flatten(1, -1).apply(&self.head)
    }
}

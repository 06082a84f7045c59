//! Batch normalisation as each model's original framework defines it: Keras' for the
//! study's deep CNN, PyTorch's for ResNet-18 and ResNet-9. Both start as Keras and
//! PyTorch do (scale ones, shift zeros, moving mean zeros, moving variance ones); tch's
//! `BatchNormConfig` default draws the scale uniformly from [0, 1) instead. In
//! evaluation a BatchNorm is a per-channel affine map, so one that directly follows a
//! convolution can be folded into it (`ConvNorm::fold`): one operation less per layer
//! when a saved model evaluates or predicts.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Keras' `BatchNormalization` defaults, which the study kept.
const KERAS_MOMENTUM: f64 = 0.99;
const KERAS_EPSILON: f64 = 1e-3;
/// PyTorch's `BatchNorm2d` default, and tch's.
const PYTORCH_EPSILON: f64 = 1e-5;

/// A BatchNorm in evaluation mode as the per-channel map `x * scale + shift` it is then.
pub trait EvalAffine {
    fn eval_affine(&self) -> (Tensor, Tensor);
}

/// `weight / sqrt(variance + epsilon)` and `bias - mean * that`.
fn affine(
    weight: &Tensor,
    bias: &Tensor,
    mean: &Tensor,
    variance: &Tensor,
    epsilon: f64,
) -> (Tensor, Tensor) {
    let scale = weight / (variance + epsilon).sqrt();
    let shift = bias - mean * &scale;
    (scale, shift)
}

impl EvalAffine for KerasBatchNorm {
    fn eval_affine(&self) -> (Tensor, Tensor) {
        affine(
            &self.scale,
            &self.shift,
            &self.moving_mean,
            &self.moving_variance,
            KERAS_EPSILON,
        )
    }
}

impl EvalAffine for nn::BatchNorm {
    fn eval_affine(&self) -> (Tensor, Tensor) {
        let ones = self.running_var.ones_like();
        let zeros = self.running_mean.zeros_like();
        affine(
            self.ws.as_ref().unwrap_or(&ones),
            self.bs.as_ref().unwrap_or(&zeros),
            &self.running_mean,
            &self.running_var,
            PYTORCH_EPSILON,
        )
    }
}

/// A convolution and the BatchNorm that directly follows it. Built from the two as the
/// model made them, so their variables keep their paths (and checkpoints their names).
#[derive(Debug)]
pub struct ConvNorm<N> {
    conv: nn::Conv2D,
    norm: N,
    /// Set by `fold`: the convolution's weights now include the norm, which is skipped.
    folded: bool,
}

impl<N: ModuleT + EvalAffine> ConvNorm<N> {
    pub fn new(conv: nn::Conv2D, norm: N) -> Self {
        ConvNorm {
            conv,
            norm,
            folded: false,
        }
    }

    /// Folds the norm's evaluation-mode map into the convolution: each output channel's
    /// weights times its scale, its bias times the scale plus the shift. For inference
    /// only: the model no longer trains (its optimiser would hold the unfolded weights)
    /// and the variable store keeps the unfolded ones, so a checkpoint stays as it was.
    pub fn fold(&mut self) {
        if self.folded {
            return;
        }
        tch::no_grad(|| {
            let (scale, shift) = self.norm.eval_affine();
            let weights = &self.conv.ws * scale.view([-1, 1, 1, 1]);
            let bias = match &self.conv.bs {
                Some(bias) => bias * &scale + shift,
                None => shift,
            };
            self.conv.ws = weights;
            self.conv.bs = Some(bias);
        });
        self.folded = true;
    }
}

impl<N: ModuleT> ModuleT for ConvNorm<N> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.apply(&self.conv);
        if self.folded {
            assert!(!train, "a model with folded BatchNorms only evaluates");
            return ys;
        }
        ys.apply_t(&self.norm, train)
    }
}

/// Keras' BatchNormalization: moving statistics follow `moving * 0.99 + batch * 0.01`
/// and keep the batch's biased variance, where libtorch would keep the unbiased one.
#[derive(Debug)]
pub struct KerasBatchNorm {
    scale: Tensor,
    shift: Tensor,
    moving_mean: Tensor,
    moving_variance: Tensor,
}

impl KerasBatchNorm {
    /// Variables under tch's names (`weight`, `bias`, `running_mean`, `running_var`), so
    /// checkpoints read the same as those of `nn::BatchNorm`.
    pub fn new(path: nn::Path, channels: i64) -> Self {
        KerasBatchNorm {
            scale: path.var("weight", &[channels], nn::Init::Const(1.0)),
            shift: path.var("bias", &[channels], nn::Init::Const(0.0)),
            moving_mean: path.zeros_no_train("running_mean", &[channels]),
            moving_variance: path.ones_no_train("running_var", &[channels]),
        }
    }
}

impl ModuleT for KerasBatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if !train {
            return xs.batch_norm(
                Some(&self.scale),
                Some(&self.shift),
                Some(&self.moving_mean),
                Some(&self.moving_variance),
                false,
                0.0,
                KERAS_EPSILON,
                true,
            );
        }
        // Without running statistics libtorch only normalises, and hands back the batch
        // mean and 1 / sqrt(biased variance + epsilon): the moving update is ours.
        let (ys, mean, inverse_std) = xs.native_batch_norm(
            Some(&self.scale),
            Some(&self.shift),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.0,
            KERAS_EPSILON,
        );
        tch::no_grad(|| {
            let variance = (inverse_std.pow_tensor_scalar(-2) - KERAS_EPSILON).clamp_min(0.0);
            let weight = 1.0 - KERAS_MOMENTUM;
            let _ = self.moving_mean.shallow_clone().lerp_(&mean, weight);
            let _ = self
                .moving_variance
                .shallow_clone()
                .lerp_(&variance, weight);
        });
        ys
    }
}

/// PyTorch's `BatchNorm2d` (momentum 0.1, epsilon 1e-5, unbiased running variance), for
/// models that come from PyTorch code rather than from the study.
pub fn pytorch_batch_norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        eps: PYTORCH_EPSILON,
        ..Default::default()
    };
    nn::batch_norm2d(path, channels, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn keras_batch_norm_keeps_the_biased_variance_with_momentum_099() {
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = KerasBatchNorm::new(vs.root() / "norm", 2);
        let xs = Tensor::randn([4, 2, 3, 3], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let ys = norm.forward_t(&xs, true);

        let dims = [0i64, 2, 3];
        let mean = xs.mean_dim(dims.as_slice(), false, Kind::Float);
        let biased = xs.var_correction(dims.as_slice(), 0, false);
        let expected_mean = &mean * 0.01;
        let expected_variance = biased.shallow_clone() * 0.01 + 0.99;
        assert!(norm.moving_mean.allclose(&expected_mean, 1e-5, 1e-6, false));
        assert!(norm
            .moving_variance
            .allclose(&expected_variance, 1e-5, 1e-6, false));

        let normalised =
            (&xs - mean.view([1, 2, 1, 1])) / (biased.view([1, 2, 1, 1]) + 1e-3).sqrt();
        assert!(ys.allclose(&normalised, 1e-4, 1e-5, false));
        let eval = norm.forward_t(&xs, false);
        let by_moving = (&xs - expected_mean.view([1, 2, 1, 1]))
            / (expected_variance.view([1, 2, 1, 1]) + 1e-3).sqrt();
        assert!(eval.allclose(&by_moving, 1e-4, 1e-5, false));
    }

    #[test]
    fn a_folded_conv_norm_no_longer_reads_its_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::conv2d(vs.root() / "conv", 2, 3, 3, Default::default());
        let mut layer = ConvNorm::new(conv, KerasBatchNorm::new(vs.root() / "norm", 3));
        let xs = Tensor::randn([4, 2, 5, 5], (Kind::Float, Device::Cpu));
        for _ in 0..5 {
            let _ = layer.forward_t(&(&xs * 2.0 + 1.0), true);
        }
        let unfolded = layer.forward_t(&xs, false);
        layer.fold();
        assert!(layer
            .forward_t(&xs, false)
            .allclose(&unfolded, 1e-5, 1e-5, false));
        // The stored statistics are the checkpoint's: untouched, and no longer read.
        let _ = tch::no_grad(|| layer.norm.moving_mean.shallow_clone().fill_(100.0));
        assert!(layer
            .forward_t(&xs, false)
            .allclose(&unfolded, 1e-5, 1e-5, false));
        let trains =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| layer.forward_t(&xs, true)));
        assert!(trains.is_err(), "a folded layer refuses to train");
    }

    #[test]
    fn keras_batch_norm_passes_gradients_to_its_input_and_parameters() {
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = KerasBatchNorm::new(vs.root() / "norm", 3);
        let xs = Tensor::randn([5, 3, 2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let target = Tensor::randn([5, 3, 2, 2], (Kind::Float, Device::Cpu));
        (norm.forward_t(&xs, true) * target)
            .sum(Kind::Float)
            .backward();
        assert!(xs.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(norm.scale.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(norm.shift.grad().defined());
    }
}

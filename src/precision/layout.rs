//! Channels-last: a convolutional model's 4-d weights stored NHWC instead of libtorch's
//! default NCHW. oneDNN computes convolutions on a CPU in a blocked channels-last form;
//! with NCHW weights and activations every convolution reorders its input and output,
//! with channels-last weights libtorch keeps activations channels-last from the first
//! convolution on (its output takes the weights' layout) and the reorders go. Measured
//! in PyTorch eager on this libtorch and a 2-core CPU (bench/conv_layout.py): a
//! training step takes 0.70-0.91x the time (ResNet-9 w16, the deep CNN, the shallow
//! CNNs). The values are the same; float32 sums run in another order.

use super::call;
use anyhow::Result;
use std::ffi::{c_char, c_int};
use tch::{nn, Tensor};

/// Gives every 4-d variable of `vs` (convolution weights) channels-last strides, in
/// place. Done once, after the model is built and before an optimizer or a checkpoint
/// touches the weights: loading copies values into the layout, and optimizer buffers
/// made `zeros_like` a weight take its layout.
pub fn to_channels_last(vs: &nn::VarStore) -> Result<()> {
    for (_, mut variable) in vs.variables() {
        if variable.dim() == 4 {
            let variable = variable.as_mut_ptr();
            call(|error, size| unsafe { cellnets_set_channels_last(variable, error, size) })?;
        }
    }
    Ok(())
}

/// Whether `tensor` is 4-d and laid out channels-last.
pub fn is_channels_last(tensor: &Tensor) -> bool {
    unsafe { cellnets_is_channels_last(tensor.as_ptr()) }
}

extern "C" {
    fn cellnets_set_channels_last(
        variable: *mut torch_sys::C_tensor,
        error: *mut c_char,
        error_size: usize,
    ) -> c_int;
    fn cellnets_is_channels_last(tensor: *const torch_sys::C_tensor) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{InputShape, ModelSpec};
    use tch::{Device, Kind};

    #[test]
    fn a_channels_last_step_gives_the_contiguous_loss_and_gradients() {
        let input = InputShape {
            channels: 3,
            height: 28,
            width: 28,
            classes: 8,
        };
        let specs = [
            ModelSpec::Resnet9 { width: 4 },
            serde_yaml::from_str("{kind: dense_cnn, layers: 2, growth: 4, bottleneck: 8}").unwrap(),
            serde_yaml::from_str("{kind: cnn, kernels: 4, kernel_size: 5}").unwrap(),
        ];
        for spec in specs {
            let (mut contiguous, mut channels_last) = (
                nn::VarStore::new(Device::Cpu),
                nn::VarStore::new(Device::Cpu),
            );
            let models = [
                spec.build(&contiguous.root(), input),
                spec.build(&channels_last.root(), input),
            ];
            // In float64: max-pooling picks one of two near-equal values, and float32's
            // differences of summation order can flip that pick, which moves a gradient
            // by percents (seen once in CI at width 4). The layouts' arithmetic is what
            // is compared here; float64 leaves no near-tie for rounding to flip.
            contiguous.double();
            channels_last.double();
            contiguous.copy(&channels_last).unwrap();
            to_channels_last(&channels_last).unwrap();
            let convolutions: Vec<_> = channels_last
                .variables()
                .into_values()
                .filter(|v| v.dim() == 4)
                .collect();
            assert!(
                !convolutions.is_empty() && convolutions.iter().all(is_channels_last),
                "{spec:?}"
            );

            let images = Tensor::rand([6, 3, 28, 28], (Kind::Double, Device::Cpu));
            let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 7]);
            let losses: Vec<Tensor> = models
                .iter()
                .map(|model| {
                    let loss = model
                        .forward_t(&images, true)
                        .cross_entropy_for_logits(&labels);
                    loss.backward();
                    loss
                })
                .collect();
            assert!(
                losses[0].allclose(&losses[1], 1e-5, 1e-6, false),
                "{spec:?}: loss"
            );
            let gradients = channels_last.variables();
            let trainable = contiguous
                .variables()
                .into_iter()
                .filter(|(_, v)| v.requires_grad());
            for (name, variable) in trainable {
                let (expected, got) = (variable.grad(), gradients[&name].grad());
                // Relative to the largest entry, and absolute near zero (a bias that a
                // BatchNorm follows has a gradient of rounding errors only).
                let scale = expected.abs().max().double_value(&[]);
                let difference = (&expected - &got).abs().max().double_value(&[]);
                assert!(
                    difference <= 1e-4 * scale + 1e-5,
                    "{spec:?} {name}: {difference:e} of {scale:e}"
                );
            }
        }
    }
}

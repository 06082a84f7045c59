//! The debug check that every tensor of a step is on the run's device. libtorch moves
//! nothing by itself: a tensor left on the CPU beside CUDA ones fails the step or, as a
//! 0-dim scalar, costs a host round trip. A CPU-only machine runs every test with one
//! device, so debug builds check where the tensors of each step are, and
//! tests/device_generic.rs keeps CPU-pinned constructors out of the device-generic
//! code.

use tch::{Device, Tensor};

/// The names of the defined tensors that are not on `device`.
pub fn off_device<'a>(device: Device, tensors: &[(&'a str, &Tensor)]) -> Vec<&'a str> {
    tensors
        .iter()
        .filter(|(_, tensor)| tensor.defined() && tensor.device() != device)
        .map(|(name, _)| *name)
        .collect()
}

/// Panics in debug builds when a tensor of a step is on another device than `device`.
#[track_caller]
pub fn debug_assert_on(device: Device, tensors: &[(&str, &Tensor)]) {
    if cfg!(debug_assertions) {
        let off = off_device(device, tensors);
        assert!(
            off.is_empty(),
            "tensors of a step off the run's device {device:?}: {}",
            off.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn tensors_on_another_device_are_named() {
        let on_cpu = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let undefined = Tensor::new();
        let tensors = [("images", &on_cpu), ("grad", &undefined)];
        assert!(off_device(Device::Cpu, &tensors).is_empty());
        // A CUDA run meeting a CPU tensor, told without a GPU: only devices are compared.
        assert_eq!(off_device(Device::Cuda(0), &tensors), ["images"]);
    }

    #[test]
    #[should_panic(expected = "off the run's device Cuda(0): labels")]
    fn debug_builds_stop_at_a_tensor_off_the_device() {
        let labels = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
        debug_assert_on(Device::Cuda(0), &[("labels", &labels)]);
    }
}

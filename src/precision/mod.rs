//! TF32, cuDNN's autotuner, per-thread bf16 autocast and the convolutions' memory
//! layout: the switches, the autocast guard (docs/gpu.md) and `layout`. They set how libtorch computes float32 work, beyond IEEE
//! float32: TF32 tensor cores for matmuls and convolutions, cuDNN's autotuner, and
//! autocast to bf16. Each is a speed-up on a GPU that changes the numbers a little, so
//! all are off by default: a run then computes in IEEE float32 on any device, and CPU
//! and GPU curves can be compared. (On its own, PyTorch lets cuDNN convolutions use
//! TF32.) tch reaches only the autotuner; libtorch.cpp holds the C++ for the rest.
//! Channels-last is on by default on a CPU, where it only reorders float32 sums and
//! saves a fifth of a convolutional net's time (`layout`); `allocator` keeps libtorch's
//! freed CPU memory in the heap, where the next batch finds it.

pub mod allocator;
pub mod layout;

use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, CStr};
use tch::Device;

/// The precision switches of a process, from the command line. A run resumed under
/// other switches goes on with numbers a little different from a straight run's.
#[derive(clap::Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Precision {
    /// GPU: TF32 tensor cores for float32 matmuls and cuDNN convolutions (NVIDIA Ampere
    /// and later); about 10 significant bits instead of 24 in their products.
    #[arg(long)]
    pub tf32: bool,
    /// GPU: cuDNN times its convolution algorithms for each new input shape and keeps
    /// the fastest; the first batches of each shape are slower.
    #[arg(long)]
    pub cudnn_benchmark: bool,
    /// Forward passes autocast to bf16; weights, their updates and losses stay float32.
    /// For GPUs (and CPUs with AMX): slower than float32 on CPUs without it.
    #[arg(long)]
    pub bf16: bool,
    /// CPU: keep convolution weights in libtorch's NCHW layout instead of channels-last
    /// (NHWC), which oneDNN computes faster; for comparing the two.
    #[arg(long)]
    pub nchw: bool,
}

impl Precision {
    /// Sets the process-wide switches; bf16 autocast is per thread (`Bf16Autocast`).
    pub fn apply_to_process(self) -> Result<()> {
        call(|error, size| unsafe { cellnets_set_tf32(self.tf32, error, size) })?;
        tch::Cuda::cudnn_set_benchmark(self.cudnn_benchmark);
        Ok(())
    }

    /// The command-line flags that set these switches, each with a leading space.
    pub fn flags(self) -> String {
        let mut flags = String::new();
        for (on, flag) in [
            (self.tf32, " --tf32"),
            (self.cudnn_benchmark, " --cudnn-benchmark"),
            (self.bf16, " --bf16"),
            (self.nchw, " --nchw"),
        ] {
            if on {
                flags.push_str(flag);
            }
        }
        flags
    }

    /// What a run's summary records beside its device: the switches that change its
    /// numbers (the autotuner picks among algorithms of the same precision).
    pub fn label(self) -> String {
        let mut label = String::new();
        if self.tf32 {
            label.push_str("+tf32");
        }
        if self.bf16 {
            label.push_str("+bf16");
        }
        if self.nchw {
            label.push_str("+nchw");
        }
        label
    }

    /// Whether convolution weights go channels-last on `device`: on a CPU unless
    /// `--nchw` (on a GPU cuDNN's choice depends on the card and the precision).
    pub fn channels_last(self, device: Device) -> bool {
        device == Device::Cpu && !self.nchw
    }
}

/// bf16 autocast for the forward passes of this thread, until dropped. libtorch keeps
/// autocast per thread, so each run's thread turns it on for itself.
#[must_use = "autocast ends when the guard is dropped"]
pub struct Bf16Autocast {
    device_type: c_int,
}

impl Bf16Autocast {
    pub fn enter(device: Device) -> Result<Self> {
        let device_type = device_type(device)?;
        call(|error, size| unsafe { cellnets_set_bf16_autocast(device_type, true, error, size) })?;
        Ok(Bf16Autocast { device_type })
    }

    /// Whether this thread computes under bf16 autocast on `device`.
    pub fn is_on(device: Device) -> bool {
        device_type(device)
            .is_ok_and(|device_type| unsafe { cellnets_bf16_autocast_enabled(device_type) })
    }
}

impl Drop for Bf16Autocast {
    fn drop(&mut self) {
        let device_type = self.device_type;
        // Turning autocast off cannot fail for a device type it was turned on for.
        let _ = call(|error, size| unsafe {
            cellnets_set_bf16_autocast(device_type, false, error, size)
        });
    }
}

/// c10's DeviceType numbers.
fn device_type(device: Device) -> Result<c_int> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        other => bail!("bf16 autocast is for the CPU and CUDA, not {other:?}"),
    }
}

fn call(body: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut error = [0 as c_char; 512];
    if body(error.as_mut_ptr(), error.len()) == 0 {
        return Ok(());
    }
    let message = unsafe { CStr::from_ptr(error.as_ptr()) };
    bail!("libtorch: {}", message.to_string_lossy())
}

extern "C" {
    fn cellnets_set_tf32(allowed: bool, error: *mut c_char, error_size: usize) -> c_int;
    fn cellnets_set_bf16_autocast(
        device_type: c_int,
        enabled: bool,
        error: *mut c_char,
        error_size: usize,
    ) -> c_int;
    fn cellnets_bf16_autocast_enabled(device_type: c_int) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn autocast_computes_matmuls_in_bf16_until_the_guard_drops() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        {
            let _autocast = Bf16Autocast::enter(Device::Cpu).unwrap();
            assert!(Bf16Autocast::is_on(Device::Cpu));
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
            // Losses stay in float32 under autocast.
            let logits = a.matmul(&a);
            let loss =
                logits.cross_entropy_for_logits(&Tensor::zeros([4], (Kind::Int64, Device::Cpu)));
            assert_eq!(loss.kind(), Kind::Float);
        }
        assert!(!Bf16Autocast::is_on(Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
    }

    #[test]
    fn autocast_is_per_thread() {
        let _autocast = Bf16Autocast::enter(Device::Cpu).unwrap();
        let other = std::thread::spawn(|| Bf16Autocast::is_on(Device::Cpu)).join();
        assert!(!other.unwrap());
        assert!(Bf16Autocast::is_on(Device::Cpu));
    }

    #[test]
    fn tf32_and_the_autotuner_switch_without_a_gpu() {
        Precision {
            tf32: true,
            cudnn_benchmark: true,
            bf16: false,
            nchw: false,
        }
        .apply_to_process()
        .unwrap();
        Precision::default().apply_to_process().unwrap();
    }

    #[test]
    fn the_label_names_what_changes_the_numbers() {
        let all = Precision {
            tf32: true,
            cudnn_benchmark: true,
            bf16: true,
            nchw: true,
        };
        assert_eq!(all.label(), "+tf32+bf16+nchw");
        assert_eq!(all.flags(), " --tf32 --cudnn-benchmark --bf16 --nchw");
        assert_eq!(Precision::default().label(), "");
        assert_eq!(Precision::default().flags(), "");
    }
}

//! `cellnets export`: a saved run's best checkpoint as a TorchScript file, which
//! PyTorch (`torch.jit.load`) and libtorch load without cellnets. ONNX is refused with
//! the reason: libtorch's C++ API, all tch reaches, has no ONNX exporter.

use crate::inference::saved::SavedRun;
use anyhow::{anyhow, bail, Result};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use tch::{CModule, Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A traced TorchScript module: float (N, C, H, W) images in [0, 1] -> class logits.
    Torchscript,
    /// Not available through libtorch; the error says how to get it.
    Onnx,
}

/// Writes `run`'s model in `format` to `output`.
pub fn export(run: &SavedRun, format: Format, output: &Path) -> Result<()> {
    if format == Format::Onnx {
        bail!(
            "ONNX export is not available: the exporter (torch.onnx) is Python code on top of \
             TorchScript, and libtorch's C++ API, which cellnets runs on, has none. Export \
             TorchScript (--format torchscript) and convert it in Python: \
             torch.onnx.export(torch.jit.load(\"model.pt\"), torch.rand(1, C, H, W), \"model.onnx\")"
        );
    }
    let module = trace(run)?;
    module
        .save(output)
        .map_err(|error| anyhow!("cannot write {}: {error}", output.display()))
}

/// Traces the model in eval mode on the CPU. Tracing records the operations one batch
/// goes through, with the weights as constants: the models have no data-dependent
/// branches, and none of them bakes the batch size into a shape, so any batch size runs.
fn trace(run: &SavedRun) -> Result<CModule> {
    let input = run.input_shape()?;
    let mut model = run.load(input, Device::Cpu)?;
    // A traced constant may not require gradients.
    model.freeze();
    let example = Tensor::rand(
        [2, input.channels, input.height, input.width],
        (Kind::Float, Device::Cpu),
    );
    panic::catch_unwind(AssertUnwindSafe(|| {
        CModule::create_by_tracing("cellnets", "forward", &[example], &mut |inputs| {
            vec![model.network.forward_t(&inputs[0], false)]
        })
    }))
    .map_err(|payload| anyhow!("tracing failed: {}", crate::panic_summary(payload.as_ref())))?
    .map_err(|error| anyhow!("tracing {} failed: {error}", run.label()))
}

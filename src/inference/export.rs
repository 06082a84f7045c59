//! `cellnets export`: a saved run's best checkpoint (or an ensemble's members in one
//! module) as a TorchScript file, which
//! PyTorch (`torch.jit.load`) and libtorch load without cellnets. ONNX is refused with
//! the reason: libtorch's C++ API, all tch reaches, has no ONNX exporter.

use crate::inference::ensemble::SavedEnsemble;
use crate::inference::eval::Saved;
use crate::inference::saved::SavedRun;
use crate::models::InputShape;
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

/// Writes `saved`'s model in `format` to `output`.
pub fn export(saved: &Saved, format: Format, output: &Path) -> Result<()> {
    if format == Format::Onnx {
        bail!(
            "ONNX export is not available: the exporter (torch.onnx) is Python code on top of \
             TorchScript, and libtorch's C++ API, which cellnets runs on, has none. Export \
             TorchScript (--format torchscript) and convert it in Python: \
             torch.onnx.export(torch.jit.load(\"model.pt\"), torch.rand(1, C, H, W), \"model.onnx\")"
        );
    }
    let module = match saved {
        Saved::Run(run) => trace_run(run)?,
        Saved::Ensemble(ensemble) => trace_ensemble(ensemble)?,
    };
    module
        .save(output)
        .map_err(|error| anyhow!("cannot write {}: {error}", output.display()))
}

/// A run's model, its logits.
fn trace_run(run: &SavedRun) -> Result<CModule> {
    let input = run.input_shape()?;
    let mut model = run.load(input, Device::Cpu)?;
    // A traced constant may not require gradients.
    model.freeze();
    trace(&run.label(), input, &mut |images| {
        model.network.forward_t(images, false)
    })
}

/// An ensemble's members in one module: the logits of their mean probabilities (`log`
/// of the mean softmax for classes, the log odds of the mean sigmoid for labels), so
/// that argmax, softmax and sigmoid read it as they read a run's logits.
fn trace_ensemble(ensemble: &SavedEnsemble) -> Result<CModule> {
    let input = ensemble.input_shape()?;
    let task = ensemble.task();
    let mut models = Vec::new();
    for member in &ensemble.members {
        let mut model = member.load(input, Device::Cpu)?;
        model.freeze();
        models.push(model);
    }
    trace(&ensemble.label, input, &mut |images| {
        let sum = models
            .iter()
            .map(|model| task.probabilities(&model.network.forward_t(images, false)))
            .reduce(|sum, probabilities| sum + probabilities)
            .expect("two or more members");
        crate::train::logits_of(task, &(sum / models.len() as f64))
    })
}

/// Traces `forward` in eval mode on the CPU. Tracing records the operations one batch
/// goes through, with the weights as constants: the models have no data-dependent
/// branches, and none of them bakes the batch size into a shape, so any batch size runs.
fn trace(
    label: &str,
    input: InputShape,
    forward: &mut dyn FnMut(&Tensor) -> Tensor,
) -> Result<CModule> {
    let example = Tensor::rand(
        [2, input.channels, input.height, input.width],
        (Kind::Float, Device::Cpu),
    );
    panic::catch_unwind(AssertUnwindSafe(|| {
        CModule::create_by_tracing("cellnets", "forward", &[example], &mut |inputs| {
            vec![forward(&inputs[0])]
        })
    }))
    .map_err(|payload| anyhow!("tracing failed: {}", crate::panic_summary(payload.as_ref())))?
    .map_err(|error| anyhow!("tracing {label} failed: {error}"))
}

//! Layers that come from another run: copying them from a checkpoint, freezing them,
//! and computing the outputs of a frozen feature extractor once.

use crate::data::{Dataset, Split};
use crate::manifest::Transfer;
use crate::train::predict;
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{nn, Tensor};

/// Copies the layers under `transfer.layers` from `checkpoint` into `vs`, freezing them
/// when asked, and returns the frozen prefixes.
pub fn transfer_layers(
    vs: &nn::VarStore,
    transfer: &Transfer,
    checkpoint: &Path,
) -> Result<Vec<String>> {
    let tensors = Tensor::read_safetensors(checkpoint)
        .with_context(|| format!("cannot read the checkpoint {}", checkpoint.display()))?;
    let variables = vs.variables();
    for layer in &transfer.layers {
        let prefix = format!("{layer}.");
        let mut copied = 0;
        for (name, value) in tensors.iter().filter(|(name, _)| name.starts_with(&prefix)) {
            let variable = variables.get(name).with_context(|| {
                format!(
                    "this model has no `{name}` to take from {}",
                    checkpoint.display()
                )
            })?;
            if variable.size() != value.size() {
                bail!(
                    "cannot transfer `{name}`: {:?} in {} but {:?} in this model",
                    value.size(),
                    checkpoint.display(),
                    variable.size()
                );
            }
            let mut variable = variable.shallow_clone();
            tch::no_grad(|| variable.f_copy_(value))?;
            copied += 1;
        }
        if copied == 0 {
            bail!("{} has no layer `{layer}`", checkpoint.display());
        }
    }
    if !transfer.freeze {
        return Ok(Vec::new());
    }
    freeze(vs, &transfer.layers)?;
    Ok(transfer.layers.clone())
}

/// Stops gradients for every parameter under the given path prefixes.
pub fn freeze(vs: &nn::VarStore, layers: &[String]) -> Result<()> {
    for layer in layers {
        let prefix = format!("{layer}.");
        let mut found = false;
        for (_, variable) in vs
            .variables()
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
        {
            let _ = variable.set_requires_grad(false);
            found = true;
        }
        if !found {
            bail!("the model has no layer `{layer}` to freeze");
        }
    }
    Ok(())
}

/// The data as the layers after `extractor` see it.
pub fn precompute(extractor: &dyn nn::ModuleT, data: &Dataset) -> Dataset {
    let features = |split: &Split| Split {
        images: predict(extractor, &split.images),
        labels: split.labels.shallow_clone(),
    };
    Dataset {
        path: data.path.clone(),
        md5: data.md5.clone(),
        train: features(&data.train),
        val: features(&data.val),
        test: features(&data.test),
        input: data.input,
    }
}

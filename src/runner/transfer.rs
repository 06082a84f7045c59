//! Layers that come from another run: copying them from a checkpoint, freezing them,
//! and computing the outputs of a frozen feature extractor once.

use crate::data::{Dataset, Datasets, Images, Split};
use crate::models::{InputShape, ModelSpec};
use crate::outputs::run_folder::StageFolder;
use crate::outputs::winners::Winner;
use crate::runner::session::Hint;
use crate::study::manifest::{DatasetSpec, Stage, Transfer};
use crate::study::plan::{provisional_winner, StagePlan};
use crate::train::predict;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Variable names and shapes, as in a VarStore or a checkpoint.
type Shapes = BTreeMap<String, Vec<i64>>;

/// Checks, before anything trains, that the transfer of every selected stage can work:
/// the source winner has each named layer, and each run's own model has every variable
/// of it, with the same shape. Without this a mistake (layers into an MLP, a misspelt
/// layer, a different kernel count or image size) showed only once the source stage
/// had trained. `planned` is every stage as planned, `winners` the settled winners of
/// the sources that do not run in this invocation, and `datasets` the opened data,
/// whose input shapes size the models; both models are built on the CPU, which costs
/// their weights' memory for a moment and no training.
///
/// A source that runs earlier in this invocation has no winner yet, so its provisional
/// one stands in: the pinned run, else the grid's first. That is exact when the winner
/// is pinned, or when the stage also starts `from` the source, since its model then
/// follows whichever run wins. What it cannot catch is an unpinned source grid whose
/// cells differ in the copied layers' shapes while this stage has a model of its own:
/// the copy still checks each variable when the run starts (`transfer_layers`).
/// A source that ran before is checked against its winner's checkpoint itself.
pub fn check_transfers(
    planned: &HashMap<String, StagePlan>,
    winners: &HashMap<String, Winner>,
    selected: &[&Stage],
    datasets: &Datasets,
    hint: &Hint,
) -> Result<()> {
    let plan_of = |stage: &str| &planned[stage];
    let input_of = |spec: &DatasetSpec| {
        let data = datasets.opened(spec);
        data.expect("the data of every selected stage is open")
            .input
    };
    for (i, stage) in selected.iter().enumerate() {
        let Some(transfer) = &stage.transfer else {
            continue;
        };
        let source = &transfer.from;
        // As the runner takes it: this invocation's winner when the source runs first.
        let runs_first = selected[..i].iter().any(|earlier| &earlier.name == source);
        let (shapes, described) = if runs_first {
            let winner = provisional_winner(plan_of(source));
            let described = format!(
                "stage `{source}`'s winner (taken to be `{}` until the stage has run)",
                winner.name
            );
            (
                model_shapes(&winner.model, input_of(&winner.dataset)),
                described,
            )
        } else {
            let winner = winners
                .get(source)
                .expect("the winners of the sources that ran before are settled");
            let checkpoint = StageFolder::new(hint.out(), source)
                .run(&winner.run)
                .checkpoint();
            let tensors = Tensor::read_safetensors(&checkpoint).with_context(|| {
                format!(
                    "stage `{}` transfers layers from {}, which cannot be read: run `{}` \
                     again",
                    stage.name,
                    checkpoint.display(),
                    hint.only(&[source])
                )
            })?;
            let described = format!("stage `{source}`'s winner ({})", checkpoint.display());
            (
                shapes(tensors.iter().map(|(name, tensor)| (name, tensor))),
                described,
            )
        };
        for run in &plan_of(&stage.name).runs {
            let own = model_shapes(&run.model, input_of(&run.dataset));
            check_fits(transfer, &shapes, &described, &run.model, &own)
                .with_context(|| format!("stage `{}`, run `{}`", stage.name, run.name))?;
        }
    }
    Ok(())
}

fn model_shapes(model: &ModelSpec, input: InputShape) -> Shapes {
    // Only the shapes are wanted: a model built on the CPU and never run, its draws
    // under the generator's lock all the same (`random`).
    let vs = nn::VarStore::new(Device::Cpu);
    {
        let _generator = crate::random::lock();
        model.build(&vs.root(), input);
    }
    shapes(&vs.variables())
}

fn shapes<'t>(tensors: impl IntoIterator<Item = (&'t String, &'t Tensor)>) -> Shapes {
    tensors
        .into_iter()
        .map(|(name, tensor)| (name.clone(), tensor.size()))
        .collect()
}

/// Whether `transfer` can copy its layers from the `source` variables into `own`.
fn check_fits(
    transfer: &Transfer,
    source: &Shapes,
    described: &str,
    model: &ModelSpec,
    own: &Shapes,
) -> Result<()> {
    let kind = |model: &ModelSpec| {
        let value = serde_yaml::to_value(model).expect("a model spec serialises");
        value["kind"].as_str().unwrap_or_default().to_string()
    };
    for layer in &transfer.layers {
        let prefix = format!("{layer}.");
        let mut copied = source
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .peekable();
        if copied.peek().is_none() {
            bail!(
                "`transfer.layers` names `{layer}`, which {described} does not have; its \
                 layers are: {}",
                layer_names(source)
            );
        }
        for (name, shape) in copied {
            match own.get(name) {
                None => bail!(
                    "this stage's model ({}) has no `{name}` to take from {described}: its \
                     layers are {}. Transfer only layers that both models have",
                    kind(model),
                    layer_names(own)
                ),
                Some(own_shape) if own_shape != shape => bail!(
                    "`{name}` is {shape:?} in {described} but {own_shape:?} in this \
                     stage's model ({}): a layer can only be copied into one of the same \
                     size; make the models agree (or start this stage `from: {}`, so that \
                     it takes the source's model)",
                    kind(model),
                    transfer.from
                ),
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// The top-level layer names of the variables, like `conv, head`.
fn layer_names(shapes: &Shapes) -> String {
    let mut layers: Vec<&str> = shapes
        .keys()
        .map(|name| name.split('.').next().unwrap_or(name))
        .collect();
    layers.dedup();
    layers.join(", ")
}

/// Copies the layers under `transfer.layers` from `checkpoint` into `vs` (the
/// parameters of a `model`), freezing them when asked, and returns the frozen prefixes.
pub fn transfer_layers(
    vs: &nn::VarStore,
    model: &ModelSpec,
    transfer: &Transfer,
    checkpoint: &Path,
) -> Result<Vec<String>> {
    let tensors = Tensor::read_safetensors(checkpoint)
        .with_context(|| format!("cannot read the checkpoint {}", checkpoint.display()))?;
    let variables = vs.variables();
    let described = checkpoint.display().to_string();
    let source = shapes(tensors.iter().map(|(name, tensor)| (name, tensor)));
    let own = shapes(&variables);
    check_fits(transfer, &source, &described, model, &own)?;
    for (name, value) in &tensors {
        if transfer
            .layers
            .iter()
            .any(|layer| name.starts_with(&format!("{layer}.")))
        {
            let mut variable = variables[name].shallow_clone();
            tch::no_grad(|| variable.f_copy_(value))?;
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
        images: Images::Features(predict(extractor, &split.images)),
        labels: split.labels.shallow_clone(),
        task: split.task,
    };
    Dataset {
        path: data.path.clone(),
        md5: data.md5.clone(),
        train: features(&data.train),
        val: features(&data.val),
        test: features(&data.test),
        input: data.input,
        task: data.task,
    }
}

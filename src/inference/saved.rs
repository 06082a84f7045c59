//! A run read back from its folder, finished or (for `cellnets eval`) at its best epoch
//! so far: its model, best weights and input shape. Its recorded settings and best
//! checkpoint rebuild the model, which can then be evaluated on any compatible data
//! file (`cellnets eval`, and the figures of `cellnets report`).

use crate::data::{Dataset, Split};
use crate::metrics::TestReport;
use crate::models::{InputShape, Network};
use crate::outputs::run_folder::{FinishedRun, RunFolder, CHECKPOINT, RESULT_YAML};
use crate::study::plan::RunPlan;
use crate::study::task::Task;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

pub struct SavedRun {
    pub folder: RunFolder,
    pub plan: RunPlan,
    pub progress: Completion,
    /// The best epoch's weights: best.safetensors, or while the run has not finished and
    /// its last committed epoch is its best, that epoch's resume weights (best.safetensors
    /// catches up only when the run goes on, and reading must not write).
    weights: PathBuf,
}

/// How far a saved run trained.
pub enum Completion {
    Finished(Box<FinishedRun>),
    /// Still training or interrupted: the last epoch it committed, of how many, and the
    /// best epoch so far, whose weights are scored.
    Unfinished {
        last_epoch: usize,
        epochs: usize,
        best_epoch: Option<usize>,
    },
}

/// A saved run's model with its best weights loaded.
pub struct LoadedModel {
    /// Owns the weights the network reads.
    _vs: nn::VarStore,
    pub network: Box<dyn Network>,
}

impl LoadedModel {
    /// Stops gradients for every weight: for inference only, and needed for tracing.
    pub fn freeze(&mut self) {
        self._vs.freeze();
    }
}

impl SavedRun {
    /// Reads the finished run in `path`: a run folder, or the `best.safetensors` inside
    /// one.
    pub fn open(path: &Path) -> Result<Self> {
        let run = Self::open_best_so_far(path)?;
        if let Completion::Unfinished { last_epoch, .. } = run.progress {
            bail!(
                "{} has not finished (epoch {last_epoch} of {} committed; it has no \
                 {RESULT_YAML}): it finishes when its manifest runs again. `cellnets eval` \
                 scores its best epoch so far",
                path.display(),
                run.plan.training.epochs
            );
        }
        Ok(run)
    }

    /// Reads the run in `path`, finished or not: a run still training or interrupted is
    /// read at its best epoch so far, without touching its files.
    pub fn open_best_so_far(path: &Path) -> Result<Self> {
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new("."))
        } else {
            path
        };
        let folder = RunFolder::at(dir);
        if let Some(finished) = folder.read_result()? {
            if !folder.has_checkpoint() {
                bail!(
                    "{} has no {CHECKPOINT}: the run never had a usable epoch (status `{}`), so \
                     there is nothing to evaluate",
                    dir.display(),
                    finished.summary.status
                );
            }
            return Ok(SavedRun {
                plan: finished.plan.clone(),
                weights: folder.checkpoint(),
                progress: Completion::Finished(Box::new(finished)),
                folder,
            });
        }
        let (state, weights) = folder.peek_resume()?.with_context(|| {
            format!(
                "{} is not a finished run (it has no {RESULT_YAML}) nor one under way (no \
                 committed epoch): give a run folder such as out/<stage>/<run>, or its \
                 {CHECKPOINT}",
                path.display()
            )
        })?;
        if !weights.is_file() {
            bail!(
                "{} has no {CHECKPOINT} yet: no epoch of it has been usable so far",
                dir.display()
            );
        }
        Ok(SavedRun {
            progress: Completion::Unfinished {
                last_epoch: state.point.last.epoch,
                epochs: state.plan.training.epochs,
                best_epoch: state.point.best.record().map(|best| best.epoch),
            },
            plan: state.plan,
            weights,
            folder,
        })
    }

    /// Its result, once it has finished.
    pub fn finished(&self) -> Option<&FinishedRun> {
        match &self.progress {
            Completion::Finished(finished) => Some(finished),
            Completion::Unfinished { .. } => None,
        }
    }

    /// What its outputs mean: as recorded, else as its data set's name says.
    pub fn task(&self) -> Task {
        self.finished()
            .map_or_else(|| self.plan.dataset.known_task(), FinishedRun::task)
    }

    pub fn label(&self) -> String {
        self.plan.id().to_string()
    }

    /// Rebuilds the model for images of `input`, loads the best checkpoint into it and
    /// folds its BatchNorms into their convolutions: it only evaluates from here on. On
    /// a CPU its convolution weights are channels-last (`precision::layout`).
    pub fn load(&self, input: InputShape, device: Device) -> Result<LoadedModel> {
        let checkpoint = &self.weights;
        // Known from its result: say so in the data's terms, before libtorch's do.
        if let Some(trained) = self.finished().and_then(|finished| finished.input) {
            if trained != input {
                bail!(
                    "{} trained on {trained}, and these are {input}: give it a file of its \
                     own shape, such as the one it trained on ({})",
                    self.label(),
                    self.plan.dataset.file_name()
                );
            }
        }
        let misfit = |problem: String| {
            anyhow!(
                "{} does not fit {}x{}x{} images of {} classes: {problem}. The run trained on \
                 {}; evaluate it on a file of that shape",
                checkpoint.display(),
                input.channels,
                input.height,
                input.width,
                input.classes,
                self.plan.dataset.file_name()
            )
        };
        // A model that cannot be built for this shape (a kernel larger than the image)
        // fails inside libtorch, which tch reports as a panic.
        panic::catch_unwind(AssertUnwindSafe(|| {
            let mut vs = nn::VarStore::new(device);
            // Its initial weights, overwritten at once, still draw on libtorch's
            // generator: under its lock, as every draw in the process (`random`).
            let mut network = {
                let _generator = crate::random::lock();
                self.plan.model.build(&vs.root(), input)
            };
            if device == Device::Cpu {
                crate::precision::layout::to_channels_last(&vs)
                    .map_err(|error| tch::TchError::Convert(format!("{error:#}")))?;
            }
            vs.load(checkpoint)?;
            network.fold_batch_norms();
            Ok::<_, tch::TchError>(LoadedModel { _vs: vs, network })
        }))
        .map_err(|payload| misfit(crate::panic_summary(payload.as_ref()).to_string()))?
        // tch's error text ends in a C++ backtrace; its first line says what misfits.
        .map_err(|error| misfit(error.to_string().lines().next().unwrap_or("").into()))
    }

    /// The image shape the run trained on, so that it can predict without its data file:
    /// as recorded in its result, or for runs from before that was recorded, read off
    /// its weights (see `shape_from_weights`).
    pub fn input_shape(&self) -> Result<InputShape> {
        match self.finished().and_then(|finished| finished.input) {
            Some(input) => Ok(input),
            None => self.shape_from_weights(),
        }
    }

    /// Height and width are the data set's image size (as MedMNIST files have it);
    /// channels and classes come from the layers whose shapes grow with them.
    fn shape_from_weights(&self) -> Result<InputShape> {
        let checkpoint = &self.weights;
        let saved: HashMap<String, Vec<i64>> = Tensor::read_safetensors(checkpoint)
            .with_context(|| format!("cannot read {}", checkpoint.display()))?
            .into_iter()
            .map(|(name, tensor)| (name, tensor.size()))
            .collect();
        let side = i64::from(self.plan.dataset.image_size);
        let base = InputShape {
            channels: 1,
            height: side,
            width: side,
            classes: 1,
        };
        let channels = self.count_in(&saved, base, |shape| shape.channels += 1)?;
        let classes = self.count_in(&saved, base, |shape| shape.classes += 1)?;
        Ok(InputShape {
            channels,
            classes,
            ..base
        })
    }

    /// The value of the quantity that `step` raises by one, for which the model's layer
    /// shapes match `saved`: shapes grow linearly with channels and classes, so the
    /// models built at `base` and one step above it tell how many steps the checkpoint is.
    fn count_in(
        &self,
        saved: &HashMap<String, Vec<i64>>,
        base: InputShape,
        step: impl Fn(&mut InputShape),
    ) -> Result<i64> {
        let mut above = base;
        step(&mut above);
        let (low, high) = (self.layer_shapes(base)?, self.layer_shapes(above)?);
        for (name, low_shape) in &low {
            let (Some(high_shape), Some(saved_shape)) = (high.get(name), saved.get(name)) else {
                continue;
            };
            for ((&l, &h), &s) in low_shape.iter().zip(high_shape).zip(saved_shape) {
                if h != l && (s - l) % (h - l) == 0 && (s - l) / (h - l) >= 0 {
                    return Ok(1 + (s - l) / (h - l));
                }
            }
        }
        bail!(
            "{} does not hold the layers of a {} model",
            self.weights.display(),
            self.label()
        )
    }

    /// The shapes of the model's weights when built for `input`, by name.
    fn layer_shapes(&self, input: InputShape) -> Result<HashMap<String, Vec<i64>>> {
        panic::catch_unwind(AssertUnwindSafe(|| {
            let vs = nn::VarStore::new(Device::Cpu);
            let _generator = crate::random::lock();
            let _network = self.plan.model.build(&vs.root(), input);
            let shapes = vs.variables().into_iter();
            shapes.map(|(name, tensor)| (name, tensor.size())).collect()
        }))
        .map_err(|payload| {
            anyhow!(
                "cannot build the model of {} for {side}x{side} images: {}",
                self.label(),
                crate::panic_summary(payload.as_ref()),
                side = input.height
            )
        })
    }
}

/// A saved model that predicts: a run, or an ensemble of runs.
pub trait Predictor {
    /// Its logits for the images of `split` (of `input`), with test-time views.
    fn logits(&self, split: &Split, input: InputShape, device: Device) -> Result<Tensor>;

    /// Its predictions on `split`, summarised; a checkpoint that does not fit the data
    /// fails with the reason.
    fn evaluate(&self, data: &Dataset, split: &Split, device: Device) -> Result<TestReport> {
        TestReport::of(&self.logits(split, data.input, device)?, split)
    }
}

impl Predictor for SavedRun {
    /// The model's logits, with its own test-time views (`tta`).
    fn logits(&self, split: &Split, input: InputShape, device: Device) -> Result<Tensor> {
        let model = self.load(input, device)?;
        let views = &self.plan.training.tta;
        let (images, task) = (&split.images, split.task);
        panic::catch_unwind(AssertUnwindSafe(|| {
            crate::train::predict_with_views(model.network.as_ref(), images, task, views)
        }))
        .map_err(|_| anyhow!("libtorch failed evaluating {}", self.label()))?
    }
}

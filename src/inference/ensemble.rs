//! A tested ensemble read back and used like one run: its members' mean probabilities,
//! evaluated, predicting and exported. Each member keeps its own test-time views.
//! `Saved` is either, as `cellnets eval`, `predict` and `export` open them.

use crate::data::Split;
use crate::inference::saved::{Predictor, SavedRun};
use crate::models::InputShape;
use crate::outputs::ensemble::{read_ensemble_result, ENSEMBLE_YAML};
use crate::study::manifest::DatasetSpec;
use crate::study::task::Task;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Finished runs of one data set whose mean probabilities are one model's.
pub struct SavedEnsemble {
    /// Where its result is written: out/<stage>/ensemble.
    pub dir: PathBuf,
    /// `stage/ensemble`.
    pub label: String,
    pub members: Vec<SavedRun>,
}

impl SavedEnsemble {
    /// The ensemble of `members`, written to `dir`. Its members must have trained on
    /// the same images and classes: their probabilities are averaged class by class.
    pub fn of(dir: PathBuf, label: String, members: Vec<SavedRun>) -> Result<Self> {
        if members.len() < 2 {
            bail!(
                "{label}: an ensemble needs two or more runs, not {}",
                members.len()
            );
        }
        let first = &members[0];
        let (input, task) = (first.input_shape()?, first.task());
        for member in &members[1..] {
            let file = member.plan.dataset.file_name();
            if file != first.plan.dataset.file_name()
                || member.input_shape()? != input
                || member.task() != task
            {
                bail!(
                    "{label}: {} trained on {file} and {} on {}: an ensemble averages the \
                     probabilities of runs on the same images (size, channels and classes); \
                     make an ensemble of each data set's runs apart",
                    member.label(),
                    first.label(),
                    first.plan.dataset.file_name()
                );
            }
        }
        Ok(SavedEnsemble {
            dir,
            label,
            members,
        })
    }

    /// The evaluated ensemble in `dir` (out/<stage>/ensemble): its members are read
    /// from their folders under the same out/.
    pub fn open(dir: &Path) -> Result<Self> {
        let result = read_ensemble_result(dir)?
            .with_context(|| format!("{} holds no {ENSEMBLE_YAML}", dir.display()))?;
        let stage_dir = dir
            .parent()
            .context("an ensemble's folder is out/<stage>/ensemble")?;
        let out = stage_dir.parent().unwrap_or(Path::new("."));
        let members = result
            .members
            .iter()
            .map(|member| {
                SavedRun::open(&out.join(member)).with_context(|| {
                    format!("member {member} of the ensemble in {}", dir.display())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let stage = stage_dir.file_name().unwrap_or_default().to_string_lossy();
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        Self::of(dir.to_path_buf(), format!("{stage}/{name}"), members)
    }

    pub fn dataset(&self) -> &DatasetSpec {
        &self.members[0].plan.dataset
    }

    pub fn task(&self) -> Task {
        self.members[0].task()
    }

    pub fn input_shape(&self) -> Result<InputShape> {
        self.members[0].input_shape()
    }
}

impl Predictor for SavedEnsemble {
    /// The logits of the members' mean probabilities (see `train::logits_of`): each
    /// member predicts with its own test-time views.
    fn logits(&self, split: &Split, input: InputShape, device: Device) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for member in &self.members {
            let probabilities = split
                .task
                .probabilities(&member.logits(split, input, device)?);
            sum = Some(match sum {
                Some(sum) => sum + probabilities,
                None => probabilities,
            });
        }
        let mean = sum.expect("two or more members") / self.members.len() as f64;
        Ok(crate::train::logits_of(split.task, &mean))
    }
}

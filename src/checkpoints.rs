//! The weights a run keeps: the best epoch's in `best.safetensors` and, while it
//! trains, the latest epoch's in two alternating slots with `state.yaml` naming the
//! valid one. A kill at any instant leaves either the previous slot and state or the
//! new ones, so an interrupted run resumes after its last completed epoch.

use crate::manifest::Monitor;
use crate::outputs::{write_atomically, CHECKPOINT};
use crate::plan::RunPlan;
use crate::records::write_yaml;
use crate::train::{EpochObserver, EpochRecord};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use tch::nn;

pub const STATE_YAML: &str = "state.yaml";
const SLOTS: [&str; 2] = ["resume-a.safetensors", "resume-b.safetensors"];

/// Where an unfinished run stands after its last completed epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    pub plan: RunPlan,
    pub data_md5: String,
    pub epoch: usize,
    pub slot: usize,
    pub best_epoch: Option<usize>,
}

impl ResumeState {
    pub fn weights(&self, dir: &Path) -> PathBuf {
        dir.join(SLOTS[self.slot % 2])
    }
}

/// Reads a run folder's resume state. A kill between the state and the copy of a new
/// best epoch leaves an older `best.safetensors`: the slot holds that epoch, so copy it.
pub fn read_state(dir: &Path) -> Result<Option<ResumeState>> {
    let path = dir.join(STATE_YAML);
    if !path.exists() {
        return Ok(None);
    }
    let Ok(state) = serde_yaml::from_str::<ResumeState>(&fs::read_to_string(&path)?) else {
        return Ok(None);
    };
    if !state.weights(dir).is_file() {
        return Ok(None);
    }
    if state.best_epoch == Some(state.epoch) {
        copy_atomically(&state.weights(dir), &dir.join(CHECKPOINT))?;
    }
    Ok(Some(state))
}

/// Removes a run folder's resume state and slots.
pub fn clear_state(dir: &Path) -> Result<()> {
    for name in [STATE_YAML, SLOTS[0], SLOTS[1]] {
        match fs::remove_file(dir.join(name)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error)
                    .with_context(|| format!("cannot remove {}", dir.join(name).display()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    write_atomically(to, |tmp| {
        fs::copy(from, tmp)?;
        Ok(())
    })
}

/// Saves the resume slot and state after every epoch, and the weights whenever the
/// monitored validation metric improves, as Keras' `ModelCheckpoint(save_best_only=True)`.
pub struct Checkpoints {
    dir: PathBuf,
    plan: RunPlan,
    data_md5: String,
    best: Option<EpochRecord>,
    epochs_seen: usize,
}

impl Checkpoints {
    /// Starts after `logged`, the epochs an interrupted run already completed (none for a new run).
    pub fn new(dir: &Path, plan: &RunPlan, data_md5: &str, logged: &[EpochRecord]) -> Self {
        let mut checkpoints = Checkpoints {
            dir: dir.to_path_buf(),
            plan: plan.clone(),
            data_md5: data_md5.to_string(),
            best: None,
            epochs_seen: 0,
        };
        for record in logged {
            if checkpoints.improves(record) {
                checkpoints.best = Some(record.clone());
            }
            checkpoints.epochs_seen = record.epoch;
        }
        checkpoints
    }

    pub fn best_path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT)
    }

    pub fn best(&self) -> Option<&EpochRecord> {
        self.best.as_ref()
    }

    pub fn epochs_seen(&self) -> usize {
        self.epochs_seen
    }

    /// A non-finite value never improves: a diverged epoch's weights are not kept.
    fn improves(&self, record: &EpochRecord) -> bool {
        let value = match self.plan.training.monitor {
            Monitor::ValLoss => record.val_loss,
            Monitor::ValAccuracy => record.val_accuracy,
        };
        if !value.is_finite() {
            return false;
        }
        match (&self.best, self.plan.training.monitor) {
            (None, _) => true,
            (Some(best), Monitor::ValLoss) => value < best.val_loss,
            (Some(best), Monitor::ValAccuracy) => value > best.val_accuracy,
        }
    }
}

impl EpochObserver for Checkpoints {
    fn on_epoch_end(&mut self, record: &EpochRecord, vs: &nn::VarStore) -> Result<()> {
        let slot = record.epoch % 2;
        let weights = self.dir.join(SLOTS[slot]);
        write_atomically(&weights, |tmp| Ok(vs.save(tmp)?))?;
        let improved = self.improves(record);
        if improved {
            self.best = Some(record.clone());
        }
        self.epochs_seen = record.epoch;
        let state = ResumeState {
            plan: self.plan.clone(),
            data_md5: self.data_md5.clone(),
            epoch: record.epoch,
            slot,
            best_epoch: self.best.as_ref().map(|best| best.epoch),
        };
        write_yaml(&self.dir.join(STATE_YAML), &state)?;
        if improved {
            copy_atomically(&weights, &self.best_path())?;
        }
        Ok(())
    }
}

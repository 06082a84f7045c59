//! What a run trains with around the loop: its epoch table, its TensorBoard events,
//! early stopping, and the checkpointer that commits each epoch to the run's folder.

use crate::cluster::claim::Claim;
use crate::outputs::run_folder::{EpochTable, ResumeState, RunFolder};
use crate::outputs::tensorboard::{
    event_files, now_seconds, EventFile, Events, HParam, SessionStatus,
};
use crate::storage::files::remove_if_present;
use crate::study::manifest::Monitor;
use crate::study::plan::RunPlan;
use crate::train::{
    BestEpoch, Callback, Checkpointer, EpochRecord, OptimizerState, Outcome, ResumePoint,
};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use tch::nn;

/// Appends each epoch to the run's `epochs.csv`; a resumed run's table continues after
/// its last committed epoch.
pub struct EpochLog<'a> {
    folder: &'a RunFolder,
    plan: &'a RunPlan,
    table: Option<EpochTable>,
}

impl<'a> EpochLog<'a> {
    pub fn new(folder: &'a RunFolder, plan: &'a RunPlan) -> Self {
        EpochLog {
            folder,
            plan,
            table: None,
        }
    }
}

impl Callback for EpochLog<'_> {
    fn name(&self) -> &'static str {
        "epoch_log"
    }

    fn on_start(&mut self, resumed: Option<&EpochRecord>) -> Result<()> {
        self.table = Some(match resumed {
            Some(last) => EpochTable::resume_after(self.folder, self.plan, last.epoch)?,
            None => EpochTable::create(self.folder, self.plan)?,
        });
        Ok(())
    }

    fn on_epoch_end(&mut self, record: &EpochRecord) -> Result<()> {
        self.table
            .as_mut()
            .expect("on_start opens the table")
            .append(record)
    }
}

/// With `--tensorboard`: the run's epochs and hyperparameters as a TensorBoard event
/// file in its folder. Each start of the run writes a new file that holds everything
/// committed so far (the epochs epochs.csv keeps), then removes the files of earlier
/// starts, so a resumed run shows every epoch once: none lost, and none twice, even one
/// that an interrupted process logged but never committed.
pub struct TensorBoardLog<'a> {
    folder: &'a RunFolder,
    plan: &'a RunPlan,
    file: Option<EventFile>,
}

impl<'a> TensorBoardLog<'a> {
    pub fn new(folder: &'a RunFolder, plan: &'a RunPlan) -> Self {
        TensorBoardLog {
            folder,
            plan,
            file: None,
        }
    }

    fn append(&mut self, events: &mut Events) -> Result<()> {
        self.file
            .as_mut()
            .expect("on_start opens the event file")
            .append(&events.take())
    }
}

/// An epoch's metrics as TensorBoard scalars, under epochs.csv's column names. Its
/// seconds are the milliseconds epochs.csv keeps, so an epoch replayed from the table on
/// resume reads as it did when logged live.
fn epoch_scalars(events: &mut Events, record: &EpochRecord) {
    let seconds = format!("{:.3}", record.seconds)
        .parse()
        .unwrap_or(record.seconds);
    let values = [
        ("train_loss", record.train_loss),
        ("train_accuracy", record.train_accuracy),
        ("val_loss", record.val_loss),
        ("val_accuracy", record.val_accuracy),
        ("val_auc", record.val_auc),
        ("val_balanced_accuracy", record.val_balanced_accuracy),
        ("epoch_seconds", seconds),
    ];
    events.scalars(now_seconds(), record.epoch as i64, &values);
}

impl Callback for TensorBoardLog<'_> {
    fn name(&self) -> &'static str {
        "tensorboard"
    }

    fn on_start(&mut self, resumed: Option<&EpochRecord>) -> Result<()> {
        let mut events = Events::default();
        let now = now_seconds();
        events.file_version(now);
        let mut hparams = vec![("stage".to_string(), HParam::Text(self.plan.stage.clone()))];
        hparams.extend(
            self.plan
                .hyperparameters()
                .into_iter()
                .map(|(name, value)| (name, HParam::parse(&value))),
        );
        events.session_start(now, &hparams);
        if let Some(last) = resumed {
            for record in self.folder.read_epochs()? {
                if record.epoch <= last.epoch {
                    epoch_scalars(&mut events, &record);
                }
            }
        }
        let earlier = event_files(self.folder.dir())?;
        self.file = Some(EventFile::create(self.folder.dir(), &events.take())?);
        for path in earlier {
            remove_if_present(&path)?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, record: &EpochRecord) -> Result<()> {
        let mut events = Events::default();
        epoch_scalars(&mut events, record);
        self.append(&mut events)
    }

    fn on_end(&mut self, outcome: Outcome) -> Result<()> {
        let status = match outcome {
            Outcome::Finished | Outcome::StoppedEarly | Outcome::Halted => SessionStatus::Success,
            Outcome::Diverged => SessionStatus::Failure,
            // The session goes on when the run continues.
            Outcome::Paused => return Ok(()),
        };
        let mut events = Events::default();
        events.session_end(now_seconds(), status);
        self.append(&mut events)
    }
}

/// Keras' EarlyStopping: stops after `patience` epochs without a better monitored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    patience: usize,
    best: BestEpoch,
    waited: usize,
}

impl EarlyStopping {
    pub fn new(monitor: Monitor, patience: usize) -> Self {
        EarlyStopping {
            patience,
            best: BestEpoch::new(monitor),
            waited: 0,
        }
    }
}

impl Callback for EarlyStopping {
    fn name(&self) -> &'static str {
        "early_stopping"
    }

    fn on_epoch_end(&mut self, record: &EpochRecord) -> Result<()> {
        if self.best.offer(record) {
            self.waited = 0;
        } else {
            self.waited += 1;
        }
        Ok(())
    }

    fn should_stop(&self) -> bool {
        self.waited >= self.patience
    }

    fn state(&self) -> Value {
        serde_yaml::to_value(self).expect("early stopping serialises")
    }

    fn restore(&mut self, state: &Value) -> Result<()> {
        *self = serde_yaml::from_value(state.clone())
            .context("the resume point holds no early-stopping state")?;
        Ok(())
    }
}

/// Pauses a run after epoch `until`, a rung of successive halving: the loop commits
/// that epoch as any other, and the run continues from it when promoted.
pub struct PauseAt {
    pub until: usize,
    last: usize,
}

impl PauseAt {
    pub fn new(until: usize) -> Self {
        PauseAt { until, last: 0 }
    }
}

impl Callback for PauseAt {
    fn name(&self) -> &'static str {
        "pause"
    }

    fn on_start(&mut self, resumed: Option<&EpochRecord>) -> Result<()> {
        self.last = resumed.map_or(0, |record| record.epoch);
        Ok(())
    }

    fn on_epoch_end(&mut self, record: &EpochRecord) -> Result<()> {
        self.last = record.epoch;
        Ok(())
    }

    fn should_pause(&self) -> bool {
        self.last >= self.until
    }
}

/// Stops a run whose claim another process took over, before its epoch is logged or
/// committed: the run's folder is the other process's now.
pub struct ClaimGuard<'a>(pub &'a Claim);

impl Callback for ClaimGuard<'_> {
    fn name(&self) -> &'static str {
        "claim"
    }

    fn on_epoch_end(&mut self, _record: &EpochRecord) -> Result<()> {
        Ok(self.0.check_held()?)
    }
}

/// Commits every epoch to the run's folder: its weights, optimizer state and resume
/// state, and the best weights whenever the monitored value improves, as Keras'
/// `ModelCheckpoint(save_best_only=True)`.
pub struct FolderCheckpointer<'a> {
    pub folder: &'a RunFolder,
    pub plan: &'a RunPlan,
    pub data_md5: &'a str,
}

impl Checkpointer for FolderCheckpointer<'_> {
    fn commit(
        &mut self,
        point: &ResumePoint,
        vs: &nn::VarStore,
        optimizer: &OptimizerState,
    ) -> Result<()> {
        let state = ResumeState {
            plan: self.plan.clone(),
            data_md5: self.data_md5.to_string(),
            point: point.clone(),
        };
        self.folder.save_resume(&state, vs, optimizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_waits_patience_epochs_without_improvement_and_resumes_its_count() {
        let mut stopper = EarlyStopping::new(Monitor::ValLoss, 2);
        let mut stops = Vec::new();
        let losses = [1.0, 0.8, 0.9, 0.7, 0.75, 0.71];
        for (epoch, val_loss) in losses.into_iter().enumerate() {
            let record = EpochRecord {
                epoch: epoch + 1,
                train_loss: 0.0,
                train_accuracy: 0.0,
                val_loss,
                val_accuracy: 0.0,
                seconds: 0.0,
                val_auc: 0.5,
                val_balanced_accuracy: 0.5,
                cpu_seconds: 1.0,
                cumulative_seconds: 1.0,
                cumulative_cpu_seconds: 1.0,
            };
            stopper.on_epoch_end(&record).unwrap();
            stops.push(stopper.should_stop());
            if epoch == 4 {
                // Saved and restored as a resume point does, one epoch before it stops.
                let mut restored = EarlyStopping::new(Monitor::ValLoss, 2);
                restored.restore(&stopper.state()).unwrap();
                assert_eq!(restored, stopper);
            }
        }
        assert_eq!(stops, [false, false, false, false, false, true]);
    }
}

//! A finished run in a line: the row it adds to its stage's `summary.csv`, also kept in
//! its `result.yaml`.

use crate::metrics::TestMetrics;
use crate::storage::files::{read_table, write_table};
use crate::train::{EpochRecord, Outcome};
use anyhow::Result;
use std::path::Path;

/// One finished run, as its stage's summary.csv records it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    pub stage: String,
    pub run: String,
    pub hyperparameters: Vec<(String, String)>,
    pub trainable_params: i64,
    pub frozen_params: i64,
    /// `finished`, `stopped_early` (patience ran out) or `diverged` (a loss became NaN or infinite).
    pub status: Outcome,
    /// The checkpointed epoch; none when no epoch had a finite monitored value.
    pub best: Option<EpochRecord>,
    /// The best checkpoint's scores on the test split; undefined without a checkpoint.
    #[serde(flatten)]
    pub test: TestMetrics,
    /// Epochs trained: fewer than planned when early stopping ended the run.
    pub epochs: usize,
    pub seconds: f64,
    pub device: String,
    /// `stage/run` whose results this run took instead of training the same settings again.
    pub reused_from: Option<String>,
}

impl RunSummary {
    fn columns(&self) -> Vec<(String, String)> {
        let best =
            |field: fn(&EpochRecord) -> String| self.best.as_ref().map(field).unwrap_or_default();
        let mut columns: Vec<(String, String)> =
            [("stage", self.stage.clone()), ("run", self.run.clone())]
                .map(|(name, value)| (name.to_string(), value))
                .into();
        columns.extend(self.hyperparameters.iter().cloned());
        columns.extend(
            [
                ("trainable_params", self.trainable_params.to_string()),
                ("frozen_params", self.frozen_params.to_string()),
                ("status", self.status.to_string()),
                ("epochs_run", self.epochs.to_string()),
                ("best_epoch", best(|record| record.epoch.to_string())),
                ("best_val_loss", best(|record| record.val_loss.to_string())),
                (
                    "best_val_accuracy",
                    best(|record| record.val_accuracy.to_string()),
                ),
            ]
            .map(|(name, value)| (name.to_string(), value)),
        );
        columns.extend(
            self.test
                .columns()
                .map(|(name, value)| (format!("test_{name}"), value.to_string())),
        );
        columns.extend(
            [
                ("seconds", format!("{:.1}", self.seconds)),
                ("device", self.device.clone()),
                ("reused_from", self.reused_from.clone().unwrap_or_default()),
            ]
            .map(|(name, value)| (name.to_string(), value)),
        );
        // After every older column, so tables and notebooks that read columns by
        // position keep working.
        columns.extend(
            self.test
                .ci95
                .columns()
                .into_iter()
                .map(|(name, value)| (format!("test_{name}"), value.to_string())),
        );
        columns
    }
}

/// Puts `summary` into `path`, replacing an earlier row of the same run. Columns are
/// the union of old and new ones, so a table never misaligns.
pub fn record_summary(path: &Path, summary: &RunSummary) -> Result<()> {
    let (mut header, mut rows) = read_table(path)?;
    let new = summary.columns();
    for (name, _) in &new {
        if !header.contains(name) {
            header.push(name.clone());
        }
    }
    let run_column = header.iter().position(|name| name == "run");
    rows.retain(|row| run_column.and_then(|i| row.get(i)) != Some(&summary.run));
    let width = header.len();
    for row in &mut rows {
        row.resize(width, String::new());
    }
    rows.push(
        header
            .iter()
            .map(|name| {
                new.iter()
                    .find(|(column, _)| column == name)
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default()
            })
            .collect(),
    );
    write_table(path, &header, &rows)
}

//! What a run leaves under out/<stage>/<run>/: a per-epoch CSV, the best epoch's
//! weights, and a row in out/<stage>/summary.csv.

use crate::plan::RunPlan;
use crate::train::{EpochObserver, EpochRecord};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tch::nn;

pub const EPOCHS_CSV: &str = "epochs.csv";
pub const CHECKPOINT: &str = "best.safetensors";
pub const SUMMARY_CSV: &str = "summary.csv";

/// Appends one row per epoch, flushed at once, so a crash loses at most the epoch in flight.
pub struct CsvLogger {
    writer: csv::Writer<fs::File>,
    path: PathBuf,
    stage: String,
    run: String,
    hyperparameters: Vec<String>,
}

impl CsvLogger {
    /// Starts `path` afresh with a header: stage, run, epoch, metrics, then every hyperparameter.
    pub fn create(path: &Path, run: &RunPlan) -> Result<Self> {
        let file =
            fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut writer = csv::Writer::from_writer(file);
        let hyperparameters = run.hyperparameters();
        let metrics = [
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
        ];
        let header = ["stage", "run"]
            .into_iter()
            .chain(metrics)
            .chain(hyperparameters.iter().map(|(name, _)| name.as_str()));
        writer.write_record(header)?;
        writer.flush()?;
        Ok(CsvLogger {
            writer,
            path: path.to_path_buf(),
            stage: run.stage.clone(),
            run: run.name.clone(),
            hyperparameters: hyperparameters
                .into_iter()
                .map(|(_, value)| value)
                .collect(),
        })
    }

    /// Continues an interrupted run's table after its first `epochs` epochs: later rows
    /// (an epoch logged but never committed) are dropped. Returns the kept records.
    pub fn resume(path: &Path, run: &RunPlan, epochs: usize) -> Result<(Self, Vec<EpochRecord>)> {
        let (header, rows) = read_table(path)?;
        let records: Vec<EpochRecord> = rows
            .iter()
            .take(epochs)
            .map(|row| parse_record(row))
            .collect::<Option<_>>()
            .filter(|records: &Vec<EpochRecord>| {
                records.len() == epochs && records.iter().zip(1..).all(|(r, n)| r.epoch == n)
            })
            .with_context(|| format!("{} does not hold epochs 1 to {epochs}", path.display()))?;
        write_table(path, &header, &rows[..epochs])?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let logger = CsvLogger {
            writer: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(file),
            path: path.to_path_buf(),
            stage: run.stage.clone(),
            run: run.name.clone(),
            hyperparameters: run
                .hyperparameters()
                .into_iter()
                .map(|(_, value)| value)
                .collect(),
        };
        Ok((logger, records))
    }
}

/// An epoch row of `epochs.csv` (stage, run, then the record's fields) read back.
pub fn parse_record(row: &[String]) -> Option<EpochRecord> {
    let number = |i: usize| f64::from_str(row.get(i)?).ok();
    Some(EpochRecord {
        epoch: row.get(2)?.parse().ok()?,
        train_loss: number(3)?,
        train_accuracy: number(4)?,
        val_loss: number(5)?,
        val_accuracy: number(6)?,
        seconds: number(7)?,
    })
}

impl EpochObserver for CsvLogger {
    fn on_epoch_end(&mut self, record: &EpochRecord, _vs: &nn::VarStore) -> Result<()> {
        let metrics = [
            record.epoch.to_string(),
            record.train_loss.to_string(),
            record.train_accuracy.to_string(),
            record.val_loss.to_string(),
            record.val_accuracy.to_string(),
            format!("{:.3}", record.seconds),
        ];
        let row = [self.stage.clone(), self.run.clone()]
            .into_iter()
            .chain(metrics)
            .chain(self.hyperparameters.iter().cloned());
        self.writer.write_record(row)?;
        self.writer
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Writes through a temporary file in the same folder and renames it over `path`, so
/// readers and crashes see the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .context("an output path ends in a file name")?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    // The temporary keeps the extension: VarStore::save picks its format from it.
    let tmp = match path.extension() {
        Some(extension) => tmp.with_extension(format!("tmp.{}", extension.to_string_lossy())),
        None => tmp,
    };
    write(&tmp)
        .and_then(|()| Ok(fs::rename(&tmp, path)?))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One finished run, as its stage's summary.csv records it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    pub stage: String,
    pub run: String,
    pub hyperparameters: Vec<(String, String)>,
    pub trainable_params: i64,
    pub frozen_params: i64,
    /// `finished`, `stopped_early` (patience ran out) or `diverged` (a loss became NaN or infinite).
    pub status: String,
    /// The checkpointed epoch; none when no epoch had a finite monitored value.
    pub best: Option<EpochRecord>,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub test_balanced_accuracy: f64,
    /// Unweighted mean F1 over the classes (undefined in results of cellnets versions
    /// before it was measured).
    #[serde(default = "undefined")]
    pub test_macro_f1: f64,
    /// Mean one-vs-rest ROC AUC over the classes.
    #[serde(default = "undefined")]
    pub test_auc: f64,
    /// Epochs trained: fewer than planned when early stopping ended the run.
    pub epochs: usize,
    pub seconds: f64,
    pub device: String,
    /// `stage/run` whose results this run took instead of training the same settings again.
    pub reused_from: Option<String>,
}

fn undefined() -> f64 {
    f64::NAN
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
                ("status", self.status.clone()),
                ("epochs_run", self.epochs.to_string()),
                ("best_epoch", best(|record| record.epoch.to_string())),
                ("best_val_loss", best(|record| record.val_loss.to_string())),
                (
                    "best_val_accuracy",
                    best(|record| record.val_accuracy.to_string()),
                ),
                ("test_loss", self.test_loss.to_string()),
                ("test_accuracy", self.test_accuracy.to_string()),
                (
                    "test_balanced_accuracy",
                    self.test_balanced_accuracy.to_string(),
                ),
                ("test_macro_f1", self.test_macro_f1.to_string()),
                ("test_auc", self.test_auc.to_string()),
                ("seconds", format!("{:.1}", self.seconds)),
                ("device", self.device.clone()),
                ("reused_from", self.reused_from.clone().unwrap_or_default()),
            ]
            .map(|(name, value)| (name.to_string(), value)),
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

/// Replaces `path` by a CSV table, atomically.
pub fn write_table(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    write_atomically(path, |tmp| {
        let mut writer = csv::Writer::from_path(tmp)?;
        writer.write_record(header)?;
        for row in rows {
            writer.write_record(row)?;
        }
        writer.flush()?;
        Ok(())
    })
}

/// A CSV file's header and rows; empty when the file does not exist yet.
pub fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    if !path.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header = reader.headers()?.iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|record| Ok(record?.iter().map(String::from).collect()))
        .collect::<Result<_>>()
        .with_context(|| format!("{} is damaged: move it aside and rerun", path.display()))?;
    Ok((header, rows))
}

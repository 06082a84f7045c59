//! A finished run in a line: the row it adds to its stage's `summary.csv`, also kept in
//! its `result.yaml`; and the spread across the seeds of a repeated configuration.

use crate::metrics::TestMetrics;
use crate::statistics::Spread;
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
    /// Wall seconds this process spent on the run: training, or copying a reused one.
    pub seconds: f64,
    /// The run's wall and CPU seconds of training and validation over its committed
    /// epochs (`EpochRecord::cumulative_seconds`), wherever and whenever they ran.
    #[serde(default = "undefined")]
    pub train_seconds: f64,
    #[serde(default = "undefined")]
    pub train_cpu_seconds: f64,
    pub device: String,
    /// `stage/run` whose results this run took instead of training the same settings again.
    pub reused_from: Option<String>,
    /// The configuration this run repeats with its own seed (`RunPlan::repeat_of`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_of: Option<String>,
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
            [
                ("best_val_auc", best(|record| record.val_auc.to_string())),
                (
                    "best_val_balanced_accuracy",
                    best(|record| record.val_balanced_accuracy.to_string()),
                ),
            ]
            .map(|(name, value)| (name.to_string(), value)),
        );
        columns.extend(
            self.test
                .ci95
                .columns()
                .into_iter()
                .map(|(name, value)| (format!("test_{name}"), value.to_string())),
        );
        // How long it took: to the end, and to the best epoch, whose numbers it reports.
        columns.extend(
            [
                ("train_seconds", format!("{:.1}", self.train_seconds)),
                (
                    "train_cpu_seconds",
                    format!("{:.1}", self.train_cpu_seconds),
                ),
                (
                    "best_epoch_seconds",
                    best(|record| format!("{:.1}", record.cumulative_seconds)),
                ),
            ]
            .map(|(name, value)| (name.to_string(), value)),
        );
        if let Some(configuration) = &self.repeat_of {
            columns.push((CONFIGURATION.to_string(), configuration.clone()));
        }
        columns
    }
}

fn undefined() -> f64 {
    f64::NAN
}

/// The column of a repeated run's configuration.
const CONFIGURATION: &str = "configuration";

/// Columns whose mean, standard deviation and 95% t-interval over a configuration's
/// seeds every row of a repeated configuration carries.
const ACROSS_SEEDS: [&str; 4] = [
    "best_val_accuracy",
    "best_val_auc",
    "test_accuracy",
    "test_balanced_accuracy",
];

/// Puts `summary` into `path`, replacing an earlier row of the same run, and renews
/// the spread across seeds of its configuration's rows. Columns are the union of old
/// and new ones, so a table never misaligns.
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
    if let Some(configuration) = &summary.repeat_of {
        spread_across_seeds(configuration, &mut header, &mut rows);
    }
    write_table(path, &header, &rows)
}

/// Sets `<column>_seeds_mean`, `_seeds_sd`, `_seeds_ci95_low` and `_seeds_ci95_high` of
/// each `ACROSS_SEEDS` column, `seeds` (the runs counted) and `seeds_not_finite` (the
/// runs left out) on every row of `configuration`, from the values its rows hold now.
/// A run with a value that is not finite (a run without a checkpoint has no test
/// accuracy) is left out of every column and of the count, so that all of them speak
/// of the same seeds; a column that no run has a finite value in is held against none.
fn spread_across_seeds(configuration: &str, header: &mut Vec<String>, rows: &mut [Vec<String>]) {
    let Some(configuration_column) = header.iter().position(|name| name == CONFIGURATION) else {
        return;
    };
    let members: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i][configuration_column] == configuration)
        .collect();
    let value = |row: usize, column: usize| {
        rows[row][column]
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
    };
    let measured: Vec<(&str, usize)> = ACROSS_SEEDS
        .iter()
        .filter_map(|&name| Some((name, header.iter().position(|known| known == name)?)))
        .filter(|&(_, column)| members.iter().any(|&row| value(row, column).is_some()))
        .collect();
    let (counted, not_finite): (Vec<usize>, Vec<usize>) = members.iter().partition(|&&row| {
        measured
            .iter()
            .all(|&(_, column)| value(row, column).is_some())
    });
    let run_column = header.iter().position(|name| name == "run");
    let left_out: Vec<&str> = not_finite
        .iter()
        .filter_map(|&row| Some(rows[row][run_column?].as_str()))
        .collect();
    let mut values = vec![
        ("seeds".to_string(), counted.len().to_string()),
        ("seeds_not_finite".to_string(), left_out.join(" ")),
    ];
    for name in ACROSS_SEEDS {
        let Some(column) = header.iter().position(|known| known == name) else {
            continue;
        };
        let measured: Vec<f64> = counted
            .iter()
            .filter_map(|&row| value(row, column))
            .collect();
        let spread = Spread::of(&measured);
        for (suffix, value) in [
            ("mean", spread.mean),
            ("sd", spread.standard_deviation),
            ("ci95_low", spread.interval.low),
            ("ci95_high", spread.interval.high),
        ] {
            values.push((format!("{name}_seeds_{suffix}"), value.to_string()));
        }
    }
    for (name, _) in &values {
        if !header.contains(name) {
            header.push(name.clone());
        }
    }
    for row in rows.iter_mut() {
        row.resize(header.len(), String::new());
    }
    for (name, value) in values {
        let column = header
            .iter()
            .position(|known| *known == name)
            .expect("added above");
        for &i in &members {
            rows[i][column] = value.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_with_a_value_that_is_not_finite_is_named_and_not_counted() {
        let mut header: Vec<String> = ["run", "best_val_accuracy", "test_accuracy", CONFIGURATION]
            .map(String::from)
            .to_vec();
        let row = |run: &str, val: &str, test: &str, configuration: &str| {
            [run, val, test, configuration].map(String::from).to_vec()
        };
        let mut rows = vec![
            row("a-seed=1", "0.9", "0.8", "a"),
            row("a-seed=2", "0.7", "NaN", "a"),
            row("a-seed=3", "0.8", "0.6", "a"),
            row("b-seed=1", "0.5", "0.5", "b"),
        ];
        spread_across_seeds("a", &mut header, &mut rows);
        let column = |name: &str| header.iter().position(|known| known == name).unwrap();
        for row in &rows[..3] {
            assert_eq!(row[column("seeds")], "2");
            assert_eq!(row[column("seeds_not_finite")], "a-seed=2");
            // Both columns over the same two seeds: val (0.9 + 0.8) / 2, not 0.8.
            let mean: f64 = row[column("best_val_accuracy_seeds_mean")].parse().unwrap();
            assert!((mean - 0.85).abs() < 1e-12, "{row:?}");
            let mean: f64 = row[column("test_accuracy_seeds_mean")].parse().unwrap();
            assert!((mean - 0.7).abs() < 1e-12, "{row:?}");
        }
        assert_eq!(rows[3][column("seeds")], "", "another configuration's row");
        // best_val_auc is absent and test_balanced_accuracy has no column: neither
        // leaves a seed out.
        assert!(!header.contains(&"best_val_auc_seeds_mean".to_string()));
    }
}

//! The study as data for the browser (every planned run's state, epochs so far and
//! results), inline in report.html and served live. It is read from out/ alone:
//! report.html carries one snapshot inline; `cellnets serve` hands out a fresh one to
//! each poll. Reading it trains and evaluates nothing, so it is cheap enough to repeat
//! every few seconds while a study trains.

use crate::cluster::status::{run_state, RunState};
use crate::outputs::run_folder::{FinishedRun, RunFolder};
use crate::outputs::winners;
use crate::storage::files::read_table;
use crate::storage::out_dir::REPORT_DIR;
use crate::study::manifest::Manifest;
use crate::study::plan::RunPlan;
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The manifest's path as the command was given it.
    pub manifest: String,
    pub stages: Vec<StageView>,
}

#[derive(Debug, Serialize)]
pub struct StageView {
    pub name: String,
    /// The grid's keys, in the manifest's order.
    pub varied: Vec<String>,
    pub winner: Option<String>,
    /// It starts from a stage without a winner yet, so its runs may still change.
    pub provisional: bool,
    pub runs: Vec<RunView>,
    /// The winner's most confident mistakes as the last `cellnets report` drew them,
    /// as paths under out/, most confident first.
    pub mistakes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RunView {
    pub name: String,
    /// (key, value) in the plan's order.
    pub settings: Vec<(String, String)>,
    /// finished, diverged, training, waiting or failed (`cellnets status`'s words).
    pub state: &'static str,
    /// Who trains it, while it trains.
    pub holder: Option<String>,
    /// Why it failed, or whose stale claim it carries.
    pub note: Option<String>,
    pub planned_epochs: usize,
    pub epochs: EpochColumns,
    pub result: Option<ResultView>,
    /// The test confusion matrix of a finished class task (rows: true class).
    pub confusion: Option<Vec<Vec<u64>>>,
    /// The names of the matrix's classes, in its order (`data::class_names`).
    pub classes: Vec<String>,
}

/// A run's epoch table by column. Single precision: the page plots and prints four
/// decimals, and half the digits keep a page of a few hundred runs small.
#[derive(Debug, Default, Serialize)]
pub struct EpochColumns {
    pub epoch: Vec<usize>,
    pub train_loss: Vec<f32>,
    pub train_accuracy: Vec<f32>,
    pub val_loss: Vec<f32>,
    pub val_accuracy: Vec<f32>,
    pub seconds: Vec<f32>,
}

impl EpochColumns {
    fn of(records: &[EpochRecord]) -> Self {
        let column = |pick: fn(&EpochRecord) -> f64| -> Vec<f32> {
            records.iter().map(|r| pick(r) as f32).collect()
        };
        EpochColumns {
            epoch: records.iter().map(|r| r.epoch).collect(),
            train_loss: column(|r| r.train_loss),
            train_accuracy: column(|r| r.train_accuracy),
            val_loss: column(|r| r.val_loss),
            val_accuracy: column(|r| r.val_accuracy),
            seconds: column(|r| r.seconds),
        }
    }
}

/// What summary.csv says of a finished run.
#[derive(Debug, Serialize)]
pub struct ResultView {
    /// finished, stopped_early or diverged.
    pub status: String,
    pub reused_from: Option<String>,
    pub best_epoch: Option<usize>,
    pub best_val_accuracy: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub test_accuracy: f64,
    pub test_balanced_accuracy: f64,
    pub test_macro_f1: f64,
    pub test_auc: f64,
    pub trainable_params: i64,
    pub seconds: f64,
}

impl ResultView {
    fn of(finished: &FinishedRun) -> Self {
        let summary = &finished.summary;
        let best = summary.best.as_ref();
        ResultView {
            status: summary.status.to_string(),
            reused_from: summary.reused_from.clone(),
            best_epoch: best.map(|b| b.epoch),
            best_val_accuracy: best.map(|b| b.val_accuracy),
            best_val_loss: best.map(|b| b.val_loss),
            test_accuracy: summary.test.accuracy,
            test_balanced_accuracy: summary.test.balanced_accuracy,
            test_macro_f1: summary.test.macro_f1,
            test_auc: summary.test.auc,
            trainable_params: summary.trainable_params,
            seconds: summary.seconds,
        }
    }
}

/// Every stage of `manifest` as its outputs under `out` hold it now. A run whose files
/// cannot be read shows as waiting rather than hiding the rest of the study.
pub fn gather(
    manifest: &Manifest,
    manifest_path: &Path,
    out: &Path,
    claim_timeout: Duration,
) -> Result<Snapshot> {
    let plans = winners::plan_with_recorded_winners(manifest, out)?;
    let mut stages = Vec::new();
    for (stage, (plan, provisional)) in manifest.stages.iter().zip(&plans) {
        let runs = plan
            .runs
            .iter()
            .map(|run| run_view(out, run, claim_timeout))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("stage `{}`", stage.name))?;
        stages.push(StageView {
            name: stage.name.clone(),
            varied: stage
                .grid
                .keys()
                .filter_map(|key| key.as_str().map(String::from))
                .collect(),
            winner: winners::recorded_winner(out, plan)
                .ok()
                .and_then(|recorded| recorded.current())
                .map(|winner| winner.run),
            provisional: *provisional,
            runs,
            mistakes: mistake_figures(out, &stage.name),
        });
    }
    Ok(Snapshot {
        manifest: manifest_path.display().to_string(),
        stages,
    })
}

fn run_view(out: &Path, run: &RunPlan, claim_timeout: Duration) -> Result<RunView> {
    let folder = RunFolder::of(out, run);
    let state = run_state(out, run, claim_timeout)?;
    let (holder, note) = match &state {
        RunState::Training { holder, .. } => (Some(holder.clone()), None),
        RunState::Waiting {
            stale_claim: Some(stale),
            ..
        } => (None, Some(format!("stale claim of {stale}"))),
        RunState::Failed { failure, .. } => (None, Some(failure.describe())),
        _ => (None, None),
    };
    let finished = matches!(state, RunState::Finished | RunState::Diverged);
    let result = match finished {
        true => folder.read_result().ok().flatten(),
        false => None,
    };
    let confusion = result.as_ref().and_then(|_| read_confusion(&folder));
    let classes = confusion.as_ref().map_or_else(Vec::new, |matrix| {
        crate::data::image_folder::class_names(&run.dataset, matrix.len())
    });
    // A table being rewritten by a resuming run reads as damaged for a moment: the
    // next poll shows it.
    let epochs = folder.read_epochs().unwrap_or_default();
    Ok(RunView {
        name: run.name.clone(),
        settings: run.hyperparameters(),
        state: state.label(),
        holder,
        note,
        planned_epochs: run.training.epochs,
        epochs: EpochColumns::of(&epochs),
        result: result.as_ref().map(ResultView::of),
        confusion,
        classes,
    })
}

/// `report/<stage>/mistake-N.png` for N = 1, 2, ... while they exist.
fn mistake_figures(out: &Path, stage: &str) -> Vec<String> {
    (1..)
        .map(|rank| format!("{REPORT_DIR}/{stage}/mistake-{rank}.png"))
        .take_while(|path| out.join(path).is_file())
        .collect()
}

/// confusion.csv's counts: a header of predicted classes, a row per true class led by
/// its number.
fn read_confusion(folder: &RunFolder) -> Option<Vec<Vec<u64>>> {
    let (_, rows) = read_table(&folder.confusion_csv()).ok()?;
    let matrix: Vec<Vec<u64>> = rows
        .iter()
        .map(|row| row.iter().skip(1).map(|cell| cell.parse().ok()).collect())
        .collect::<Option<_>>()?;
    (!matrix.is_empty() && matrix.iter().all(|row| row.len() == matrix.len())).then_some(matrix)
}

/// `snapshot` as JSON that can sit inside an HTML `<script>` element: `<`, `>` and `&`
/// (which could close the element or open a comment) and the line separators U+2028 and
/// U+2029 (line ends to older JavaScript parsers) are written as `\u` escapes, which
/// JSON reads back as the same characters.
pub fn to_script_json(snapshot: &Snapshot) -> String {
    let json = serde_json::to_string(snapshot).expect("a snapshot serialises");
    escape_for_script(&json)
}

pub fn escape_for_script(json: &str) -> String {
    let mut escaped = String::with_capacity(json.len());
    for character in json.chars() {
        match character {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_a_script_cannot_close_it_and_reads_back_unchanged() {
        let name = "</script><script>alert(1)</script><!-- & \u{2028}\u{2029}";
        let json = escape_for_script(&serde_json::to_string(&name).unwrap());
        for forbidden in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!json.contains(forbidden), "{forbidden:?} in {json}");
        }
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, name);
    }

    #[test]
    fn a_confusion_table_reads_as_its_square_of_counts_and_a_ragged_one_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let folder = RunFolder::at(dir.path());
        std::fs::write(
            folder.confusion_csv(),
            "true\\predicted,0,1\n0,5,1\n1,2,7\n",
        )
        .unwrap();
        assert_eq!(read_confusion(&folder), Some(vec![vec![5, 1], vec![2, 7]]));
        std::fs::write(folder.confusion_csv(), "true\\predicted,0,1\n0,5,1\n1,2\n").unwrap();
        assert_eq!(read_confusion(&folder), None);
    }
}

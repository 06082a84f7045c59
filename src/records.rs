//! What a stage leaves for later stages and later invocations: `result.yaml` beside a
//! finished run (its settings and summary) and `winner.yaml` beside a finished stage.

use crate::metrics::{CONFUSION_CSV, PER_CLASS_CSV};
use crate::outputs::{
    read_table, write_atomically, write_table, RunSummary, CHECKPOINT, EPOCHS_CSV,
};
use crate::plan::RunPlan;
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

pub const RESULT_YAML: &str = "result.yaml";
pub const WINNER_YAML: &str = "winner.yaml";

/// A run that trained to the end: written last, so its presence means the run's other
/// files are complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishedRun {
    pub plan: RunPlan,
    /// MD5 of the data file it trained on.
    pub data_md5: String,
    pub summary: RunSummary,
}

/// A stage's winning run: the one the next stepwise stage starts from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Winner {
    pub run: String,
    pub best_val_accuracy: f64,
    /// Chosen by the manifest rather than by val accuracy.
    pub pinned: bool,
    pub plan: RunPlan,
}

pub fn run_dir(out_dir: &Path, stage: &str, run: &str) -> PathBuf {
    out_dir.join(stage).join(run)
}

pub fn write_yaml(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_yaml::to_string(value)?;
    write_atomically(path, |tmp| Ok(fs::write(tmp, text)?))
}

pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{} is damaged or from another cellnets version: delete it to redo what it records",
            path.display()
        )
    })?;
    Ok(Some(value))
}

pub fn read_winner(out_dir: &Path, stage: &str) -> Result<Option<Winner>> {
    read_yaml(&out_dir.join(stage).join(WINNER_YAML))
}

/// Picks the stage's winner: the pinned run, else the highest best-epoch val accuracy
/// (the first of equals). None when no run has a checkpoint.
pub fn choose_winner(runs: &[(RunPlan, RunSummary)], pinned: Option<&str>) -> Option<Winner> {
    // A run that diverged after good epochs keeps its best checkpoint and competes.
    let mut usable = runs
        .iter()
        .filter_map(|(plan, summary)| Some((plan, summary.best.as_ref()?)));
    let (plan, best) = match pinned {
        Some(name) => usable.find(|(plan, _)| plan.name == name)?,
        None => usable.reduce(|best, candidate| {
            if candidate.1.val_accuracy > best.1.val_accuracy {
                candidate
            } else {
                best
            }
        })?,
    };
    Some(Winner {
        run: plan.name.clone(),
        best_val_accuracy: best.val_accuracy,
        pinned: pinned.is_some(),
        plan: plan.clone(),
    })
}

/// A finished run anywhere under `out_dir` whose settings and data equal `plan`'s.
pub fn find_finished(
    out_dir: &Path,
    plan: &RunPlan,
    data_md5: &str,
) -> Result<Option<(PathBuf, FinishedRun)>> {
    let Ok(stages) = fs::read_dir(out_dir) else {
        return Ok(None);
    };
    // This run's own folder first: rerunning a manifest finds its runs where they are.
    let own = run_dir(out_dir, &plan.stage, &plan.name);
    let mut candidates = vec![own.clone()];
    for stage in stages.flatten() {
        if let Ok(runs) = fs::read_dir(stage.path()) {
            candidates.extend(
                runs.flatten()
                    .map(|run| run.path())
                    .filter(|dir| *dir != own),
            );
        }
    }
    for dir in candidates {
        let Ok(Some(finished)) = read_yaml::<FinishedRun>(&dir.join(RESULT_YAML)) else {
            continue;
        };
        let checkpoint_ok = finished.summary.best.is_none() || dir.join(CHECKPOINT).is_file();
        if finished.plan.same_settings(plan) && finished.data_md5 == data_md5 && checkpoint_ok {
            return Ok(Some((dir, finished)));
        }
    }
    Ok(None)
}

/// Gives `plan`'s folder the files of the finished run in `source`: the checkpoint
/// (hard-linked where possible), the epoch table under the new stage and run names,
/// the test tables, and a result naming its origin.
pub fn adopt(
    out_dir: &Path,
    plan: &RunPlan,
    source: &Path,
    finished: FinishedRun,
) -> Result<RunSummary> {
    let dir = run_dir(out_dir, &plan.stage, &plan.name);
    let origin = format!("{}/{}", finished.plan.stage, finished.plan.name);
    let mut summary = finished.summary;
    if dir == source {
        // A kill between the result and this cleanup leaves resume files behind.
        crate::checkpoints::clear_state(&dir)?;
    } else {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        crate::checkpoints::clear_state(&dir)?;
        let checkpoint = dir.join(CHECKPOINT);
        let _ = fs::remove_file(&checkpoint);
        let has_checkpoint = source.join(CHECKPOINT).is_file();
        if has_checkpoint && fs::hard_link(source.join(CHECKPOINT), &checkpoint).is_err() {
            write_atomically(&checkpoint, |tmp| {
                fs::copy(source.join(CHECKPOINT), tmp)?;
                Ok(())
            })?;
        }
        rename_epochs(&source.join(EPOCHS_CSV), &dir.join(EPOCHS_CSV), plan)?;
        for table in [CONFUSION_CSV, PER_CLASS_CSV] {
            if source.join(table).is_file() {
                write_atomically(&dir.join(table), |tmp| {
                    fs::copy(source.join(table), tmp)?;
                    Ok(())
                })?;
            }
        }
        summary.stage = plan.stage.clone();
        summary.run = plan.name.clone();
        summary.reused_from = Some(summary.reused_from.unwrap_or(origin));
        let adopted = FinishedRun {
            plan: plan.clone(),
            data_md5: finished.data_md5,
            summary: summary.clone(),
        };
        write_yaml(&dir.join(RESULT_YAML), &adopted)?;
    }
    Ok(summary)
}

fn rename_epochs(source: &Path, dest: &Path, plan: &RunPlan) -> Result<()> {
    let (header, mut rows) = read_table(source)?;
    for row in &mut rows {
        row[0] = plan.stage.clone();
        row[1] = plan.name.clone();
    }
    write_table(dest, &header, &rows)
}

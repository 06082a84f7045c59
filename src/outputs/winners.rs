//! A stage's winner: the run the next stepwise stage starts from, recorded in
//! `out/<stage>/winner.yaml` so that later invocations can start from it too.

use crate::outputs::run_folder::StageFolder;
use crate::outputs::summary::RunSummary;
use crate::storage::files::{read_yaml, write_yaml};
use crate::study::manifest::Manifest;
use crate::study::plan::{self, RunPlan, StagePlan};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Winner {
    pub run: String,
    pub best_val_accuracy: f64,
    /// Chosen by the manifest rather than by val accuracy.
    pub pinned: bool,
    pub plan: RunPlan,
}

pub fn read_winner(out_dir: &Path, stage: &str) -> Result<Option<Winner>> {
    read_yaml(&StageFolder::new(out_dir, stage).winner_yaml())
}

pub fn write_winner(out_dir: &Path, stage: &str, winner: &Winner) -> Result<()> {
    write_yaml(&StageFolder::new(out_dir, stage).winner_yaml(), winner)
}

/// Every stage of `manifest` planned, each `from` stage starting from its recorded
/// winner under `out_dir`, or provisionally from its pinned or first run when it has
/// none yet (see `plan::plan_all`).
pub fn plan_with_recorded_winners(
    manifest: &Manifest,
    out_dir: &Path,
) -> Result<Vec<(StagePlan, bool)>> {
    plan::plan_all(manifest, |stage| {
        Ok(read_winner(out_dir, stage)?.map(|winner| winner.plan))
    })
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

//! A stage's winner: the run the next stepwise stage starts from, recorded in
//! `out/<stage>/winner.yaml` so that later invocations can start from it too.

use crate::outputs::run_folder::StageFolder;
use crate::outputs::summary::RunSummary;
use crate::statistics::Spread;
use crate::storage::files::{read_yaml, write_yaml};
use crate::study::manifest::{Manifest, Monitor};
use crate::study::plan::{self, RunPlan, StagePlan};
use crate::train::{monitored, EpochRecord};
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

/// One configuration of a stage seen by the value its runs are ranked by: a run, or
/// with `repeats` the runs of its seeds, those with a checkpoint.
pub struct Configuration<'a> {
    pub name: &'a str,
    /// Its runs with a checkpoint, first seed first, each with its best epoch.
    pub runs: Vec<(&'a RunPlan, &'a EpochRecord)>,
    /// The ranking value across those runs.
    pub spread: Spread,
}

/// The best-epoch value a stage's runs are ranked by: val accuracy, as the study chose
/// its winners, unless every run monitors val AUC (or every run val balanced accuracy),
/// the value MedMNIST's evaluator selects by. Runs monitoring different things are
/// ranked by val accuracy, which every run has.
pub fn ranked_by(runs: &[(RunPlan, RunSummary)]) -> Monitor {
    let first = runs.first().map(|(plan, _)| plan.training.monitor);
    match first {
        Some(monitor @ (Monitor::ValAuc | Monitor::ValBalancedAccuracy))
            if runs
                .iter()
                .all(|(plan, _)| plan.training.monitor == monitor) =>
        {
            monitor
        }
        _ => Monitor::ValAccuracy,
    }
}

/// The stage's configurations with a checkpoint, in plan order, each with the spread
/// of `monitor` over its seeds.
pub fn configurations(runs: &[(RunPlan, RunSummary)], monitor: Monitor) -> Vec<Configuration<'_>> {
    let mut found: Vec<Configuration> = Vec::new();
    // A run that diverged after good epochs keeps its best checkpoint and competes.
    for (plan, best) in runs
        .iter()
        .filter_map(|(plan, summary)| Some((plan, summary.best.as_ref()?)))
    {
        match found.iter_mut().find(|c| c.name == plan.configuration()) {
            Some(configuration) => configuration.runs.push((plan, best)),
            None => found.push(Configuration {
                name: plan.configuration(),
                runs: vec![(plan, best)],
                spread: Spread::of(&[]),
            }),
        }
    }
    for configuration in &mut found {
        let values: Vec<f64> = configuration
            .runs
            .iter()
            .map(|(_, best)| monitored(monitor, best))
            .collect();
        configuration.spread = Spread::of(&values);
    }
    found
}

/// Picks the stage's winner: the pinned run or configuration, else the configuration
/// with the highest mean of the ranking value (`ranked_by`) over its seeds, the first
/// of equals. The winner's run is the configuration's first seed with a checkpoint,
/// never its luckiest, so a later stage starts from the seed the stage was given.
/// None when no run has a checkpoint.
pub fn choose_winner(runs: &[(RunPlan, RunSummary)], pinned: Option<&str>) -> Option<Winner> {
    let configurations = configurations(runs, ranked_by(runs));
    let chosen = match pinned {
        Some(name) => configurations
            .iter()
            .find(|c| c.name == name || c.runs.iter().any(|(plan, _)| plan.name == name))?,
        None => configurations.iter().reduce(|best, candidate| {
            if candidate.spread.mean > best.spread.mean {
                candidate
            } else {
                best
            }
        })?,
    };
    let (plan, best) = chosen
        .runs
        .iter()
        .find(|(plan, _)| Some(plan.name.as_str()) == pinned)
        .unwrap_or(&chosen.runs[0]);
    Some(Winner {
        run: plan.name.clone(),
        best_val_accuracy: best.val_accuracy,
        pinned: pinned.is_some(),
        plan: (*plan).clone(),
    })
}

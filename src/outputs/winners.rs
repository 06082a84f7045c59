//! A stage's winner (`out/<stage>/winner.yaml`), the configuration with the best mean
//! over its seeds: the run the next stepwise stage starts from, in this invocation or a
//! later one. A winner.yaml counts only for the stage definition it was settled for
//! (`StagePlan::definition`): another manifest with the same stage names, or this one
//! after its grid changed, gets no winner from it.

use crate::outputs::proposals::with_drawn;
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
    /// The stage definition it was settled for (`StagePlan::definition`); empty in a
    /// winner.yaml older than the field, which counts for no definition.
    #[serde(default)]
    pub definition: String,
}

impl Winner {
    /// A stage's pinned winner before its runs have finished: all a later stage that
    /// starts `from` it needs is its settings, which the manifest fixes. It has no val
    /// accuracy yet (NaN) and no checkpoint, and is never written to winner.yaml.
    pub fn pinned_untrained(stage: &StagePlan) -> Winner {
        let plan = plan::provisional_winner(stage);
        Winner {
            run: plan.name.clone(),
            best_val_accuracy: f64::NAN,
            pinned: true,
            plan: plan.clone(),
            definition: stage.definition(),
        }
    }
}

/// What `out/<stage>/winner.yaml` holds for a stage as planned now.
#[derive(Debug)]
pub enum Recorded {
    /// Settled for this very definition of the stage.
    Current(Box<Winner>),
    /// No winner.yaml.
    Missing,
    /// Settled for another definition: another manifest's stage of the same name, or
    /// this stage before its runs, settings or pinned winner changed.
    OtherDefinition,
}

impl Recorded {
    pub fn current(self) -> Option<Winner> {
        match self {
            Recorded::Current(winner) => Some(*winner),
            _ => None,
        }
    }

    /// Why a stage has no usable winner, for messages: `no out/s/winner.yaml`, or that
    /// the one there is another definition's.
    pub fn why_not(&self, out_dir: &Path, stage: &str) -> String {
        let path = StageFolder::new(out_dir, stage).winner_yaml();
        match self {
            Recorded::Current(_) => format!("{} is current", path.display()),
            Recorded::Missing => format!("no {}", path.display()),
            Recorded::OtherDefinition => format!(
                "{} was settled for another definition of the stage (another manifest's, or \
                 before its runs or settings changed)",
                path.display()
            ),
        }
    }
}

/// out/<stage>/winner.yaml as it is, whichever definition of the stage it was settled
/// for: to use a winner, take `recorded_winner`.
pub fn read_winner(out_dir: &Path, stage: &str) -> Result<Option<Winner>> {
    read_yaml(&StageFolder::new(out_dir, stage).winner_yaml())
}

/// The stage's recorded winner, when it was settled for `plan` as planned now.
pub fn recorded_winner(out_dir: &Path, plan: &StagePlan) -> Result<Recorded> {
    Ok(match read_winner(out_dir, &plan.name)? {
        None => Recorded::Missing,
        Some(winner) if winner.definition == plan.definition() => {
            Recorded::Current(Box::new(winner))
        }
        Some(_) => Recorded::OtherDefinition,
    })
}

pub fn write_winner(out_dir: &Path, stage: &str, winner: &Winner) -> Result<()> {
    write_yaml(&StageFolder::new(out_dir, stage).winner_yaml(), winner)
}

/// Every stage of `manifest` planned, each `from` stage starting from its source's
/// pinned winner, else its recorded winner under `out_dir` when that was settled for
/// the source as planned now, else provisionally from its first run (see
/// `plan::plan_all`).
pub fn plan_with_recorded_winners(
    manifest: &Manifest,
    out_dir: &Path,
) -> Result<Vec<(StagePlan, bool)>> {
    let planned = plan::plan_all(manifest, |source| {
        if source.pinned_winner.is_some() {
            return Ok(Some(plan::provisional_winner(source).clone()));
        }
        // A TPE stage's winner was settled over the runs it drew.
        let source = with_drawn(out_dir, source)?;
        Ok(recorded_winner(out_dir, &source)?
            .current()
            .map(|winner| winner.plan))
    })?;
    planned
        .into_iter()
        .map(|(plan, provisional)| Ok((with_drawn(out_dir, &plan)?, provisional)))
        .collect()
}

/// One configuration of a stage seen by the value its runs are ranked by: a run, or
/// with `repeats` the runs of its seeds, those with a checkpoint.
pub struct Configuration<'a> {
    pub name: &'a str,
    /// Its runs with a checkpoint, first seed first, each with its best epoch.
    pub runs: Vec<(&'a RunPlan, &'a EpochRecord)>,
    /// The ranking value across those runs whose value is finite: a NaN would make the
    /// mean NaN, which no comparison ranks.
    pub spread: Spread,
}

/// The best-epoch value a stage's runs are ranked by: val accuracy, as the study chose
/// its winners, unless every run monitors val AUC (or every run val balanced accuracy),
/// the value MedMNIST's evaluator selects by. Runs monitoring different things are
/// ranked by val accuracy, which every run has.
pub fn ranked_by(runs: &[(RunPlan, RunSummary)]) -> Monitor {
    ranking_monitor(runs.iter().map(|(plan, _)| plan))
}

/// `ranked_by` for runs not yet finished: the value halving ranks them by at a rung.
pub fn ranking_monitor<'a>(plans: impl Iterator<Item = &'a RunPlan>) -> Monitor {
    let monitors: Vec<Monitor> = plans.map(|plan| plan.training.monitor).collect();
    match monitors.first() {
        Some(&monitor @ (Monitor::ValAuc | Monitor::ValBalancedAccuracy))
            if monitors.iter().all(|&other| other == monitor) =>
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
            .filter(|value| value.is_finite())
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
pub fn choose_winner(stage: &StagePlan, runs: &[(RunPlan, RunSummary)]) -> Option<Winner> {
    let pinned = stage.pinned_winner.as_deref();
    // Halving's losers stopped short of the budget the winner is chosen at.
    let runs: Vec<(RunPlan, RunSummary)> = runs
        .iter()
        .filter(|(_, summary)| summary.status != crate::train::Outcome::Halted)
        .cloned()
        .collect();
    let runs = runs.as_slice();
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
        definition: stage.definition(),
    })
}

/// The `count` best runs with a checkpoint, best first: ranked one by one by the value
/// that picks a stage's winner (`ranked_by`), the earlier of equals first, and in a
/// halving stage the runs that reached the budget before halted ones. An ensemble
/// `{top: K}` takes these.
pub fn top_runs(runs: &[(RunPlan, RunSummary)], count: usize) -> Vec<&RunPlan> {
    let monitor = ranked_by(runs);
    let mut ranked: Vec<(&RunPlan, bool, f64)> = runs
        .iter()
        .filter_map(|(plan, summary)| {
            let halted = summary.status == crate::train::Outcome::Halted;
            Some((plan, halted, monitored(monitor, summary.best.as_ref()?)))
        })
        .collect();
    // Runs that reached the budget before those a halving rung left behind; a stable
    // sort keeps plan order among equals.
    ranked.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)));
    ranked
        .into_iter()
        .take(count)
        .map(|(plan, _, _)| plan)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TestMetrics;
    use crate::study::manifest::parse;

    /// A stage with `repeats: 3` over two configurations, monitoring `monitor`.
    fn runs(monitor: &str, values: [[f64; 3]; 2]) -> (StagePlan, Vec<(RunPlan, RunSummary)>) {
        let manifest = parse(&format!(
            "dataset: {{name: bloodmnist}}\ndefaults: {{epochs: 1, monitor: {monitor}}}\nstages:\n  \
             - name: s\n    model: {{kind: mlp, hidden: 4}}\n    grid: {{hidden: [4, 8]}}\n    \
             repeats: 3\n"
        ))
        .unwrap();
        let (stage, _) = plan::plan_all(&manifest, |_| Ok(None)).unwrap().remove(0);
        let runs = stage
            .runs
            .clone()
            .into_iter()
            .zip(values.iter().flatten())
            .map(|(plan, &value)| {
                let best = EpochRecord {
                    epoch: 1,
                    train_loss: 1.0,
                    train_accuracy: 0.5,
                    val_loss: 1.0,
                    val_accuracy: value,
                    seconds: 1.0,
                    val_auc: 1.0 - value,
                    val_balanced_accuracy: value,
                    cpu_seconds: 1.0,
                    cumulative_seconds: 1.0,
                    cumulative_cpu_seconds: 1.0,
                };
                let summary = RunSummary {
                    stage: plan.stage.clone(),
                    run: plan.name.clone(),
                    hyperparameters: Vec::new(),
                    trainable_params: 0,
                    frozen_params: 0,
                    status: crate::train::Outcome::Finished,
                    best: Some(best),
                    test: TestMetrics::UNDEFINED,
                    epochs: 1,
                    seconds: 1.0,
                    train_seconds: 1.0,
                    train_cpu_seconds: 1.0,
                    device: "cpu".into(),
                    reused_from: None,
                    repeat_of: plan.repeat_of.clone(),
                };
                (plan, summary)
            })
            .collect();
        (stage, runs)
    }

    #[test]
    fn the_winner_has_the_best_mean_over_seeds_not_the_luckiest_seed() {
        // hidden=4 has the single best seed (0.95) but the lower mean (0.70 vs 0.80).
        let (mut stage, runs) = runs("val_loss", [[0.95, 0.60, 0.55], [0.80, 0.81, 0.79]]);
        let winner = choose_winner(&stage, &runs).unwrap();
        assert_eq!(winner.run, "hidden=8-seed0");
        assert_eq!(winner.best_val_accuracy, 0.80);
        let configurations = configurations(&runs, ranked_by(&runs));
        assert_eq!(configurations.len(), 2);
        assert!((configurations[0].spread.mean - 0.70).abs() < 1e-12);
        assert_eq!(configurations[1].spread.count, 3);
        // A pinned configuration wins by its first seed.
        stage.pinned_winner = Some("hidden=4".into());
        let pinned = choose_winner(&stage, &runs).unwrap();
        assert_eq!(
            (pinned.run.as_str(), pinned.pinned),
            ("hidden=4-seed0", true)
        );
    }

    #[test]
    fn a_seed_whose_value_is_not_finite_does_not_turn_its_configurations_mean_into_nan() {
        // hidden=4 comes first and, with a NaN mean, would never lose: NaN > x is false.
        let (stage, runs) = runs("val_loss", [[0.70, f64::NAN, 0.72], [0.80, 0.81, 0.79]]);
        let configurations = configurations(&runs, ranked_by(&runs));
        assert_eq!(configurations[0].spread.count, 2);
        assert!((configurations[0].spread.mean - 0.71).abs() < 1e-12);
        assert_eq!(choose_winner(&stage, &runs).unwrap().run, "hidden=8-seed0");
    }

    #[test]
    fn runs_that_all_monitor_val_auc_are_ranked_by_it() {
        // val_auc is 1 - val_accuracy here: the ranking turns over.
        let values = [[0.95, 0.60, 0.55], [0.80, 0.81, 0.79]];
        let (stage, by_auc) = runs("val_auc", values);
        assert_eq!(ranked_by(&by_auc), Monitor::ValAuc);
        assert_eq!(
            choose_winner(&stage, &by_auc).unwrap().run,
            "hidden=4-seed0"
        );
        let (_, by_loss) = runs("val_loss", values);
        assert_eq!(ranked_by(&by_loss), Monitor::ValAccuracy);
        let mixed: Vec<_> = by_auc[..3].iter().chain(&by_loss[3..]).cloned().collect();
        assert_eq!(ranked_by(&mixed), Monitor::ValAccuracy, "mixed monitors");
    }

    #[test]
    fn an_ensemble_takes_the_best_runs_one_by_one_by_the_winners_value() {
        let (_, by_loss) = runs("val_loss", [[0.95, 0.60, 0.55], [0.80, 0.81, 0.79]]);
        let names: Vec<&str> = top_runs(&by_loss, 3)
            .iter()
            .map(|plan| plan.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["hidden=4-seed0", "hidden=8-seed1", "hidden=8-seed0"]
        );
        let (_, by_auc) = runs("val_auc", [[0.95, 0.60, 0.55], [0.80, 0.81, 0.79]]);
        assert_eq!(top_runs(&by_auc, 1)[0].name, "hidden=4-seed2");
    }
}

//! A halving stage's rungs: each run's value at each rung and what the rung decided,
//! the epochs spent against the full grid, and every run's curve with the rungs marked.

use crate::figures::{RunCurve, RungCurves};
use crate::outputs::winners::ranking_monitor;
use crate::report::gather::{Halved, StageResults};
use crate::report::markdown::{metric, table};
use crate::report::output::{Drawing, Section};
use crate::study::manifest::Monitor;
use crate::study::search::rungs::RungView;
use crate::study::search::HalvingMode;
use crate::train::{monitored, Outcome};

pub fn section(stage: &StageResults, halved: &Halved, folder: &str) -> Section {
    let rungs = &halved.rungs;
    let ranking = ranking_monitor(stage.plan.runs.iter());
    let spent: usize = halved.stands.iter().map(|stand| stand.trained).sum();
    let full = stage.plan.runs.len() * rungs.budget();
    let mut markdown = format!(
        "### Successive halving\n\n{} halving, reduction {}: rungs at epochs {}; at each rung \
         the best ceil(n/{}) of the n runs there by {} go on. **{spent} epochs** trained, \
         against {full} for every run to the budget ({:.0}%).\n\n",
        match rungs.halving.mode {
            HalvingMode::Sync => "Synchronous",
            HalvingMode::Async => "Asynchronous (ASHA)",
        },
        rungs.halving.reduction,
        rungs
            .epochs
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        rungs.halving.reduction,
        ranking_name(ranking),
        100.0 * spent as f64 / full.max(1) as f64
    );
    markdown += &rung_table(stage, halved);
    let mut section = Section::text(markdown + "\n");
    let runs = stage
        .plan
        .runs
        .iter()
        .zip(&halved.stands)
        .map(|(run, stand)| {
            let points = stand
                .records
                .iter()
                .map(|record| (record.epoch, monitored(ranking, record)))
                .collect();
            RunCurve {
                name: run.name.clone(),
                points,
                reached_budget: stand.trained >= rungs.budget(),
            }
        })
        .collect();
    let curves = RungCurves {
        title: format!(
            "{}: {} by epoch, rungs marked",
            stage.stage.name,
            ranking_name(ranking)
        ),
        runs,
        rungs: rungs.epochs.clone(),
        y_desc: ranking_name(ranking).to_string(),
    };
    section.markdown += &format!("![rungs]({folder}/rungs.png)\n\n");
    section.figure(folder, "rungs", Drawing::RungCurves(curves));
    section
}

/// A row per run: its value at each rung it reached (with `on` when it went on and
/// `halted` where it stopped), the epochs it trained and its outcome.
fn rung_table(stage: &StageResults, halved: &Halved) -> String {
    let rungs = &halved.rungs;
    let mut header = vec!["run".to_string()];
    header.extend(rungs.epochs.iter().map(|epoch| format!("epoch {epoch}")));
    header.extend(["epochs".to_string(), "outcome".to_string()]);
    let winner = stage.winner.as_ref().map(|winner| winner.run.as_str());
    let rows: Vec<Vec<String>> = stage
        .plan
        .runs
        .iter()
        .zip(&halved.stands)
        .enumerate()
        .map(|(position, (run, stand))| {
            let mut row = vec![format!("`{}`", run.name)];
            let reached = |view: &RungView| {
                view.reached
                    .iter()
                    .find(|(p, _)| *p == position)
                    .map(|&(_, value)| value)
            };
            let views = &halved.standing.rungs;
            let last = views.iter().rposition(|view| reached(view).is_some());
            let halted = halved.standing.halted.contains(&position);
            for (index, view) in views.iter().enumerate() {
                row.push(match reached(view) {
                    None => String::new(),
                    Some(value) if view.promoted.contains(&position) => {
                        format!("{} on", metric(Some(value)))
                    }
                    Some(value) if halted && last == Some(index) => {
                        format!("{} halted", metric(Some(value)))
                    }
                    Some(value) => metric(Some(value)),
                });
            }
            row.resize(rungs.epochs.len() + 1, String::new());
            row.push(stand.trained.to_string());
            let outcome = match stand.result {
                _ if Some(run.name.as_str()) == winner => "winner".to_string(),
                Some(Outcome::Halted) => format!("halted at epoch {}", stand.trained),
                Some(outcome) => outcome.name().replace('_', " "),
                None if halved.standing.waiting.contains(&position) => {
                    format!("waiting at epoch {}", stand.trained)
                }
                None => "training".to_string(),
            };
            row.push(outcome);
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&header, &rows)
}

fn ranking_name(monitor: Monitor) -> &'static str {
    match monitor {
        Monitor::ValAuc => "val AUC",
        Monitor::ValBalancedAccuracy => "val balanced accuracy",
        _ => "val accuracy",
    }
}

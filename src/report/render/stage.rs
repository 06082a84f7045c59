//! One stage of the report: its runs' table and curves, the stepwise chart or grid heat
//! map, and for a tested winner, its test results (`final_model`).

use super::final_model;
use crate::figures::{CategoryLines, Curves, HeatMap, Panel};
use crate::outputs::run_folder::SUMMARY_CSV;
use crate::outputs::summary::RunSummary;
use crate::outputs::winners;
use crate::report::compute::TestedWinner;
use crate::report::gather::{RunResult, StageResults};
use crate::report::markdown::{count, metric, table, with_interval};
use crate::report::output::{Drawing, Section, REPORT_DIR};
use crate::statistics::Spread;
use crate::study::manifest::Monitor;
use crate::study::plan::RunPlan;
use crate::study::reference::StudyGrid;
use crate::train::EpochRecord;

/// The stage's section; `tested` is its winner evaluated on the test split, if it was.
pub fn section(stage: &StageResults, tested: Option<&TestedWinner>) -> Section {
    let name = &stage.stage.name;
    let mut section = Section::text(format!("## Stage `{name}`\n\n"));
    for why in &stage.left_out {
        section.markdown += &format!("**Left out:** {why}.\n\n");
    }
    for (run, failure) in &stage.failed {
        let retry = if failure.gives_up() {
            "not retried without `--retry-failed`"
        } else {
            "a rerun retries it"
        };
        section.markdown += &format!("**Failed:** `{run}` {}; {retry}.\n\n", failure.describe());
    }
    if stage.finished.is_empty() {
        if stage.left_out.is_empty() && stage.failed.is_empty() {
            section.markdown += &format!(
                "Not run yet: `cellnets only {name}` trains its {} run(s).\n\n",
                stage.planned.len()
            );
        }
        return section;
    }
    section.markdown += &describe(stage);
    section.markdown += &runs_table(stage);
    section.markdown += &format!("\nAll columns: [{SUMMARY_CSV}]({name}/{SUMMARY_CSV})\n\n");
    section.markdown += &winner_line(stage);
    section.markdown += &seeds_table(stage);
    let folder = format!("{REPORT_DIR}/{name}");
    match stage.varied.as_slice() {
        [key] if stage.planned.len() > 1 => section.push(stepwise(stage, key, &folder)),
        [first, second] => section.push(grid(stage, (first, second), &folder)),
        _ => {}
    }
    if let Some(halved) = &stage.halving {
        section.push(super::halving::section(stage, halved, &folder));
    }
    if let Some(searched) = &stage.search {
        section.push(super::search::section(stage, searched, &folder));
    }
    section.push(curves(stage, &folder));
    if let Some(tested) = tested {
        let theirs = stage.study.filter(|_| stage.is_final);
        let baseline = stage.stage.report.baseline.as_deref();
        section.push(final_model::test_section(tested, theirs, baseline, &folder));
        if let Some(mistakes) = &tested.mistakes {
            section.push(final_model::mistakes_section(tested, mistakes, &folder));
        }
    }
    section
}

/// Where the stage starts from, what it varies, and how it trains.
fn describe(stage: &StageResults) -> String {
    let mut text = String::new();
    if let Some(from) = &stage.stage.from {
        text += &format!("Starts from the winner of `{from}`. ");
    }
    if let Some(transfer) = &stage.stage.transfer {
        text += &format!(
            "Takes {} from the winner of `{}`{}. ",
            transfer.layers.join(", "),
            transfer.from,
            if transfer.freeze { ", frozen" } else { "" }
        );
    }
    if !stage.varied.is_empty() {
        text += &format!("Varies {}. ", stage.varied.join(" x "));
    }
    let first = &stage.plan.runs[0];
    let rules = match first.training.update_rules {
        crate::study::manifest::UpdateRules::Keras => "",
        crate::study::manifest::UpdateRules::Pytorch => " (PyTorch's update rules)",
    };
    text += &format!(
        "{} epochs, batch {}, {}{rules} at learning rate {}, on {}. {} of {} run(s) finished.\n\n",
        first.training.epochs,
        first.training.batch_size,
        stage.planned[0].get("optimizer").unwrap_or_default(),
        first.training.learning_rate,
        first.dataset.file_name(),
        stage.finished.len(),
        stage.planned.len()
    );
    text
}

fn runs_table(stage: &StageResults) -> String {
    let mut header = vec!["run"];
    header.extend(stage.varied.iter().map(String::as_str));
    header.extend([
        "status",
        "best epoch",
        "val acc",
        "val loss",
        "test acc",
        "bal. acc",
        "macro F1",
        "AUC",
        "trainable",
        "seconds",
    ]);
    let winner = stage.winner.as_ref().map(|winner| winner.run.as_str());
    let rows: Vec<Vec<String>> = stage
        .finished
        .iter()
        .map(|run| run_row(run, &stage.varied, Some(run.name.as_str()) == winner))
        .collect();
    table(&header, &rows)
}

fn run_row(run: &RunResult, varied: &[String], won: bool) -> Vec<String> {
    let summary = &run.result.summary;
    let best = summary.best.as_ref();
    let mut row = vec![if won {
        format!("**{}**", run.name)
    } else {
        run.name.clone()
    }];
    row.extend(
        varied
            .iter()
            .map(|key| run.settings.get(key).unwrap_or_default().to_string()),
    );
    let status = match &summary.reused_from {
        Some(origin) => format!("{} (reused {origin})", summary.status),
        None => summary.status.to_string(),
    };
    row.extend([
        status,
        best.map_or("–".into(), |b| b.epoch.to_string()),
        metric(best.map(|b| b.val_accuracy)),
        metric(best.map(|b| b.val_loss)),
        with_interval(summary.test.accuracy, summary.test.ci95.accuracy),
        with_interval(
            summary.test.balanced_accuracy,
            summary.test.ci95.balanced_accuracy,
        ),
        metric(Some(summary.test.macro_f1)),
        metric(Some(summary.test.auc)),
        count(summary.trainable_params),
        format!("{:.0}", summary.seconds),
    ]);
    row
}

/// The winner, and what the study chose among the values the stage varies.
fn winner_line(stage: &StageResults) -> String {
    let Some(winner) = &stage.winner else {
        return String::new();
    };
    let pinned = if winner.pinned {
        ", pinned by the manifest"
    } else {
        ""
    };
    let mut text = match &winner.plan.repeat_of {
        Some(configuration) => {
            let runs = finished_runs(stage);
            let monitor = winners::ranked_by(&runs);
            let spread = winners::configurations(&runs, monitor)
                .into_iter()
                .find(|c| c.name == configuration)
                .map(|c| c.spread);
            format!(
                "Winner: **{configuration}** (mean best {} {} over its {} seeds{pinned}); its \
                 first seed, {}, stands for it in later stages.",
                monitor_name(monitor),
                metric(spread.map(|s| s.mean)),
                spread.map_or(0, |s| s.count),
                winner.run
            )
        }
        None => format!(
            "Winner: **{}** (best val accuracy {:.4}{pinned}).",
            winner.run, winner.best_val_accuracy
        ),
    };
    if let Some(model) = stage.study {
        let choices: Vec<String> = stage
            .varied
            .iter()
            .filter_map(|key| Some(format!("{key} = {}", model.chosen.get(key)?)))
            .collect();
        if !choices.is_empty() {
            text += &format!(" The study chose {}.", choices.join(", "));
        }
    }
    text + "\n\n"
}

/// The stage's finished runs as `winners` ranks them: plan and summary.
fn finished_runs(stage: &StageResults) -> Vec<(RunPlan, RunSummary)> {
    stage
        .finished
        .iter()
        .map(|run| (run.result.plan.clone(), run.result.summary.clone()))
        .collect()
}

/// For a stage with `repeats`: each configuration's ranking value and test accuracy
/// across its seeds, and whether the winner's lead over the runner-up is larger than
/// the seeds' spread.
fn seeds_table(stage: &StageResults) -> String {
    if stage.plan.runs.iter().all(|run| run.repeat_of.is_none()) {
        return String::new();
    }
    let runs = finished_runs(stage);
    let monitor = winners::ranked_by(&runs);
    let ranked = monitor_name(monitor);
    let mut configurations = winners::configurations(&runs, monitor);
    let spread_text = |spread: &Spread| {
        format!(
            "{} ± {} [{}, {}]",
            metric(Some(spread.mean)),
            metric(Some(spread.standard_deviation)),
            metric(Some(spread.interval.low)),
            metric(Some(spread.interval.high))
        )
    };
    let rows: Vec<Vec<String>> = configurations
        .iter()
        .map(|configuration| {
            let tests: Vec<f64> = configuration
                .runs
                .iter()
                .filter_map(|(plan, _)| {
                    let summary = &runs.iter().find(|(p, _)| p.name == plan.name)?.1;
                    Some(summary.test.accuracy).filter(|a| a.is_finite())
                })
                .collect();
            vec![
                configuration.name.to_string(),
                configuration.runs.len().to_string(),
                spread_text(&configuration.spread),
                spread_text(&Spread::of(&tests)),
            ]
        })
        .collect();
    let mut text = format!(
        "Each configuration trained with {} seeds. Mean ± standard deviation across its \
         seeds [95% interval of the mean, Student's t]:\n\n{}\n",
        stage.stage.repeats.unwrap_or(1),
        table(
            &[
                "configuration",
                "seeds",
                &format!("best {ranked}"),
                "test acc"
            ],
            &rows
        )
    );
    configurations.sort_by(|a, b| b.spread.mean.total_cmp(&a.spread.mean));
    if let [first, second, ..] = configurations.as_slice() {
        let lead = first.spread.mean - second.spread.mean;
        let spread = first
            .spread
            .standard_deviation
            .max(second.spread.standard_deviation);
        let verdict = if lead > spread {
            "larger than the spread across seeds: the ranking is unlikely to be a seed's luck"
        } else if lead.is_finite() && spread.is_finite() {
            "no larger than the spread across seeds: another set of seeds may well reverse it"
        } else {
            "not comparable with a spread: a configuration has fewer than two seeds"
        };
        text += &format!(
            "The best mean {ranked}, {}'s, leads {}'s by {}, {verdict} (the larger standard \
             deviation of the two is {}).\n\n",
            first.name,
            second.name,
            metric(Some(lead)),
            metric(Some(spread))
        );
    }
    text
}

fn monitor_name(monitor: Monitor) -> &'static str {
    match monitor {
        Monitor::ValLoss => "val loss",
        Monitor::ValAccuracy => "val accuracy",
        Monitor::ValAuc => "val AUC",
        Monitor::ValBalancedAccuracy => "val balanced accuracy",
    }
}

/// Best val accuracy and loss against the one varied value.
fn stepwise(stage: &StageResults, key: &str, folder: &str) -> Section {
    let finished = &stage.finished;
    let best = |pick: fn(&EpochRecord) -> f64| -> Vec<f64> {
        finished
            .iter()
            .map(|run| run.result.summary.best.as_ref().map_or(f64::NAN, pick))
            .collect()
    };
    let winner = stage.winner.as_ref().map(|winner| &winner.run);
    let chart = CategoryLines {
        title: format!("stage {}: best epoch of each run", stage.stage.name),
        x_desc: key.to_string(),
        categories: finished
            .iter()
            .map(|run| run.settings.get(key).unwrap_or_default().to_string())
            .collect(),
        panels: vec![
            Panel {
                y_desc: "best val accuracy".into(),
                values: best(|b| b.val_accuracy),
            },
            Panel {
                y_desc: "val loss at that epoch".into(),
                values: best(|b| b.val_loss),
            },
        ],
        highlight: finished.iter().position(|run| Some(&run.name) == winner),
    };
    let mut section = Section::text(format!(
        "![best epoch per value of {key}]({folder}/stepwise.png)\n\n"
    ));
    section.figure(folder, "stepwise", Drawing::CategoryLines(chart));
    section
}

/// The values of `key` over the planned runs, in their first order.
fn values(stage: &StageResults, key: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for value in stage.planned.iter().filter_map(|run| run.get(key)) {
        if !seen.iter().any(|known| known == value) {
            seen.push(value.to_string());
        }
    }
    seen
}

/// The best val accuracy of the first finished run with these values of the two keys.
fn cell(
    stage: &StageResults,
    (row_key, col_key): (&str, &str),
    row: &str,
    col: &str,
) -> Option<f64> {
    stage.finished.iter().find_map(|run| {
        let matches =
            run.settings.get(row_key) == Some(row) && run.settings.get(col_key) == Some(col);
        matches.then(|| run.result.summary.best.as_ref().map(|b| b.val_accuracy))?
    })
}

/// The heat map of a two-key grid, beside the study's when it ran the same grid.
fn grid(stage: &StageResults, (first, second): (&String, &String), folder: &str) -> Section {
    let study_grid = stage.study.and_then(|model| model.grid.as_ref());
    // Laid out as the study laid out its grid, so the two maps read alike.
    let (rows, cols) = match study_grid {
        Some(grid) if grid.rows.key == *second && grid.cols.key == *first => (second, first),
        _ => (first, second),
    };
    let (row_values, col_values) = (values(stage, rows), values(stage, cols));
    let accuracy: Vec<Vec<Option<f64>>> = row_values
        .iter()
        .map(|row| {
            col_values
                .iter()
                .map(|col| cell(stage, (rows.as_str(), cols.as_str()), row, col))
                .collect()
        })
        .collect();
    let title = format!("stage {}: best val accuracy", stage.stage.name);
    let ours = HeatMap::grid(
        title,
        (rows.clone(), row_values),
        (cols.clone(), col_values),
        &accuracy,
    );
    let mut section = Section::default();
    section.figure(folder, "grid", Drawing::HeatMap(ours));
    match study_grid.filter(|grid| grid.rows.key == *rows && grid.cols.key == *cols) {
        Some(theirs) => section.push(beside_the_study(stage, theirs, folder)),
        None => section.markdown = format!("![grid]({folder}/grid.png)\n\n"),
    }
    section
}

/// The study's heat map beside ours, and the cells both ran side by side.
fn beside_the_study(stage: &StageResults, grid: &StudyGrid, folder: &str) -> Section {
    let (row_key, col_key) = (&grid.rows.key, &grid.cols.key);
    let theirs: Vec<Vec<Option<f64>>> = grid
        .val_accuracy
        .iter()
        .map(|row| row.iter().copied().map(Some).collect())
        .collect();
    let map = HeatMap::grid(
        "the study: best val accuracy after 100 epochs".into(),
        (row_key.clone(), grid.rows.values.clone()),
        (col_key.clone(), grid.cols.values.clone()),
        &theirs,
    );
    let mut rows_both = Vec::new();
    for (r, row) in grid.rows.values.iter().enumerate() {
        for (c, col) in grid.cols.values.iter().enumerate() {
            if let Some(ours) = cell(stage, (row_key.as_str(), col_key.as_str()), row, col) {
                let theirs = grid.val_accuracy[r][c];
                rows_both.push(vec![
                    row.clone(),
                    col.clone(),
                    metric(Some(ours)),
                    metric(Some(theirs)),
                ]);
            }
        }
    }
    let images = [vec![
        format!("![grid]({folder}/grid.png)"),
        format!("![study grid]({folder}/grid-study.png)"),
    ]];
    let header = [
        row_key.as_str(),
        col_key.as_str(),
        "cellnets val acc",
        "study val acc",
    ];
    let markdown =
        table(&["cellnets", "the study"], &images) + "\n" + &table(&header, &rows_both) + "\n";
    let mut section = Section::text(markdown);
    section.figure(folder, "grid-study", Drawing::HeatMap(map));
    section
}

/// Each run's loss and accuracy curves, folded away: a grid stage has many.
fn curves(stage: &StageResults, folder: &str) -> Section {
    let mut section = Section::text("<details><summary>Training curves of each run</summary>\n\n");
    for run in &stage.finished {
        let curves = Curves {
            title: format!("{}/{}", stage.stage.name, run.name),
            epochs: run.epochs.clone(),
            best_epoch: run.result.summary.best.as_ref().map(|best| best.epoch),
        };
        let name = format!("{}-curves", run.name);
        section.markdown += &format!("![{}]({folder}/{name}.png)\n\n", run.name);
        section.figure(folder, &name, Drawing::Curves(curves));
    }
    section.markdown += "</details>\n\n";
    section
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TestMetrics;
    use crate::outputs::run_folder::FinishedRun;
    use crate::outputs::summary::RunSummary;
    use crate::outputs::winners::Winner;
    use crate::report::gather::RunSettings;
    use crate::study::manifest::{self, Manifest};
    use crate::study::plan::{self, RunPlan, StagePlan};
    use crate::train::Outcome;

    fn planned(yaml: &str) -> (Manifest, StagePlan) {
        let manifest = manifest::parse(&format!(
            "dataset: {{name: toy}}\ndefaults: {{epochs: 3}}\nstages:\n{yaml}"
        ))
        .unwrap();
        let (plan, _) = plan::plan_all(&manifest, |_| Ok(None)).unwrap().remove(0);
        (manifest, plan)
    }

    fn finished(run: &RunPlan, val_accuracy: Option<f64>) -> RunResult {
        let best = val_accuracy.map(|val_accuracy| EpochRecord {
            epoch: 3,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 0.25,
            val_accuracy,
            seconds: 1.0,
            val_auc: 0.9,
            val_balanced_accuracy: 0.5,
            cpu_seconds: 1.0,
            cumulative_seconds: 1.0,
            cumulative_cpu_seconds: 1.0,
        });
        let summary = RunSummary {
            stage: run.stage.clone(),
            run: run.name.clone(),
            hyperparameters: run.hyperparameters(),
            trainable_params: 12345,
            frozen_params: 0,
            status: Outcome::Finished,
            best: best.clone(),
            test: TestMetrics {
                loss: 0.5,
                accuracy: 0.625,
                balanced_accuracy: 0.5,
                macro_f1: 0.5,
                auc: 0.75,
                ci95: Default::default(),
            },
            epochs: 3,
            seconds: 7.0,
            train_seconds: 1.0,
            train_cpu_seconds: 1.0,
            device: "cpu".into(),
            reused_from: None,
            repeat_of: None,
        };
        RunResult {
            name: run.name.clone(),
            settings: RunSettings::of(run),
            result: FinishedRun {
                plan: run.clone(),
                data_md5: String::new(),
                input: None,
                task: None,
                summary,
            },
            epochs: best.into_iter().collect(),
        }
    }

    fn results<'a>(
        manifest: &'a Manifest,
        plan: &'a StagePlan,
        finished: Vec<RunResult>,
        winner: Option<&RunPlan>,
    ) -> StageResults<'a> {
        let stage = &manifest.stages[0];
        StageResults {
            stage,
            plan,
            planned: plan.runs.iter().map(RunSettings::of).collect(),
            varied: stage
                .grid
                .keys()
                .map(|key| key.as_str().unwrap().to_string())
                .collect(),
            is_final: true,
            study: None,
            finished,
            left_out: Vec::new(),
            failed: Vec::new(),
            winner: winner.map(|run| Winner {
                run: run.name.clone(),
                best_val_accuracy: 0.75,
                pinned: false,
                plan: run.clone(),
                definition: String::new(),
            }),
            to_test: None,
            halving: None,
            ensemble: None,
            search: None,
        }
    }

    #[test]
    fn a_stepwise_stage_shows_a_row_and_curves_per_finished_run_and_marks_the_winner() {
        let (manifest, plan) = planned(
            "  - name: width\n    model: {kind: mlp, hidden: 4}\n    grid: {hidden: [4, 8, 16]}\n",
        );
        let runs = &plan.runs;
        let done = vec![
            finished(&runs[0], Some(0.5)),
            finished(&runs[2], Some(0.75)),
        ];
        let section = section(&results(&manifest, &plan, done, Some(&runs[2])), None);
        let md = &section.markdown;

        assert!(
            md.starts_with("## Stage `width`\n\nVaries hidden. "),
            "{md}"
        );
        assert!(md.contains("2 of 3 run(s) finished"), "{md}");
        assert!(
            md.contains("| hidden=4 | 4 | finished | 3 | 0.5000 | 0.2500 | 0.6250 | 0.5000 | 0.5000 | 0.7500 | 12,345 | 7 |"),
            "{md}"
        );
        assert!(
            md.contains("| **hidden=16** | 16 | finished | 3 | 0.7500 |"),
            "{md}"
        );
        assert!(!md.contains("| hidden=8 "), "{md}");
        assert!(
            md.contains("Winner: **hidden=16** (best val accuracy 0.7500)."),
            "{md}"
        );
        assert!(md.contains("![best epoch per value of hidden](report/width/stepwise.png)"));
        let names: Vec<&str> = section.figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["stepwise", "hidden=4-curves", "hidden=16-curves"]);
        assert!(section.figures.iter().all(|f| f.folder == "report/width"));
        for name in &names[1..] {
            assert!(md.contains(&format!("(report/width/{name}.png)")), "{name}");
        }
    }

    #[test]
    fn a_grid_cell_shows_its_first_finished_run_with_a_best_epoch() {
        let (manifest, plan) = planned(
            "  - name: g\n    model: {kind: cnn, kernels: 2, kernel_size: 3}\n    grid: {kernels: [2, 4], kernel_size: [3, 5]}\n",
        );
        let runs = &plan.runs;
        let done = vec![
            finished(&runs[0], None),
            finished(&runs[0], Some(0.25)),
            finished(&runs[3], Some(0.5)),
        ];
        let section = section(&results(&manifest, &plan, done, None), None);
        let Some(Drawing::HeatMap(map)) = section.figures.first().map(|f| &f.drawing) else {
            panic!("the grid's heat map comes first");
        };
        assert_eq!(map.rows, ["2", "4"]);
        assert_eq!(map.cols, ["3", "5"]);
        assert_eq!(map.text, [["0.2500", "–"], ["–", "0.5000"]]);
        assert!(section.markdown.contains("![grid](report/g/grid.png)\n\n"));
        assert!(!section.markdown.contains("Winner:"));
    }

    #[test]
    fn a_stage_without_results_says_how_to_run_it_and_one_with_damaged_results_why_not() {
        let (manifest, plan) = planned("  - name: s\n    model: {kind: mlp, hidden: 4}\n");
        let mut stage = results(&manifest, &plan, Vec::new(), None);
        let not_run = section(&stage, None);
        assert_eq!(
            not_run.markdown,
            "## Stage `s`\n\nNot run yet: `cellnets only s` trains its 1 run(s).\n\n"
        );
        assert!(not_run.figures.is_empty());
        stage
            .left_out
            .push("out/s/run/result.yaml is damaged".into());
        let damaged = section(&stage, None).markdown;
        assert_eq!(
            damaged,
            "## Stage `s`\n\n**Left out:** out/s/run/result.yaml is damaged.\n\n"
        );
    }
}

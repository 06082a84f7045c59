//! One stage of the report: its runs' table and curves, the stepwise chart or grid heat
//! map, and for a tested winner, its test results (`final_model`).

use super::final_model::{self, format_p};
use crate::figures::{CategoryLines, Curves, HeatMap, Panel};
use crate::outputs::run_folder::SUMMARY_CSV;
use crate::outputs::summary::RunSummary;
use crate::outputs::winners;
use crate::report::compute::TestedWinner;
use crate::report::gather::{RunResult, StageResults};
use crate::report::markdown::{count, metric, table, with_interval};
use crate::report::output::{Drawing, Section, REPORT_DIR};
use crate::statistics::{Spread, WelchTest};
use crate::study::manifest::Monitor;
use crate::study::plan::RunPlan;
use crate::study::reference::StudyGrid;
use crate::train::{monitored, EpochRecord};

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
/// across its seeds, and Welch's t-test of the leader's seeds against the runner-up's.
fn seeds_table(stage: &StageResults) -> String {
    if stage.plan.runs.iter().all(|run| run.repeat_of.is_none()) {
        return String::new();
    }
    let runs = finished_runs(stage);
    let monitor = winners::ranked_by(&runs);
    let ranked = monitor_name(monitor);
    let seeds: Vec<SeedValues> = winners::configurations(&runs, monitor)
        .iter()
        .map(|configuration| SeedValues::of(configuration, &runs, monitor))
        .collect();
    let spread_text = |spread: &Spread| {
        format!(
            "{} ± {} [{}, {}]",
            metric(Some(spread.mean)),
            metric(Some(spread.standard_deviation)),
            metric(Some(spread.interval.low)),
            metric(Some(spread.interval.high))
        )
    };
    let any_left_out = seeds.iter().any(|c| !c.not_finite.is_empty());
    let rows: Vec<Vec<String>> = seeds
        .iter()
        .map(|configuration| {
            let mut row = vec![
                configuration.name.to_string(),
                configuration.ranking.len().to_string(),
                spread_text(&Spread::of(&configuration.ranking)),
                spread_text(&Spread::of(&configuration.test_accuracy)),
            ];
            if any_left_out {
                let names: Vec<String> = configuration
                    .not_finite
                    .iter()
                    .map(|run| format!("`{run}`"))
                    .collect();
                row.push(names.join(", "));
            }
            row
        })
        .collect();
    let best = format!("best {ranked}");
    let mut header = vec!["configuration", "seeds", best.as_str(), "test acc"];
    if any_left_out {
        header.push("left out (not finite)");
    }
    let left_out_text = if any_left_out {
        " A seed whose value is not finite (NaN or infinite) is named and left out of its \
         configuration's count and of both columns."
    } else {
        ""
    };
    let mut text = format!(
        "Each configuration trained with {} seeds. Mean ± standard deviation across its \
         seeds [95% interval of the mean, Student's t]:{left_out_text}\n\n{}\n",
        stage.stage.repeats.unwrap_or(1),
        table(&header, &rows)
    );
    let mut ranking: Vec<&SeedValues> = seeds.iter().filter(|c| !c.ranking.is_empty()).collect();
    ranking.sort_by(|a, b| mean(&b.ranking).total_cmp(&mean(&a.ranking)));
    if let [first, second, ..] = ranking.as_slice() {
        text += &lead_verdict(ranked, first, second);
    }
    text
}

/// One configuration's seeds as the seeds table counts them: the ranking value and test
/// accuracy of each seed whose values are finite, and the seeds left out because one
/// of them is not (a column no seed has a finite value in is not held against any).
struct SeedValues<'a> {
    name: &'a str,
    ranking: Vec<f64>,
    test_accuracy: Vec<f64>,
    not_finite: Vec<&'a str>,
}

impl<'a> SeedValues<'a> {
    fn of(
        configuration: &winners::Configuration<'a>,
        runs: &[(RunPlan, RunSummary)],
        monitor: Monitor,
    ) -> SeedValues<'a> {
        let values: Vec<(&str, f64, f64)> = configuration
            .runs
            .iter()
            .map(|(plan, best)| {
                let test = runs
                    .iter()
                    .find(|(p, _)| p.name == plan.name)
                    .map_or(f64::NAN, |(_, summary)| summary.test.accuracy);
                (plan.name.as_str(), monitored(monitor, best), test)
            })
            .collect();
        let tests_measured = values.iter().any(|(_, _, test)| test.is_finite());
        let mut seeds = SeedValues {
            name: configuration.name,
            ranking: Vec::new(),
            test_accuracy: Vec::new(),
            not_finite: Vec::new(),
        };
        for (run, ranking, test) in values {
            if ranking.is_finite() && (test.is_finite() || !tests_measured) {
                seeds.ranking.push(ranking);
                seeds
                    .test_accuracy
                    .extend(Some(test).filter(|t| t.is_finite()));
            } else {
                seeds.not_finite.push(run);
            }
        }
        seeds
    }
}

fn mean(values: &[f64]) -> f64 {
    Spread::of(values).mean
}

fn all_equal(values: &[f64]) -> bool {
    values.windows(2).all(|pair| pair[0] == pair[1])
}

/// The leader's lead over the runner-up, and Welch's t-test of their seeds' values: a p
/// below 0.05 says so large a lead would be rare between equally good configurations.
fn lead_verdict(ranked: &str, first: &SeedValues, second: &SeedValues) -> String {
    let lead = mean(&first.ranking) - mean(&second.ranking);
    let verdict = match WelchTest::of(&first.ranking, &second.ranking) {
        None => {
            let few = if first.ranking.len() < 2 {
                first.name
            } else {
                second.name
            };
            format!(
                "No test of the lead: {few} has fewer than two seeds with a value, and a \
                 t-test needs the spread of each side."
            )
        }
        // Without any spread on either side, t is infinite, 0 / 0, or (where a mean's
        // rounding leaves a variance of 1e-33) astronomically large: scipy's p of 0
        // would claim certainty from seeds that merely agree.
        Some(_) if all_equal(&first.ranking) && all_equal(&second.ranking) => {
            "No test of the lead: the seeds of both agree exactly, so there is no spread \
             to test it against."
                .to_string()
        }
        Some(test) => {
            let reading = if test.p < 0.05 {
                "below 0.05: a lead this large would be rare if the two were equally good"
            } else {
                "not below 0.05: the seeds do not tell the two apart, and another set of \
                 seeds may well reverse the ranking"
            };
            format!(
                "Welch's t-test of their seeds' values (two-sided, without assuming equal \
                 variances): t = {:.3}, {:.2} degrees of freedom, p = {}, {reading}.",
                test.t,
                test.degrees,
                format_p(test.p)
            )
        }
    };
    format!(
        "The best mean {ranked}, {}'s, leads {}'s by {}. {verdict}\n\n",
        first.name,
        second.name,
        metric(Some(lead))
    )
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

    /// A stage of two configurations with three seeds each, hidden=4's seeds at
    /// `fours` and hidden=8's at `eights` (best val accuracy), all tested at 0.625.
    fn seeded(fours: [f64; 3], eights: [f64; 3]) -> (Manifest, StagePlan, Vec<RunResult>) {
        let (manifest, plan) = planned(
            "  - name: r\n    model: {kind: mlp, hidden: 4}\n    grid: {hidden: [4, 8]}\n    repeats: 3\n",
        );
        let (mut four, mut eight) = (fours.iter(), eights.iter());
        let done = plan
            .runs
            .iter()
            .map(|run| {
                let values = if run.configuration() == "hidden=4" {
                    &mut four
                } else {
                    &mut eight
                };
                finished(run, values.next().copied())
            })
            .collect();
        (manifest, plan, done)
    }

    #[test]
    fn the_seeds_verdict_is_welchs_test_of_the_leader_against_the_runner_up() {
        // scipy.stats.ttest_ind([0.91, 0.93, 0.92], [0.89, 0.90, 0.94],
        // equal_var=False): t 0.6123724356957958, df 2.5600000000000023,
        // p 0.5903318162661175.
        let (manifest, plan, done) = seeded([0.91, 0.93, 0.92], [0.89, 0.90, 0.94]);
        let md = seeds_table(&results(&manifest, &plan, done, None));
        assert!(md.contains("| hidden=4 | 3 | 0.9200 ± 0.0100 "), "{md}");
        assert!(
            md.contains(
                "The best mean val accuracy, hidden=4's, leads hidden=8's by 0.0100. Welch's \
                 t-test of their seeds' values (two-sided, without assuming equal variances): \
                 t = 0.612, 2.56 degrees of freedom, p = 0.5903, not below 0.05"
            ),
            "{md}"
        );
        assert!(!md.contains("unlikely to be a seed's luck"), "{md}");
        // [0.95, 0.951, 0.952] against [0.90, 0.905, 0.91]: t 15.625423071195346, df
        // 2.159744408945687, p 0.0029211817081927316.
        let (manifest, plan, done) = seeded([0.95, 0.951, 0.952], [0.90, 0.905, 0.91]);
        let md = seeds_table(&results(&manifest, &plan, done, None));
        assert!(
            md.contains("t = 15.625, 2.16 degrees of freedom, p = 0.0029, below 0.05: a lead"),
            "{md}"
        );
        // Seeds that agree exactly on both sides leave nothing to test against.
        let (manifest, plan, done) = seeded([0.9, 0.9, 0.9], [0.8, 0.8, 0.8]);
        let md = seeds_table(&results(&manifest, &plan, done, None));
        assert!(
            md.contains("leads hidden=8's by 0.1000. No test of the lead: the seeds of both"),
            "{md}"
        );
    }

    #[test]
    fn a_seed_whose_value_is_not_finite_is_named_and_not_counted() {
        let (manifest, plan, mut done) = seeded([0.91, 0.93, 0.92], [0.89, 0.90, 0.94]);
        // hidden=8's first seed has no finite test accuracy, its second no finite val
        // accuracy: one seed of it is left to count.
        let mut eights = done
            .iter_mut()
            .filter(|run| run.result.plan.configuration() == "hidden=8");
        let first = eights.next().unwrap();
        first.result.summary.test.accuracy = f64::NAN;
        let first_name = first.name.clone();
        let second = eights.next().unwrap();
        second.result.summary.best.as_mut().unwrap().val_accuracy = f64::NAN;
        let second_name = second.name.clone();
        let md = seeds_table(&results(&manifest, &plan, done, None));
        assert!(
            md.contains(&format!(
                "| hidden=8 | 1 | 0.9400 ± – [–, –] | 0.6250 ± – [–, –] | `{first_name}`, `{second_name}` |"
            )),
            "{md}"
        );
        assert!(md.contains("| hidden=4 | 3 | "), "{md}");
        assert!(md.contains("left out (not finite)"), "{md}");
        assert!(
            md.contains(
                "No test of the lead: hidden=8 has fewer than two seeds with a value, and a \
                 t-test needs the spread of each side."
            ),
            "{md}"
        );
    }
}

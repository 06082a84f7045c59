//! One stage of the report: its runs' table and curves, the stepwise chart or grid heat
//! map, and for a stage whose winner is a final model, its test results
//! (`final_model`).

use super::final_model;
use super::markdown::{count, metric, table};
use crate::data::Datasets;
use crate::figures::{self, CategoryLines, Curves, HeatMap, Panel};
use crate::files::read_table;
use crate::manifest::Stage;
use crate::plan::{RunPlan, StagePlan};
use crate::run_folder::{parse_epoch_row, FinishedRun, RunFolder, StageFolder, SUMMARY_CSV};
use crate::saved::SavedRun;
use crate::study::{self, StudyModel};
use crate::train::EpochRecord;
use crate::winners::read_winner;
use anyhow::{Context, Result};
use std::path::Path;

/// What a stage contributes to the report.
pub struct StageSection {
    pub markdown: String,
    /// A row of the final-models table, when the stage's winner was tested here.
    pub final_row: Option<Vec<String>>,
    /// Whether any run of the stage left a result (readable or not).
    pub has_results: bool,
}

pub struct StageInput<'a> {
    pub stage: &'a Stage,
    pub plan: &'a StagePlan,
    /// Whether the winner is a final model: the last stage naming its study model, or
    /// one no later stage starts from.
    pub is_final: bool,
    pub out: &'a Path,
    /// This stage's figure folder, and the same as a link from report.md.
    pub dir: &'a Path,
    pub link: &'a str,
}

pub fn render(input: &StageInput, datasets: &mut Datasets) -> Result<StageSection> {
    let StageInput {
        stage,
        plan,
        out,
        dir,
        link,
        ..
    } = *input;
    let mut md = format!("## Stage `{}`\n\n", stage.name);
    let mut finished: Vec<(&RunPlan, FinishedRun)> = Vec::new();
    let mut unreadable = 0;
    for run in &plan.runs {
        let folder = RunFolder::of(out, run);
        match folder.read_result() {
            Ok(Some(result)) => finished.push((run, result)),
            Ok(None) => {}
            // One unreadable run should not hide the rest of the study.
            Err(error) => {
                md += &format!("**Left out:** {error:#}.\n\n");
                unreadable += 1;
            }
        }
    }
    if finished.is_empty() {
        if unreadable == 0 {
            md += &format!(
                "Not run yet: `cellnets only {}` trains its {} run(s).\n\n",
                stage.name,
                plan.runs.len()
            );
        }
        return Ok(StageSection {
            markdown: md,
            final_row: None,
            has_results: unreadable > 0,
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let varied: Vec<String> = stage
        .grid
        .keys()
        .filter_map(|key| key.as_str().map(String::from))
        .collect();
    let winner = read_winner(out, &stage.name)?;
    // The study's numbers compare only with runs on its own data set.
    let study_model = stage
        .report
        .study
        .as_ref()
        .filter(|_| plan.runs[0].dataset.name == study::study().dataset)
        .map(|key| &study::study().models[key]);

    md += &describe(stage, plan, &varied, finished.len());
    md += &runs_table(&finished, &varied, winner.as_ref().map(|w| w.run.as_str()));
    md += &format!(
        "\nAll columns: [{SUMMARY_CSV}]({}/{SUMMARY_CSV})\n\n",
        stage.name
    );
    if let Some(winner) = &winner {
        md += &format!(
            "Winner: **{}** (best val accuracy {:.4}{}).",
            winner.run,
            winner.best_val_accuracy,
            if winner.pinned {
                ", pinned by the manifest"
            } else {
                ""
            }
        );
        if let Some(model) = study_model {
            let choices: Vec<String> = varied
                .iter()
                .filter_map(|key| Some(format!("{key} = {}", model.chosen.get(key)?)))
                .collect();
            if !choices.is_empty() {
                md += &format!(" The study chose {}.", choices.join(", "));
            }
        }
        md += "\n\n";
    }

    let values = |key: &str| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for run in &plan.runs {
            if let Some(value) = hyperparameter(run, key) {
                if !seen.contains(&value) {
                    seen.push(value);
                }
            }
        }
        seen
    };
    match varied.as_slice() {
        [key] if plan.runs.len() > 1 => {
            let name = stepwise_chart(input, key, &finished, winner.as_ref().map(|w| &w.run))?;
            md += &format!("![best epoch per value of {key}]({link}/{name}.png)\n\n");
        }
        [first, second] => {
            let study_grid = study_model.and_then(|model| model.grid.as_ref());
            let (rows, cols) = match study_grid {
                Some(grid) if grid.rows.key == *second && grid.cols.key == *first => {
                    (second, first)
                }
                _ => (first, second),
            };
            md += &grid_section(
                input,
                (rows, values(rows)),
                (cols, values(cols)),
                &finished,
                study_model,
            )?;
        }
        _ => {}
    }

    md += "<details><summary>Training curves of each run</summary>\n\n";
    for (run, result) in &finished {
        let epochs = read_epochs(&RunFolder::of(out, run).epochs_csv())?;
        let curves = Curves {
            title: format!("{}/{}", stage.name, run.name),
            epochs,
            best_epoch: result.summary.best.as_ref().map(|best| best.epoch),
        };
        let name = format!("{}-curves", run.name);
        figures::save(&curves, dir, &name)?;
        md += &format!("![{}]({link}/{name}.png)\n\n", run.name);
    }
    md += "</details>\n\n";

    let mut final_row = None;
    let tested = input.is_final || stage.report.mistakes > 0;
    if let (true, Some(winner)) = (tested, &winner) {
        let saved = SavedRun::open(StageFolder::new(out, &stage.name).run(&winner.run).dir())?;
        let device = datasets.device();
        let data = datasets.open(&saved.finished.plan.dataset)?;
        let report = saved.evaluate(data, &data.test, device)?;
        let names = crate::image_folder::class_names(
            &saved.finished.plan.dataset,
            data.input.classes as usize,
        );
        md += &final_model::test_section(input, &saved, &report, &names, study_model)?;
        if stage.report.mistakes > 0 {
            let train_labels = Vec::<i64>::try_from(data.train.labels.to_device(tch::Device::Cpu))?;
            md += &final_model::mistakes_section(
                input,
                &saved,
                &report,
                &names,
                data,
                &train_labels,
            )?;
        }
        final_row = Some(final_model::final_row_of(
            stage,
            &saved,
            &report,
            study_model,
        ));
    }
    Ok(StageSection {
        markdown: md,
        final_row,
        has_results: true,
    })
}

fn describe(stage: &Stage, plan: &StagePlan, varied: &[String], finished: usize) -> String {
    let mut text = String::new();
    if let Some(from) = &stage.from {
        text += &format!("Starts from the winner of `{from}`. ");
    }
    if let Some(transfer) = &stage.transfer {
        text += &format!(
            "Takes {} from the winner of `{}`{}. ",
            transfer.layers.join(", "),
            transfer.from,
            if transfer.freeze { ", frozen" } else { "" }
        );
    }
    if !varied.is_empty() {
        text += &format!("Varies {}. ", varied.join(" x "));
    }
    let first = &plan.runs[0];
    text += &format!(
        "{} epochs, batch {}, {} at learning rate {}, on {}. {finished} of {} run(s) finished.\n\n",
        first.training.epochs,
        first.training.batch_size,
        hyperparameter(first, "optimizer").unwrap_or_default(),
        first.training.learning_rate,
        first.dataset.file_name(),
        plan.runs.len()
    );
    text
}

fn hyperparameter(run: &RunPlan, key: &str) -> Option<String> {
    run.hyperparameters()
        .into_iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value)
}

fn runs_table(
    finished: &[(&RunPlan, FinishedRun)],
    varied: &[String],
    winner: Option<&str>,
) -> String {
    let mut header = vec!["run"];
    header.extend(varied.iter().map(String::as_str));
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
    let rows: Vec<Vec<String>> = finished
        .iter()
        .map(|(run, result)| {
            let summary = &result.summary;
            let best = summary.best.as_ref();
            let name = if Some(run.name.as_str()) == winner {
                format!("**{}**", run.name)
            } else {
                run.name.clone()
            };
            let mut row = vec![name];
            row.extend(
                varied
                    .iter()
                    .map(|key| hyperparameter(run, key).unwrap_or_default()),
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
                metric(Some(summary.test.accuracy)),
                metric(Some(summary.test.balanced_accuracy)),
                metric(Some(summary.test.macro_f1)),
                metric(Some(summary.test.auc)),
                count(summary.trainable_params),
                format!("{:.0}", summary.seconds),
            ]);
            row
        })
        .collect();
    table(&header, &rows)
}

/// Best val accuracy and loss against the varied value; returns the figure's name.
fn stepwise_chart(
    input: &StageInput,
    key: &str,
    finished: &[(&RunPlan, FinishedRun)],
    winner: Option<&String>,
) -> Result<String> {
    let best = |pick: fn(&EpochRecord) -> f64| -> Vec<f64> {
        finished
            .iter()
            .map(|(_, result)| result.summary.best.as_ref().map_or(f64::NAN, pick))
            .collect()
    };
    let chart = CategoryLines {
        title: format!("stage {}: best epoch of each run", input.stage.name),
        x_desc: key.to_string(),
        categories: finished
            .iter()
            .map(|(run, _)| hyperparameter(run, key).unwrap_or_default())
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
        highlight: finished
            .iter()
            .position(|(run, _)| Some(&run.name) == winner),
    };
    figures::save(&chart, input.dir, "stepwise")?;
    Ok("stepwise".into())
}

fn grid_section(
    input: &StageInput,
    (row_key, rows): (&String, Vec<String>),
    (col_key, cols): (&String, Vec<String>),
    finished: &[(&RunPlan, FinishedRun)],
    study_model: Option<&StudyModel>,
) -> Result<String> {
    let ours = |row: &str, col: &str| -> Option<f64> {
        finished.iter().find_map(|(run, result)| {
            let matches = hyperparameter(run, row_key).as_deref() == Some(row)
                && hyperparameter(run, col_key).as_deref() == Some(col);
            matches.then(|| result.summary.best.as_ref().map(|b| b.val_accuracy))?
        })
    };
    let values: Vec<Vec<Option<f64>>> = rows
        .iter()
        .map(|row| cols.iter().map(|col| ours(row, col)).collect())
        .collect();
    let title = format!("stage {}: best val accuracy", input.stage.name);
    figures::save(
        &HeatMap::grid(
            title,
            (row_key.clone(), rows.clone()),
            (col_key.clone(), cols.clone()),
            &values,
        ),
        input.dir,
        "grid",
    )?;
    let link = input.link;
    let study_grid = study_model.and_then(|model| model.grid.as_ref());
    let Some(grid) =
        study_grid.filter(|grid| grid.rows.key == *row_key && grid.cols.key == *col_key)
    else {
        return Ok(format!("![grid]({link}/grid.png)\n\n"));
    };
    let theirs: Vec<Vec<Option<f64>>> = grid
        .val_accuracy
        .iter()
        .map(|row| row.iter().copied().map(Some).collect())
        .collect();
    figures::save(
        &HeatMap::grid(
            "the study: best val accuracy after 100 epochs".into(),
            (row_key.clone(), grid.rows.values.clone()),
            (col_key.clone(), grid.cols.values.clone()),
            &theirs,
        ),
        input.dir,
        "grid-study",
    )?;
    let mut md = table(
        &["cellnets", "the study"],
        &[vec![
            format!("![grid]({link}/grid.png)"),
            format!("![study grid]({link}/grid-study.png)"),
        ]],
    );
    let mut rows_both = Vec::new();
    for (r, row) in grid.rows.values.iter().enumerate() {
        for (c, col) in grid.cols.values.iter().enumerate() {
            if let Some(value) = ours(row, col) {
                rows_both.push(vec![
                    row.clone(),
                    col.clone(),
                    metric(Some(value)),
                    metric(Some(grid.val_accuracy[r][c])),
                ]);
            }
        }
    }
    md += "\n";
    md += &table(
        &[row_key, col_key, "cellnets val acc", "study val acc"],
        &rows_both,
    );
    md += "\n";
    Ok(md)
}

/// A run's epoch table as records.
fn read_epochs(path: &Path) -> Result<Vec<EpochRecord>> {
    let (_, rows) = read_table(path)?;
    Ok(rows.iter().filter_map(|row| parse_epoch_row(row)).collect())
}

//! One stage of the report: its runs' table and curves, the stepwise chart or grid heat
//! map, and for a stage whose winner is a final model, its test results beside the
//! study's, the confusion matrices and the error analysis.

use super::markdown::{count, metric, table};
use super::Datasets;
use crate::figures::{self, CategoryLines, Curves, HeatMap, MistakePanel, Panel, Picture};
use crate::manifest::Stage;
use crate::metrics::{macro_auc, Confusion, TestReport};
use crate::outputs::{parse_record, read_table, EPOCHS_CSV, SUMMARY_CSV};
use crate::plan::{RunPlan, StagePlan};
use crate::records::{read_winner, read_yaml, run_dir, FinishedRun, RESULT_YAML};
use crate::saved::SavedRun;
use crate::study::{self, StudyModel};
use crate::train::EpochRecord;
use anyhow::{Context, Result};
use std::path::Path;

/// What a stage contributes to the report.
pub struct StageSection {
    pub markdown: String,
    /// A row of the final-models table, when the stage's winner was tested here.
    pub final_row: Option<Vec<String>>,
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
        let path = run_dir(out, &run.stage, &run.name).join(RESULT_YAML);
        match read_yaml::<FinishedRun>(&path) {
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
        let epochs = read_epochs(&run_dir(out, &run.stage, &run.name).join(EPOCHS_CSV))?;
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
        let saved = SavedRun::open(&run_dir(out, &stage.name, &winner.run))?;
        let device = datasets.device();
        let data = datasets.get(&saved.finished.plan.dataset)?;
        let report = saved.evaluate(data, &data.test, device)?;
        let names = study::class_names(
            &saved.finished.plan.dataset.name,
            data.input.classes as usize,
        );
        md += &test_section(input, &saved, &report, &names, study_model)?;
        if stage.report.mistakes > 0 {
            let train_labels = Vec::<i64>::try_from(data.train.labels.to_device(tch::Device::Cpu))?;
            md += &mistakes_section(input, &saved, &report, &names, data, &train_labels)?;
        }
        final_row = Some(final_row_of(stage, &saved, &report, study_model));
    }
    Ok(StageSection {
        markdown: md,
        final_row,
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
                None => summary.status.clone(),
            };
            row.extend([
                status,
                best.map_or("–".into(), |b| b.epoch.to_string()),
                metric(best.map(|b| b.val_accuracy)),
                metric(best.map(|b| b.val_loss)),
                metric(Some(summary.test_accuracy)),
                metric(Some(summary.test_balanced_accuracy)),
                metric(Some(summary.test_macro_f1)),
                metric(Some(summary.test_auc)),
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

fn test_section(
    input: &StageInput,
    saved: &SavedRun,
    report: &TestReport,
    names: &[String],
    study_model: Option<&StudyModel>,
) -> Result<String> {
    let link = input.link;
    let confusion = &report.confusion;
    let summary = &saved.finished.summary;
    let mut md = format!(
        "### Test results of the winner, {}\n\nThe best epoch's weights ({}) on the test split ({} images).\n\n",
        saved.label(),
        summary.best.as_ref().map_or("–".into(), |b| format!("epoch {}", b.epoch)),
        count(report.truth.len() as u64)
    );
    let theirs = study_model.filter(|_| input.is_final && input.stage.report.study.is_some());
    let study_test = theirs.map(|model| &model.test);
    let params =
        |ours: i64, theirs: Option<i64>| vec![count(ours), theirs.map_or("–".into(), count)];
    let mut rows = vec![
        [
            "accuracy".to_string(),
            metric(Some(confusion.accuracy())),
            metric(study_test.map(|t| t.accuracy)),
        ]
        .to_vec(),
        [
            "balanced accuracy".to_string(),
            metric(Some(confusion.balanced_accuracy())),
            metric(study_test.and_then(|t| t.balanced_accuracy)),
        ]
        .to_vec(),
        [
            "macro F1".to_string(),
            metric(Some(confusion.macro_f1())),
            "–".into(),
        ]
        .to_vec(),
        [
            "one-vs-rest AUC".to_string(),
            metric(Some(macro_auc(&report.aucs))),
            "–".into(),
        ]
        .to_vec(),
        ["loss".to_string(), metric(Some(report.loss)), "–".into()].to_vec(),
    ];
    let mut trainable = vec!["trainable parameters".to_string()];
    trainable.extend(params(
        summary.trainable_params,
        theirs.and_then(|m| m.trainable_params),
    ));
    rows.push(trainable);
    if summary.frozen_params > 0 || theirs.is_some_and(|m| m.frozen_params.is_some()) {
        let mut frozen = vec!["frozen parameters".to_string()];
        frozen.extend(params(
            summary.frozen_params,
            theirs.and_then(|m| m.frozen_params),
        ));
        rows.push(frozen);
    }
    let study_header = theirs.map_or("study".into(), |m| format!("{} ({})", m.title, m.source));
    md += &table(&["", "cellnets", &study_header], &rows);

    let title = format!("{}: test confusion", saved.label());
    figures::save(
        &HeatMap::confusion(title, &confusion.matrix, names),
        input.dir,
        "confusion",
    )?;
    let study_confusion = theirs.and_then(|m| {
        m.confusion
            .as_ref()
            .map(|c| Confusion { matrix: c.clone() })
    });
    match &study_confusion {
        Some(study) => {
            let title = "the study: test confusion".to_string();
            let names = &study::study().class_names;
            figures::save(
                &HeatMap::confusion(title, &study.matrix, names),
                input.dir,
                "confusion-study",
            )?;
            md += "\n";
            md += &table(
                &["cellnets", "the study"],
                &[vec![
                    format!("![confusion]({link}/confusion.png)"),
                    format!("![study confusion]({link}/confusion-study.png)"),
                ]],
            );
        }
        None => md += &format!("\n![confusion]({link}/confusion.png)\n"),
    }
    md += "\nPer class (precision = right among those predicted as the class, recall = right among those truly of it):\n\n";
    let study_scores = study_confusion.as_ref().map(Confusion::per_class);
    let mut header = vec!["class", "support", "precision", "recall", "F1", "AUC"];
    if study_scores.is_some() {
        header.extend(["study precision", "study recall"]);
    }
    let rows: Vec<Vec<String>> = confusion
        .per_class()
        .iter()
        .enumerate()
        .map(|(class, scores)| {
            let mut row = vec![
                format!("{class} {}", names[class]),
                count(scores.support),
                metric(Some(scores.precision)),
                metric(Some(scores.recall)),
                metric(Some(scores.f1)),
                metric(report.aucs[class]),
            ];
            if let Some(study) = &study_scores {
                row.push(metric(study.get(class).map(|s| s.precision)));
                row.push(metric(study.get(class).map(|s| s.recall)));
            }
            row
        })
        .collect();
    md += &table(&header, &rows);
    md += "\n";
    Ok(md)
}

fn mistakes_section(
    input: &StageInput,
    saved: &SavedRun,
    report: &TestReport,
    names: &[String],
    data: &crate::data::Dataset,
    train_labels: &[i64],
) -> Result<String> {
    let mistakes = report.most_confident_mistakes(input.stage.report.mistakes);
    if mistakes.is_empty() {
        return Ok(format!(
            "{} classifies every test image correctly: no mistakes to show.\n\n",
            saved.label()
        ));
    }
    let mut md = format!(
        "### The {} most confident mistakes of {}\n\nEach: the test image, the first training image of the predicted class and of the true class, and the predicted probabilities (green: true class, red: predicted).\n\n",
        mistakes.len(),
        saved.label()
    );
    let example = |class: i64| -> Result<Picture> {
        let index = train_labels
            .iter()
            .position(|&label| label == class)
            .unwrap_or(0);
        Picture::from_tensor(&data.train.images.get(index as i64))
    };
    let mut rows = Vec::new();
    for (rank, &index) in mistakes.iter().enumerate() {
        let (truth, predicted) = (report.truth[index], report.predicted[index]);
        let probabilities = report.probabilities[index].clone();
        let confidence = probabilities[predicted as usize];
        let panel = MistakePanel {
            title: format!(
                "test image {index}: true {}, predicted {} ({confidence:.2})",
                names[truth as usize], names[predicted as usize]
            ),
            sample: Picture::from_tensor(&data.test.images.get(index as i64))?,
            predicted_example: example(predicted)?,
            true_example: example(truth)?,
            class_names: names.to_vec(),
            probabilities,
            predicted: predicted as usize,
            truth: truth as usize,
        };
        let name = format!("mistake-{}", rank + 1);
        figures::save_png(&panel, input.dir, &name)?;
        rows.push(vec![
            (rank + 1).to_string(),
            index.to_string(),
            names[truth as usize].clone(),
            names[predicted as usize].clone(),
            metric(Some(confidence)),
            format!("![{name}]({}/{name}.png)", input.link),
        ]);
    }
    md += &table(
        &[
            "rank",
            "test image",
            "true",
            "predicted",
            "probability",
            "figure",
        ],
        &rows,
    );
    md += "\n";
    Ok(md)
}

fn final_row_of(
    stage: &Stage,
    saved: &SavedRun,
    report: &TestReport,
    study_model: Option<&StudyModel>,
) -> Vec<String> {
    let confusion = &report.confusion;
    let summary = &saved.finished.summary;
    vec![
        format!("`{}`: {}", stage.name, saved.finished.plan.name),
        format!(
            "{} of {}",
            summary.epochs, saved.finished.plan.training.epochs
        ),
        metric(Some(confusion.accuracy())),
        metric(study_model.map(|m| m.test.accuracy)),
        metric(Some(confusion.balanced_accuracy())),
        metric(study_model.and_then(|m| m.test.balanced_accuracy)),
        metric(Some(confusion.macro_f1())),
        metric(Some(macro_auc(&report.aucs))),
        count(summary.trainable_params),
        study_model.map_or(String::new(), |m| m.title.clone()),
    ]
}

/// A run's epoch table as records.
fn read_epochs(path: &Path) -> Result<Vec<EpochRecord>> {
    let (_, rows) = read_table(path)?;
    Ok(rows.iter().filter_map(|row| parse_record(row)).collect())
}

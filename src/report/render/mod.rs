//! Render, pure: the report as markdown and the figures and tables it links, from what
//! `gather` read and `compute` evaluated. Nothing here reads or writes a file.

mod data_overview;
mod ensemble;
mod final_model;
mod halving;
mod search;
mod stage;

use super::compute::{TestedEnsemble, TestedWinner};
use super::gather::{DataOverview, StageResults};
use super::markdown::{code, metric, table, text};
use super::output::{Drawing, Section, TableFile, REPORT_DIR, STAGES_CSV};
use crate::figures::TimeCurves;
use crate::metrics::TestReport;
use crate::study::catalog;
use crate::study::manifest::DatasetSpec;
use final_model::Compared;
use std::path::Path;

/// The whole report: the final models, the data files, then stage by stage.
/// `tested` holds each stage's tested winner, in the order of `stages`.
pub fn report(
    manifest_path: &Path,
    stages: &[StageResults],
    tested: &[Option<TestedWinner>],
    ensembles: &[Option<TestedEnsemble>],
    data: &[DataOverview],
) -> Section {
    let mut report = Section::text(introduction(manifest_path));
    // A stage tested only for its error analysis is no final model.
    let finals: Vec<(&StageResults, Final)> = stages
        .iter()
        .zip(tested.iter().zip(ensembles))
        .filter(|(stage, _)| stage.is_final)
        .filter_map(|(stage, (tested, ensemble))| {
            let one = match (tested, ensemble) {
                (Some(tested), _) => Final::Winner(tested),
                (None, Some(ensemble)) => Final::Ensemble(ensemble),
                (None, None) => return None,
            };
            Some((stage, one))
        })
        .collect();
    let final_rows: Vec<Vec<String>> = finals
        .iter()
        .map(|(stage, one)| match one {
            Final::Winner(tested) => final_model::final_row(&stage.stage.name, tested, stage.study),
            Final::Ensemble(ensemble) => {
                let view = stage
                    .ensemble
                    .as_ref()
                    .expect("a tested ensemble has a view");
                final_model::ensemble_row(
                    &stage.stage.name,
                    view.members.len(),
                    &ensemble.report,
                    &view.result.summary,
                )
            }
        })
        .collect();
    let mut sets: Vec<&str> = Vec::new();
    for (_, one) in &finals {
        let name = one.dataset().name.as_str();
        if !sets.contains(&name) {
            sets.push(name);
        }
    }
    report.markdown += &final_models(&final_rows, &sets);
    for (stage, one) in &finals {
        let label = format!("`{}`", stage.stage.name);
        report.markdown += &final_model::scarce_note(&label, one.report(), None);
    }
    report.push(time_to_accuracy(&finals));
    let compared: Vec<Compared> = finals
        .iter()
        .map(|(stage, one)| Compared {
            stage: &stage.stage.name,
            dataset: one.dataset(),
            report: one.report(),
        })
        .collect();
    report.markdown += &final_model::paired_comparisons(&compared);
    for overview in data {
        report.push(data_overview::section(overview));
    }
    report.push(search::compared(stages));
    for (stage, tested) in stages.iter().zip(tested) {
        report.push(match stage.plan.ensemble {
            Some(_) => ensemble::section(stage),
            None => stage::section(stage, tested.as_ref()),
        });
    }
    report
        .tables
        .push(stage_order(stages.iter().map(|stage| &stage.stage.name)));
    report
}

/// The final winners' val accuracy against the wall minutes of their training, epoch
/// by epoch: which model gets how far how soon. None without two timed epochs.
fn time_to_accuracy(finals: &[(&StageResults, Final)]) -> Section {
    let runs: Vec<(String, Vec<(f64, f64)>)> = finals
        .iter()
        .filter_map(|(stage, one)| {
            let Final::Winner(tested) = one else {
                return None;
            };
            let run = stage
                .finished
                .iter()
                .find(|run| run.name == tested.finished.plan.name)?;
            let points = run
                .epochs
                .iter()
                .filter(|epoch| epoch.cumulative_seconds.is_finite());
            let points = points.map(|epoch| (epoch.cumulative_seconds / 60.0, epoch.val_accuracy));
            Some((stage.stage.name.clone(), points.collect::<Vec<_>>()))
        })
        .filter(|(_, points)| !points.is_empty())
        .collect();
    if runs.iter().map(|(_, points)| points.len()).sum::<usize>() < 2 {
        return Section::text("");
    }
    let name = "time-to-accuracy";
    let mut section = Section::text(format!(
        "Val accuracy of each final model after each epoch, against the wall minutes its \
         training had taken by then (the train time above is the whole run's):\n\n\
         ![time to accuracy]({REPORT_DIR}/{name}.png)\n\n"
    ));
    let figure = TimeCurves {
        title: "Time to accuracy".to_string(),
        runs,
    };
    section.figure(REPORT_DIR, name, Drawing::TimeCurves(figure));
    section
}

fn introduction(manifest_path: &Path) -> String {
    let path = manifest_path.display().to_string();
    let (manifest, command) = (text(&path), code(&format!("cellnets report {path}")));
    format!(
        "# cellnets report: {manifest}\n\nEvery stage of the manifest, from the outputs in this \
         folder, with the numbers the reproduced study reported beside them where it reported \
         any (IA048 \"Atividade 3 – Redes Neurais\", UNICAMP, 2024). Val accuracy is the best \
         epoch's; test results are those of the checkpoint of each run's monitor (val loss unless \
         the manifest names another). Regenerate with \
         {command}.\n\n"
    )
}

/// A final model: a stage's tested winner, or an ensemble stage's ensemble.
enum Final<'a> {
    Winner(&'a TestedWinner),
    Ensemble(&'a TestedEnsemble),
}

impl Final<'_> {
    fn dataset(&self) -> &DatasetSpec {
        match self {
            Final::Winner(tested) => &tested.finished.plan.dataset,
            Final::Ensemble(ensemble) => &ensemble.dataset,
        }
    }

    fn report(&self) -> &TestReport {
        match self {
            Final::Winner(tested) => &tested.report,
            Final::Ensemble(ensemble) => &ensemble.report,
        }
    }
}

/// The table of final models, with the MedMNIST v2 benchmark's published test
/// accuracies on their data sets to set them against.
fn final_models(rows: &[Vec<String>], sets: &[&str]) -> String {
    if rows.is_empty() {
        return "No stage has a final model yet: run the manifest first.\n\n".into();
    }
    let header = [
        "stage: winner",
        "epochs",
        "train time",
        "test acc",
        "study",
        "bal. acc",
        "study",
        "macro F1",
        "AUC",
        "trainable",
        "study model",
    ];
    let mut text = format!(
        "## Final models\n\n{}\nIn brackets, 95% intervals over the test images: Wilson's for \
         accuracy, a seeded bootstrap stratified by class ({} resamples) for the others. The \
         study scored the same test images, so its numbers are taken as exact: one inside our \
         interval is consistent with ours, one outside is not. The intervals do not cover a \
         different seed: a stage with `repeats` shows that spread. Balanced accuracy, macro F1 \
         and AUC are means over the classes the test images have: a class without test images \
         (for independent labels, a label no test image has) is left out of each.\n\n",
        table(&header, rows),
        crate::statistics::RESAMPLES
    );
    for name in sets {
        text += &published(name);
    }
    text
}

/// The MedMNIST v2 benchmark's and MedMNIST+'s published test accuracies on set `name`;
/// empty for a set that is none of theirs.
fn published(name: &str) -> String {
    let Some(set) = catalog::set(name) else {
        return String::new();
    };
    let published: Vec<String> = catalog::method_keys()
        .filter_map(|key| {
            let accuracy = set.baselines.get(key)?.acc?;
            Some(format!(
                "{} {}",
                catalog::method_name(key)?,
                metric(Some(accuracy))
            ))
        })
        .collect();
    format!(
        "Published {name} test accuracies (MedMNIST v2 benchmark): {}.\n\n{}",
        published.join(", "),
        catalog::medmnist_plus_line(name)
    )
}

/// The manifest's stage order, which file times cannot tell: a stage rerun later would
/// sort last.
fn stage_order<'a>(names: impl Iterator<Item = &'a String>) -> TableFile {
    TableFile {
        path: format!("{REPORT_DIR}/{STAGES_CSV}"),
        header: vec!["stage".into(), "order".into()],
        rows: names
            .enumerate()
            .map(|(index, name)| vec![name.clone(), (index + 1).to_string()])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stage_order_is_the_given_one_counted_from_one() {
        let names = ["b", "a"].map(String::from);
        let table = super::stage_order(names.iter());
        assert_eq!(table.path, "report/stages.csv");
        assert_eq!(table.header, ["stage", "order"]);
        assert_eq!(table.rows, [["b", "1"], ["a", "2"]]);
    }
}

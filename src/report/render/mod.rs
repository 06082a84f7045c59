//! Render: the report as markdown and the figures and tables it links, from what
//! `gather` read and `compute` evaluated. Pure: nothing here reads or writes a file.

mod data_overview;
mod ensemble;
mod final_model;
mod halving;
mod stage;

use super::compute::TestedWinner;
use super::gather::{DataOverview, StageResults};
use super::markdown::{metric, table};
use super::output::{Section, TableFile, REPORT_DIR, STAGES_CSV};
use crate::study::catalog;
use std::path::Path;

/// The whole report: the final models, the data files, then stage by stage.
/// `tested` holds each stage's tested winner, in the order of `stages`.
pub fn report(
    manifest_path: &Path,
    stages: &[StageResults],
    tested: &[Option<TestedWinner>],
    data: &[DataOverview],
) -> Section {
    let mut report = Section::text(introduction(manifest_path));
    // A stage tested only for its error analysis is no final model.
    let final_rows: Vec<Vec<String>> = stages
        .iter()
        .zip(tested)
        .filter(|(stage, _)| stage.is_final)
        .filter_map(|(stage, tested)| {
            let tested = tested.as_ref()?;
            Some(final_model::final_row(
                &stage.stage.name,
                tested,
                stage.study,
            ))
        })
        .collect();
    let mut sets: Vec<&str> = Vec::new();
    for tested in stages
        .iter()
        .zip(tested)
        .filter(|(stage, _)| stage.is_final)
    {
        if let Some(tested) = tested.1 {
            let name = tested.finished.plan.dataset.name.as_str();
            if !sets.contains(&name) {
                sets.push(name);
            }
        }
    }
    report.markdown += &final_models(&final_rows, &sets);
    let finals: Vec<(&str, &TestedWinner)> = stages
        .iter()
        .zip(tested)
        .filter(|(stage, _)| stage.is_final)
        .filter_map(|(stage, tested)| Some((stage.stage.name.as_str(), tested.as_ref()?)))
        .collect();
    report.markdown += &final_model::paired_comparisons(&finals);
    for overview in data {
        report.push(data_overview::section(overview));
    }
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

fn introduction(manifest_path: &Path) -> String {
    let manifest = manifest_path.display();
    format!(
        "# cellnets report: {manifest}\n\nEvery stage of the manifest, from the outputs in this \
         folder, with the numbers the reproduced study reported beside them where it reported \
         any (IA048 \"Atividade 3 – Redes Neurais\", UNICAMP, 2024). Val accuracy is the best \
         epoch's; test results are those of the checkpoint of each run's monitor (val loss unless \
         the manifest names another). Regenerate with \
         `cellnets report {manifest}`.\n\n"
    )
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
         accuracy, a seeded bootstrap stratified by class ({} resamples) for the others; a study \
         number outside ours differs by more than the choice of test images explains. They do \
         not cover a different seed: a stage with `repeats` shows that spread.\n\n",
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

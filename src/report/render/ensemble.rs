//! An ensemble stage: its test scores beside each member's, the published benchmarks
//! on its data set, and its test confusion matrix.

use super::published;
use crate::figures::HeatMap;
use crate::metrics::TestMetrics;
use crate::report::gather::StageResults;
use crate::report::markdown::{count, table, with_interval};
use crate::report::output::{Drawing, Section, REPORT_DIR};
use crate::study::ensemble::ENSEMBLE_RUN;

pub fn section(stage: &StageResults) -> Section {
    let name = &stage.stage.name;
    let mut section = Section::text(format!("## Stage `{name}`: an ensemble\n\n"));
    let Some(view) = &stage.ensemble else {
        section.markdown += &format!(
            "Not tested yet: `cellnets only {name}` tests it once its members' stages have \
             finished.\n\n"
        );
        return section;
    };
    let result = &view.result;
    let images: u64 = result.confusion.iter().flatten().flatten().sum();
    let on = match images {
        0 => "the test split".to_string(),
        images => format!("the test split ({} images)", count(images)),
    };
    section.markdown += &format!(
        "The mean of {} runs' probabilities (each with its own test-time views) on {on}, \
         beside each run alone. In brackets, 95% intervals as for a winner.\n\n",
        view.members.len()
    );
    let mut rows: Vec<Vec<String>> = view
        .members
        .iter()
        .map(|(member, finished)| match finished {
            Some(finished) => scores_row(member, &finished.summary.test),
            None => vec![member.clone(), "its result cannot be read".into()],
        })
        .collect();
    rows.push(scores_row(
        &format!("**{name}/{ENSEMBLE_RUN}**"),
        &result.summary.test,
    ));
    let header = ["run", "test acc", "bal. acc", "macro F1", "AUC"];
    section.markdown += &table(&header, &rows);
    section.markdown +=
        &format!("\nIts tables: [{name}/{ENSEMBLE_RUN}/]({name}/{ENSEMBLE_RUN}/)\n\n");
    if stage.stage.report.baseline.is_some() {
        section.markdown += &published(&result.dataset.name);
    }
    if let Some(matrix) = &result.confusion {
        let names = crate::data::image_folder::class_names(&result.dataset, matrix.len());
        let title = format!("{name}/{ENSEMBLE_RUN}: test confusion");
        let folder = format!("{REPORT_DIR}/{name}");
        let heat_map = HeatMap::confusion(title, matrix, &names);
        section.figure(&folder, "confusion", Drawing::HeatMap(heat_map));
        section.markdown += &format!("![confusion]({folder}/confusion.png)\n\n");
    }
    section
}

/// A table row: the name, then test accuracy, balanced accuracy, macro F1 and AUC with
/// their intervals.
fn scores_row(name: &str, test: &TestMetrics) -> Vec<String> {
    let ci = &test.ci95;
    vec![
        name.to_string(),
        with_interval(test.accuracy, ci.accuracy),
        with_interval(test.balanced_accuracy, ci.balanced_accuracy),
        with_interval(test.macro_f1, ci.macro_f1),
        with_interval(test.auc, ci.auc),
    ]
}

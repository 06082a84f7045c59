//! The test results of a tested winner: its metrics beside the study's and the MedMNIST
//! v2 benchmark's, both confusion matrices (for classes), per-class or per-label
//! scores, the error analysis of its most confident mistakes, and its row of the
//! final-models table.

use crate::figures::{HeatMap, MistakePanel};
use crate::metrics::{ClassScores, Confusion, TestReport};
use crate::outputs::summary::RunSummary;
use crate::report::compute::{Mistake, TestedWinner};
use crate::report::markdown::{against_interval, count, metric, table, with_interval};
use crate::report::output::{Drawing, Section};
use crate::statistics::mcnemar_exact;
use crate::study::catalog;
use crate::study::manifest::DatasetSpec;
use crate::study::reference::{self, StudyModel};
use crate::study::task::Task;

/// The winner's test metrics, confusion matrix and per-class scores, beside those of
/// the study's model `theirs` when there is one to compare with, and the benchmark's
/// published results when the stage names a `baseline` method.
pub fn test_section(
    tested: &TestedWinner,
    theirs: Option<&StudyModel>,
    baseline: Option<&str>,
    folder: &str,
) -> Section {
    let summary = &tested.finished.summary;
    let mut section = Section::text(format!(
        "### Test results of the winner, {}\n\nThe best epoch's weights ({}) on the test split ({} images). In brackets, 95% intervals: Wilson's for accuracy; for the other scores, the 2.5th and 97.5th percentiles of {} bootstrap resamples of the test images, each class's images drawn from that class (seeded: the same predictions give the same interval). A number of the study outside our interval differs by more than the test images' sampling explains.\n\n",
        tested.label,
        summary.best.as_ref().map_or("–".into(), |b| format!("epoch {}", b.epoch)),
        count(tested.report.len() as u64),
        crate::statistics::RESAMPLES
    ));
    let study_header = theirs.map_or("study".into(), |m| format!("{} ({})", m.title, m.source));
    section.markdown += &table(
        &["", "cellnets", &study_header],
        &metric_rows(tested, theirs),
    );
    if let Some(method) = baseline {
        section.markdown += &baseline_table(tested, method);
    }
    let study_confusion = theirs.and_then(|model| model.confusion.as_deref());
    if let Some(confusion) = tested.report.confusion() {
        section.push(confusions(tested, confusion, study_confusion, folder));
        section.markdown += "\nPer class (precision = right among those predicted as the class, recall = right among those truly of it):\n\n";
    } else {
        section.markdown += "\nPer label, each an independent yes/no decision at probability 0.5 (precision = right among the images predicted to have it, recall = right among those that have it):\n\n";
    }
    let study_scores = study_confusion.map(|matrix| {
        Confusion {
            matrix: matrix.to_vec(),
        }
        .per_class()
    });
    section.markdown += &per_class_table(tested, study_scores.as_deref());
    section.markdown += "\n";
    section
}

/// The benchmark's published test ACC and AUC on the winner's data set, each method a
/// row, the named one marked, beside the winner's own.
fn baseline_table(tested: &TestedWinner, method: &str) -> String {
    let dataset = &tested.finished.plan.dataset.name;
    let Some(set) = catalog::set(dataset) else {
        return format!(
            "\n`{dataset}` is not one of the MedMNIST v2 sets, so it has no published \
             baseline to compare with.\n\n"
        );
    };
    let scores = tested.report.metrics();
    let mut rows = vec![vec![
        format!("cellnets: {}", tested.label),
        metric(Some(scores.accuracy)),
        metric(Some(scores.auc)),
    ]];
    for key in catalog::method_keys() {
        let published = set.baselines.get(key);
        let name = catalog::method_name(key).unwrap_or(key);
        rows.push(vec![
            if key == method {
                format!("**{name}**")
            } else {
                name.to_string()
            },
            metric(published.and_then(|p| p.acc)),
            metric(published.and_then(|p| p.auc)),
        ]);
    }
    format!(
        "\nBeside the MedMNIST v2 benchmark on {dataset} (Yang et al., Sci Data 2023; test \
         ACC and AUC as its evaluator defines them; – where cellnets has no copy of the \
         number):\n\n{}",
        table(&["", "ACC", "AUC"], &rows)
    )
}

/// Test metrics and parameter counts: (name, ours, the study's).
fn metric_rows(tested: &TestedWinner, theirs: Option<&StudyModel>) -> Vec<Vec<String>> {
    let (report, summary) = (&tested.report, &tested.finished.summary);
    let scores = report.metrics();
    let study_test = theirs.map(|model| &model.test);
    let row = |name: &str, ours: String, theirs: String| vec![name.to_string(), ours, theirs];
    let params = |name: &str, ours: i64, theirs: Option<i64>| {
        row(name, count(ours), theirs.map_or("–".into(), count))
    };
    let mut rows = vec![
        row(
            if report.task.has_classes() {
                "accuracy"
            } else {
                "accuracy (mean over labels)"
            },
            with_interval(scores.accuracy, scores.ci95.accuracy),
            against_interval(study_test.map(|t| t.accuracy), scores.ci95.accuracy),
        ),
        row(
            "balanced accuracy",
            with_interval(scores.balanced_accuracy, scores.ci95.balanced_accuracy),
            against_interval(
                study_test.and_then(|t| t.balanced_accuracy),
                scores.ci95.balanced_accuracy,
            ),
        ),
        row(
            "macro F1",
            with_interval(scores.macro_f1, scores.ci95.macro_f1),
            "–".into(),
        ),
        row(
            match report.task {
                Task::BinaryClass => "AUC (class 1)",
                Task::MultiLabel => "AUC (mean over labels)",
                _ => "one-vs-rest AUC",
            },
            with_interval(scores.auc, scores.ci95.auc),
            "–".into(),
        ),
        row("loss", metric(Some(report.loss)), "–".into()),
        params(
            "trainable parameters",
            summary.trainable_params,
            theirs.and_then(|m| m.trainable_params),
        ),
    ];
    if let Some(exact) = report.exact_match() {
        rows.push(row("every label right", metric(Some(exact)), "–".into()));
    }
    if let Some(error) = report.mean_absolute_error() {
        rows.push(row(
            "mean absolute grade error",
            metric(Some(error)),
            "–".into(),
        ));
    }
    // Frozen parameters only matter to a model that transfers layers.
    if summary.frozen_params > 0 || theirs.is_some_and(|m| m.frozen_params.is_some()) {
        let frozen = theirs.and_then(|m| m.frozen_params);
        rows.push(params("frozen parameters", summary.frozen_params, frozen));
    }
    rows
}

/// The confusion heat map, beside the study's when it published one.
fn confusions(
    tested: &TestedWinner,
    confusion: &Confusion,
    study: Option<&[Vec<u64>]>,
    folder: &str,
) -> Section {
    let title = format!("{}: test confusion", tested.label);
    let ours = HeatMap::confusion(title, &confusion.matrix, &tested.class_names);
    let mut section = Section::default();
    section.figure(folder, "confusion", Drawing::HeatMap(ours));
    let Some(study) = study else {
        section.markdown = format!("\n![confusion]({folder}/confusion.png)\n");
        return section;
    };
    let title = "the study: test confusion".to_string();
    let theirs = HeatMap::confusion(title, study, &reference::study().class_names);
    section.figure(folder, "confusion-study", Drawing::HeatMap(theirs));
    let images = [vec![
        format!("![confusion]({folder}/confusion.png)"),
        format!("![study confusion]({folder}/confusion-study.png)"),
    ]];
    section.markdown = "\n".to_string() + &table(&["cellnets", "the study"], &images);
    section
}

fn per_class_table(tested: &TestedWinner, study: Option<&[ClassScores]>) -> String {
    let task = tested.report.task;
    let support = if task.has_classes() {
        "support"
    } else {
        "positives"
    };
    let mut header = vec![
        task.output_noun(),
        support,
        "precision",
        "recall",
        "F1",
        "AUC",
    ];
    if study.is_some() {
        header.extend(["study precision", "study recall"]);
    }
    let rows: Vec<Vec<String>> = tested
        .report
        .per_output()
        .iter()
        .enumerate()
        .map(|(class, (scores, auc))| {
            let mut row = vec![
                format!("{class} {}", tested.class_names[class]),
                count(scores.support),
                metric(Some(scores.precision)),
                metric(Some(scores.recall)),
                metric(Some(scores.f1)),
                metric(*auc),
            ];
            if let Some(study) = study {
                row.push(metric(study.get(class).map(|s| s.precision)));
                row.push(metric(study.get(class).map(|s| s.recall)));
            }
            row
        })
        .collect();
    table(&header, &rows)
}

/// A figure per mistake (the test image, a training image of the predicted and of the
/// true class, the probabilities) and a table of them.
pub fn mistakes_section(tested: &TestedWinner, mistakes: &[Mistake], folder: &str) -> Section {
    if mistakes.is_empty() {
        return Section::text(format!(
            "{} classifies every test image correctly: no mistakes to show.\n\n",
            tested.label
        ));
    }
    let mut section = Section::text(format!(
        "### The {} most confident mistakes of {}\n\nEach: the test image, the first training image of the predicted class and of the true class, and the predicted probabilities (green: true class, red: predicted).\n\n",
        mistakes.len(),
        tested.label
    ));
    let names = &tested.class_names;
    let mut rows = Vec::new();
    for (rank, mistake) in mistakes.iter().enumerate() {
        let name = format!("mistake-{}", rank + 1);
        rows.push(vec![
            (rank + 1).to_string(),
            mistake.index.to_string(),
            names[mistake.truth].clone(),
            names[mistake.predicted].clone(),
            metric(Some(mistake.confidence())),
            format!("![{name}]({folder}/{name}.png)"),
        ]);
        let panel = Drawing::MistakePanel(mistake_panel(mistake, names));
        section.figure(folder, &name, panel);
    }
    let header = [
        "rank",
        "test image",
        "true",
        "predicted",
        "probability",
        "figure",
    ];
    section.markdown += &(table(&header, &rows) + "\n");
    section
}

fn mistake_panel(mistake: &Mistake, names: &[String]) -> MistakePanel {
    MistakePanel {
        title: format!(
            "test image {}: true {}, predicted {} ({:.2})",
            mistake.index,
            names[mistake.truth],
            names[mistake.predicted],
            mistake.confidence()
        ),
        sample: mistake.image.clone(),
        predicted_example: mistake.predicted_example.clone(),
        true_example: mistake.true_example.clone(),
        class_names: names.to_vec(),
        probabilities: mistake.probabilities.clone(),
        predicted: mistake.predicted,
        truth: mistake.truth,
    }
}

/// An ensemble's row of the final-models table: its members' parameters together.
pub fn ensemble_row(
    stage: &str,
    members: usize,
    report: &TestReport,
    summary: &RunSummary,
) -> Vec<String> {
    let scores = report.metrics();
    vec![
        format!("`{stage}`: ensemble of {members}"),
        "their own".to_string(),
        train_time(summary),
        with_interval(scores.accuracy, scores.ci95.accuracy),
        String::new(),
        with_interval(scores.balanced_accuracy, scores.ci95.balanced_accuracy),
        String::new(),
        with_interval(scores.macro_f1, scores.ci95.macro_f1),
        with_interval(scores.auc, scores.ci95.auc),
        count(summary.trainable_params),
        String::new(),
    ]
}

/// `4.7 min (8.2 CPU)`: the wall and CPU minutes a model's training took (an
/// ensemble's, its members' together); a dash for runs from before they were kept.
fn train_time(summary: &RunSummary) -> String {
    let (wall, cpu) = (
        summary.train_seconds / 60.0,
        summary.train_cpu_seconds / 60.0,
    );
    match (wall.is_finite(), cpu.is_finite()) {
        (true, true) => format!("{wall:.1} min ({cpu:.1} CPU)"),
        (true, false) => format!("{wall:.1} min"),
        _ => "–".to_string(),
    }
}

/// The winner's row of the final-models table.
pub fn final_row(stage: &str, tested: &TestedWinner, study: Option<&StudyModel>) -> Vec<String> {
    let scores = tested.report.metrics();
    let (plan, summary) = (&tested.finished.plan, &tested.finished.summary);
    vec![
        format!("`{stage}`: {}", plan.name),
        format!("{} of {}", summary.epochs, plan.training.epochs),
        train_time(summary),
        with_interval(scores.accuracy, scores.ci95.accuracy),
        against_interval(study.map(|m| m.test.accuracy), scores.ci95.accuracy),
        with_interval(scores.balanced_accuracy, scores.ci95.balanced_accuracy),
        against_interval(
            study.and_then(|m| m.test.balanced_accuracy),
            scores.ci95.balanced_accuracy,
        ),
        with_interval(scores.macro_f1, scores.ci95.macro_f1),
        with_interval(scores.auc, scores.ci95.auc),
        count(summary.trainable_params),
        study.map_or(String::new(), |m| m.title.clone()),
    ]
}

/// A final model as the paired comparisons see it: its stage, data and test predictions.
pub struct Compared<'a> {
    pub stage: &'a str,
    pub dataset: &'a DatasetSpec,
    pub report: &'a TestReport,
}

/// McNemar's exact test between every two final models (ensembles too) tested on the
/// same images: of the images only one of the two gets right, how many each gets, and
/// how likely so lopsided a split is if neither model were better. Empty with fewer
/// than two.
pub fn paired_comparisons(finals: &[Compared]) -> String {
    let mut rows = Vec::new();
    for (i, first) in finals.iter().enumerate() {
        for second in &finals[i + 1..] {
            let (first_stage, second_stage) = (first.stage, second.stage);
            let same_images =
                first.dataset == second.dataset && first.report.len() == second.report.len();
            if !same_images {
                continue;
            }
            let (only_first, only_second) = first
                .report
                .correct()
                .iter()
                .zip(second.report.correct())
                .fold((0u64, 0u64), |(a, b), (&x, y)| {
                    (a + u64::from(x && !y), b + u64::from(!x && y))
                });
            let p = mcnemar_exact(only_first, only_second);
            let better = match only_first.cmp(&only_second) {
                _ if p >= 0.05 => "neither (p ≥ 0.05)".to_string(),
                std::cmp::Ordering::Greater => format!("`{first_stage}`"),
                _ => format!("`{second_stage}`"),
            };
            rows.push(vec![
                format!("`{first_stage}` vs `{second_stage}`"),
                count(only_first),
                count(only_second),
                format_p(p),
                better,
            ]);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "Paired comparison on the same test images (McNemar's exact test: only the images \
         exactly one of the two models gets right count; p is the chance of a split at least \
         this uneven if neither model were better):\n\n{}\n",
        table(
            &[
                "models",
                "only first right",
                "only second right",
                "p",
                "better"
            ],
            &rows
        )
    )
}

/// A p-value to four decimals, or as a bound below them.
pub fn format_p(p: f64) -> String {
    if p < 1e-4 {
        "< 0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

//! The test results of a tested winner: its metrics beside the study's and the MedMNIST
//! v2 benchmark's, both confusion matrices (for classes), per-class or per-label
//! scores, the error analysis of its most confident mistakes, and its row of the
//! final-models table.

use crate::figures::{HeatMap, MistakePanel};
use crate::metrics::{ClassScores, Confusion, TestReport, FEW_IMAGES};
use crate::outputs::summary::RunSummary;
use crate::report::compute::{Mistake, TestedWinner};
use crate::report::markdown::{against_interval, count, metric, table, text, with_interval};
use crate::report::output::{Drawing, Section};
use crate::statistics::{holm, mcnemar_exact};
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
        "### Test results of the winner, {}\n\nThe best epoch's weights ({}) on the test split ({} images). In brackets, 95% intervals: Wilson's for accuracy; for the other scores, the 2.5th and 97.5th percentiles of {} bootstrap resamples of the test images, each class's images drawn from that class (seeded: the same predictions give the same interval). The study scored these same test images, so its number is taken as exact: inside our interval it is consistent with ours, outside it is not.\n\n",
        tested.label,
        summary.best.as_ref().map_or("–".into(), |b| format!("epoch {}", b.epoch)),
        count(tested.report.len() as u64),
        crate::statistics::RESAMPLES
    ));
    section.markdown += &scarce_note(&tested.label, &tested.report, Some(&tested.class_names));
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

/// A warning, when `report`'s split has a class (label) with fewer than `FEW_IMAGES`
/// test images (positives), that the intervals resting on them are unreliable; empty
/// otherwise. `names` names the classes where known.
pub fn scarce_note(label: &str, report: &TestReport, names: Option<&[String]>) -> String {
    let scarce = report.scarce_outputs();
    if scarce.is_empty() {
        return String::new();
    }
    let noun = report.task.output_noun();
    let listed: Vec<String> = scarce
        .iter()
        .map(|&(index, images)| {
            // A class without a name of its own is called `class N` already.
            let name = names
                .and_then(|names| names.get(index))
                .filter(|name| **name != format!("class {index}"))
                .map_or(String::new(), |name| format!(" {name}"));
            let unit = if report.task.has_classes() {
                "test image"
            } else {
                "positive"
            };
            let plural = if images == 1 { "" } else { "s" };
            format!("{noun} {index}{name} ({images} {unit}{plural})")
        })
        .collect();
    let why = if report.task.has_classes() {
        "The bootstrap draws each class's images from that class alone, and a handful of \
         them barely vary between resamples (a single one never does)"
    } else {
        "A handful of positives leave a label's F1 and AUC resting on a few images"
    };
    format!(
        "**Few test images:** {label} is tested on fewer than {FEW_IMAGES} images of {}. \
         {why}: the intervals of balanced accuracy, macro F1 and AUC come out narrower than \
         the evidence allows and are unreliable.\n\n",
        listed.join(", ")
    )
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
                format!("{class} {}", text(&tested.class_names[class])),
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
            text(&names[mistake.truth]),
            text(&names[mistake.predicted]),
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
/// how likely so lopsided a split is if neither model were better, adjusted by Holm's
/// correction for the number of pairs tested together. Empty with fewer than two.
pub fn paired_comparisons(finals: &[Compared]) -> String {
    let mut pairs = Vec::new();
    for (i, first) in finals.iter().enumerate() {
        for second in &finals[i + 1..] {
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
            pairs.push((first.stage, second.stage, only_first, only_second, p));
        }
    }
    if pairs.is_empty() {
        return String::new();
    }
    let adjusted = holm(&pairs.iter().map(|pair| pair.4).collect::<Vec<f64>>());
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .zip(&adjusted)
        .map(
            |(&(first, second, only_first, only_second, p), &adjusted)| {
                let better = match only_first.cmp(&only_second) {
                    _ if adjusted >= 0.05 => "neither (adjusted p ≥ 0.05)".to_string(),
                    std::cmp::Ordering::Greater => format!("`{first}`"),
                    _ => format!("`{second}`"),
                };
                vec![
                    format!("`{first}` vs `{second}`"),
                    count(only_first),
                    count(only_second),
                    format_p(p),
                    format_p(adjusted),
                    better,
                ]
            },
        )
        .collect();
    let correction = match pairs.len() {
        1 => "One pair, so Holm's correction leaves its p as it is".to_string(),
        pairs => format!(
            "With {pairs} pairs tested together, some p below 0.05 would turn up by chance \
             alone: Holm's correction adjusts each p for the others (the smallest times \
             {pairs}, the next times {}, and so on, never below the one before, at most 1)",
            pairs - 1
        ),
    };
    format!(
        "Paired comparison on the same test images (McNemar's exact test: only the images \
         exactly one of the two models gets right count; p is the chance of a split at least \
         this uneven if neither model were better). {correction}; a model is named better \
         only where the adjusted p is below 0.05.\n\n{}\n",
        table(
            &[
                "models",
                "only first right",
                "only second right",
                "p",
                "adjusted p (Holm)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TaskOutcome;

    /// A report of images all of class 0, `right[i]` saying whether image i is
    /// classified right.
    fn scored(right: &[bool]) -> TestReport {
        let predicted: Vec<i64> = right.iter().map(|&r| i64::from(!r)).collect();
        let probabilities: Vec<Vec<f64>> = predicted
            .iter()
            .map(|&p| vec![f64::from(p == 0), f64::from(p == 1)])
            .collect();
        TestReport {
            task: Task::MultiClass,
            loss: 0.0,
            outcome: TaskOutcome::classes(vec![0; right.len()], predicted, &probabilities),
            probabilities,
        }
    }

    fn compared<'a>(
        stages: &[&'a str],
        reports: &'a [TestReport],
        dataset: &'a DatasetSpec,
    ) -> Vec<Compared<'a>> {
        stages
            .iter()
            .zip(reports)
            .map(|(&stage, report)| Compared {
                stage,
                dataset,
                report,
            })
            .collect()
    }

    #[test]
    fn holms_correction_keeps_two_chance_wins_among_three_pairs_from_naming_a_better_model() {
        let dataset: DatasetSpec = serde_yaml::from_str("name: toy").unwrap();
        // a gets 9 images right that b and c miss, b and c one that a misses: a against
        // each is McNemar's p = 22 / 1024 = 0.0215, below 0.05 alone; b against c is 1.
        // Holm: 3 * 0.0215 = 0.0645 for both, and 1.
        let a: Vec<bool> = (0..10).map(|i| i < 9).collect();
        let b: Vec<bool> = (0..10).map(|i| i == 9).collect();
        let reports = [scored(&a), scored(&b), scored(&b)];
        let text = paired_comparisons(&compared(&["a", "b", "c"], &reports, &dataset));
        assert!(
            text.contains("| `a` vs `b` | 9 | 1 | 0.0215 | 0.0645 | neither (adjusted p ≥ 0.05) |"),
            "{text}"
        );
        assert!(
            text.contains("| `b` vs `c` | 0 | 0 | 1.0000 | 1.0000 | neither"),
            "{text}"
        );
        assert!(text.contains("With 3 pairs tested together"), "{text}");
        assert!(text.contains("Holm's correction"), "{text}");

        // One pair: 10 against 0, p = 2 / 1024, named.
        let reports = [scored(&[true; 10]), scored(&[false; 10])];
        let text = paired_comparisons(&compared(&["d", "e"], &reports, &dataset));
        assert!(
            text.contains("| `d` vs `e` | 10 | 0 | 0.0020 | 0.0020 | `d` |"),
            "{text}"
        );
        assert!(
            text.contains("One pair, so Holm's correction leaves"),
            "{text}"
        );
    }

    #[test]
    fn a_class_with_few_test_images_is_named_and_its_intervals_called_unreliable() {
        // 30 images of class 0, one of class 1 (absent classes are not scarce: class 2
        // has none). The bootstrap cannot vary the one image of class 1.
        let mut truth = vec![0i64; 30];
        truth.push(1);
        let predicted: Vec<i64> = (0..31).map(|i| i64::from(i % 7 == 0)).collect();
        let probabilities: Vec<Vec<f64>> = predicted
            .iter()
            .map(|&p| (0..3).map(|c| if c == p { 0.8 } else { 0.1 }).collect())
            .collect();
        let report = TestReport {
            task: Task::MultiClass,
            loss: 0.0,
            outcome: TaskOutcome::classes(truth, predicted, &probabilities),
            probabilities,
        };
        assert_eq!(report.scarce_outputs(), [(1, 1)]);
        let names = ["a", "b", "c"].map(String::from);
        let note = scarce_note("`s`", &report, Some(&names));
        assert!(
            note.starts_with(
                "**Few test images:** `s` is tested on fewer than 20 images of class 1 b (1 \
                 test image). "
            ),
            "{note}"
        );
        assert!(note.contains("are unreliable"), "{note}");
        let plenty = scored(&[true; 25]);
        assert_eq!(scarce_note("`s`", &plenty, None), "");
    }
}

//! A model's predictions on a split scored as its task defines them (`TestReport`),
//! in a line (`TestMetrics`) with 95% intervals (Wilson for accuracies, the stratified
//! bootstrap over images for the rest), and written as confusion and per-class tables.

use super::counts::*;
use crate::statistics::{bootstrap, wilson, Interval, BOOTSTRAP_SEED, RESAMPLES};
use crate::storage::files::write_table;
use crate::study::task::Task;

pub const CONFUSION_CSV: &str = "confusion.csv";

/// Below this many test images of a class (positives of a label), its intervals are not
/// to be trusted: the bootstrap draws a class's images only from themselves, so a
/// handful of them barely vary between resamples, and one never does (an interval of
/// zero width).
pub const FEW_IMAGES: u64 = 20;
pub const PER_CLASS_CSV: &str = "per_class.csv";

/// A model's scores on a split, in a line: what summary.csv, `cellnets eval` and the
/// report show of a `TestReport`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestMetrics {
    #[serde(rename = "test_loss")]
    pub loss: f64,
    #[serde(rename = "test_accuracy")]
    pub accuracy: f64,
    #[serde(rename = "test_balanced_accuracy")]
    pub balanced_accuracy: f64,
    /// Unweighted mean F1 over the classes (undefined in results of cellnets versions
    /// before it was measured).
    #[serde(rename = "test_macro_f1", default = "undefined")]
    pub macro_f1: f64,
    /// Mean one-vs-rest ROC AUC over the classes.
    #[serde(rename = "test_auc", default = "undefined")]
    pub auc: f64,
    /// 95% intervals of the four scores (undefined in results of cellnets versions
    /// before they were measured, and for independent labels).
    #[serde(rename = "test_ci95", default)]
    pub ci95: TestIntervals,
}

/// 95% intervals of a model's scores on a split: Wilson's for accuracy, a share of
/// independent images; a percentile bootstrap over the images, stratified by true
/// class (`statistics::RESAMPLES` resamples, seeded), for the others, which no formula
/// covers.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TestIntervals {
    pub accuracy: Interval,
    pub balanced_accuracy: Interval,
    pub macro_f1: Interval,
    pub auc: Interval,
}

impl TestIntervals {
    pub const UNDEFINED: TestIntervals = TestIntervals {
        accuracy: Interval::UNDEFINED,
        balanced_accuracy: Interval::UNDEFINED,
        macro_f1: Interval::UNDEFINED,
        auc: Interval::UNDEFINED,
    };

    /// (name, interval), in the order `TestMetrics::columns` shows the scores.
    pub fn named(&self) -> [(&'static str, Interval); 4] {
        [
            ("accuracy", self.accuracy),
            ("balanced_accuracy", self.balanced_accuracy),
            ("macro_f1", self.macro_f1),
            ("auc", self.auc),
        ]
    }

    /// (`<name>_ci95_low`, bound) and (`<name>_ci95_high`, bound) of each score: the
    /// columns tables add after the scores.
    pub fn columns(&self) -> Vec<(String, f64)> {
        self.named()
            .iter()
            .flat_map(|(name, interval)| {
                [
                    (format!("{name}_ci95_low"), interval.low),
                    (format!("{name}_ci95_high"), interval.high),
                ]
            })
            .collect()
    }
}

fn undefined() -> f64 {
    f64::NAN
}

impl TestMetrics {
    /// For a run without a checkpoint to test.
    pub const UNDEFINED: TestMetrics = TestMetrics {
        loss: f64::NAN,
        accuracy: f64::NAN,
        balanced_accuracy: f64::NAN,
        macro_f1: f64::NAN,
        auc: f64::NAN,
        ci95: TestIntervals::UNDEFINED,
    };

    /// (name, value), in the order tables show them.
    pub fn columns(&self) -> [(&'static str, f64); 5] {
        [
            ("loss", self.loss),
            ("accuracy", self.accuracy),
            ("balanced_accuracy", self.balanced_accuracy),
            ("macro_f1", self.macro_f1),
            ("auc", self.auc),
        ]
    }
}

/// A model's predictions on a labelled split, summarised.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub task: Task,
    pub loss: f64,
    /// Per sample, the probability of each class (softmax) or label (sigmoid).
    pub probabilities: Vec<Vec<f64>>,
    pub outcome: TaskOutcome,
}

/// What the predictions get right, as the task defines it.
#[derive(Debug, Clone)]
pub enum TaskOutcome {
    /// One class per image: the predicted class is the most probable one.
    Classes {
        truth: Vec<i64>,
        predicted: Vec<i64>,
        confusion: Confusion,
        aucs: Vec<Option<f64>>,
    },
    /// Independent labels: a label is predicted when its probability exceeds 0.5.
    Labels {
        truth: Vec<Vec<bool>>,
        scores: Vec<LabelScores>,
    },
}

impl TestReport {
    /// Scores `logits`, a model's outputs for every image of `split` in order
    /// (`train::predict`).
    pub fn of(logits: &tch::Tensor, split: &crate::data::Split) -> anyhow::Result<Self> {
        use tch::{Device, Kind};
        let task = split.task;
        let outputs = logits.size()[1] as usize;
        let loss = tch::no_grad(|| task.loss(logits, &split.labels).double_value(&[]));
        let flat = Vec::<f64>::try_from(
            task.probabilities(logits)
                .to_device(Device::Cpu)
                .flatten(0, -1),
        )?;
        let probabilities: Vec<Vec<f64>> = flat.chunks(outputs).map(<[f64]>::to_vec).collect();
        let labels = split.labels.to_device(Device::Cpu).to_kind(Kind::Int64);
        let outcome = if task.has_classes() {
            let truth = Vec::<i64>::try_from(labels)?;
            let predicted = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?;
            TaskOutcome::classes(truth, predicted, &probabilities)
        } else {
            let flat = Vec::<i64>::try_from(labels.flatten(0, -1))?;
            let truth: Vec<Vec<bool>> = flat
                .chunks(outputs)
                .map(|row| row.iter().map(|&label| label == 1).collect())
                .collect();
            TaskOutcome::labels(truth, &probabilities)
        };
        Ok(TestReport {
            task,
            loss,
            probabilities,
            outcome,
        })
    }

    /// Images tested.
    pub fn len(&self) -> usize {
        self.probabilities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probabilities.is_empty()
    }

    /// ACC and AUC as the MedMNIST evaluator defines them for the task (a binary task's
    /// AUC ranks the positive class, class 1; a multi-label task's ACC and AUC are the
    /// means over its labels), with balanced accuracy and macro F1 beside them (for
    /// labels: means of each label's).
    pub fn metrics(&self) -> TestMetrics {
        TestMetrics {
            ci95: self.intervals(),
            ..self.point_estimates()
        }
    }

    /// `metrics` without their intervals: what a validation split needs every epoch,
    /// without a thousand resamples each time.
    pub fn point_estimates(&self) -> TestMetrics {
        match &self.outcome {
            TaskOutcome::Classes {
                confusion, aucs, ..
            } => TestMetrics {
                loss: self.loss,
                accuracy: confusion.accuracy(),
                balanced_accuracy: confusion.balanced_accuracy(),
                macro_f1: confusion.macro_f1(),
                auc: self.task_auc(aucs),
                ci95: TestIntervals::UNDEFINED,
            },
            TaskOutcome::Labels { scores, .. } => {
                let mean_of = |score: fn(&LabelScores) -> f64| {
                    mean(&scores.iter().map(score).collect::<Vec<f64>>())
                };
                let aucs: Vec<Option<f64>> = scores.iter().map(|s| s.auc).collect();
                TestMetrics {
                    loss: self.loss,
                    accuracy: mean_of(|s| s.accuracy),
                    balanced_accuracy: mean_of(|s| s.balanced_accuracy),
                    macro_f1: present_labels_f1(scores),
                    auc: macro_auc(&aucs),
                    ci95: TestIntervals::UNDEFINED,
                }
            }
        }
    }

    /// The AUC the MedMNIST evaluator reports from each class's one-vs-rest AUC: a
    /// binary task's ranks class 1, others take the mean.
    fn task_auc(&self, aucs: &[Option<f64>]) -> f64 {
        match self.task {
            Task::BinaryClass => aucs.get(1).copied().flatten().unwrap_or(f64::NAN),
            _ => macro_auc(aucs),
        }
    }

    /// The scores' 95% intervals (see `TestIntervals`). For a task of classes, a
    /// bootstrap resample draws each class's images from that class, so every class
    /// keeps its count, its recall and its AUC stay defined, and the interval reflects
    /// which images were drawn, not how many of each class.
    fn intervals(&self) -> TestIntervals {
        let (truth, predicted, confusion) = match &self.outcome {
            TaskOutcome::Classes {
                truth,
                predicted,
                confusion,
                ..
            } => (truth, predicted, confusion),
            TaskOutcome::Labels { truth, .. } => return self.label_intervals(truth),
        };
        let classes = confusion.matrix.len();
        let right = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
        let mut strata = vec![Vec::new(); classes];
        for (index, &class) in truth.iter().enumerate() {
            strata[class as usize].push(index);
        }
        let rankings: Vec<Ranking> = (0..classes)
            .map(|class| {
                let scores: Vec<f64> = self.probabilities.iter().map(|p| p[class]).collect();
                let positive: Vec<bool> = truth.iter().map(|&t| t as usize == class).collect();
                Ranking::new(&scores, &positive)
            })
            .collect();
        let [balanced_accuracy, macro_f1, auc] =
            bootstrap(&strata, RESAMPLES, BOOTSTRAP_SEED, |weights| {
                let mut matrix = vec![vec![0; classes]; classes];
                for ((&t, &p), &weight) in truth.iter().zip(predicted).zip(weights) {
                    matrix[t as usize][p as usize] += u64::from(weight);
                }
                let resampled = Confusion { matrix };
                let aucs: Vec<Option<f64>> = rankings
                    .iter()
                    .map(|ranking| ranking.auc(|index| f64::from(weights[index])))
                    .collect();
                [
                    resampled.balanced_accuracy(),
                    resampled.macro_f1(),
                    self.task_auc(&aucs),
                ]
            });
        TestIntervals {
            accuracy: wilson(right as u64, truth.len() as u64),
            balanced_accuracy,
            macro_f1,
            auc,
        }
    }

    /// A multi-label task's intervals, every one by the bootstrap over images: an
    /// image's labels are drawn together, so its decisions are not the independent
    /// trials Wilson's interval counts, and labels overlap, so images have no one
    /// class to be stratified by.
    fn label_intervals(&self, truth: &[Vec<bool>]) -> TestIntervals {
        let labels = truth.first().map_or(0, Vec::len);
        let images = vec![(0..truth.len()).collect::<Vec<usize>>()];
        let rankings: Vec<Ranking> = (0..labels)
            .map(|label| {
                let scores: Vec<f64> = self.probabilities.iter().map(|p| p[label]).collect();
                let positive: Vec<bool> = truth.iter().map(|t| t[label]).collect();
                Ranking::new(&scores, &positive)
            })
            .collect();
        let [accuracy, balanced_accuracy, macro_f1, auc] =
            bootstrap(&images, RESAMPLES, BOOTSTRAP_SEED, |weights| {
                let scores: Vec<LabelScores> = rankings
                    .iter()
                    .enumerate()
                    .map(|(label, ranking)| {
                        let weight = |index: usize| weights[index];
                        label_counts(&self.probabilities, truth, label, |i| u64::from(weight(i)))
                            .scores(ranking.auc(|i| f64::from(weight(i))))
                    })
                    .collect();
                let mean_of = |score: fn(&LabelScores) -> f64| {
                    mean(&scores.iter().map(score).collect::<Vec<f64>>())
                };
                let aucs: Vec<Option<f64>> = scores.iter().map(|s| s.auc).collect();
                [
                    mean_of(|s| s.accuracy),
                    mean_of(|s| s.balanced_accuracy),
                    present_labels_f1(&scores),
                    macro_auc(&aucs),
                ]
            });
        TestIntervals {
            accuracy,
            balanced_accuracy,
            macro_f1,
            auc,
        }
    }

    /// The confusion matrix, for a task of classes.
    pub fn confusion(&self) -> Option<&Confusion> {
        match &self.outcome {
            TaskOutcome::Classes { confusion, .. } => Some(confusion),
            TaskOutcome::Labels { .. } => None,
        }
    }

    /// Each output's scores, whether classes or labels: the images of the class (the
    /// label's positives), precision, recall, F1 and AUC.
    pub fn per_output(&self) -> Vec<(ClassScores, Option<f64>)> {
        match &self.outcome {
            TaskOutcome::Classes {
                confusion, aucs, ..
            } => confusion
                .per_class()
                .into_iter()
                .zip(aucs.iter().copied())
                .collect(),
            TaskOutcome::Labels { scores, .. } => scores
                .iter()
                .map(|s| {
                    let class = ClassScores {
                        precision: s.precision,
                        recall: s.recall,
                        f1: s.f1,
                        support: s.counts.positives(),
                    };
                    (class, s.auc)
                })
                .collect(),
        }
    }

    /// The classes (labels) that have images (positives) in the split, but fewer than
    /// `FEW_IMAGES`: (index, count).
    pub fn scarce_outputs(&self) -> Vec<(usize, u64)> {
        self.per_output()
            .iter()
            .enumerate()
            .map(|(index, (scores, _))| (index, scores.support))
            .filter(|&(_, images)| images > 0 && images < FEW_IMAGES)
            .collect()
    }

    /// For a multi-label task, the share of images whose every label is right.
    pub fn exact_match(&self) -> Option<f64> {
        let TaskOutcome::Labels { truth, .. } = &self.outcome else {
            return None;
        };
        let right = self
            .probabilities
            .iter()
            .zip(truth)
            .filter(|(p, t)| p.iter().zip(t.iter()).all(|(&p, &t)| (p > 0.5) == t))
            .count();
        Some(ratio(right as u64, truth.len() as u64))
    }

    /// Per image, whether the prediction is right: its class, or every one of its labels.
    pub fn correct(&self) -> Vec<bool> {
        match &self.outcome {
            TaskOutcome::Classes {
                truth, predicted, ..
            } => truth.iter().zip(predicted).map(|(t, p)| t == p).collect(),
            TaskOutcome::Labels { truth, .. } => self
                .probabilities
                .iter()
                .zip(truth)
                .map(|(p, t)| p.iter().zip(t).all(|(&p, &t)| (p > 0.5) == t))
                .collect(),
        }
    }

    /// For an ordinal task, the mean distance between the true and the predicted grade.
    pub fn mean_absolute_error(&self) -> Option<f64> {
        match (&self.outcome, self.task) {
            (
                TaskOutcome::Classes {
                    truth, predicted, ..
                },
                Task::OrdinalRegression,
            ) => {
                let distances: Vec<f64> = truth
                    .iter()
                    .zip(predicted)
                    .map(|(t, p)| (t - p).abs() as f64)
                    .collect();
                Some(mean(&distances))
            }
            _ => None,
        }
    }

    /// The `count` misclassified samples predicted with the highest probability, most
    /// confident first: their indices in the split. None for independent labels.
    pub fn most_confident_mistakes(&self, count: usize) -> Vec<usize> {
        let TaskOutcome::Classes {
            truth, predicted, ..
        } = &self.outcome
        else {
            return Vec::new();
        };
        let mut mistakes: Vec<usize> = (0..truth.len())
            .filter(|&i| truth[i] != predicted[i])
            .collect();
        let confidence = |i: usize| self.probabilities[i][predicted[i] as usize];
        mistakes.sort_by(|&a, &b| confidence(b).total_cmp(&confidence(a)));
        mistakes.truncate(count);
        mistakes
    }

    /// Writes `per_class.csv` (scores per class, or per label) and, for classes,
    /// `confusion.csv` (rows = true class) into `dir`.
    pub fn write(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        match &self.outcome {
            TaskOutcome::Classes {
                confusion, aucs, ..
            } => write_classes(dir, confusion, aucs),
            TaskOutcome::Labels { scores, .. } => write_labels(dir, scores),
        }
    }
}

/// The mean F1 over the labels that some image has: a label without positives has no
/// F1 to measure and is left out, as a class without images is (see `counts`).
fn present_labels_f1(scores: &[LabelScores]) -> f64 {
    let present: Vec<f64> = scores
        .iter()
        .filter(|s| s.counts.positives() > 0)
        .map(|s| s.f1)
        .collect();
    mean(&present)
}

fn text(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn write_classes(
    dir: &std::path::Path,
    confusion: &Confusion,
    aucs: &[Option<f64>],
) -> anyhow::Result<()> {
    let classes = confusion.matrix.len();
    let header: Vec<String> = std::iter::once("true\\predicted".to_string())
        .chain((0..classes).map(|c| c.to_string()))
        .collect();
    let rows: Vec<Vec<String>> = confusion
        .matrix
        .iter()
        .enumerate()
        .map(|(class, row)| {
            std::iter::once(class.to_string())
                .chain(row.iter().map(u64::to_string))
                .collect()
        })
        .collect();
    write_table(&dir.join(CONFUSION_CSV), &header, &rows)?;
    let header = ["class", "support", "precision", "recall", "f1", "auc"].map(String::from);
    let rows: Vec<Vec<String>> = confusion
        .per_class()
        .iter()
        .zip(aucs)
        .enumerate()
        .map(|(class, (scores, auc))| {
            vec![
                class.to_string(),
                scores.support.to_string(),
                scores.precision.to_string(),
                scores.recall.to_string(),
                scores.f1.to_string(),
                text(*auc),
            ]
        })
        .collect();
    write_table(&dir.join(PER_CLASS_CSV), &header, &rows)
}

fn write_labels(dir: &std::path::Path, scores: &[LabelScores]) -> anyhow::Result<()> {
    let header = [
        "label",
        "positives",
        "precision",
        "recall",
        "f1",
        "accuracy",
        "balanced_accuracy",
        "auc",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = scores
        .iter()
        .enumerate()
        .map(|(label, s)| {
            vec![
                label.to_string(),
                s.counts.positives().to_string(),
                s.precision.to_string(),
                s.recall.to_string(),
                s.f1.to_string(),
                s.accuracy.to_string(),
                s.balanced_accuracy.to_string(),
                text(s.auc),
            ]
        })
        .collect();
    write_table(&dir.join(PER_CLASS_CSV), &header, &rows)
}

impl TaskOutcome {
    pub fn classes(
        truth: Vec<i64>,
        predicted: Vec<i64>,
        probabilities: &[Vec<f64>],
    ) -> TaskOutcome {
        let classes = probabilities.first().map_or(0, Vec::len);
        TaskOutcome::Classes {
            confusion: Confusion::from_labels(&truth, &predicted, classes),
            aucs: one_vs_rest_auc(probabilities, &truth),
            truth,
            predicted,
        }
    }

    /// Independent labels: each image's set of labels that apply, scored against
    /// `probabilities` label by label.
    pub fn labels(truth: Vec<Vec<bool>>, probabilities: &[Vec<f64>]) -> TaskOutcome {
        TaskOutcome::Labels {
            scores: label_scores(probabilities, &truth),
            truth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::counts::study_mlp;

    #[test]
    fn the_most_confident_mistakes_come_first() {
        let probabilities = vec![
            vec![0.4, 0.6],
            vec![0.1, 0.9],
            vec![0.95, 0.05],
            vec![0.2, 0.8],
        ];
        let report = TestReport {
            task: Task::MultiClass,
            loss: 0.0,
            outcome: TaskOutcome::classes(vec![0, 1, 1, 0], vec![1, 1, 0, 1], &probabilities),
            probabilities,
        };
        assert_eq!(report.most_confident_mistakes(10), [2, 3, 0]);
        assert_eq!(report.most_confident_mistakes(1), [2]);
    }

    #[test]
    fn a_label_no_image_has_is_left_out_of_macro_f1_as_of_auc() {
        // Label 0: images 0 and 1 have it, image 0 is found (F1 2/3); label 1: no image
        // has it, and image 2 is wrongly given it.
        let truth = vec![vec![true, false], vec![true, false], vec![false, false]];
        let probabilities = vec![vec![0.9, 0.1], vec![0.2, 0.1], vec![0.1, 0.8]];
        let report = TestReport {
            task: Task::MultiLabel,
            loss: 0.0,
            outcome: TaskOutcome::labels(truth, &probabilities),
            probabilities,
        };
        let metrics = report.point_estimates();
        assert!((metrics.macro_f1 - 2.0 / 3.0).abs() < 1e-15, "{metrics:?}");
        assert_eq!(metrics.auc, 1.0, "label 1 has no AUC either");
    }

    #[test]
    fn multi_label_intervals_come_from_the_bootstrap_over_images() {
        // One label, 400 images, 320 decisions right: the bootstrap of a share lands
        // near its normal interval, 0.8 +/- 1.96 sqrt(0.8 * 0.2 / 400).
        let truth: Vec<Vec<bool>> = (0..400).map(|i| vec![i % 2 == 0]).collect();
        let probabilities: Vec<Vec<f64>> = (0..400)
            .map(|i| {
                let right = i % 5 != 0;
                let says_yes = (i % 2 == 0) == right;
                vec![if says_yes { 0.9 } else { 0.1 } - 0.0005 * (i % 7) as f64]
            })
            .collect();
        let report = TestReport {
            task: Task::MultiLabel,
            loss: 0.0,
            outcome: TaskOutcome::labels(truth, &probabilities),
            probabilities,
        };
        let metrics = report.metrics();
        assert!((metrics.accuracy - 0.8).abs() < 1e-12);
        let half = 1.959964 * (0.8f64 * 0.2 / 400.0).sqrt();
        let ci = metrics.ci95;
        assert!(
            (ci.accuracy.low - (0.8 - half)).abs() < 0.01
                && (ci.accuracy.high - (0.8 + half)).abs() < 0.01,
            "{:?} against 0.8 +/- {half}",
            ci.accuracy
        );
        assert_each_interval_holds_its_value(&metrics);
    }

    fn assert_each_interval_holds_its_value(metrics: &TestMetrics) {
        for (name, interval) in metrics.ci95.named() {
            let value = metrics
                .columns()
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1;
            assert!(
                interval.contains(value),
                "{name}: {value} not in {interval:?}"
            );
        }
    }

    /// A report of classes whose predictions reproduce `confusion`, each image's
    /// probabilities a one-hot of its prediction.
    fn report_of(confusion: &Confusion) -> TestReport {
        let classes = confusion.matrix.len();
        let (mut truth, mut predicted) = (Vec::new(), Vec::new());
        for (t, row) in confusion.matrix.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                truth.extend(std::iter::repeat_n(t as i64, count as usize));
                predicted.extend(std::iter::repeat_n(p as i64, count as usize));
            }
        }
        let probabilities: Vec<Vec<f64>> = predicted
            .iter()
            .map(|&p| (0..classes).map(|c| f64::from(c as i64 == p)).collect())
            .collect();
        TestReport {
            task: Task::MultiClass,
            loss: 0.0,
            outcome: TaskOutcome::classes(truth, predicted, &probabilities),
            probabilities,
        }
    }

    #[test]
    fn test_intervals_are_wilson_and_the_stratified_bootstrap() {
        let confusion = study_mlp();
        let metrics = report_of(&confusion).metrics();
        let ci = metrics.ci95;
        // 2978 of 3421 right.
        assert_eq!(ci.accuracy, crate::statistics::wilson(2978, 3421));
        // Resampling each class's images keeps each class's count, so balanced accuracy
        // varies only by the recalls: its standard error is
        // sqrt(sum r(1 - r) / n) / classes, and the bootstrap lands near that normal
        // interval.
        let per_class = confusion.per_class();
        let variance: f64 = per_class
            .iter()
            .map(|s| s.recall * (1.0 - s.recall) / s.support as f64)
            .sum::<f64>()
            / 64.0;
        let half = 1.959964 * variance.sqrt();
        let balanced = metrics.balanced_accuracy;
        assert!(
            (ci.balanced_accuracy.low - (balanced - half)).abs() < 0.002
                && (ci.balanced_accuracy.high - (balanced + half)).abs() < 0.002,
            "{:?} against {balanced} +/- {half}",
            ci.balanced_accuracy
        );
        assert_each_interval_holds_its_value(&metrics);
        assert_eq!(
            report_of(&confusion).metrics().ci95,
            ci,
            "seeded: reproducible"
        );
    }

    #[test]
    fn a_test_split_without_a_class_leaves_it_out_of_every_macro_average_and_interval() {
        // Class 1 has no test image; two images of the others are taken for it.
        let confusion = Confusion {
            matrix: vec![vec![18, 2, 0], vec![0, 0, 0], vec![5, 0, 15]],
        };
        let metrics = report_of(&confusion).metrics();
        // Class 0: precision 18/23, recall 0.9; class 2: precision 1, recall 0.75.
        let f1 = |precision: f64, recall: f64| 2.0 * precision * recall / (precision + recall);
        let expected = (f1(18.0 / 23.0, 0.9) + f1(1.0, 0.75)) / 2.0;
        assert!((metrics.macro_f1 - expected).abs() < 1e-15, "{metrics:?}");
        assert!((metrics.balanced_accuracy - (0.9 + 0.75) / 2.0).abs() < 1e-15);
        assert_each_interval_holds_its_value(&metrics);
    }

    #[test]
    fn a_flawless_ranking_has_an_auc_interval_of_one() {
        let confusion = Confusion {
            matrix: vec![vec![30, 0], vec![0, 20]],
        };
        let ci = report_of(&confusion).metrics().ci95;
        assert_eq!((ci.auc.low, ci.auc.high), (1.0, 1.0));
        assert_eq!(
            (ci.balanced_accuracy.low, ci.balanced_accuracy.high),
            (1.0, 1.0)
        );
        assert_eq!(ci.accuracy.high, 1.0);
    }
}

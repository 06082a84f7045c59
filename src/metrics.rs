//! Accuracy, balanced accuracy, F1, AUC, the confusion matrix and per-class scores,
//! with their 95% intervals (`TestReport`, `TestMetrics`); below `train`, which scores
//! every epoch's validation split with them. They come from a confusion matrix (rows =
//! true class, columns = predicted) and from class probabilities. Classes without
//! samples or predictions give defined values, never a division by zero: a ratio with
//! an empty denominator is 0, and a class without positives (or negatives) has no AUC
//! and is left out of means.

use crate::statistics::{bootstrap, wilson, Interval, BOOTSTRAP_SEED, RESAMPLES};
use crate::storage::files::write_table;
use crate::study::task::Task;

/// Counts of (true, predicted) pairs; `matrix[t][p]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    pub matrix: Vec<Vec<u64>>,
}

/// One class's precision (TP / predicted count), recall (TP / true count) and F1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// True samples of the class.
    pub support: u64,
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

impl Confusion {
    pub fn from_labels(truth: &[i64], predicted: &[i64], classes: usize) -> Self {
        let mut matrix = vec![vec![0; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            matrix[t as usize][p as usize] += 1;
        }
        Confusion { matrix }
    }

    fn total(&self) -> u64 {
        self.matrix.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct = (0..self.matrix.len()).map(|c| self.matrix[c][c]).sum();
        ratio(correct, self.total())
    }

    pub fn per_class(&self) -> Vec<ClassScores> {
        (0..self.matrix.len())
            .map(|c| {
                let hits = self.matrix[c][c];
                let support: u64 = self.matrix[c].iter().sum();
                let predicted: u64 = self.matrix.iter().map(|row| row[c]).sum();
                let (precision, recall) = (ratio(hits, predicted), ratio(hits, support));
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassScores {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// Mean recall over the classes that have samples.
    pub fn balanced_accuracy(&self) -> f64 {
        let present: Vec<f64> = self
            .per_class()
            .iter()
            .filter(|scores| scores.support > 0)
            .map(|scores| scores.recall)
            .collect();
        mean(&present)
    }

    /// Unweighted mean F1 over all classes.
    pub fn macro_f1(&self) -> f64 {
        let f1: Vec<f64> = self.per_class().iter().map(|scores| scores.f1).collect();
        mean(&f1)
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// ROC AUC of `scores` against yes/no `truth`, by the rank statistic (ties count
/// half): what scikit-learn's `roc_auc_score` computes. None without positives or
/// negatives.
pub fn binary_auc(scores: &[f64], truth: &[bool]) -> Option<f64> {
    Ranking::new(scores, truth).auc(|_| 1.0)
}

/// One output's scores sorted once, so that the AUC of any weighting of the samples
/// (a bootstrap resample) is a single pass instead of a sort.
struct Ranking {
    /// Runs of sample indices with equal scores, lowest score first.
    ties: Vec<Vec<usize>>,
    positive: Vec<bool>,
}

impl Ranking {
    fn new(scores: &[f64], truth: &[bool]) -> Self {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut ties: Vec<Vec<usize>> = Vec::new();
        for index in order {
            match ties.last_mut() {
                Some(run) if scores[run[0]] == scores[index] => run.push(index),
                _ => ties.push(vec![index]),
            }
        }
        Ranking {
            ties,
            positive: truth.to_vec(),
        }
    }

    /// The chance that a positive sample outscores a negative one (a tie counts half),
    /// each sample counted `weight(index)` times: the rank statistic, in one pass.
    fn auc(&self, weight: impl Fn(usize) -> f64) -> Option<f64> {
        let (mut negatives_below, mut ordered_pairs, mut positives) = (0.0, 0.0, 0.0);
        for run in &self.ties {
            let (mut run_positives, mut run_negatives) = (0.0, 0.0);
            for &index in run {
                if self.positive[index] {
                    run_positives += weight(index);
                } else {
                    run_negatives += weight(index);
                }
            }
            ordered_pairs += run_positives * (negatives_below + run_negatives / 2.0);
            negatives_below += run_negatives;
            positives += run_positives;
        }
        (positives > 0.0 && negatives_below > 0.0)
            .then(|| ordered_pairs / (positives * negatives_below))
    }
}

/// One-vs-rest ROC AUC of each class from `probabilities[sample][class]`. None for a
/// class without positives or negatives.
pub fn one_vs_rest_auc(probabilities: &[Vec<f64>], truth: &[i64]) -> Vec<Option<f64>> {
    let classes = probabilities.first().map_or(0, Vec::len);
    (0..classes)
        .map(|class| {
            let scores: Vec<f64> = probabilities.iter().map(|p| p[class]).collect();
            let positive: Vec<bool> = truth.iter().map(|&t| t as usize == class).collect();
            binary_auc(&scores, &positive)
        })
        .collect()
}

/// The decisions on one of several independent yes/no labels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LabelCounts {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
}

/// One label's scores: precision, recall (sensitivity), F1, the share of right
/// decisions, the mean of sensitivity and specificity, and its ROC AUC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelScores {
    pub counts: LabelCounts,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub auc: Option<f64>,
}

impl LabelCounts {
    pub fn positives(&self) -> u64 {
        self.true_positives + self.false_negatives
    }

    fn scores(self, auc: Option<f64>) -> LabelScores {
        let (tp, fp, fn_, tn) = (
            self.true_positives,
            self.false_positives,
            self.false_negatives,
            self.true_negatives,
        );
        let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        let specificity = ratio(tn, tn + fp);
        let present: Vec<f64> = [(tp + fn_, recall), (tn + fp, specificity)]
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(_, rate)| *rate)
            .collect();
        LabelScores {
            counts: self,
            precision,
            recall,
            f1,
            accuracy: ratio(tp + tn, tp + fp + fn_ + tn),
            balanced_accuracy: mean(&present),
            auc,
        }
    }
}

/// Scores of each label from `probabilities[sample][label]` against `truth`; a label is
/// predicted when its probability exceeds 0.5, as the MedMNIST evaluator thresholds.
pub fn label_scores(probabilities: &[Vec<f64>], truth: &[Vec<bool>]) -> Vec<LabelScores> {
    let labels = probabilities.first().map_or(0, Vec::len);
    (0..labels)
        .map(|label| {
            let counts = label_counts(probabilities, truth, label, |_| 1);
            let scores: Vec<f64> = probabilities.iter().map(|p| p[label]).collect();
            let positive: Vec<bool> = truth.iter().map(|t| t[label]).collect();
            counts.scores(binary_auc(&scores, &positive))
        })
        .collect()
}

/// The decisions on `label`, each image counted `weight(index)` times.
fn label_counts(
    probabilities: &[Vec<f64>],
    truth: &[Vec<bool>],
    label: usize,
    weight: impl Fn(usize) -> u64,
) -> LabelCounts {
    let mut counts = LabelCounts::default();
    for (index, (p, t)) in probabilities.iter().zip(truth).enumerate() {
        let count = match (p[label] > 0.5, t[label]) {
            (true, true) => &mut counts.true_positives,
            (true, false) => &mut counts.false_positives,
            (false, true) => &mut counts.false_negatives,
            (false, false) => &mut counts.true_negatives,
        };
        *count += weight(index);
    }
    counts
}

/// Mean of the defined AUCs.
pub fn macro_auc(aucs: &[Option<f64>]) -> f64 {
    let defined: Vec<f64> = aucs.iter().flatten().copied().collect();
    mean(&defined)
}

pub const CONFUSION_CSV: &str = "confusion.csv";
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
    pub outcome: Outcome,
}

/// What the predictions get right, as the task defines it.
#[derive(Debug, Clone)]
pub enum Outcome {
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
            Outcome::classes(truth, predicted, &probabilities)
        } else {
            let flat = Vec::<i64>::try_from(labels.flatten(0, -1))?;
            let truth: Vec<Vec<bool>> = flat
                .chunks(outputs)
                .map(|row| row.iter().map(|&label| label == 1).collect())
                .collect();
            let scores = label_scores(&probabilities, &truth);
            Outcome::Labels { truth, scores }
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
            Outcome::Classes {
                confusion, aucs, ..
            } => TestMetrics {
                loss: self.loss,
                accuracy: confusion.accuracy(),
                balanced_accuracy: confusion.balanced_accuracy(),
                macro_f1: confusion.macro_f1(),
                auc: self.task_auc(aucs),
                ci95: TestIntervals::UNDEFINED,
            },
            Outcome::Labels { scores, .. } => {
                let mean_of = |score: fn(&LabelScores) -> f64| {
                    mean(&scores.iter().map(score).collect::<Vec<f64>>())
                };
                let aucs: Vec<Option<f64>> = scores.iter().map(|s| s.auc).collect();
                TestMetrics {
                    loss: self.loss,
                    accuracy: mean_of(|s| s.accuracy),
                    balanced_accuracy: mean_of(|s| s.balanced_accuracy),
                    macro_f1: mean_of(|s| s.f1),
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
            Outcome::Classes {
                truth,
                predicted,
                confusion,
                ..
            } => (truth, predicted, confusion),
            Outcome::Labels { truth, .. } => return self.label_intervals(truth),
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
                    mean_of(|s| s.f1),
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
            Outcome::Classes { confusion, .. } => Some(confusion),
            Outcome::Labels { .. } => None,
        }
    }

    /// Each output's scores, whether classes or labels: the images of the class (the
    /// label's positives), precision, recall, F1 and AUC.
    pub fn per_output(&self) -> Vec<(ClassScores, Option<f64>)> {
        match &self.outcome {
            Outcome::Classes {
                confusion, aucs, ..
            } => confusion
                .per_class()
                .into_iter()
                .zip(aucs.iter().copied())
                .collect(),
            Outcome::Labels { scores, .. } => scores
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

    /// For a multi-label task, the share of images whose every label is right.
    pub fn exact_match(&self) -> Option<f64> {
        let Outcome::Labels { truth, .. } = &self.outcome else {
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
            Outcome::Classes {
                truth, predicted, ..
            } => truth.iter().zip(predicted).map(|(t, p)| t == p).collect(),
            Outcome::Labels { truth, .. } => self
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
                Outcome::Classes {
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
        let Outcome::Classes {
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
            Outcome::Classes {
                confusion, aucs, ..
            } => write_classes(dir, confusion, aucs),
            Outcome::Labels { scores, .. } => write_labels(dir, scores),
        }
    }
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

impl Outcome {
    pub fn classes(truth: Vec<i64>, predicted: Vec<i64>, probabilities: &[Vec<f64>]) -> Outcome {
        let classes = probabilities.first().map_or(0, Vec::len);
        Outcome::Classes {
            confusion: Confusion::from_labels(&truth, &predicted, classes),
            aucs: one_vs_rest_auc(probabilities, &truth),
            truth,
            predicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The study's best MLP on the test split (PROTOCOL.md, section 1).
    fn study_mlp() -> Confusion {
        Confusion {
            matrix: vec![
                vec![177, 3, 0, 43, 4, 17, 0, 0],
                vec![1, 613, 0, 3, 1, 0, 6, 0],
                vec![4, 1, 264, 16, 6, 3, 11, 6],
                vec![34, 26, 3, 447, 5, 32, 32, 0],
                vec![13, 0, 11, 31, 182, 0, 6, 0],
                vec![10, 2, 1, 48, 3, 215, 5, 0],
                vec![0, 22, 5, 22, 2, 2, 611, 2],
                vec![0, 0, 1, 0, 0, 0, 0, 469],
            ],
        }
    }

    #[test]
    fn the_study_mlp_matrix_gives_the_reported_numbers() {
        let confusion = study_mlp();
        assert!(
            (confusion.accuracy() - 0.8705).abs() < 5e-5,
            "{}",
            confusion.accuracy()
        );
        assert!((confusion.balanced_accuracy() - 0.8437).abs() < 5e-5);
        let class0 = confusion.per_class()[0];
        assert!((class0.recall - 0.7254).abs() < 5e-5, "{class0:?}");
        // Precision is TP over the predicted count: 177 / (177+1+4+34+13+10).
        assert!((class0.precision - 177.0 / 239.0).abs() < 1e-12);
        assert_eq!(class0.support, 244);
    }

    #[test]
    fn empty_classes_give_defined_values() {
        // Class 2 never occurs and is never predicted; class 1 is never predicted.
        let confusion = Confusion::from_labels(&[0, 0, 1, 1], &[0, 0, 0, 0], 3);
        let scores = confusion.per_class();
        assert_eq!(scores[1].precision, 0.0);
        assert_eq!(scores[1].recall, 0.0);
        assert_eq!(scores[2].f1, 0.0);
        assert_eq!(confusion.accuracy(), 0.5);
        assert_eq!(confusion.balanced_accuracy(), 0.5);
        assert!(confusion.macro_f1().is_finite());
        let empty = Confusion::from_labels(&[], &[], 2);
        assert_eq!(empty.accuracy(), 0.0);
        assert!(empty.balanced_accuracy().is_nan());
    }

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
            outcome: Outcome::classes(vec![0, 1, 1, 0], vec![1, 1, 0, 1], &probabilities),
            probabilities,
        };
        assert_eq!(report.most_confident_mistakes(10), [2, 3, 0]);
        assert_eq!(report.most_confident_mistakes(1), [2]);
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
            outcome: Outcome::Labels {
                scores: label_scores(&probabilities, &truth),
                truth,
            },
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
            outcome: Outcome::classes(truth, predicted, &probabilities),
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

    #[test]
    fn weighted_auc_counts_each_sample_as_often_as_drawn() {
        // Drawing sample 0 twice is the same as listing it twice.
        let scores = [0.9, 0.8, 0.3, 0.8];
        let truth = [true, false, true, false];
        let twice = binary_auc(
            &[0.9, 0.9, 0.8, 0.3, 0.8],
            &[true, true, false, true, false],
        );
        let weighted = Ranking::new(&scores, &truth).auc(|i| if i == 0 { 2.0 } else { 1.0 });
        assert_eq!(weighted, twice);
        assert_eq!(
            Ranking::new(&scores, &truth).auc(|i| f64::from(i != 0 && i != 2)),
            None
        );
    }

    #[test]
    fn auc_by_rank_statistic() {
        let probabilities = vec![
            vec![0.9, 0.1],
            vec![0.8, 0.2],
            vec![0.3, 0.7],
            vec![0.8, 0.2],
        ];
        let truth = [0, 0, 1, 1];
        let aucs = one_vs_rest_auc(&probabilities, &truth);
        // Class 0: positives 0.9, 0.8 against negatives 0.3, 0.8: 3.5 of 4 pairs ordered.
        assert_eq!(aucs[0], Some(0.875));
        assert_eq!(aucs[1], Some(0.875));
        assert_eq!(one_vs_rest_auc(&probabilities, &[0, 0, 0, 0])[0], None);
        assert_eq!(macro_auc(&[Some(1.0), None, Some(0.5)]), 0.75);
    }
}

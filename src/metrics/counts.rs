//! Classification metrics from a confusion matrix (rows = true class, columns =
//! predicted) and from class probabilities. Classes without samples or predictions
//! give defined values, never a division by zero: a ratio with an empty denominator is
//! 0, and a class without positives (or negatives) has no AUC. One rule for every
//! macro average: a class (or label) absent from the split, without samples, is left
//! out of the mean, of F1, recall (balanced accuracy) and AUC alike.
//!
//! This file counts; `test_report` turns the counts of a split into a report with
//! intervals.

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

pub(super) fn ratio(numerator: u64, denominator: u64) -> f64 {
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

    /// Unweighted mean F1 over the classes that have samples: a class absent from the
    /// split has no F1 to measure (its 0 would say the model failed on images that do
    /// not exist), so it is left out, as balanced accuracy and AUC leave it out.
    pub fn macro_f1(&self) -> f64 {
        let present: Vec<f64> = self
            .per_class()
            .iter()
            .filter(|scores| scores.support > 0)
            .map(|scores| scores.f1)
            .collect();
        mean(&present)
    }
}

pub(super) fn mean(values: &[f64]) -> f64 {
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
pub(super) struct Ranking {
    /// Runs of sample indices with equal scores, lowest score first.
    ties: Vec<Vec<usize>>,
    positive: Vec<bool>,
}

impl Ranking {
    pub(super) fn new(scores: &[f64], truth: &[bool]) -> Self {
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
    pub(super) fn auc(&self, weight: impl Fn(usize) -> f64) -> Option<f64> {
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

    pub(super) fn scores(self, auc: Option<f64>) -> LabelScores {
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
pub(super) fn label_counts(
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

#[cfg(test)]
/// The study's best MLP on the test split (PROTOCOL.md, section 1).
pub(super) fn study_mlp() -> Confusion {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Class 2 has no images and is left out; class 0's F1 is 2 * 0.5 * 1 / 1.5 and
        // class 1's is 0: (2/3 + 0) / 2.
        assert!((confusion.macro_f1() - 1.0 / 3.0).abs() < 1e-15);
        let empty = Confusion::from_labels(&[], &[], 2);
        assert_eq!(empty.accuracy(), 0.0);
        assert!(empty.balanced_accuracy().is_nan());
    }

    #[test]
    fn every_macro_average_leaves_out_a_class_absent_from_the_split() {
        // Three classes, class 1 without a single image (one image of class 0 is
        // mistaken for it): each mean is over classes 0 and 2 only, as
        // sklearn.metrics.f1_score(average="macro", labels=[0, 2]) and
        // balanced_accuracy_score give it.
        let truth = [0, 0, 0, 0, 2, 2];
        let predicted = [0, 0, 0, 1, 2, 0];
        let confusion = Confusion::from_labels(&truth, &predicted, 3);
        // Class 0: precision 3/4, recall 3/4, F1 0.75; class 2: precision 1, recall
        // 1/2, F1 2/3.
        assert!((confusion.macro_f1() - (0.75 + 2.0 / 3.0) / 2.0).abs() < 1e-15);
        assert_eq!(confusion.balanced_accuracy(), (0.75 + 0.5) / 2.0);
        let probabilities: Vec<Vec<f64>> = predicted
            .iter()
            .map(|&p| (0..3).map(|c| if c == p { 0.8 } else { 0.1 }).collect())
            .collect();
        let aucs = one_vs_rest_auc(&probabilities, &truth);
        assert_eq!(aucs[1], None);
        assert_eq!(
            macro_auc(&aucs),
            (aucs[0].unwrap() + aucs[2].unwrap()) / 2.0
        );
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

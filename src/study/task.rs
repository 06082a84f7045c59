//! The four MedMNIST task types: the loss a model trains on, the decisions it makes,
//! how labels are kept. They are what a data set's labels ask of a model, as the
//! MedMNIST benchmark defines them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// A data set's task, as MedMNIST's `info.py` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// One class per image out of N (BloodMNIST): softmax cross-entropy, argmax.
    MultiClass,
    /// One class out of two (PneumoniaMNIST, BreastMNIST). Two outputs under softmax
    /// cross-entropy, as the MedMNIST benchmark trains it; class 1 is the positive one
    /// whose probability the AUC ranks.
    BinaryClass,
    /// Independent yes/no labels per image (ChestMNIST's 14 findings): one output per
    /// label under sigmoid binary cross-entropy, a label is predicted when its
    /// probability exceeds 0.5.
    MultiLabel,
    /// Ordered grades (RetinaMNIST's 5 levels of retinopathy). The MedMNIST benchmark
    /// trains and scores them as multi-class (softmax cross-entropy, argmax accuracy,
    /// one-vs-rest AUC), and so does cellnets; the report adds the mean absolute grade
    /// error, which the order makes meaningful.
    OrdinalRegression,
}

impl Task {
    /// One label per image out of `classes`, rather than independent labels.
    pub fn has_classes(self) -> bool {
        self != Task::MultiLabel
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::MultiClass => "multi-class",
            Task::BinaryClass => "binary-class",
            Task::MultiLabel => "multi-label",
            Task::OrdinalRegression => "ordinal-regression",
        }
    }

    /// What the model's outputs stand for, in prose.
    pub fn outputs_noun(self) -> &'static str {
        if self.has_classes() {
            "classes"
        } else {
            "labels"
        }
    }

    /// What an output of the model stands for, in prose.
    pub fn output_noun(self) -> &'static str {
        if self.has_classes() {
            "class"
        } else {
            "label"
        }
    }

    /// Mean loss of a batch's logits against its labels.
    pub fn loss(self, logits: &Tensor, labels: &Tensor) -> Tensor {
        if self.has_classes() {
            logits.cross_entropy_for_logits(labels)
        } else {
            logits.binary_cross_entropy_with_logits::<Tensor>(labels, None, None, Reduction::Mean)
        }
    }

    /// Mean loss of a batch's logits against targets given as probabilities per class
    /// (or per label): the cross-entropy of soft targets, which is `loss` for one-hot
    /// ones.
    pub fn loss_against_probabilities(self, logits: &Tensor, targets: &Tensor) -> Tensor {
        if self.has_classes() {
            -(targets * logits.log_softmax(-1, Kind::Float))
                .sum_dim_intlist(-1, false, Kind::Float)
                .mean(Kind::Float)
        } else {
            logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::Mean)
        }
    }

    /// How many of a batch's decisions are right (on the device, int64): its classes,
    /// or each of its labels.
    pub fn correct(self, logits: &Tensor, labels: &Tensor) -> Tensor {
        if self.has_classes() {
            logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Int64)
        } else {
            // sigmoid(x) > 0.5 exactly when x > 0.
            logits.gt(0.0).eq_tensor(&labels.gt(0.5)).sum(Kind::Int64)
        }
    }

    /// The model's probabilities from its logits: softmax over classes, or a sigmoid per
    /// label.
    pub fn probabilities(self, logits: &Tensor) -> Tensor {
        if self.has_classes() {
            logits.softmax(-1, Kind::Double)
        } else {
            logits.to_kind(Kind::Double).sigmoid()
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_label_loss_is_the_mean_binary_cross_entropy_of_every_label() {
        let logits = Tensor::from_slice(&[0.0f32, 2.0, -1.0, 3.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let by_hand = -[
            sigmoid(0.0).ln(),
            (1.0 - sigmoid(2.0)).ln(),
            (1.0 - sigmoid(-1.0)).ln(),
            sigmoid(3.0).ln(),
        ]
        .iter()
        .sum::<f64>()
            / 4.0;
        let loss = Task::MultiLabel.loss(&logits, &labels).double_value(&[]);
        assert!((loss - by_hand).abs() < 1e-6, "{loss} vs {by_hand}");
        // Label decisions: 0 > 0 is no (truth yes), 2 yes (no), -1 no (no), 3 yes (yes).
        let correct = Task::MultiLabel.correct(&logits, &labels).int64_value(&[]);
        assert_eq!(correct, 2);
    }

    #[test]
    fn class_tasks_use_softmax_cross_entropy() {
        let logits = Tensor::from_slice(&[1.0f32, 2.0, 0.5, 0.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[1i64, 1]);
        let log_softmax = |a: f64, b: f64| b - (a.exp() + b.exp()).ln();
        let by_hand = -(log_softmax(1.0, 2.0) + log_softmax(0.5, 0.0)) / 2.0;
        for task in [Task::MultiClass, Task::BinaryClass, Task::OrdinalRegression] {
            let loss = task.loss(&logits, &labels).double_value(&[]);
            assert!((loss - by_hand).abs() < 1e-6);
            assert_eq!(task.correct(&logits, &labels).int64_value(&[]), 1);
        }
    }

    #[test]
    fn soft_targets_that_are_one_hot_give_the_plain_loss() {
        let logits = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0, 1.0, 1.5]).view([2, 3]);
        let labels = Tensor::from_slice(&[2i64, 0]);
        let one_hot = labels.one_hot(3).to_kind(Kind::Float);
        let soft = Task::MultiClass.loss_against_probabilities(&logits, &one_hot);
        let hard = Task::MultiClass.loss(&logits, &labels);
        assert!(soft.allclose(&hard, 1e-6, 1e-7, false));
    }

    #[test]
    fn smoothed_targets_give_pytorch_s_label_smoothing_loss() {
        // (1 - e) CE(y) + e * mean over classes of -log p: PyTorch's label_smoothing.
        let logits = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0, 1.0, 1.5]).view([2, 3]);
        let labels = Tensor::from_slice(&[2i64, 0]);
        let e = 0.1;
        let targets = labels.one_hot(3).to_kind(Kind::Float) * (1.0 - e) + e / 3.0;
        let ours = Task::MultiClass.loss_against_probabilities(&logits, &targets);
        let log_p = logits.log_softmax(-1, Kind::Float);
        let by_formula = Task::MultiClass.loss(&logits, &labels) * (1.0 - e)
            + (-log_p.mean_dim(-1, false, Kind::Float)).mean(Kind::Float) * e;
        assert!(ours.allclose(&by_formula, 1e-6, 1e-7, false));
        let pytorch = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, e);
        assert!(ours.allclose(&pytorch, 1e-6, 1e-7, false));
    }
}

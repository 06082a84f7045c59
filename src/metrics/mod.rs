//! Classification metrics from a confusion matrix (rows = true class, columns =
//! predicted) and from class probabilities. Classes without samples or predictions
//! give defined values, never a division by zero: a ratio with an empty denominator is
//! 0, a class without positives (or negatives) has no AUC, and a class without samples
//! is left out of every macro average (F1, recall, AUC).
//!
//! `counts` holds the counting (confusion matrices, per-class and per-label scores, AUC
//! by rank); `test_report` a split's scores with their intervals and tables.

mod counts;
mod test_report;

pub use counts::{
    binary_auc, label_scores, macro_auc, one_vs_rest_auc, ClassScores, Confusion, LabelCounts,
    LabelScores,
};
pub use test_report::{
    TaskOutcome, TestIntervals, TestMetrics, TestReport, CONFUSION_CSV, FEW_IMAGES, PER_CLASS_CSV,
};

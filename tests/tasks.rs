//! The four MedMNIST task types: metrics on fixed inputs against the MedMNIST
//! evaluator's definitions, and training, outputs and the report per task through the
//! binary on tiny synthetic files.

use crate::common;

use cellnets::metrics::{binary_auc, label_scores, one_vs_rest_auc, TaskOutcome, TestReport};
use cellnets::storage::files::read_table;
use cellnets::study::task::Task;
use std::path::Path;
use tch::{Device, Kind, Tensor};

// ---------------------------------------------------------------------------------
// A straightforward reimplementation of MedMNIST's evaluator (getACC / getAUC).
// ---------------------------------------------------------------------------------

/// roc_auc_score by counting pairs: a (positive, negative) pair counts 1 when the
/// positive scores higher, 1/2 on a tie.
fn pairwise_auc(scores: &[f64], truth: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &p) in scores.iter().enumerate() {
        for (j, &n) in scores.iter().enumerate() {
            if truth[i] && !truth[j] {
                pairs += 1.0;
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

fn column(probabilities: &[Vec<f64>], index: usize) -> Vec<f64> {
    probabilities.iter().map(|row| row[index]).collect()
}

fn argmax(row: &[f64]) -> i64 {
    let mut best = 0;
    for (i, &value) in row.iter().enumerate() {
        if value > row[best] {
            best = i;
        }
    }
    best as i64
}

/// MedMNIST getACC / getAUC for multi-label: means over labels.
fn medmnist_multi_label(probabilities: &[Vec<f64>], truth: &[Vec<bool>]) -> (f64, f64) {
    let labels = truth[0].len();
    let (mut acc, mut auc) = (0.0, 0.0);
    for label in 0..labels {
        let scores = column(probabilities, label);
        let yes: Vec<bool> = truth.iter().map(|t| t[label]).collect();
        let right = scores
            .iter()
            .zip(&yes)
            .filter(|(&s, &t)| (s > 0.5) == t)
            .count();
        acc += right as f64 / truth.len() as f64;
        auc += pairwise_auc(&scores, &yes);
    }
    (acc / labels as f64, auc / labels as f64)
}

/// MedMNIST getACC / getAUC for binary-class: the last column's score.
fn medmnist_binary(probabilities: &[Vec<f64>], truth: &[i64]) -> (f64, f64) {
    let scores: Vec<f64> = probabilities
        .iter()
        .map(|row| *row.last().unwrap())
        .collect();
    let yes: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
    let right = scores
        .iter()
        .zip(&yes)
        .filter(|(&s, &t)| (s > 0.5) == t)
        .count();
    (
        right as f64 / truth.len() as f64,
        pairwise_auc(&scores, &yes),
    )
}

/// MedMNIST getACC / getAUC for multi-class: argmax accuracy, mean one-vs-rest AUC.
fn medmnist_multi_class(probabilities: &[Vec<f64>], truth: &[i64]) -> (f64, f64) {
    let classes = probabilities[0].len();
    let right = probabilities
        .iter()
        .zip(truth)
        .filter(|(row, &t)| argmax(row) == t)
        .count();
    let auc: f64 = (0..classes)
        .map(|class| {
            let yes: Vec<bool> = truth.iter().map(|&t| t as usize == class).collect();
            pairwise_auc(&column(probabilities, class), &yes)
        })
        .sum();
    (right as f64 / truth.len() as f64, auc / classes as f64)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn rows(values: &[&[f64]]) -> Vec<Vec<f64>> {
    values.iter().map(|row| row.to_vec()).collect()
}

fn class_report(task: Task, probabilities: Vec<Vec<f64>>, truth: Vec<i64>) -> TestReport {
    let predicted = probabilities.iter().map(|row| argmax(row)).collect();
    let outcome = TaskOutcome::classes(truth, predicted, &probabilities);
    TestReport {
        task,
        loss: 0.25,
        probabilities,
        outcome,
    }
}

#[test]
fn multi_label_metrics_follow_the_medmnist_evaluator() {
    let probabilities = rows(&[
        &[0.9, 0.2, 0.6],
        &[0.4, 0.7, 0.1],
        &[0.8, 0.3, 0.5],
        &[0.1, 0.9, 0.7],
        &[0.6, 0.6, 0.2],
        &[0.3, 0.1, 0.8],
        &[0.7, 0.4, 0.3],
        &[0.2, 0.8, 0.9],
    ]);
    let truth: Vec<Vec<bool>> = [
        [1, 0, 1],
        [0, 1, 0],
        [1, 0, 1],
        [0, 1, 1],
        [1, 0, 0],
        [0, 0, 1],
        [0, 1, 0],
        [1, 1, 1],
    ]
    .iter()
    .map(|row| row.iter().map(|&v| v == 1).collect())
    .collect();
    let scores = label_scores(&probabilities, &truth);
    assert_eq!(scores.len(), 3);
    // By hand (a label is predicted when its score exceeds 0.5; 0.5 is a no):
    // label 0: predicted 1,0,1,0,1,0,1,0 vs truth 1,0,1,0,1,0,0,1: 6/8 right = 0.75;
    //   AUC: positives {.9,.8,.6,.2} beat negatives {.4,.1,.3,.7} in 4+4+3+1 = 12 of
    //   16 pairs = 0.75.
    // label 1: predicted 0,1,0,1,1,0,0,1 vs truth 0,1,0,1,0,0,1,1: 6/8 = 0.75;
    //   AUC: {.7,.9,.4,.8} vs {.2,.3,.6,.1}: 4+4+3+4 = 15/16 = 0.9375.
    // label 2: predicted 1,0,0,1,0,1,0,1 vs truth 1,0,1,1,0,1,0,1: 7/8 = 0.875;
    //   AUC: {.6,.5,.7,.8,.9} all above {.1,.2,.3}: 1.0.
    let by_hand = [(0.75, 0.75), (0.75, 0.9375), (0.875, 1.0)];
    for (label, (accuracy, auc)) in by_hand.iter().enumerate() {
        assert!(
            close(scores[label].accuracy, *accuracy),
            "label {label}: {:?}",
            scores[label]
        );
        assert!(
            close(scores[label].auc.unwrap(), *auc),
            "label {label}: {:?}",
            scores[label]
        );
    }
    // label 0 counts: TP 3 (s0,s2,s4), FP 1 (s6), FN 1 (s7), TN 3.
    let counts = scores[0].counts;
    assert_eq!(
        (
            counts.true_positives,
            counts.false_positives,
            counts.false_negatives,
            counts.true_negatives
        ),
        (3, 1, 1, 3)
    );
    assert_eq!(counts.positives(), 4);
    assert!(close(scores[0].precision, 0.75) && close(scores[0].recall, 0.75));
    // balanced accuracy = (recall 3/4 + specificity 3/4) / 2
    assert!(close(scores[0].balanced_accuracy, 0.75));

    let report = TestReport {
        task: Task::MultiLabel,
        loss: 0.5,
        probabilities: probabilities.clone(),
        outcome: TaskOutcome::labels(truth.clone(), &probabilities),
    };
    let metrics = report.metrics();
    let (acc, auc) = medmnist_multi_label(&probabilities, &truth);
    assert!(
        close(metrics.accuracy, acc),
        "{} vs {acc}",
        metrics.accuracy
    );
    assert!(close(metrics.auc, auc), "{} vs {auc}", metrics.auc);
    // ACC = (0.75 + 0.75 + 0.875) / 3 = 2.375 / 3; AUC = (0.75 + 0.9375 + 1) / 3.
    assert!(close(metrics.accuracy, 2.375 / 3.0));
    assert!(close(metrics.auc, 2.6875 / 3.0));
    assert_eq!(metrics.loss, 0.5);
    // Every label right on s0, s1, s3, s5 (s2: label 2 at 0.5; s4: label 1; s6, s7:
    // label 0): 4 of 8.
    assert_eq!(report.exact_match(), Some(0.5));
    assert_eq!(report.mean_absolute_error(), None);
    assert!(report.confusion().is_none());
    assert_eq!(report.per_output().len(), 3);
}

#[test]
fn binary_metrics_rank_the_positive_class() {
    let positive = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9];
    let truth = vec![0, 0, 1, 1, 1, 1];
    let probabilities: Vec<Vec<f64>> = positive.iter().map(|&p| vec![1.0 - p, p]).collect();
    let report = class_report(Task::BinaryClass, probabilities.clone(), truth.clone());
    let metrics = report.metrics();
    let (acc, auc) = medmnist_binary(&probabilities, &truth);
    assert!(
        close(metrics.accuracy, acc),
        "{} vs {acc}",
        metrics.accuracy
    );
    assert!(close(metrics.auc, auc), "{} vs {auc}", metrics.auc);
    // By hand: predicted (p > 0.5) 0,0,0,1,0,1 vs truth 0,0,1,1,1,1: 4/6 right.
    // AUC: positives {.35,.8,.4,.9} vs negatives {.1,.4}: .35 beats .1 (1), .8 both (2),
    // .4 beats .1 and ties .4 (1.5), .9 both (2): 6.5 of 8 pairs = 0.8125.
    assert!(close(metrics.accuracy, 4.0 / 6.0));
    assert!(close(metrics.auc, 0.8125));
    let yes: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
    assert!(close(binary_auc(&positive, &yes).unwrap(), 0.8125));
    assert_eq!(
        binary_auc(&positive, &[true; 6]),
        None,
        "no negatives, no AUC"
    );
    assert_eq!(report.exact_match(), None);
    assert_eq!(report.mean_absolute_error(), None);
    assert!(report.confusion().is_some());
}

#[test]
fn multi_class_and_ordinal_metrics_follow_the_medmnist_evaluator() {
    let probabilities = rows(&[
        &[0.7, 0.2, 0.1],
        &[0.3, 0.4, 0.3],
        &[0.2, 0.5, 0.3],
        &[0.1, 0.1, 0.8],
        &[0.5, 0.3, 0.2],
        &[0.1, 0.2, 0.7],
    ]);
    let truth = vec![0, 1, 2, 2, 1, 0];
    let (acc, auc) = medmnist_multi_class(&probabilities, &truth);
    // By hand: argmax 0,1,1,2,0,2 vs truth 0,1,2,2,1,0: 3/6 right.
    // One-vs-rest AUC: class 0 {.7,.1} vs {.3,.2,.1,.5}: 4 + 0.5 (tie) = 4.5/8;
    // class 1 {.4,.3} vs {.2,.5,.1,.2}: 3 + 3 = 6/8; class 2 {.3,.8} vs {.1,.3,.2,.7}:
    // 2.5 (tie) + 4 = 6.5/8. Mean = (0.5625 + 0.75 + 0.8125) / 3 = 2.125 / 3.
    assert!(close(acc, 0.5) && close(auc, 2.125 / 3.0));
    let aucs = one_vs_rest_auc(&probabilities, &truth);
    for (class, expected) in [0.5625, 0.75, 0.8125].iter().enumerate() {
        assert!(
            close(aucs[class].unwrap(), *expected),
            "class {class}: {aucs:?}"
        );
    }
    for task in [Task::MultiClass, Task::OrdinalRegression] {
        let report = class_report(task, probabilities.clone(), truth.clone());
        let metrics = report.metrics();
        assert!(close(metrics.accuracy, acc), "{task}: {}", metrics.accuracy);
        assert!(close(metrics.auc, auc), "{task}: {}", metrics.auc);
        assert_eq!(report.exact_match(), None);
        let confusion = report.confusion().unwrap();
        assert_eq!(
            confusion.matrix,
            vec![vec![1, 0, 1], vec![1, 1, 0], vec![0, 1, 1]]
        );
    }
    // Grade errors |t - p|: 0,0,1,0,1,2: 4/6.
    let ordinal = class_report(
        Task::OrdinalRegression,
        probabilities.clone(),
        truth.clone(),
    );
    assert!(close(ordinal.mean_absolute_error().unwrap(), 4.0 / 6.0));
    let plain = class_report(Task::MultiClass, probabilities, truth);
    assert_eq!(plain.mean_absolute_error(), None);
}

// ---------------------------------------------------------------------------------
// End to end through the binary.
// ---------------------------------------------------------------------------------

const SPLITS: [(&str, i64); 3] = [("train", 120), ("val", 30), ("test", 40)];

/// A multi-label file: label l of 14 is on at random and brightens pixel l of the
/// grey (N, 8, 8) image.
fn multi_label_arrays(channels: i64, seed: i64) -> Vec<(String, Tensor)> {
    let _generator = common::torch_generator();
    tch::manual_seed(seed);
    let mut arrays = Vec::new();
    for (split, rows) in SPLITS {
        let labels = Tensor::rand([rows, 14], (Kind::Float, Device::Cpu))
            .gt(0.5)
            .to_kind(Kind::Uint8);
        let bright = Tensor::cat(
            &[
                labels.to_kind(Kind::Float),
                Tensor::zeros([rows, 50], (Kind::Float, Device::Cpu)),
            ],
            1,
        ) * 150.0;
        let noise = Tensor::rand([rows, 64], (Kind::Float, Device::Cpu)) * 100.0;
        let grey = (noise + bright).view([rows, 8, 8]);
        let images = if channels == 1 {
            grey
        } else {
            grey.unsqueeze(-1).repeat([1, 1, 1, channels])
        };
        arrays.push((format!("{split}_images"), images.to_kind(Kind::Uint8)));
        arrays.push((format!("{split}_labels"), labels));
    }
    arrays
}

/// One class per image out of `classes`: class c brightens row c of the 8x8 image.
fn class_arrays(classes: i64, channels: i64, val_rows: i64, seed: i64) -> Vec<(String, Tensor)> {
    let _generator = common::torch_generator();
    tch::manual_seed(seed);
    let mut arrays = Vec::new();
    for (split, rows) in SPLITS {
        let rows = if split == "val" { val_rows } else { rows };
        let labels = Tensor::arange(rows, (Kind::Int64, Device::Cpu)).remainder(classes);
        let rows_of_class = Tensor::zeros([classes, 8, 8], (Kind::Float, Device::Cpu));
        for class in 0..classes {
            let _ = rows_of_class.get(class).get(class).fill_(150.0);
        }
        let noise = Tensor::rand([rows, 8, 8, channels], (Kind::Float, Device::Cpu)) * 100.0;
        let images = noise + rows_of_class.index_select(0, &labels).unsqueeze(-1);
        arrays.push((format!("{split}_images"), images.to_kind(Kind::Uint8)));
        arrays.push((
            format!("{split}_labels"),
            labels.view([rows, 1]).to_kind(Kind::Uint8),
        ));
    }
    arrays
}

/// `<dir>/data/<file>` with `arrays`, and `<dir>/experiments.yaml` with one MLP stage `s`
/// on `dataset` (a flow mapping's inside) and `stage_extra` lines.
fn project(
    file: &str,
    arrays: &[(String, Tensor)],
    dataset: &str,
    stage_extra: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    Tensor::write_npz(arrays, dir.path().join("data").join(file)).unwrap();
    let manifest = format!(
        "dataset: {{{dataset}}}\n\
         defaults: {{epochs: 3, seed: 1, batch_size: 16, learning_rate: 0.1}}\n\
         stages:\n  - name: s\n    model: {{kind: mlp, hidden: 16}}\n{stage_extra}"
    );
    std::fs::write(dir.path().join("experiments.yaml"), manifest).unwrap();
    dir
}

const FLAGS: [&str; 6] = ["--data-dir", "data", "--out", "out", "--device", "cpu"];

fn train(dir: &Path) -> std::process::Output {
    let mut args = vec!["experiments.yaml"];
    args.extend(FLAGS);
    let output = common::cellnets(dir, &args);
    assert!(
        output.status.success(),
        "training failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn report(dir: &Path) -> String {
    let mut args = vec!["report", "experiments.yaml"];
    args.extend(FLAGS);
    let output = common::cellnets(dir, &args);
    assert!(
        output.status.success(),
        "report failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(dir.join("out/report.md")).unwrap()
}

/// A column of a table as numbers.
fn numbers(path: &Path, name: &str) -> Vec<f64> {
    let (header, rows) = read_table(path).unwrap();
    let index = header
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("{} has no {name} column: {header:?}", path.display()));
    rows.iter().map(|row| row[index].parse().unwrap()).collect()
}

fn check_epochs(run: &Path) {
    let losses = numbers(&run.join("epochs.csv"), "train_loss");
    assert_eq!(losses.len(), 3);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
}

fn check_multi_label_outputs(run: &Path, stage: &Path) {
    check_epochs(run);
    let (header, rows) = read_table(&run.join("per_class.csv")).unwrap();
    assert_eq!(
        header,
        [
            "label",
            "positives",
            "precision",
            "recall",
            "f1",
            "accuracy",
            "balanced_accuracy",
            "auc"
        ]
    );
    assert_eq!(rows.len(), 14);
    assert!(
        !run.join("confusion.csv").exists(),
        "no confusion matrix for labels"
    );
    let accuracies = numbers(&run.join("per_class.csv"), "accuracy");
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    let summary = numbers(&stage.join("summary.csv"), "test_accuracy");
    assert_eq!(summary.len(), 1);
    assert!((summary[0] - mean).abs() < 1e-9, "{} vs {mean}", summary[0]);
    let positives: Vec<f64> = numbers(&run.join("per_class.csv"), "positives");
    assert!(positives.iter().all(|&p| (0.0..=40.0).contains(&p)));
    let auc = numbers(&stage.join("summary.csv"), "test_auc")[0];
    assert!((0.0..=1.0).contains(&auc), "{auc}");
}

#[test]
fn an_inferred_multi_label_grey_file_trains_with_label_outputs() {
    let dir = project(
        "labels14.npz",
        &multi_label_arrays(1, 3),
        "name: labels14",
        "",
    );
    train(dir.path());
    let stage = dir.path().join("out/s");
    check_multi_label_outputs(&stage.join("run"), &stage);
    predicts_labels_independently(dir.path(), &stage.join("run"));

    let run = stage.join("run");
    let mut args = vec!["eval", run.to_str().unwrap()];
    args.extend(["--data-dir", "data", "--device", "cpu"]);
    let output = common::cellnets(dir.path(), &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("exact match") && stdout.contains("positives"),
        "{stdout}"
    );
    let eval = run.join("eval/labels14-test");
    assert!(eval.join("per_class.csv").is_file() && !eval.join("confusion.png").exists());
}

/// `cellnets predict` on a multi-label run: a sigmoid probability per label (the run
/// recorded its task, which the file inferred), and the labels above 0.5 predicted.
fn predicts_labels_independently(dir: &Path, run: &Path) {
    let result = std::fs::read_to_string(run.join("result.yaml")).unwrap();
    assert!(result.contains("task: multi-label"), "{result}");
    let mut files = Vec::new();
    for (name, lit) in [("dark.png", 0u8), ("lit.png", 255)] {
        let path = dir.join(name);
        image::GrayImage::from_fn(8, 8, |x, y| {
            image::Luma([if y == 0 && x < 7 { lit } else { 0 }])
        })
        .save(&path)
        .unwrap();
        files.push(path.to_str().unwrap().to_string());
    }
    let csv = dir.join("predictions.csv");
    let mut args = vec!["predict", run.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--output", csv.to_str().unwrap(), "--device", "cpu"]);
    let output = common::cellnets(dir, &args);
    assert!(output.status.success(), "{output:?}");
    let (header, rows) = read_table(&csv).unwrap();
    assert_eq!(header.len(), 2 + 14 + 1, "{header:?}");
    for row in &rows {
        let probabilities: Vec<f64> = row[2..16].iter().map(|p| p.parse().unwrap()).collect();
        assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
        let above: Vec<&str> = header[2..16]
            .iter()
            .zip(&probabilities)
            .filter(|(_, &p)| p > 0.5)
            .map(|(name, _)| name.trim_start_matches("p_"))
            .collect();
        assert_eq!(row[1], above.join("+"), "{row:?}");
    }
    let sums: Vec<f64> = rows
        .iter()
        .map(|row| row[2..16].iter().map(|p| p.parse::<f64>().unwrap()).sum())
        .collect();
    assert!(
        sums.iter().any(|sum| (sum - 1.0).abs() > 1e-3),
        "independent labels need not sum to 1: {sums:?}"
    );
}

#[test]
fn chestmnist_trains_on_official_validation_and_reports_its_labels_and_baseline() {
    let dir = project(
        "chestmnist.npz",
        &multi_label_arrays(1, 4),
        "name: chestmnist, validation: official",
        "    report: {baseline: resnet18_28}\n",
    );
    let output = train(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("peak memory:"), "{stderr}");
    let stage = dir.path().join("out/s");
    check_multi_label_outputs(&stage.join("run"), &stage);
    let markdown = report(dir.path());
    assert!(markdown.contains("cardiomegaly"), "{markdown}");
    // Validated on the official val split: no holdout in the data section, and each
    // label's rate is the share of images that have it.
    let header = "| label | train and val | test | train rate | val rate |";
    assert!(markdown.contains(header), "{markdown}");
    assert!(
        markdown.contains("14 labels (multi-label task)"),
        "{markdown}"
    );
    assert!(markdown.contains("hernia"), "{markdown}");
    assert!(!markdown.contains("confusion.png"), "{markdown}");
    assert!(markdown.contains("ResNet-18 (28)"), "{markdown}");
    assert!(markdown.contains("0.947"), "{markdown}");
}

#[test]
fn a_binary_file_trains_with_a_confusion_matrix() {
    let dir = project("pairs.npz", &class_arrays(2, 1, 30, 5), "name: pairs", "");
    train(dir.path());
    let stage = dir.path().join("out/s");
    let run = stage.join("run");
    check_epochs(&run);
    let (header, _) = read_table(&run.join("confusion.csv")).unwrap();
    assert_eq!(header.len(), 3);
    assert_eq!(read_table(&run.join("per_class.csv")).unwrap().1.len(), 2);
    let auc = numbers(&stage.join("summary.csv"), "test_auc")[0];
    assert!((0.0..=1.0).contains(&auc), "{auc}");
    let markdown = report(dir.path());
    assert!(markdown.contains("confusion"), "{markdown}");
}

#[test]
fn retinamnist_trains_as_ordinal_and_reports_the_grade_error() {
    let dir = project(
        "retinamnist.npz",
        &class_arrays(5, 3, 30, 6),
        "name: retinamnist",
        "",
    );
    train(dir.path());
    let stage = dir.path().join("out/s");
    let run = stage.join("run");
    check_epochs(&run);
    let (header, _) = read_table(&run.join("confusion.csv")).unwrap();
    assert_eq!(header.len(), 6);
    let auc = numbers(&stage.join("summary.csv"), "test_auc")[0];
    assert!((0.0..=1.0).contains(&auc), "{auc}");
    let markdown = report(dir.path());
    assert!(markdown.contains("mean absolute grade error"), "{markdown}");
}

#[test]
fn a_chestmnist_file_with_three_channels_is_refused() {
    let dir = project(
        "chestmnist.npz",
        &multi_label_arrays(3, 7),
        "name: chestmnist",
        "",
    );
    let mut args = vec!["experiments.yaml"];
    args.extend(FLAGS);
    let output = common::cellnets(dir.path(), &args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chestmnist"), "{stderr}");
    assert!(stderr.contains("channel"), "{stderr}");
    assert!(!dir.path().join("out/s/run/best.safetensors").exists());
}

#[test]
fn official_validation_validates_on_the_val_split() {
    // 120 train rows: the holdout validates on the last 36 of them; the file's own val
    // split has 11 rows, so the official validation's accuracies are multiples of 1/11.
    let arrays = class_arrays(3, 1, 11, 8);
    let holdout = project("three.npz", &arrays, "name: three", "");
    let official = project(
        "three.npz",
        &arrays,
        "name: three, validation: official",
        "",
    );
    train(holdout.path());
    train(official.path());
    let held = numbers(&holdout.path().join("out/s/run/epochs.csv"), "val_accuracy");
    let own = numbers(
        &official.path().join("out/s/run/epochs.csv"),
        "val_accuracy",
    );
    assert_eq!((held.len(), own.len()), (3, 3));
    for accuracy in &own {
        let right = accuracy * 11.0;
        assert!(
            (right - right.round()).abs() < 1e-6,
            "{accuracy} is not k/11"
        );
    }
    for accuracy in &held {
        let right = accuracy * 36.0;
        assert!(
            (right - right.round()).abs() < 1e-6,
            "{accuracy} is not k/36"
        );
    }
    let held_loss = numbers(&holdout.path().join("out/s/run/epochs.csv"), "val_loss");
    let own_loss = numbers(&official.path().join("out/s/run/epochs.csv"), "val_loss");
    assert_ne!(held_loss, own_loss);
}

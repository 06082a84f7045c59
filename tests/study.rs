//! A tiny study driven through the library: what it writes, and that it learns.

use crate::common;

use cellnets::storage::files::read_table;
use cellnets::study::manifest;
use cellnets::train;
use cellnets::train::Outcome;
use std::path::Path;
use tch::{nn, Device};

fn run_study(dir: &Path, stages: &str) -> Vec<cellnets::outputs::summary::RunSummary> {
    common::run_library(dir, stages, false)
}

#[test]
fn each_run_writes_a_tidy_epoch_table_a_checkpoint_and_a_summary_row() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = run_study(
        dir.path(),
        "  - name: grid
    model: {kind: cnn, kernels: 2, kernel_size: 3}
    training: {epochs: 3}
    grid: {kernels: [2, 4], pool: [max, avg]}
",
    );
    assert_eq!(summaries.len(), 4);
    let stage = dir.path().join("out/grid");
    for run in [
        "kernels=2,pool=max",
        "kernels=2,pool=avg",
        "kernels=4,pool=max",
        "kernels=4,pool=avg",
    ] {
        let (header, rows) = read_table(&stage.join(run).join("epochs.csv")).unwrap();
        assert_eq!(
            header[..8],
            [
                "stage",
                "run",
                "epoch",
                "train_loss",
                "train_accuracy",
                "val_loss",
                "val_accuracy",
                "seconds"
            ]
        );
        for hyperparameter in [
            "model",
            "kernels",
            "kernel_size",
            "pool",
            "optimizer",
            "learning_rate",
            "batch_size",
            "seed",
        ] {
            assert!(
                header.iter().any(|c| c == hyperparameter),
                "no {hyperparameter} column"
            );
        }
        assert_eq!(rows.len(), 3, "{run}: one row per epoch");
        let epochs: Vec<&str> = rows.iter().map(|row| row[2].as_str()).collect();
        assert_eq!(epochs, ["1", "2", "3"]);
        assert!(rows.iter().all(|row| row[0] == "grid" && row[1] == run));
        assert!(stage.join(run).join("best.safetensors").is_file());
    }
    let (header, rows) = read_table(&stage.join("summary.csv")).unwrap();
    assert_eq!(rows.len(), 4);
    for column in [
        "test_macro_f1",
        "test_auc",
        "trainable_params",
        "frozen_params",
        "best_epoch",
        "best_val_accuracy",
        "test_accuracy",
        "seconds",
    ] {
        assert!(
            header.iter().any(|c| c == column),
            "summary has no {column}"
        );
    }
    // Each run's test confusion matrix agrees with its summary's test accuracy.
    let accuracy = header.iter().position(|c| c == "test_accuracy").unwrap();
    let run_column = header.iter().position(|c| c == "run").unwrap();
    for row in &rows {
        let (confusion_header, matrix) =
            read_table(&stage.join(&row[run_column]).join("confusion.csv")).unwrap();
        assert_eq!(confusion_header.len(), 1 + common::CLASSES as usize);
        let cells: Vec<Vec<u64>> = matrix
            .iter()
            .map(|r| r[1..].iter().map(|c| c.parse().unwrap()).collect())
            .collect();
        let total: u64 = cells.iter().flatten().sum();
        let correct: u64 = (0..cells.len()).map(|c| cells[c][c]).sum();
        assert_eq!(total, 80, "every test image is counted once");
        let logged: f64 = row[accuracy].parse().unwrap();
        assert!((correct as f64 / total as f64 - logged).abs() < 1e-9);
        let (_, per_class) =
            read_table(&stage.join(&row[run_column]).join("per_class.csv")).unwrap();
        assert_eq!(per_class.len(), common::CLASSES as usize);
    }
    let trainable = header.iter().position(|c| c == "trainable_params").unwrap();
    // conv 3*3*3*2 + 2 = 56, head 2*4*4*4 + 4 = 132
    assert_eq!(rows[0][trainable], "188");
}

#[test]
fn the_best_checkpoint_reloads_to_the_logged_val_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = run_study(
        dir.path(),
        "  - name: mlp
    model: {kind: mlp, hidden: 16, dropout: 0.25}
    training: {epochs: 4, monitor: val_accuracy}
",
    );
    let summary = &summaries[0];
    let (header, rows) = read_table(&dir.path().join("out/mlp/run/epochs.csv")).unwrap();
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    let logged: f64 = rows[summary.best.as_ref().unwrap().epoch - 1][column("val_accuracy")]
        .parse()
        .unwrap();
    let best_logged = rows
        .iter()
        .map(|row| row[column("val_accuracy")].parse::<f64>().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(
        logged, best_logged,
        "the checkpoint is the epoch with the best val_accuracy"
    );

    let data = common::load_toy(dir.path()).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let spec =
        manifest::parse(&std::fs::read_to_string(dir.path().join("experiments.yaml")).unwrap())
            .unwrap()
            .stages[0]
            .model
            .clone()
            .unwrap();
    // Its initial weights are drawn, then replaced by the checkpoint's.
    let model = {
        let _generator = common::torch_generator();
        spec.build(&vs.root(), data.input)
    };
    vs.load(dir.path().join("out/mlp/run/best.safetensors"))
        .unwrap();
    let reloaded = train::evaluate(model.as_ref(), &data.val).unwrap();
    assert!(
        (reloaded.accuracy - logged).abs() < 1e-9,
        "{reloaded:?} vs {logged}"
    );
    assert!((reloaded.accuracy - summary.best.as_ref().unwrap().val_accuracy).abs() < 1e-9);
}

#[test]
fn monitoring_val_auc_checkpoints_the_epoch_whose_auc_eval_reports() {
    let dir = common::toy_project(
        "  - name: mlp
    model: {kind: mlp, hidden: 8}
    training: {epochs: 4, monitor: val_auc, learning_rate: 0.001}
",
    );
    let output = common::cellnets(dir.path(), &["experiments.yaml", "--device", "cpu"]);
    assert!(output.status.success(), "{output:?}");
    let (header, rows) = read_table(&dir.path().join("out/mlp/run/epochs.csv")).unwrap();
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    let aucs: Vec<f64> = rows
        .iter()
        .map(|row| row[column("val_auc")].parse().unwrap())
        .collect();
    let best = aucs.iter().copied().fold(f64::MIN, f64::max);
    let balanced: f64 = rows[0][column("val_balanced_accuracy")].parse().unwrap();
    assert!((0.0..=1.0).contains(&balanced), "{balanced}");
    assert!(
        aucs.windows(2).any(|pair| pair[0] != pair[1]),
        "a slow learning rate moves the AUC every epoch: {aucs:?}"
    );

    let output = common::cellnets(
        dir.path(),
        &["eval", "out/mlp/run", "--split", "val", "--device", "cpu"],
    );
    assert!(output.status.success(), "{output:?}");
    let (eval_header, metrics) =
        read_table(&dir.path().join("out/mlp/run/eval/toy-val/metrics.csv")).unwrap();
    let auc: f64 = metrics[0][eval_header.iter().position(|c| c == "auc").unwrap()]
        .parse()
        .unwrap();
    assert!(
        (auc - best).abs() < 1e-12,
        "eval's val AUC {auc} is the best epoch's logged {best} ({aucs:?})"
    );
}

#[test]
fn test_time_views_change_the_test_alone_and_eval_predicts_with_them() {
    let dir = common::toy_project(
        "  - name: plain
    model: {kind: mlp, hidden: 8}
    training: {epochs: 3}
  - name: views
    from: plain
    training: {tta: [flips, rot90]}
",
    );
    let output = common::cellnets(dir.path(), &["experiments.yaml", "--device", "cpu"]);
    assert!(output.status.success(), "{output:?}");
    let column = |table: &str, name: &str| -> Vec<String> {
        let (header, rows) = read_table(&dir.path().join(table)).unwrap();
        let at = header.iter().position(|c| c == name).unwrap();
        rows.into_iter().map(|row| row[at].clone()).collect()
    };
    // Views change nothing in training...
    for name in ["train_loss", "val_loss", "val_accuracy"] {
        assert_eq!(
            column("out/plain/run/epochs.csv", name),
            column("out/views/run/epochs.csv", name)
        );
    }
    // ...but the test averages eight views of each image.
    let plain_loss = column("out/plain/summary.csv", "test_loss");
    let views_loss = column("out/views/summary.csv", "test_loss");
    assert_ne!(plain_loss, views_loss);
    let output = common::cellnets(dir.path(), &["eval", "out/views/run", "--device", "cpu"]);
    assert!(output.status.success(), "{output:?}");
    let eval_loss: f64 = column("out/views/run/eval/toy-test/metrics.csv", "loss")[0]
        .parse()
        .unwrap();
    let logged: f64 = views_loss[0].parse().unwrap();
    assert!(
        (eval_loss - logged).abs() < 1e-9,
        "eval {eval_loss}, test {logged}"
    );
}

#[test]
fn a_learnable_problem_is_learned() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = run_study(
        dir.path(),
        "  - name: learn
    model: {kind: mlp, hidden: 32}
    training: {epochs: 15, optimizer: adam, batch_size: 16}
",
    );
    let summary = &summaries[0];
    assert!(
        summary.best.as_ref().unwrap().val_accuracy >= 0.95,
        "{summary:?}"
    );
    assert!(summary.test.accuracy >= 0.95, "{summary:?}");
    let (header, rows) = read_table(&dir.path().join("out/learn/run/epochs.csv")).unwrap();
    let loss = header.iter().position(|c| c == "train_loss").unwrap();
    let first: f64 = rows[0][loss].parse().unwrap();
    let last: f64 = rows[rows.len() - 1][loss].parse().unwrap();
    assert!(last < first / 4.0, "train loss {first} -> {last}");
}

#[test]
fn a_diverging_run_is_marked_and_the_stage_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = run_study(
        dir.path(),
        "  - name: rates
    model: {kind: mlp, hidden: 16, activation: relu}
    training: {epochs: 4}
    grid: {learning_rate: [1.0e+38, 0.05]}
",
    );
    assert_eq!(summaries[0].status, Outcome::Diverged, "{:?}", summaries[0]);
    assert!(summaries[0].epochs < 4);
    assert_eq!(summaries[1].status, Outcome::Finished);
    let winner = cellnets::outputs::winners::read_winner(&dir.path().join("out"), "rates")
        .unwrap()
        .unwrap();
    assert_eq!(winner.run, "learning_rate=0.05");
    let (header, rows) = read_table(&dir.path().join("out/rates/summary.csv")).unwrap();
    let status = header.iter().position(|c| c == "status").unwrap();
    assert_eq!(rows[0][status], "diverged");
}

#[test]
fn runs_of_a_stage_train_in_parallel_with_jobs() {
    let dir = common::toy_project(
        "  - name: grid
    model: {kind: mlp, hidden: 8}
    training: {epochs: 3, optimizer: adam}
    grid: {hidden: [8, 16, 32, 64], dropout: [0.0, 0.5]}
",
    );
    let output = common::cellnets(dir.path(), &["--jobs", "3"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (header, rows) = read_table(&dir.path().join("out/grid/summary.csv")).unwrap();
    assert_eq!(rows.len(), 8);
    let run = header.iter().position(|c| c == "run").unwrap();
    let mut runs: Vec<&str> = rows.iter().map(|row| row[run].as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    assert_eq!(runs.len(), 8);
    for name in runs {
        let (_, epochs) =
            read_table(&dir.path().join("out/grid").join(name).join("epochs.csv")).unwrap();
        assert_eq!(epochs.len(), 3, "{name}");
        assert!(
            epochs.iter().all(|row| row[1] == name),
            "rows of {name} mixed with others"
        );
    }
    let winner = cellnets::outputs::winners::read_winner(&dir.path().join("out"), "grid")
        .unwrap()
        .unwrap();
    assert!(winner.best_val_accuracy > 0.5, "{winner:?}");
}

#[test]
fn repeats_train_each_configuration_per_seed_and_summarise_the_spread() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = run_study(
        dir.path(),
        "  - name: mlp
    model: {kind: mlp, hidden: 8}
    training: {epochs: 2, seed: 5}
    grid: {hidden: [4, 8]}
    repeats: 3
",
    );
    assert_eq!(summaries.len(), 6);
    let (header, rows) = read_table(&dir.path().join("out/mlp/summary.csv")).unwrap();
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    let mut names: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| {
            (
                row[column("run")].clone(),
                row[column("configuration")].clone(),
                row[column("seed")].clone(),
            )
        })
        .collect();
    names.sort();
    let expected: Vec<(String, String, String)> = [4, 8]
        .iter()
        .flat_map(|hidden| {
            (5..8).map(move |seed| {
                (
                    format!("hidden={hidden}-seed{seed}"),
                    format!("hidden={hidden}"),
                    seed.to_string(),
                )
            })
        })
        .collect();
    assert_eq!(names, expected);
    for run in &expected {
        assert!(dir
            .path()
            .join("out/mlp")
            .join(&run.0)
            .join("best.safetensors")
            .is_file());
    }

    let number = |row: &Vec<String>, name: &str| row[column(name)].parse::<f64>().unwrap();
    let mut means = Vec::new();
    for configuration in ["hidden=4", "hidden=8"] {
        let members: Vec<&Vec<String>> = rows
            .iter()
            .filter(|row| row[column("configuration")] == configuration)
            .collect();
        let accuracies: Vec<f64> = members
            .iter()
            .map(|row| number(row, "test_accuracy"))
            .collect();
        let mean = accuracies.iter().sum::<f64>() / 3.0;
        let sd = (accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        for row in &members {
            assert_eq!(row[column("seeds")], "3");
            assert!((number(row, "test_accuracy_seeds_mean") - mean).abs() < 1e-12);
            assert!((number(row, "test_accuracy_seeds_sd") - sd).abs() < 1e-12);
            // Student's t with 2 degrees of freedom: 4.3027.
            let half = 4.3027 * sd / 3f64.sqrt();
            assert!((number(row, "test_accuracy_seeds_ci95_high") - (mean + half)).abs() < 1e-9);
        }
        let val: Vec<f64> = members
            .iter()
            .map(|row| number(row, "best_val_accuracy"))
            .collect();
        means.push((val.iter().sum::<f64>() / 3.0, configuration));
    }
    let best_mean = if means[1].0 > means[0].0 {
        means[1].1
    } else {
        means[0].1
    };
    let winner = cellnets::outputs::winners::read_winner(&dir.path().join("out"), "mlp")
        .unwrap()
        .unwrap();
    assert_eq!(winner.plan.configuration(), best_mean, "{means:?}");
    assert_eq!(
        winner.run,
        format!("{best_mean}-seed5"),
        "the first seed stands for it"
    );
}

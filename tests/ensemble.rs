//! Ensemble stages on the toy data: the ensemble's probabilities are the mean of its
//! members' (each with its own test-time views), its result is written like a run's
//! and shown by `cellnets report`, `status` and `eval`; `predict` and `export` take it.

use crate::common;

use cellnets::data::Dataset;
use cellnets::inference::ensemble::SavedEnsemble;
use cellnets::inference::saved::{Predictor, SavedRun};
use cellnets::storage::files::read_table;
use cellnets::study::task::Task;
use image::RgbImage;
use std::path::Path;
use tch::{Device, Kind, Tensor};

const MODEL: &str = "model: {kind: cnn, kernels: 4, kernel_size: 3, pool: max}";

/// Two seeds of a CNN, a third that tests with its mirror images too, and two
/// ensembles of them: named runs (one with views) and the top two of `cnn`.
fn stages() -> String {
    format!(
        "  - name: cnn\n    {MODEL}\n    grid: {{seed: [1, 2]}}\n\
         \x20 - name: flipped\n    {MODEL}\n    training: {{seed: 3, tta: [flips]}}\n\
         \x20 - name: mixed\n    ensemble: [cnn/seed=1, flipped/run]\n\
         \x20 - name: top\n    ensemble: {{top: 2, of: cnn}}\n"
    )
}

/// The mean of `runs`' probabilities on the test split, each run predicting as its own
/// evaluation does.
fn mean_of_members(out: &Path, runs: &[&str], data: &Dataset) -> Tensor {
    let test = &data.test;
    let probabilities: Vec<Tensor> = runs
        .iter()
        .map(|run| {
            let saved = SavedRun::open(&out.join(run)).unwrap();
            let logits = saved.logits(test, data.input, Device::Cpu).unwrap();
            Task::MultiClass.probabilities(&logits)
        })
        .collect();
    Tensor::stack(&probabilities, 0).mean_dim(0, false, Kind::Double)
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn an_ensembles_probabilities_are_the_mean_of_its_members_and_it_is_reported_like_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = common::run_library(dir.path(), &stages(), false);
    let out = dir.path().join("out");
    let data = common::load_toy(dir.path()).unwrap();

    // Each member with its own views: `flipped` averages each image and its mirror.
    let expected = mean_of_members(&out, &["cnn/seed=1", "flipped/run"], &data);
    let ensemble = SavedEnsemble::open(&out.join("mixed/ensemble")).unwrap();
    let logits = ensemble
        .logits(&data.test, data.input, Device::Cpu)
        .unwrap();
    let ours = Task::MultiClass.probabilities(&logits);
    assert!(max_difference(&ours, &expected) < 1e-6);
    let single = mean_of_members(&out, &["flipped/run"], &data);
    assert!(
        max_difference(&ours, &single) > 1e-3,
        "not the member alone"
    );

    // Its recorded test accuracy is that of the mean's argmax.
    let labels = data.test.labels.to_device(Device::Cpu).view([-1]);
    let right = expected.argmax(-1, false).eq_tensor(&labels);
    let accuracy = right
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    let mixed = summaries.iter().find(|s| s.stage == "mixed").unwrap();
    assert_eq!(mixed.run, "ensemble");
    assert!((mixed.test.accuracy - accuracy).abs() < 1e-12);
    assert!(mixed.test.ci95.accuracy.contains(accuracy));
    assert!(out.join("mixed/ensemble/confusion.csv").is_file());
    let (header, rows) = read_table(&out.join("mixed/summary.csv")).unwrap();
    let members = header
        .iter()
        .position(|column| column == "members")
        .unwrap();
    assert_eq!(rows[0][members], "cnn/seed=1 flipped/run");

    // The top two of `cnn` are both its runs, best first.
    let top = cellnets::outputs::ensemble::read_ensemble_result(&out.join("top/ensemble"))
        .unwrap()
        .unwrap();
    let mut members = top.members.clone();
    members.sort();
    assert_eq!(members, ["cnn/seed=1", "cnn/seed=2"]);

    let status = common::cellnets(dir.path(), &["status", "experiments.yaml"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("mixed: ensemble of 2 runs tested"),
        "{status:?}"
    );

    let report = common::cellnets(
        dir.path(),
        &[
            "report",
            "experiments.yaml",
            "--data-dir",
            ".",
            "--device",
            "cpu",
        ],
    );
    assert!(report.status.success(), "{report:?}");
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        markdown.contains("## Stage `mixed`: an ensemble"),
        "{markdown}"
    );
    assert!(markdown.contains("**mixed/ensemble**"), "{markdown}");
    // Among the final models, and paired with each other final model on the same images.
    assert!(
        markdown.contains("| `mixed`: ensemble of 2 | their own |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `top`: ensemble of 2 | their own |"),
        "{markdown}"
    );
    assert!(markdown.contains("| `cnn` vs `mixed` |"), "{markdown}");
    assert!(markdown.contains("| `mixed` vs `top` |"), "{markdown}");
    assert!(out.join("report/mixed/confusion.png").is_file());

    let eval = common::cellnets(
        dir.path(),
        &[
            "eval",
            "out/mixed/ensemble",
            "--data",
            "toy.npz",
            "--device",
            "cpu",
        ],
    );
    assert!(eval.status.success(), "{eval:?}");
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(text.contains(&format!("accuracy {accuracy:.4}")), "{text}");

    // Each image's prediction, from the ensemble (one member with test-time views) and
    // from that member alone, on two splits: argmax and accuracy as eval reports them.
    // The ensemble's probabilities are the mean of its members' computed above.
    let (_, rows) = common::eval_predictions(dir.path(), "out/mixed/ensemble", "toy.npz", "test");
    let written: Vec<f64> = rows
        .iter()
        .flat_map(|row| row[3..].iter().map(|p| p.parse::<f64>().unwrap()))
        .collect();
    let written = Tensor::from_slice(&written).view([rows.len() as i64, common::CLASSES]);
    assert!(max_difference(&written, &expected) < 1e-6);
    common::eval_predictions(dir.path(), "out/mixed/ensemble", "toy.npz", "val");
    common::eval_predictions(dir.path(), "out/flipped/run", "toy.npz", "train");
}

/// Row `row` of (N, H, W, 3) uint8 images as an RGB image.
fn rgb_row(images: &Tensor, row: i64) -> RgbImage {
    let bytes = Vec::<u8>::try_from(images.get(row).contiguous().view([-1])).unwrap();
    RgbImage::from_raw(8, 8, bytes).unwrap()
}

/// The probability columns of a predictions CSV, row by row.
fn predicted(dir: &Path, run: &str, images: &Path) -> Tensor {
    let csv = dir.join(format!("{}.csv", run.replace('/', "_")));
    let output = common::cellnets(
        dir,
        &[
            "predict",
            run,
            images.to_str().unwrap(),
            "--output",
            csv.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let (_, rows) = read_table(&csv).unwrap();
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|row| row[2..2 + common::CLASSES as usize].to_vec())
        .map(|cell| cell.parse().unwrap())
        .collect();
    Tensor::from_slice(&values).view([rows.len() as i64, common::CLASSES])
}

#[test]
fn predict_and_export_take_an_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    common::run_library(dir.path(), &stages(), false);
    let data = common::load_toy(dir.path()).unwrap();
    let arrays = Tensor::read_npz(dir.path().join("toy.npz")).unwrap();
    let (_, images) = arrays
        .into_iter()
        .find(|(name, _)| name == "test_images")
        .unwrap();
    let pngs = dir.path().join("pngs");
    std::fs::create_dir(&pngs).unwrap();
    for row in 0..images.size()[0] {
        rgb_row(&images, row)
            .save(pngs.join(format!("{row:03}.png")))
            .unwrap();
    }

    // predict: the mean of what each member predicts alone.
    let ensemble = predicted(dir.path(), "out/top/ensemble", &pngs);
    let members = (predicted(dir.path(), "out/cnn/seed=1", &pngs)
        + predicted(dir.path(), "out/cnn/seed=2", &pngs))
        / 2.0;
    assert!(max_difference(&ensemble, &members) < 1e-6);

    // export: one TorchScript module, the log of the mean probabilities.
    let file = dir.path().join("ensemble.pt");
    let output = common::cellnets(
        dir.path(),
        &[
            "export",
            "out/top/ensemble",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let module = tch::CModule::load(&file).unwrap();
    let batch = Tensor::cat(&data.test.images.batches().collect::<Vec<_>>(), 0);
    let logits = tch::no_grad(|| module.forward_ts(&[&batch]).unwrap());
    let exported = logits.softmax(-1, Kind::Double);
    assert!(max_difference(&exported, &members) < 1e-5);
    let sums = logits.exp().sum_dim_intlist(-1, false, Kind::Double);
    assert!(
        max_difference(&sums, &sums.ones_like()) < 1e-5,
        "log of probabilities"
    );
}

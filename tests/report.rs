//! `cellnets report` and `cellnets eval` on small studies of synthetic data.

use crate::common;

use cellnets::storage::files::read_table;
use cellnets::study::manifest;
use cellnets::{report, runner};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The toy data under the study's data set name, so the study's numbers are compared.
fn run_study(dir: &Path, stages: &str) -> PathBuf {
    common::write_npz(dir, "bloodmnist.npz", &common::learnable_arrays());
    let text = format!(
        "dataset: {{name: bloodmnist}}\ndefaults: {{epochs: 2, seed: 1}}\nstages:\n{stages}"
    );
    let manifest_path = dir.join("experiments.yaml");
    std::fs::write(&manifest_path, text).unwrap();
    let manifest = manifest::load(&manifest_path).unwrap();
    let settings = runner::TrainSettings {
        out_dir: dir.join("out"),
        data_dir: dir.to_path_buf(),
        device: Device::Cpu,
        fresh: false,
        jobs: 1,
        threads: None,
        retry_failed: false,
        precision: Default::default(),
        tensorboard: false,
    };
    runner::run(&manifest, &[], &settings).unwrap();
    write_report(dir)
}

fn write_report(dir: &Path) -> PathBuf {
    let manifest_path = dir.join("experiments.yaml");
    let manifest = manifest::load(&manifest_path).unwrap();
    let settings = report::ReportSettings {
        out_dir: dir.join("out"),
        data_dir: dir.to_path_buf(),
        device: Device::Cpu,
    };
    report::write(&manifest, &manifest_path, &settings)
        .unwrap()
        .markdown
}

/// The targets of the markdown's links and images.
fn link_targets(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(String::from)
        .collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let reader = decoder.read_info().unwrap();
    (reader.info().width, reader.info().height)
}

#[test]
fn the_report_shows_every_stage_beside_the_study_and_links_only_files_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = run_study(
        dir.path(),
        "  - name: width
    model: {kind: mlp, hidden: 4, activation: relu, dropout: 0.0}
    grid: {hidden: [4, 8]}
    report: {study: mlp, mistakes: 2}
  - name: rate
    from: width
    grid: {learning_rate: [0.01, 0.002]}
    report: {study: mlp, mistakes: 3}
  - name: cnn_grid
    model: {kind: cnn, kernels: 2, kernel_size: 3}
    training: {epochs: 1}
    grid: {kernels: [2, 8], kernel_size: [3, 5]}
    report: {study: cnn_shallow}
",
    );
    let out = dir.path().join("out");
    assert_eq!(path, out.join("report.md"));
    let markdown = std::fs::read_to_string(&path).unwrap();

    let targets = link_targets(&markdown);
    assert!(targets.len() > 20, "{targets:?}");
    for target in &targets {
        assert!(
            out.join(target).is_file(),
            "report.md links {target}, which does not exist"
        );
    }
    for needle in [
        "## Final models",
        "## Data: bloodmnist.npz",
        "## Stage `width`",
        "The study chose hidden = 4096.",
        "report/rate/confusion-study.png",
        "report/cnn_grid/grid-study.png",
    ] {
        assert!(markdown.contains(needle), "{needle}");
    }
    // Final models: the last stage of each study model, not `width`, which is tested
    // for its mistakes only.
    let finals: Vec<&str> = markdown
        .split("## Final models")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("| `") && !line.contains("` vs `"))
        .collect();
    assert_eq!(finals.len(), 2, "{finals:?}");
    assert!(finals[0].starts_with("| `rate`: "), "{finals:?}");
    assert!(finals[1].starts_with("| `cnn_grid`: "), "{finals:?}");
    // The study tuned no learning rate, so it has no choice to show for that stage.
    assert!(!markdown.contains("The study chose learning_rate"));
    // Grid cells the study also ran sit beside its values (kernel size 3, 8 kernels: 0.8715).
    let cell = markdown
        .lines()
        .find(|line| line.starts_with("| 3 | 8 | "))
        .unwrap();
    assert!(cell.ends_with("| 0.8715 |"), "{cell}");
    assert!(!markdown.lines().any(|line| line.starts_with("| 3 | 2 | ")));

    // Every figure decodes as an image, and every chart also exists as SVG.
    let mut pngs = 0;
    let report = std::fs::read_dir(out.join("report")).unwrap();
    for folder in report
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
    {
        for file in std::fs::read_dir(folder).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "png") {
                let (width, height) = png_size(&file);
                assert!(width >= 300 && height >= 150, "{}", file.display());
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                if !name.starts_with("mistake-") && name != "samples.png" {
                    assert!(file.with_extension("svg").is_file(), "{name} has no SVG");
                }
                pngs += 1;
            }
        }
    }
    assert!(pngs >= 15, "{pngs} figures");

    // The notebook's stage order is the manifest's.
    let (_, order) = read_table(&out.join("report/stages.csv")).unwrap();
    assert_eq!(order, [["width", "1"], ["rate", "2"], ["cnn_grid", "3"]]);

    // The class counts add up to the splits: 200 official train rows held out 70/30, 80 test.
    let (header, rows) = read_table(&out.join("report/data-bloodmnist/class_counts.csv")).unwrap();
    assert_eq!(
        header,
        ["dataset", "split", "class", "name", "count", "rate"]
    );
    let total = |split: &str| -> u64 {
        rows.iter()
            .filter(|row| row[1] == split)
            .map(|row| row[4].parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        [
            total("train"),
            total("test"),
            total("holdout_train"),
            total("holdout_val")
        ],
        [200, 80, 140, 60]
    );

    // The error analysis: as many figures as rows in its table, at most the 3 asked for.
    let mistakes = targets
        .iter()
        .filter(|t| t.contains("rate/mistake-"))
        .count();
    assert!(mistakes <= 3);
    let heading = match mistakes {
        0 => "classifies every test image correctly".to_string(),
        n => format!("### The {n} most confident mistakes of rate/"),
    };
    assert!(markdown.contains(&heading), "{heading}");

    // A reused run carries the test tables of the run it reused.
    let reused = out.join("rate/learning_rate=0.01");
    assert!(reused.join("confusion.csv").is_file() && reused.join("per_class.csv").is_file());

    // A damaged result is named in its stage, and the rest of the report stays.
    std::fs::write(out.join("width/hidden=4/result.yaml"), "summary: [").unwrap();
    let markdown = std::fs::read_to_string(write_report(dir.path())).unwrap();
    let width = markdown.split("## Stage `width`").nth(1).unwrap();
    assert!(width.contains("**Left out:**") && width.contains("width/hidden=4/result.yaml"));
    assert!(width.contains("| **hidden=8** | 8 |") || width.contains("| hidden=8 | 8 |"));
    assert!(markdown.contains("## Stage `cnn_grid`\n\nVaries kernels x kernel_size."));
}

#[test]
fn a_report_before_any_run_says_to_run_the_manifest_first() {
    let dir = common::toy_project("  - name: s\n    model: {kind: mlp, hidden: 4}\n");
    let output = common::cellnets(dir.path(), &["report"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("run the manifest first"), "{stderr}");
}

#[test]
fn an_unknown_study_model_is_refused_with_the_known_ones() {
    let error = manifest::parse(
        "dataset: {name: toy}\nstages:\n  - name: s\n    model: {kind: mlp, hidden: 4}\n    report: {study: mlp2}\n",
    )
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("`report.study: mlp2`") && message.contains("cnn_shallow"),
        "{message}"
    );
}

#[test]
fn eval_scores_a_saved_run_on_any_compatible_file_and_refuses_others() {
    let dir = common::toy_project(
        "  - name: s\n    model: {kind: mlp, hidden: 8}\n    training: {epochs: 2}\n",
    );
    let root = dir.path();
    assert!(common::cellnets(root, &["experiments.yaml"])
        .status
        .success());

    let output = common::cellnets(root, &["eval", "out/s/run"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("balanced accuracy") && stdout.contains("class 3"),
        "{stdout}"
    );
    let written = root.join("out/s/run/eval/toy-test");
    for file in [
        "metrics.csv",
        "confusion.csv",
        "per_class.csv",
        "confusion.png",
        "confusion.svg",
    ] {
        assert!(written.join(file).is_file(), "{file}");
    }
    // The summary's test accuracy is what eval measures on the same file.
    let (header, rows) = read_table(&written.join("metrics.csv")).unwrap();
    let accuracy = &rows[0][header.iter().position(|h| h == "accuracy").unwrap()];
    let (summary_header, summary) = read_table(&root.join("out/s/summary.csv")).unwrap();
    let column = summary_header
        .iter()
        .position(|h| h == "test_accuracy")
        .unwrap();
    assert_eq!(
        accuracy.parse::<f64>().unwrap(),
        summary[0][column].parse::<f64>().unwrap()
    );

    // Another file of the same shape, by checkpoint path, on its holdout val split
    // (30 of its 100 train rows; its test split has 20).
    let mut arrays = Vec::new();
    {
        let _generator = common::torch_generator();
        tch::manual_seed(7);
        for (split, rows) in [("train", 100), ("val", 10), ("test", 20)] {
            let (images, labels) = common::learnable_split(rows);
            arrays.push((common::leak(format!("{split}_images")), images));
            arrays.push((common::leak(format!("{split}_labels")), labels));
        }
    }
    common::write_npz(root, "other.npz", &arrays);
    let output = common::cellnets(
        root,
        &[
            "eval",
            "out/s/run/best.safetensors",
            "--data",
            "other.npz",
            "--split",
            "val",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (header, rows) = read_table(&root.join("out/s/run/eval/other-val/metrics.csv")).unwrap();
    assert_eq!(
        rows[0][header.iter().position(|h| h == "images").unwrap()],
        "30"
    );
    // Each image's prediction, on the test split and on that val split: argmax and
    // accuracy as eval reports them. The val images are the train array's rows after
    // the 70 that train, and the CSV names them so.
    let (header, rows) = common::eval_predictions(root, "out/s/run", "data/toy.npz", "test");
    assert_eq!(
        header[3..],
        ["p_class 0", "p_class 1", "p_class 2", "p_class 3"]
    );
    let indices: Vec<String> = (0..rows.len()).map(|i| i.to_string()).collect();
    assert_eq!(
        rows.iter().map(|row| row[0].clone()).collect::<Vec<_>>(),
        indices
    );
    let (_, rows) = common::eval_predictions(root, "out/s/run", "other.npz", "val");
    assert_eq!((rows[0][0].as_str(), rows[29][0].as_str()), ("70", "99"));

    // Images of another size do not fit the checkpoint: said, with the run's own file.
    let small: Vec<(&str, Tensor)> = ["train", "val", "test"]
        .iter()
        .flat_map(|split| {
            let images = Tensor::zeros([8, 4, 4, 3], (Kind::Uint8, Device::Cpu));
            let labels = Tensor::arange(8, (Kind::Int64, Device::Cpu))
                .remainder(4)
                .view([8, 1])
                .to_kind(Kind::Uint8);
            [
                (common::leak(format!("{split}_images")), images),
                (common::leak(format!("{split}_labels")), labels),
            ]
        })
        .collect();
    common::write_npz(root, "small.npz", &small);
    let output = common::cellnets(root, &["eval", "out/s/run", "--data", "small.npz"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("trained on 3x8x8 images of 4 classes")
            && stderr.contains("these are 3x4x4 images")
            && stderr.contains("toy.npz"),
        "{stderr}"
    );

    let output = common::cellnets(root, &["eval", "out"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("is not a finished run"),
        "{stderr}"
    );
}

#[test]
fn the_report_gives_intervals_seeds_and_paired_tests() {
    let dir = tempfile::tempdir().unwrap();
    let path = run_study(
        dir.path(),
        "  - name: mlp
    model: {kind: mlp, hidden: 4}
    grid: {hidden: [4, 8]}
    repeats: 2
    report: {study: mlp}
  - name: cnn
    model: {kind: cnn, kernels: 2, kernel_size: 3}
",
    );
    let markdown = std::fs::read_to_string(path).unwrap();
    for needle in [
        // The final models' table and the winner's test section carry intervals, and
        // set the study's number against ours.
        "In brackets, 95% intervals over the test images",
        "consistent: ",
        "our 95% interval)",
        "its numbers are taken as exact",
        "a class without test images (for independent labels, a label no test image has) is \
         left out of each",
        "Each configuration trained with 2 seeds.",
        "| hidden=4 | 2 |",
        "| hidden=8 | 2 |",
        "The best mean val accuracy, hidden=",
        "over its 2 seeds",
        "Paired comparison on the same test images",
        "One pair, so Holm's correction leaves its p as it is",
        "| `mlp` vs `cnn` |",
    ] {
        assert!(markdown.contains(needle), "{needle}\n{markdown}");
    }
    // Two seeds a side: the lead is tested (unless every seed of both agrees exactly),
    // not judged by a rule of thumb.
    assert!(
        markdown.contains("Welch's t-test of their seeds' values")
            || markdown.contains("the seeds of both agree exactly"),
        "{markdown}"
    );
    for claim in ["explains", "seed's luck", "differs by more"] {
        assert!(!markdown.contains(claim), "{claim}\n{markdown}");
    }
    let (header, rows) = read_table(&dir.path().join("out/cnn/summary.csv")).unwrap();
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    let number = |name: &str| rows[0][column(name)].parse::<f64>().unwrap();
    for metric in ["accuracy", "balanced_accuracy", "macro_f1", "auc"] {
        let (low, high) = (
            number(&format!("test_{metric}_ci95_low")),
            number(&format!("test_{metric}_ci95_high")),
        );
        let value = number(&format!("test_{metric}"));
        assert!(
            low <= value && value <= high,
            "{metric}: {low} {value} {high}"
        );
    }
    // The columns of old tables keep their places; the new ones follow them.
    assert!(column("reused_from") < column("test_accuracy_ci95_low"));
}

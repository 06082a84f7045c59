//! Bad manifests and bad data stop the binary with a clear message, and nothing is
//! written under out/.

use crate::common;

use std::path::Path;
use tch::{Device, Kind, Tensor};

const STAGE: &str = "  - name: mlp\n    model: {kind: mlp, hidden: 4}\n";

/// Runs cellnets in `dir` and returns its stderr, checking it failed and left no out/.
fn fails(dir: &Path, args: &[&str]) -> String {
    let output = common::cellnets(dir, args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "cellnets {args:?} succeeded: {stderr}"
    );
    assert!(
        !dir.join("out").exists(),
        "cellnets {args:?} wrote out/: {stderr}"
    );
    stderr
}

fn with_toy_data(arrays: &[(&str, Tensor)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    common::write_npz(&dir.path().join("data"), "toy.npz", arrays);
    common::write_manifest(dir.path(), STAGE);
    dir
}

fn assert_mentions(stderr: &str, parts: &[&str]) {
    for part in parts {
        assert!(stderr.contains(part), "{part:?} not in: {stderr}");
    }
}

#[test]
fn an_unknown_key_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    common::write_manifest(dir.path(), &STAGE.replace("hidden", "hiden"));
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(
        &stderr,
        &["experiments.yaml", "unknown field `hiden`", "line 4 column"],
    );
}

#[test]
fn a_wrong_type_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    common::write_manifest(
        dir.path(),
        &format!("{STAGE}    training: {{batch_size: big}}\n"),
    );
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(
        &stderr,
        &["experiments.yaml", "invalid type", "line 6 column"],
    );
}

#[test]
fn a_missing_manifest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = fails(dir.path(), &["nothing.yaml"]);
    assert_mentions(&stderr, &["nothing.yaml"]);
}

#[test]
fn only_with_an_unknown_stage_lists_the_known_ones() {
    let dir = with_toy_data(&common::learnable_arrays());
    let stderr = fails(dir.path(), &["only", "dropout"]);
    assert_mentions(
        &stderr,
        &["no stage named `dropout`", "its stages are: mlp"],
    );
}

#[test]
fn a_missing_data_file_says_where_to_put_it() {
    let dir = tempfile::tempdir().unwrap();
    common::write_manifest(dir.path(), STAGE);
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(
        &stderr,
        &[
            "toy.npz is missing",
            "could not be downloaded",
            "--data-dir",
        ],
    );
}

#[test]
fn a_folder_in_place_of_the_data_file_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/toy.npz")).unwrap();
    common::write_manifest(dir.path(), STAGE);
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(&stderr, &["toy.npz is a folder", "put the npz file there"]);
    assert!(!stderr.contains("missing"), "{stderr}");
}

#[test]
fn stages_named_like_the_report_are_refused() {
    let dir = with_toy_data(&common::learnable_arrays());
    for name in ["report", "report.md", "report.html"] {
        common::write_manifest(
            dir.path(),
            &STAGE.replace("name: mlp", &format!("name: {name}")),
        );
        let stderr = fails(dir.path(), &["experiments.yaml"]);
        assert_mentions(
            &stderr,
            &[&format!("cannot be named `{name}`"), "Rename the stage"],
        );
    }
}

#[test]
fn an_unknown_key_on_the_first_line_or_in_a_grid_has_its_position_and_a_suggestion() {
    let dir = with_toy_data(&common::learnable_arrays());
    std::fs::write(
        dir.path().join("experiments.yaml"),
        format!("datset: {{name: toy}}\nstages:\n{STAGE}"),
    )
    .unwrap();
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(
        &stderr,
        &[
            "unknown field `datset`",
            "line 1 column 1",
            "did you mean `dataset`?",
        ],
    );
    common::write_manifest(dir.path(), &format!("{STAGE}    grid: {{hiden: [4, 8]}}\n"));
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(
        &stderr,
        &[
            "unknown field `hiden`",
            "line 6 column 12",
            "did you mean `hidden`?",
        ],
    );
}

const CNN_SOURCE: &str = "  - name: cnn\n    model: {kind: cnn, kernels: 2, kernel_size: 3}\n";

#[test]
fn a_transfer_that_cannot_work_is_refused_before_the_source_trains() {
    let dir = with_toy_data(&common::learnable_arrays());
    for (target, expected) in [
        (
            "  - name: into_mlp\n    model: {kind: mlp, hidden: 4}\n    \
             transfer: {from: cnn, layers: [conv]}\n",
            &[
                "stage `into_mlp`",
                "(mlp) has no `conv.bias`",
                "hidden, output",
            ][..],
        ),
        (
            "  - name: wrong_layer\n    from: cnn\n    transfer: {from: cnn, layers: [features]}\n",
            &["`features`", "does not have", "conv, head"],
        ),
        (
            "  - name: bigger_kernel\n    model: {kind: cnn, kernels: 2, kernel_size: 5}\n    \
             transfer: {from: cnn, layers: [conv]}\n",
            &[
                "stage `bigger_kernel`",
                "`conv.weight` is [2, 3, 3, 3]",
                "but [2, 3, 5, 5]",
            ],
        ),
    ] {
        common::write_manifest(dir.path(), &format!("{CNN_SOURCE}{target}"));
        assert_mentions(&fails(dir.path(), &["experiments.yaml"]), expected);
    }
}

#[test]
fn a_transfer_from_a_stage_that_ran_is_checked_against_its_checkpoint() {
    let bigger_kernel =
        "  - name: bigger_kernel\n    model: {kind: cnn, kernels: 2, kernel_size: 5}\n    \
                 transfer: {from: cnn, layers: [conv]}\n";
    let dir = with_toy_data(&common::learnable_arrays());
    common::write_manifest(dir.path(), &format!("{CNN_SOURCE}{bigger_kernel}"));
    let output = common::cellnets(dir.path(), &["only", "cnn"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = common::cellnets(dir.path(), &["only", "bigger_kernel"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_mentions(
        &stderr,
        &["best.safetensors", "[2, 3, 3, 3]", "[2, 3, 5, 5]"],
    );
    assert!(!dir.path().join("out/bigger_kernel").exists(), "{stderr}");
}

#[test]
fn a_missing_array_is_named() {
    let arrays: Vec<_> = common::learnable_arrays()
        .into_iter()
        .filter(|(name, _)| *name != "test_labels")
        .collect();
    let dir = with_toy_data(&arrays);
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(&stderr, &["toy.npz", "no `test_labels` array"]);
}

#[test]
fn a_wrong_image_shape_is_named() {
    let mut arrays = common::learnable_arrays();
    arrays[0].1 = Tensor::zeros([200, 8, 8, 5], (Kind::Uint8, Device::Cpu));
    let dir = with_toy_data(&arrays);
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(&stderr, &["`train_images` has shape [200, 8, 8, 5]"]);
}

#[test]
fn a_wrong_dtype_is_named() {
    let mut arrays = common::learnable_arrays();
    arrays[4].1 = arrays[4].1.to_kind(Kind::Float);
    let dir = with_toy_data(&arrays);
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(&stderr, &["`test_images` holds Float, expected uint8"]);
}

#[test]
fn a_label_out_of_range_is_named() {
    let arrays = common::learnable_arrays();
    let _ = arrays[5].1.get(0).fill_(9);
    let dir = with_toy_data(&arrays);
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(&stderr, &["labels run up to 9", "out of range"]);
}

#[test]
fn a_corrupt_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/toy.npz"),
        b"PK\x03\x04 not really a zip",
    )
    .unwrap();
    common::write_manifest(dir.path(), STAGE);
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(
        &stderr,
        &["toy.npz is damaged", "not a zip archive", "Delete it"],
    );
}

#[test]
fn an_output_folder_that_cannot_be_created_is_named() {
    let dir = with_toy_data(&common::learnable_arrays());
    std::fs::write(dir.path().join("blocker"), b"a file, not a folder").unwrap();
    let output = common::cellnets(dir.path(), &["--out", "blocker/out"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_mentions(
        &stderr,
        &["cannot create the output folder blocker/out", "--out"],
    );
}

#[test]
fn list_prints_parameter_counts_without_training() {
    let dir = with_toy_data(&common::learnable_arrays());
    let output = common::cellnets(dir.path(), &["list"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 8*8*3*4 + 4 + 4*4 + 4 = 792
    assert!(
        stdout.contains("mlp: 1 run(s) on toy.npz (3x8x8, 4 classes)"),
        "{stdout}"
    );
    assert!(stdout.contains("792"), "{stdout}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn malformed_or_hostile_manifests_are_refused_before_anything_is_written() {
    let dir = with_toy_data(&common::learnable_arrays());
    for (stages, expected) in [
        (
            "  - name: mlp\n    model: {kind: mlp, hidden: 4\n",
            "invalid manifest",
        ),
        (&format!("{STAGE}{STAGE}"), "stage names must be unique"),
        (
            "  - name: ../up\n    model: {kind: mlp, hidden: 4}\n",
            "cannot be used as a folder name",
        ),
        (
            "  - name: /abs\n    model: {kind: mlp, hidden: 4}\n",
            "cannot be used as a folder name",
        ),
        (
            "  - name: ''\n    model: {kind: mlp, hidden: 4}\n",
            "cannot be used as a folder name",
        ),
        (
            &format!("{STAGE}    grid: {{hidden: []}}\n"),
            "non-empty list",
        ),
        (
            &STAGE.replace("hidden: 4", "hidden: 1000000000000"),
            "between 1 and",
        ),
        (
            &STAGE.replace("hidden: 4", "hidden: 99999999999999999999999"),
            "invalid",
        ),
        (
            &format!("{STAGE}    training: {{epochs: -3}}\n"),
            "expected usize",
        ),
        (
            &format!("{STAGE}    training: {{learning_rate: .nan}}\n"),
            "learning_rate",
        ),
        ("  - name: b\n    from: a\n", "not an earlier stage"),
        (
            &format!("{STAGE}    grid: {{hidden: [4, 8, 4]}}\n"),
            "grid `hidden` lists the value `4` more than once",
        ),
    ] {
        common::write_manifest(dir.path(), stages);
        let stderr = fails(dir.path(), &["experiments.yaml"]);
        assert_mentions(&stderr, &[expected]);
    }
    std::fs::write(
        dir.path().join("experiments.yaml"),
        "a: &a [*a, *a]\nb: [1, 2",
    )
    .unwrap();
    fails(dir.path(), &["experiments.yaml"]);
    std::fs::write(
        dir.path().join("experiments.yaml"),
        "dataset: {name: toy}\nstages: []\n",
    )
    .unwrap();
    assert_mentions(
        &fails(dir.path(), &["experiments.yaml"]),
        &["`stages` is empty"],
    );
}

#[test]
fn an_unwritable_output_folder_is_named() {
    let dir = with_toy_data(&common::learnable_arrays());
    let output = common::cellnets(dir.path(), &["--out", "/proc/cellnets-out"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_mentions(&stderr, &["/proc/cellnets-out", "--out"]);
}

#[test]
fn a_run_another_process_holds_is_skipped_and_trained_once_it_is_free() {
    let dir = with_toy_data(&common::learnable_arrays());
    std::fs::create_dir_all(dir.path().join("out/mlp")).unwrap();
    // A claim of a live process of this host: this test's own.
    let claim = dir.path().join("out/mlp/run.claim");
    let holder = format!(
        "host: {}\npid: {}\nstarted: 0\ntoken: test\n",
        cellnets::cluster::process::this_host(),
        std::process::id()
    );
    std::fs::write(&claim, holder).unwrap();
    let output = common::cellnets(dir.path(), &["experiments.yaml"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_mentions(&stderr, &["mlp/run", "trains it; skipped"]);
    assert!(
        !dir.path().join("out/mlp/run").exists(),
        "nothing was trained"
    );
    assert!(claim.exists(), "another's claim is left alone");
    std::fs::remove_file(&claim).unwrap();
    let output = common::cellnets(dir.path(), &["experiments.yaml"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("out/mlp/run/result.yaml").is_file());
    assert!(!claim.exists(), "the claim is released");
}

#[test]
fn a_truncated_npz_is_named() {
    let dir = with_toy_data(&common::learnable_arrays());
    let path = dir.path().join("data/toy.npz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let stderr = fails(dir.path(), &["experiments.yaml"]);
    assert_mentions(&stderr, &["toy.npz is damaged"]);
}

#[test]
fn bad_halving_and_sampling_are_refused_before_anything_trains() {
    let grid = "  - name: s\n    model: {kind: mlp, hidden: 4}\n    grid: {hidden: [4, 8]}\n";
    for (extra, expected) in [
        ("    halving: {min_epochs: 0}\n", "`halving.min_epochs: 0`"),
        (
            "    halving: {min_epochs: 2}\n",
            "must be below the stage's epochs (2)",
        ),
        ("    halving: {reduction: 1}\n", "`halving.reduction: 1`"),
        (
            "    sample: {count: 0, space: {dropout: {uniform: [0, 0.5]}}}\n",
            "`sample.count: 0`",
        ),
        (
            "    sample: {count: 2, space: {dropout: {uniform: [0.5, 0]}}}\n",
            "ends reversed",
        ),
        (
            "    sample: {count: 2, space: {learning_rate: {loguniform: [0, 0.1]}}}\n",
            "bounds above 0",
        ),
        (
            "    sample: {count: 2, space: {hidden: {int: [4, 8]}}}\n",
            "`hidden` is both in the grid and in `sample.space`",
        ),
        (
            "    sample: {count: 2, space: {colour: {choice: [1, 2]}}}\n",
            "no setting a grid may vary",
        ),
        (
            "    halving: {}\n    repeats: 2\n",
            "both `halving` and `repeats`",
        ),
    ] {
        let dir = with_toy_data(&common::learnable_arrays());
        common::write_manifest(dir.path(), &format!("{grid}{extra}"));
        let stderr = fails(dir.path(), &["--device", "cpu"]);
        assert_mentions(&stderr, &["stage `s`", expected]);
    }
    let dir = with_toy_data(&common::learnable_arrays());
    common::write_manifest(
        dir.path(),
        &format!("{grid}    halving: {{mode: sometimes}}\n"),
    );
    let stderr = fails(dir.path(), &["--device", "cpu"]);
    assert_mentions(
        &stderr,
        &["halving.mode: unknown variant `sometimes`", "line 7"],
    );
    let one_run = "  - name: s\n    model: {kind: mlp, hidden: 4}\n    halving: {}\n";
    let dir = with_toy_data(&common::learnable_arrays());
    common::write_manifest(dir.path(), one_run);
    let stderr = fails(dir.path(), &["--device", "cpu"]);
    assert_mentions(
        &stderr,
        &["stage `s`", "`halving` needs several runs", "has 1"],
    );
}

#[test]
fn an_impossible_model_or_training_value_names_the_file_line_and_column() {
    for (stages, parts) in [
        (
            "  - name: cnn\n    model: {kind: cnn, kernels: 2, kernel_size: 4}\n",
            ["kernel_size must be a positive odd number", "line 5 column 36"],
        ),
        // A grid's value is pointed at in the grid, not in the model it varies.
        (
            "  - name: cnn\n    model: {kind: cnn, kernels: 2, kernel_size: 3}\n    grid: {kernel_size: [3, 4]}\n",
            ["run `kernel_size=4`", "line 6 column 12"],
        ),
        (
            "  - name: mlp\n    model: {kind: mlp, hidden: 4}\n    training:\n      learning_rate: -1\n",
            ["learning_rate must be a positive number", "line 7 column 7"],
        ),
    ] {
        let dir = with_toy_data(&common::learnable_arrays());
        common::write_manifest(dir.path(), stages);
        let stderr = fails(dir.path(), &["experiments.yaml"]);
        assert_mentions(&stderr, &["experiments.yaml"]);
        assert_mentions(&stderr, &parts);
    }
}

#[test]
fn eval_on_a_missing_file_or_one_of_another_image_size_says_which() {
    let dir = with_toy_data(&common::learnable_arrays());
    let output = common::cellnets(dir.path(), &["experiments.yaml", "--device", "cpu"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let eval = |file: &str| {
        let output = common::cellnets(dir.path(), &["eval", "out/mlp/run", "--data", file]);
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing = eval("data/nothing.npz");
    assert_mentions(&missing, &["data/nothing.npz does not exist"]);
    assert!(!missing.contains("damaged"), "{missing}");
    let larger: Vec<(&str, Tensor)> = common::learnable_arrays()
        .into_iter()
        .map(|(name, array)| match name.ends_with("images") {
            true => (name, array.repeat([1, 2, 2, 1])),
            false => (name, array),
        })
        .collect();
    common::write_npz(&dir.path().join("data"), "toy16.npz", &larger);
    let misfit = eval("data/toy16.npz");
    assert_mentions(
        &misfit,
        &["3x8x8 images of 4 classes", "3x16x16 images of 4 classes"],
    );
    assert!(!misfit.contains("torch"), "{misfit}");
}

//! Synthetic MedMNIST-shaped data and small manifests for the integration tests.
#![allow(dead_code)]

pub mod outputs;
pub mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

pub const CLASSES: i64 = 4;

/// The lock on libtorch's random generator, to hold around `tch::manual_seed` and the
/// draws that follow it, and around any other draw (a model built in a test).
///
/// The generator is one for the whole process (tch has no other), and every integration
/// test runs in one process (tests/tests.rs), on several threads at once: without the
/// lock, one test's draws fall between another's seeding and its draws, and seeded data
/// stop being the same from run to run. It is the library's own lock
/// (`cellnets::random::lock`), so that no test's draw falls inside a run trained in this
/// process either (or in tests/random_draws.rs's streams). Not reentrant.
pub fn torch_generator() -> std::sync::MutexGuard<'static, ()> {
    cellnets::random::lock()
}

/// One split of a learnable problem: class c brightens the c-th quadrant of an 8x8
/// RGB image over uniform noise. Labels cycle 0..CLASSES. Draws: callers hold
/// `torch_generator()` and seed.
pub fn learnable_split(rows: i64) -> (Tensor, Tensor) {
    let labels = Tensor::arange(rows, (Kind::Int64, Device::Cpu)).remainder(CLASSES);
    let noise = Tensor::rand([rows, 8, 8, 3], (Kind::Float, Device::Cpu)) * 100.0;
    let quadrant = Tensor::zeros([CLASSES, 8, 8, 3], (Kind::Float, Device::Cpu));
    for class in 0..CLASSES {
        let (top, left) = ((class / 2) * 4, (class % 2) * 4);
        let _ = quadrant
            .get(class)
            .narrow(0, top, 4)
            .narrow(1, left, 4)
            .fill_(150.0);
    }
    let images = (noise + quadrant.index_select(0, &labels)).to_kind(Kind::Uint8);
    (images, labels.view([rows, 1]).to_kind(Kind::Uint8))
}

/// Writes `<dir>/<name>` with the given arrays.
pub fn write_npz(dir: &Path, name: &str, arrays: &[(&str, Tensor)]) -> PathBuf {
    let path = dir.join(name);
    Tensor::write_npz(arrays, &path).unwrap();
    path
}

/// A learnable data set in the official layout: 200 train, 40 val, 80 test rows.
pub fn learnable_arrays() -> Vec<(&'static str, Tensor)> {
    let _generator = torch_generator();
    tch::manual_seed(42);
    let mut arrays = Vec::new();
    for (split, rows) in [("train", 200), ("val", 40), ("test", 80)] {
        let (images, labels) = learnable_split(rows);
        arrays.push((leak(format!("{split}_images")), images));
        arrays.push((leak(format!("{split}_labels")), labels));
    }
    arrays
}

/// An array name that lives as long as the test, as `write_npz` wants.
pub fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A manifest for `toy.npz` with the given stages, written to `<dir>/experiments.yaml`.
pub fn write_manifest(dir: &Path, stages: &str) -> PathBuf {
    let path = dir.join("experiments.yaml");
    let text =
        format!("dataset: {{name: toy}}\ndefaults: {{epochs: 2, seed: 1}}\nstages:\n{stages}");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the cellnets binary in `dir` with a download URL that cannot connect.
pub fn cellnets(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellnets"))
        .args(args)
        .current_dir(dir)
        .env("CELLNETS_DOWNLOAD_URL", "http://127.0.0.1:9")
        .env_remove("CELLNETS_DATA_DIR")
        .output()
        .unwrap()
}

/// `dir/toy.npz` loaded as the data set `toy`, on the CPU.
pub fn load_toy(dir: &Path) -> anyhow::Result<cellnets::data::Dataset> {
    let spec = serde_yaml::from_str("name: toy").expect("a valid data set");
    cellnets::data::load(&dir.join("toy.npz"), &spec, dir, Device::Cpu)
}

/// A project folder as a user has it: `data/toy.npz` (learnable, 4 classes) and an
/// `experiments.yaml` with the given stages.
pub fn toy_project(stages: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_npz(&dir.path().join("data"), "toy.npz", &learnable_arrays());
    write_manifest(dir.path(), stages);
    dir
}

/// Runs `stages` on the toy data through the library, in `dir` (data and manifest
/// beside `out/`), on the CPU with one job.
pub fn run_library(
    dir: &Path,
    stages: &str,
    fresh: bool,
) -> Vec<cellnets::outputs::summary::RunSummary> {
    if !dir.join("toy.npz").exists() {
        write_npz(dir, "toy.npz", &learnable_arrays());
    }
    let manifest = cellnets::study::manifest::load(&write_manifest(dir, stages)).unwrap();
    let settings = cellnets::runner::TrainSettings {
        out_dir: dir.join("out"),
        data_dir: dir.to_path_buf(),
        device: Device::Cpu,
        fresh,
        jobs: 1,
        threads: None,
        retry_failed: false,
        precision: Default::default(),
        tensorboard: false,
    };
    cellnets::runner::run(&manifest, &[], &settings).unwrap()
}

/// BloodMNIST-shaped files (3 channels, 8 classes) of a few images, at 28 and 64.
pub fn tiny_bloodmnist(data: &Path) {
    let _generator = torch_generator();
    tch::manual_seed(3);
    for (file, side) in [("bloodmnist.npz", 28), ("bloodmnist_64.npz", 64)] {
        let mut arrays = Vec::new();
        for split in ["train", "val", "test"] {
            let images = Tensor::randint(256, [16, side, side, 3], (Kind::Uint8, Device::Cpu));
            let labels = Tensor::arange(16, (Kind::Int64, Device::Cpu))
                .remainder(8)
                .to_kind(Kind::Uint8)
                .view([16, 1]);
            arrays.push((format!("{split}_images"), images));
            arrays.push((format!("{split}_labels"), labels));
        }
        Tensor::write_npz(&arrays, data.join(file)).unwrap();
    }
}

/// Runs `cellnets eval RUN --data DATA [--split SPLIT] --predictions FILE` in `dir` and
/// checks the predictions it writes against what eval itself reports: each row's
/// predicted class is its most probable one, the probabilities of a row sum to 1, the
/// rows number the images eval scored, and their accuracy is eval's accuracy (its
/// `metrics.csv`). Returns the CSV's header and rows.
pub fn eval_predictions(
    dir: &Path,
    run: &str,
    data: &str,
    split: &str,
) -> (Vec<String>, Vec<Vec<String>>) {
    let csv = dir.join(format!("{}-{split}.csv", run.replace('/', "_")));
    let output = cellnets(
        dir,
        &[
            "eval",
            run,
            "--data",
            data,
            "--split",
            split,
            "--predictions",
            csv.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let (header, rows) = cellnets::storage::files::read_table(&csv).unwrap();
    assert_eq!(header[..3], ["index", "true", "predicted"]);
    assert_eq!(header.len(), 3 + CLASSES as usize, "{header:?}");
    let stem = Path::new(data).file_stem().unwrap().to_str().unwrap();
    let metrics = dir
        .join(run)
        .join(format!("eval/{stem}-{split}/metrics.csv"));
    let (metrics_header, metrics_rows) = cellnets::storage::files::read_table(&metrics).unwrap();
    let reported = |name: &str| -> f64 {
        let column = metrics_header.iter().position(|c| c == name).unwrap();
        metrics_rows[0][column].parse().unwrap()
    };
    assert_eq!(rows.len() as f64, reported("images"));
    let mut right = 0;
    for row in &rows {
        let probabilities: Vec<f64> = row[3..].iter().map(|p| p.parse().unwrap()).collect();
        let most_probable = (0..probabilities.len())
            .reduce(|best, class| {
                if probabilities[class] > probabilities[best] {
                    class
                } else {
                    best
                }
            })
            .unwrap();
        assert_eq!(row[2], most_probable.to_string(), "{row:?}");
        assert!(
            (probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{row:?}"
        );
        right += usize::from(row[1] == row[2]);
    }
    assert_eq!(right as f64 / rows.len() as f64, reported("accuracy"));
    (header, rows)
}

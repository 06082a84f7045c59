//! Checks of a study's outputs that tests of interrupted and shared studies make:
//! every table whole, no epoch or summary row twice, metrics comparable across runs.

use cellnets::storage::files::read_table;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tch::Tensor;

/// A toy study's folder: `data/toy.npz` (1500 learnable train rows, as tests/kill.rs
/// has) and an `experiments.yaml` with `stages`.
pub fn study_dir(stages: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let mut arrays = Vec::new();
    {
        let _generator = super::torch_generator();
        tch::manual_seed(7);
        for (split, rows) in [("train", 1500), ("val", 10), ("test", 200)] {
            let (images, labels) = super::learnable_split(rows);
            arrays.push((format!("{split}_images"), images));
            arrays.push((format!("{split}_labels"), labels));
        }
    }
    Tensor::write_npz(&arrays, dir.path().join("data/toy.npz")).unwrap();
    super::write_manifest(dir.path(), stages);
    dir
}

/// The cellnets binary training on the CPU in `dir`, with no network.
pub fn cellnets(dir: &Path) -> Command {
    let mut command = cellnets_command(dir);
    command.args(["--device", "cpu"]);
    command
}

/// The cellnets binary in `dir`, with no network, for a subcommand.
pub fn cellnets_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cellnets"));
    command
        .current_dir(dir)
        .env("CELLNETS_DOWNLOAD_URL", "http://127.0.0.1:9")
        .env_remove("CELLNETS_DATA_DIR");
    command
}

/// A training process in `dir` at one libtorch thread (as a SLURM task or one of several
/// workers has), its stderr kept for `finish`.
pub fn spawn_worker(dir: &Path, args: &[&str]) -> std::process::Child {
    cellnets(dir)
        .args(["--threads", "1"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child`, asserts it succeeded (showing its stderr if not), and returns its
/// stderr.
pub fn finish(child: std::process::Child) -> String {
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// Every run folder under `out`: out/<stage>/<run>/.
pub fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for stage in std::fs::read_dir(out).into_iter().flatten().flatten() {
        if stage.file_name() == "slurm" || stage.file_name() == "report" {
            continue;
        }
        for run in std::fs::read_dir(stage.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            // Names starting with `.` are a stage's own (a TPE stage's `.proposals`).
            if run.path().is_dir() && !run.file_name().to_string_lossy().starts_with('.') {
                dirs.push(run.path());
            }
        }
    }
    dirs.sort();
    dirs
}

/// Checks that every epoch table holds epochs 1..n once each, that a finished run's
/// table and result agree, and that each stage's summary has one row per finished run
/// and none twice; returns the number of finished runs.
pub fn check_consistent(out: &Path) -> usize {
    let mut finished = 0;
    for dir in run_dirs(out) {
        let (_, rows) = read_table(&dir.join("epochs.csv")).unwrap();
        let numbers: Vec<usize> = rows.iter().map(|row| row[2].parse().unwrap()).collect();
        assert_eq!(
            numbers,
            (1..=numbers.len()).collect::<Vec<_>>(),
            "{}",
            dir.display()
        );
        if dir.join("result.yaml").exists() {
            let text = std::fs::read_to_string(dir.join("result.yaml")).unwrap();
            let result: cellnets::outputs::run_folder::FinishedRun =
                serde_yaml::from_str(&text).unwrap();
            assert_eq!(numbers.len(), result.summary.epochs, "{}", dir.display());
            finished += 1;
        }
    }
    for stage in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let summary = stage.path().join("summary.csv");
        if !summary.exists() {
            continue;
        }
        let (_, rows) = read_table(&summary).unwrap();
        let mut runs: Vec<&str> = rows.iter().map(|row| row[1].as_str()).collect();
        runs.sort();
        let count = runs.len();
        runs.dedup();
        assert_eq!(runs.len(), count, "a run twice in {}", summary.display());
        for run in runs {
            assert!(stage.path().join(run).join("result.yaml").exists(), "{run}");
        }
    }
    finished
}

/// The columns of `epochs.csv` that time an epoch, which differ from run to run.
pub const TIME_COLUMNS: [&str; 4] = [
    "seconds",
    "cpu_seconds",
    "cumulative_seconds",
    "cumulative_cpu_seconds",
];

/// Every run's epoch table without the times, by `stage/run`.
pub fn metrics(out: &Path) -> Vec<(String, Vec<Vec<String>>)> {
    run_dirs(out)
        .into_iter()
        .map(|dir| {
            let (header, rows) = read_table(&dir.join("epochs.csv")).unwrap();
            let kept =
                |(column, _): &(usize, String)| !TIME_COLUMNS.contains(&header[*column].as_str());
            let rows = rows
                .into_iter()
                .map(|row| {
                    let cells = row.into_iter().enumerate().filter(kept);
                    cells.map(|(_, cell)| cell).collect()
                })
                .collect();
            (dir.strip_prefix(out).unwrap().display().to_string(), rows)
        })
        .collect()
}

/// Every run's best checkpoint as named tensors sorted by name, by `stage/run`.
pub fn checkpoints(out: &Path) -> Vec<(String, Vec<(String, Tensor)>)> {
    run_dirs(out)
        .into_iter()
        .map(|dir| {
            let mut tensors = Tensor::read_safetensors(dir.join("best.safetensors")).unwrap();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            (
                dir.strip_prefix(out).unwrap().display().to_string(),
                tensors,
            )
        })
        .collect()
}

/// Fails naming the first run and tensor whose best weights differ in any bit.
pub fn assert_same_checkpoints(
    got: &[(String, Vec<(String, Tensor)>)],
    want: &[(String, Vec<(String, Tensor)>)],
) {
    let names = |all: &[(String, Vec<(String, Tensor)>)]| {
        all.iter().map(|(run, _)| run.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(got), names(want), "the same runs");
    for ((run, tensors), (_, expected)) in got.iter().zip(want) {
        assert_eq!(tensors.len(), expected.len(), "{run}: tensors");
        for ((name, tensor), (_, expected)) in tensors.iter().zip(expected) {
            assert!(tensor.equal(expected), "{run}: {name} differs");
        }
    }
}

/// Fails naming the first run and epoch whose metrics differ (not the whole tables).
pub fn assert_same_metrics(
    got: &[(String, Vec<Vec<String>>)],
    want: &[(String, Vec<Vec<String>>)],
) {
    let runs = |tables: &[(String, Vec<Vec<String>>)]| {
        tables
            .iter()
            .map(|(run, rows)| format!("{run} ({} epochs)", rows.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(runs(got), runs(want), "the same runs with the same epochs");
    for ((run, rows), (_, expected)) in got.iter().zip(want) {
        for (row, expected) in rows.iter().zip(expected) {
            assert_eq!(row, expected, "{run}: epoch {} differs", row[2]);
        }
    }
}

/// The number of rows of each stage's summary.csv, by stage.
pub fn summary_rows(out: &Path, stage: &str) -> usize {
    read_table(&out.join(stage).join("summary.csv"))
        .unwrap()
        .1
        .len()
}

/// The claim files left under `out`.
pub fn claims(out: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for stage in std::fs::read_dir(out).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(stage.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().extension().is_some_and(|ext| ext == "claim") {
                found.push(entry.path());
            }
        }
    }
    found
}

/// The last committed epoch of the run in `dir`, from its resume state.
pub fn committed_epoch(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("state.yaml")).ok()?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    value["last"]["epoch"].as_u64().map(|epoch| epoch as usize)
}

/// Waits (at most a minute) until `dir` has committed at least `epoch` epochs.
pub fn wait_for_epoch(dir: &Path, epoch: usize) {
    let start = Instant::now();
    while committed_epoch(dir).is_none_or(|done| done < epoch) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} committed no epoch {epoch} within a minute",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

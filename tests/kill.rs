//! A real cellnets process killed (SIGKILL) at several points of a small study, then
//! rerun: every file stays complete and consistent, no epoch is logged twice, finished
//! runs are not retrained, and the resumed study ends exactly as an uninterrupted one.

mod common;

use cellnets::files::read_table;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};
use tch::Tensor;

const STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 32}
    training: {epochs: 25}
    grid: {hidden: [32, 96]}
  - name: dropout
    from: width
    grid: {dropout: [0.0, 0.5]}
";

fn study_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    tch::manual_seed(7);
    let mut arrays = Vec::new();
    for (split, rows) in [("train", 1500), ("val", 10), ("test", 200)] {
        let (images, labels) = common::learnable_split(rows);
        arrays.push((format!("{split}_images"), images));
        arrays.push((format!("{split}_labels"), labels));
    }
    Tensor::write_npz(&arrays, dir.path().join("data/toy.npz")).unwrap();
    common::write_manifest(dir.path(), STUDY);
    dir
}

fn cellnets(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cellnets"));
    command
        .args(["--device", "cpu"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for stage in std::fs::read_dir(out).into_iter().flatten().flatten() {
        for run in std::fs::read_dir(stage.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if run.path().is_dir() {
                dirs.push(run.path());
            }
        }
    }
    dirs
}

/// Everything on disk is whole: tables parse, epochs run 1..n once each, a finished
/// run's table, checkpoint and summary row agree. Returns finished runs' checkpoint times.
fn check_consistent(out: &Path) -> HashMap<PathBuf, SystemTime> {
    let mut finished = HashMap::new();
    for dir in run_dirs(out) {
        let csv = dir.join("epochs.csv");
        let epochs = if csv.exists() {
            let (header, rows) = read_table(&csv).unwrap();
            assert_eq!(header[2], "epoch");
            let numbers: Vec<usize> = rows.iter().map(|row| row[2].parse().unwrap()).collect();
            assert_eq!(
                numbers,
                (1..=numbers.len()).collect::<Vec<_>>(),
                "{}",
                csv.display()
            );
            numbers.len()
        } else {
            0
        };
        if dir.join("result.yaml").exists() {
            let result = std::fs::read_to_string(dir.join("result.yaml")).unwrap();
            let result: cellnets::run_folder::FinishedRun = serde_yaml::from_str(&result).unwrap();
            assert_eq!(epochs, result.summary.epochs, "{}", dir.display());
            let checkpoint = dir.join("best.safetensors");
            Tensor::read_safetensors(&checkpoint).unwrap();
            finished.insert(
                checkpoint.clone(),
                std::fs::metadata(&checkpoint).unwrap().modified().unwrap(),
            );
        }
    }
    for stage in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let summary = stage.path().join("summary.csv");
        if summary.exists() {
            let (_, rows) = read_table(&summary).unwrap();
            let mut runs: Vec<&str> = rows.iter().map(|row| row[1].as_str()).collect();
            let count = runs.len();
            runs.dedup();
            assert_eq!(
                runs.len(),
                count,
                "duplicate summary rows in {}",
                summary.display()
            );
            for run in runs {
                assert!(stage.path().join(run).join("result.yaml").exists());
            }
        }
    }
    finished
}

fn metrics(out: &Path) -> Vec<(String, Vec<Vec<String>>)> {
    let mut tables: Vec<_> = run_dirs(out)
        .into_iter()
        .map(|dir| {
            let (_, rows) = read_table(&dir.join("epochs.csv")).unwrap();
            // Everything but the wall time must match.
            let rows = rows
                .into_iter()
                .map(|row| [&row[..7], &row[8..]].concat())
                .collect();
            (dir.strip_prefix(out).unwrap().display().to_string(), rows)
        })
        .collect();
    tables.sort();
    tables
}

#[test]
fn a_study_killed_at_any_point_resumes_without_losing_or_repeating_anything() {
    let killed = study_dir();
    let out = killed.path().join("out");
    let mut resumed = 0;
    let mut finished_before: HashMap<PathBuf, SystemTime> = HashMap::new();
    for delay in [300, 700, 1200, 1800, 2500, 3300, 4200] {
        let mut child = cellnets(killed.path()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        resumed += stderr.matches("resuming after epoch").count();
        let finished = check_consistent(&out);
        for (checkpoint, modified) in &finished_before {
            assert_eq!(
                finished.get(checkpoint),
                Some(modified),
                "{} was retrained",
                checkpoint.display()
            );
        }
        finished_before = finished;
    }
    let last = cellnets(killed.path()).output().unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    resumed += String::from_utf8_lossy(&last.stderr)
        .matches("resuming after epoch")
        .count();
    assert_eq!(check_consistent(&out).len(), 4, "every run finished");
    assert!(resumed > 0, "no kill landed inside a run");

    let straight = study_dir();
    let output = cellnets(straight.path()).output().unwrap();
    assert!(output.status.success());
    let (resumed_tables, straight_tables) = (metrics(&out), metrics(&straight.path().join("out")));
    assert_eq!(resumed_tables.len(), 4);
    assert!(resumed_tables.iter().all(|(_, rows)| rows.len() == 25));
    assert_eq!(resumed_tables, straight_tables);
}

//! A real cellnets process killed (SIGKILL) again and again through a small study, then
//! rerun: every file stays complete and consistent, no epoch is logged twice, finished
//! runs are not retrained, and the resumed study ends exactly as an uninterrupted one,
//! epoch tables and checkpoints alike, whatever the optimizer (plain SGD, momentum,
//! Nesterov, Adam, RMSprop), schedule, early stopping, dropout or augmentation.

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
  - name: momentum
    from: dropout
    training: {momentum: 0.9, learning_rate: 0.005, schedule: cosine, patience: 8, augment: true}
    grid: {nesterov: [false, true]}
  - name: adaptive
    from: dropout
    training: {learning_rate: 0.003}
    grid: {optimizer: [adam, rmsprop]}
";
const RUNS: usize = 8;

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

/// Every best checkpoint, by run folder.
fn checkpoints(out: &Path) -> Vec<(String, Vec<(String, Tensor)>)> {
    let mut all: Vec<_> = run_dirs(out)
        .into_iter()
        .map(|dir| {
            let mut tensors = Tensor::read_safetensors(dir.join("best.safetensors")).unwrap();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            (
                dir.strip_prefix(out).unwrap().display().to_string(),
                tensors,
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// When a kill lands: after some milliseconds (anywhere, writes included), or once a
/// run's epoch table has some rows (inside that run, whatever the machine's speed).
#[derive(Debug, Clone, Copy)]
enum Kill {
    After(u64),
    AtEpoch(&'static str, usize),
}

const KILLS: [Kill; 10] = [
    Kill::After(300),
    Kill::AtEpoch("width/hidden=96", 9),
    Kill::After(700),
    Kill::AtEpoch("dropout/dropout=0.5", 4),
    Kill::AtEpoch("momentum/nesterov=false", 3),
    Kill::AtEpoch("momentum/nesterov=false", 6),
    Kill::AtEpoch("momentum/nesterov=true", 5),
    Kill::AtEpoch("adaptive/optimizer=adam", 5),
    Kill::After(450),
    Kill::AtEpoch("adaptive/optimizer=rmsprop", 13),
];

fn epochs_logged(out: &Path, run: &str) -> usize {
    std::fs::read_to_string(out.join(run).join("epochs.csv"))
        .map_or(0, |text| text.lines().count().saturating_sub(1))
}

/// Runs cellnets until `kill`; returns its stderr, or `None` if it was still running.
fn run_until(dir: &Path, kill: Kill) -> (String, bool) {
    let out = dir.join("out");
    let mut child = cellnets(dir).spawn().unwrap();
    let started = std::time::Instant::now();
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        let due = match kill {
            Kill::After(ms) => started.elapsed() >= Duration::from_millis(ms),
            Kill::AtEpoch(run, epochs) => epochs_logged(&out, run) >= epochs,
        };
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{kill:?} never came"
        );
        if due {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if exited {
        assert!(output.status.success(), "{stderr}");
    }
    (stderr, exited)
}

#[test]
fn a_study_killed_at_any_point_resumes_without_losing_or_repeating_anything() {
    let killed = study_dir();
    let out = killed.path().join("out");
    let mut resumed = Vec::new();
    let mut finished_before: HashMap<PathBuf, SystemTime> = HashMap::new();
    for kill in KILLS {
        let (stderr, exited) = run_until(killed.path(), kill);
        assert!(!exited, "the study finished before {kill:?}");
        resumed.extend(
            stderr
                .lines()
                .filter(|line| line.contains("resuming after epoch"))
                .map(str::to_string),
        );
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
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{stderr}");
    resumed.extend(stderr.lines().map(str::to_string));
    assert_eq!(check_consistent(&out).len(), RUNS, "every run finished");
    for stage in ["width", "dropout", "momentum", "adaptive"] {
        assert!(
            resumed
                .iter()
                .any(|line| line.contains(&format!("{stage}/")) && line.contains("resuming")),
            "no run of stage {stage} resumed: {resumed:?}"
        );
    }

    let straight = study_dir();
    let output = cellnets(straight.path()).output().unwrap();
    assert!(output.status.success());
    let straight_out = straight.path().join("out");
    let (resumed_tables, straight_tables) = (metrics(&out), metrics(&straight_out));
    assert_eq!(resumed_tables.len(), RUNS);
    for ((run, resumed), (_, straight)) in resumed_tables.iter().zip(&straight_tables) {
        assert_eq!(resumed.len(), straight.len(), "{run}: epochs trained");
        for (resumed, straight) in resumed.iter().zip(straight) {
            assert_eq!(resumed, straight, "{run}: epoch {} differs", resumed[2]);
        }
    }
    let (resumed_weights, straight_weights) = (checkpoints(&out), checkpoints(&straight_out));
    for ((run, resumed), (_, straight)) in resumed_weights.iter().zip(&straight_weights) {
        for ((name, resumed), (_, straight)) in resumed.iter().zip(straight) {
            assert!(resumed.equal(straight), "{run}: {name} differs");
        }
    }
}

//! A real cellnets process killed (SIGKILL) again and again through a small study, then
//! rerun: every file stays complete and consistent, no epoch is logged twice, finished
//! runs are not retrained, and the resumed study ends exactly as an uninterrupted one,
//! epoch tables and checkpoints alike, whatever the optimizer (plain SGD, momentum,
//! Nesterov, Adam, RMSprop), schedule, early stopping, dropout, augmentation, or the
//! extras (shifts, rotations, colour jitter, label smoothing, mixup and cutmix, warm-up,
//! a moving average of the weights).

use crate::common;

use cellnets::storage::files::read_table;
use common::outputs::{
    assert_same_checkpoints, assert_same_metrics, cellnets, check_consistent, checkpoints, metrics,
    run_dirs, study_dir,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
  - name: extras
    from: dropout
    training: {augment: true, crop_padding: 1, rotate: 10, color_jitter: 0.2,
               label_smoothing: 0.1, mixup: 0.4, cutmix: 1.0, warmup_epochs: 3,
               ema: 0.9}
";
const RUNS: usize = 9;

/// The best checkpoints' modification times, by path: a finished run must keep its own.
fn finished_checkpoints(out: &Path) -> HashMap<PathBuf, SystemTime> {
    run_dirs(out)
        .into_iter()
        .filter(|dir| dir.join("result.yaml").exists())
        .map(|dir| {
            let checkpoint = dir.join("best.safetensors");
            Tensor::read_safetensors(&checkpoint).unwrap();
            let modified = std::fs::metadata(&checkpoint).unwrap().modified().unwrap();
            (checkpoint, modified)
        })
        .collect()
}

/// When a kill lands: after some milliseconds (anywhere, writes included), or once a
/// run's epoch table has some rows (inside that run, whatever the machine's speed).
#[derive(Debug, Clone, Copy)]
enum Kill {
    After(u64),
    AtEpoch(&'static str, usize),
}

const KILLS: [Kill; 11] = [
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
    Kill::AtEpoch("extras/run", 7),
];

fn epochs_logged(out: &Path, run: &str) -> usize {
    std::fs::read_to_string(out.join(run).join("epochs.csv"))
        .map_or(0, |text| text.lines().count().saturating_sub(1))
}

/// Runs cellnets until `kill`; returns its stderr, or `None` if it was still running.
fn run_until(dir: &Path, kill: Kill) -> (String, bool) {
    let out = dir.join("out");
    let mut child = cellnets(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    let killed = study_dir(STUDY);
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
        check_consistent(&out);
        let finished = finished_checkpoints(&out);
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
    assert_eq!(check_consistent(&out), RUNS, "every run finished");
    for stage in ["width", "dropout", "momentum", "adaptive"] {
        assert!(
            resumed
                .iter()
                .any(|line| line.contains(&format!("{stage}/")) && line.contains("resuming")),
            "no run of stage {stage} resumed: {resumed:?}"
        );
    }

    let straight = study_dir(STUDY);
    let output = cellnets(straight.path()).output().unwrap();
    assert!(output.status.success());
    let straight_out = straight.path().join("out");
    let (resumed_tables, straight_tables) = (metrics(&out), metrics(&straight_out));
    assert_eq!(resumed_tables.len(), RUNS);
    assert_same_metrics(&resumed_tables, &straight_tables);
    assert_same_checkpoints(&checkpoints(&out), &checkpoints(&straight_out));
    check_time_columns(&out);
    check_time_columns(&straight_out);
}

/// Each run's cumulative wall and CPU seconds are its committed epochs' own, summed:
/// present in every row, rising, with no time of an epoch a kill cut short, and the
/// summary's train_seconds is the last row's.
fn check_time_columns(out: &Path) {
    for dir in run_dirs(out) {
        let (header, rows) = read_table(&dir.join("epochs.csv")).unwrap();
        let column = |name: &str| {
            let at = header.iter().position(|c| c == name).unwrap();
            let values = rows.iter().map(|row| row[at].parse::<f64>().unwrap());
            values.collect::<Vec<f64>>()
        };
        for (each, cumulative) in [
            ("seconds", "cumulative_seconds"),
            ("cpu_seconds", "cumulative_cpu_seconds"),
        ] {
            let (each, cumulative) = (column(each), column(cumulative));
            let mut sum = 0.0;
            for (epoch, (each, cumulative)) in each.iter().zip(&cumulative).enumerate() {
                assert!(*each >= 0.0, "{}: {each}", dir.display());
                sum += each;
                // Each value is written to 3 decimals.
                let rounding = 0.001 * (epoch + 2) as f64;
                assert!(
                    (sum - cumulative).abs() <= rounding,
                    "{}, epoch {}: {cumulative} is not the sum {sum}",
                    dir.display(),
                    epoch + 1
                );
            }
            assert!(cumulative.windows(2).all(|pair| pair[1] >= pair[0]));
        }
        let last = *column("cumulative_seconds").last().unwrap();
        let stage_summary = dir.parent().unwrap().join("summary.csv");
        let (header, rows) = read_table(&stage_summary).unwrap();
        let at = |name: &str| header.iter().position(|c| c == name).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy();
        let row = rows.iter().find(|row| row[at("run")] == name).unwrap();
        let recorded: f64 = row[at("train_seconds")].parse().unwrap();
        assert!(
            (recorded - last).abs() <= 0.06,
            "{name}: {recorded} against {last}"
        );
    }
}

//! `--tensorboard`: TensorBoard itself (Python's `tensorboard` package, through
//! tests/tools/read_events.py) reads back each run's scalars and hyperparameters as
//! cellnets wrote them, also after a run was killed and resumed.

use crate::common;

use cellnets::outputs::run_folder::RunFolder;
use cellnets::outputs::tensorboard::event_files;
use cellnets::storage::files::read_table;
use cellnets::train::EpochRecord;
use common::outputs::{cellnets, study_dir, wait_for_epoch};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

const STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 8, activation: relu}
    training: {epochs: 20}
    grid: {hidden: [8, 16]}
";
const RUNS: [&str; 2] = ["width/hidden=8", "width/hidden=16"];

/// A scalar's tag and its column of epochs.csv.
type Column = (&'static str, fn(&EpochRecord) -> f64);

/// What TensorBoard's loader finds under `out`, by run.
fn read_back(python: &Path, out: &Path) -> Value {
    let output = Command::new(python)
        .arg(common::tools::script("read_events.py"))
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "read_events.py failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A hyperparameter as TensorBoard read it back, as text to compare with epochs.csv.
fn as_text(value: &Value) -> String {
    match value {
        Value::Number(number) => number.as_f64().unwrap().to_string(),
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("a hyperparameter of an unexpected kind: {other}"),
    }
}

/// A setting as epochs.csv writes it, in the form `as_text` gives a number.
fn normalised(value: &str) -> String {
    match value.parse::<f64>() {
        Ok(number) if value != "true" && value != "false" => number.to_string(),
        _ => value.to_string(),
    }
}

#[test]
fn tensorboard_reads_back_every_epoch_once_and_the_hyperparameters_after_a_kill() {
    let Some(python) = common::tools::tensorboard_python() else {
        return;
    };
    let dir = study_dir(STUDY);
    let out = dir.path().join("out");
    let mut first = cellnets(dir.path())
        .arg("--tensorboard")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed inside the first run, possibly after logging an epoch it never committed.
    wait_for_epoch(&out.join(RUNS[0]), 3);
    first.kill().unwrap();
    first.wait().unwrap();
    let rerun = cellnets(dir.path()).arg("--tensorboard").output().unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(stderr.contains("resuming after epoch"), "{stderr}");

    let found = read_back(&python, &out);
    for run in RUNS {
        let folder = RunFolder::at(out.join(run));
        assert_eq!(
            event_files(folder.dir()).unwrap().len(),
            1,
            "{run}: the files of earlier starts are replaced"
        );
        let epochs = folder.read_epochs().unwrap();
        assert_eq!(epochs.len(), 20, "{run}");
        let read = &found[run];
        let columns: [Column; 7] = [
            ("train_loss", |e| e.train_loss),
            ("train_accuracy", |e| e.train_accuracy),
            ("val_loss", |e| e.val_loss),
            ("val_accuracy", |e| e.val_accuracy),
            ("val_auc", |e| e.val_auc),
            ("val_balanced_accuracy", |e| e.val_balanced_accuracy),
            ("epoch_seconds", |e| e.seconds),
        ];
        for (tag, pick) in columns {
            let points = read["scalars"][tag]
                .as_array()
                .unwrap_or_else(|| panic!("{run}: no scalar {tag} in {read}"));
            let expected: Vec<(u64, f32)> = epochs
                .iter()
                .map(|record| (record.epoch as u64, pick(record) as f32))
                .collect();
            let got: Vec<(u64, f32)> = points
                .iter()
                .map(|point| {
                    (
                        point[0].as_u64().unwrap(),
                        point[1].as_f64().unwrap() as f32,
                    )
                })
                .collect();
            assert_eq!(got, expected, "{run}: {tag}, each epoch once, as logged");
        }

        let (header, rows) = read_table(&folder.epochs_csv()).unwrap();
        // The hyperparameters follow the first eight columns; the metrics and times
        // measured since (val_auc, ..., cumulative_cpu_seconds) come after them, so that
        // older tables grow.
        let measured =
            |name: &str| name.starts_with("val_") || common::outputs::TIME_COLUMNS.contains(&name);
        let mut expected: Vec<(String, String)> = header[8..]
            .iter()
            .cloned()
            .zip(rows[0][8..].iter().map(|value| normalised(value)))
            .filter(|(name, _)| !measured(name))
            .collect();
        expected.push(("stage".into(), "width".into()));
        expected.sort();
        let hparams = read["hparams"]
            .as_object()
            .unwrap_or_else(|| panic!("{run}: no session start in {read}"));
        let mut got: Vec<(String, String)> = hparams
            .iter()
            .map(|(name, value)| (name.clone(), as_text(value)))
            .collect();
        got.sort();
        assert_eq!(got, expected, "{run}: hyperparameters");
        assert!(
            hparams["hidden"].is_number() && hparams["activation"].is_string(),
            "{run}: numbers stay numbers for the HParams plugin: {hparams:?}"
        );
        assert_eq!(read["status"], 1, "{run}: the session ended as a success");
    }
}

#[test]
fn without_the_option_no_event_file_is_written() {
    let dir = study_dir(STUDY);
    let out = dir.path().join("out");
    let run = cellnets(dir.path()).output().unwrap();
    assert!(run.status.success());
    for name in RUNS {
        assert!(event_files(&out.join(name)).unwrap().is_empty(), "{name}");
    }
}

#[test]
fn tensorboard_true_in_the_manifest_does_what_the_option_does() {
    let dir = study_dir(STUDY);
    let manifest = dir.path().join("experiments.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("tensorboard: true\n{text}")).unwrap();
    let run = cellnets(dir.path()).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for name in RUNS {
        let files = event_files(&dir.path().join("out").join(name)).unwrap();
        assert_eq!(files.len(), 1, "{name}");
    }
}

//! A run that fails with an error (here its epoch table cannot be written) records why
//! in its folder; `status` and the report show it as failed, a rerun retries it, and
//! after three failures in a row it is skipped, with the fix, until `--retry-failed`.

use crate::common;

use common::outputs::{cellnets, cellnets_command, study_dir};
use std::fs;
use std::path::Path;
use std::process::Output;

const STUDY: &str = "  - name: s
    model: {kind: mlp, hidden: 8}
    training: {epochs: 2}
    grid: {hidden: [8, 16]}
";

fn train(dir: &Path, extra: &[&str]) -> Output {
    cellnets(dir)
        .args(["--threads", "1"])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn status(dir: &Path) -> String {
    let output = cellnets_command(dir).arg("status").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_failing_run_is_recorded_retried_and_given_up_on_after_three_failures() {
    let dir = study_dir(STUDY);
    let run = dir.path().join("out/s/hidden=16");
    // A folder where the epoch table goes: the run fails at its first write.
    fs::create_dir_all(run.join("epochs.csv")).unwrap();

    for attempt in 1..=3 {
        let output = train(dir.path(), &[]);
        assert!(!output.status.success(), "attempt {attempt} fails");
        let message = stderr(&output);
        assert!(message.contains("run s/hidden=16 failed"), "{message}");
        let failed: serde_yaml::Value =
            serde_yaml::from_str(&fs::read_to_string(run.join("failed.yaml")).unwrap()).unwrap();
        assert_eq!(failed["times"].as_u64(), Some(attempt), "{failed:?}");
        assert!(
            failed["reason"].as_str().unwrap().contains("epochs.csv"),
            "{failed:?}"
        );
    }
    let shown = status(dir.path());
    assert!(
        shown.contains("s: 1 finished, 0 training, 0 waiting, 0 diverged, 1 failed (of 2)"),
        "{shown}"
    );
    let line = shown
        .lines()
        .find(|line| line.starts_with("  failed    hidden=16  failed 3 times in a row (last by "))
        .unwrap_or_else(|| panic!("no failed line:\n{shown}"));
    assert!(
        line.contains("epochs.csv") && line.ends_with("not retried without --retry-failed"),
        "{line}"
    );

    let report = cellnets_command(dir.path())
        .args(["report", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", stderr(&report));
    let markdown = fs::read_to_string(dir.path().join("out/report.md")).unwrap();
    assert!(
        markdown.contains("**Failed:** `hidden=16` failed 3 times in a row"),
        "{markdown}"
    );

    // A fourth run does not try it again, and says how to.
    let skipped = train(dir.path(), &[]);
    let message = stderr(&skipped);
    assert!(!skipped.status.success(), "{message}");
    assert!(
        message.contains("not retried") && message.contains("--retry-failed"),
        "{message}"
    );
    let failed = fs::read_to_string(run.join("failed.yaml")).unwrap();
    assert!(failed.contains("times: 3"), "not counted again: {failed}");

    // Fixed, and retried on request: it trains, and its failure record goes.
    fs::remove_dir(run.join("epochs.csv")).unwrap();
    let retried = train(dir.path(), &["--retry-failed"]);
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert!(run.join("result.yaml").is_file());
    assert!(!run.join("failed.yaml").exists());
    let shown = status(dir.path());
    assert!(
        shown.starts_with(
            "s: 2 finished, 0 training, 0 waiting, 0 diverged, 0 failed (of 2), winner"
        ),
        "{shown}"
    );
}

#[test]
fn a_run_that_failed_once_is_retried_by_a_plain_rerun() {
    let dir = study_dir(STUDY);
    let run = dir.path().join("out/s/hidden=8");
    fs::create_dir_all(run.join("epochs.csv")).unwrap();
    assert!(!train(dir.path(), &[]).status.success());
    let shown = status(dir.path());
    assert!(
        shown.contains("failed once") && shown.contains("a rerun retries it"),
        "{shown}"
    );
    fs::remove_dir(run.join("epochs.csv")).unwrap();
    let rerun = train(dir.path(), &[]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(!run.join("failed.yaml").exists());
}

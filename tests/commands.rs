//! The command line as a user meets it: each subcommand offers only the options it
//! uses, `status` says little unless asked and tells a training run's pace, and `eval`
//! scores a run that has not finished at its best epoch so far.

use crate::common;

use common::outputs::{cellnets, cellnets_command, committed_epoch, study_dir, wait_for_epoch};
use std::process::{Output, Stdio};

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn help(command: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    stdout_of(
        &cellnets_command(dir.path())
            .args([command, "--help"])
            .output()
            .unwrap(),
    )
}

#[test]
fn each_command_offers_only_the_options_it_uses() {
    let training = [
        "--fresh",
        "--jobs",
        "--threads",
        "--shard",
        "--claim-timeout",
    ];
    let data = ["--data-dir", "--data-memory", "--device"];
    let status = help("status");
    for option in ["--runs", "--out", "--claim-timeout"] {
        assert!(status.contains(option), "status lacks {option}:\n{status}");
    }
    for option in [
        "--fresh",
        "--jobs",
        "--threads",
        "--data-memory",
        "--device",
        "--data-dir",
    ] {
        assert!(
            !status.contains(option),
            "status offers {option}:\n{status}"
        );
    }
    let only = help("only");
    for option in training
        .iter()
        .chain(&data)
        .chain(&["--out", "--max-requeues"])
    {
        assert!(only.contains(option), "only lacks {option}:\n{only}");
    }
    let list = help("list");
    assert!(
        list.contains("--data-dir") && list.contains("--out"),
        "{list}"
    );
    for option in ["--device", "--fresh", "--data-memory", "--jobs"] {
        assert!(!list.contains(option), "list offers {option}:\n{list}");
    }
    let export = help("export");
    for option in ["--out ", "--device", "--data-dir"] {
        assert!(
            !export.contains(option),
            "export offers {option}:\n{export}"
        );
    }
    let slurm = help("slurm");
    for option in [
        "--partition",
        "--claim-timeout",
        "--data-dir",
        "--device",
        "--submit",
    ] {
        assert!(slurm.contains(option), "slurm lacks {option}:\n{slurm}");
    }
    assert!(
        !slurm.contains("--fresh") && !slurm.contains("--shard"),
        "{slurm}"
    );
}

#[test]
fn status_gives_a_line_per_stage_unless_every_run_is_asked_for() {
    let dir = study_dir(
        "  - name: width\n    model: {kind: mlp, hidden: 8}\n    grid: {hidden: [8, 16, 24]}\n",
    );
    let status = |extra: &[&str]| {
        stdout_of(
            &cellnets_command(dir.path())
                .arg("status")
                .args(extra)
                .output()
                .unwrap(),
        )
    };
    let brief = status(&[]);
    assert_eq!(
        brief,
        "width: 0 finished, 0 training, 3 waiting, 0 diverged, 0 failed (of 3)\n"
    );
    let every = status(&["--runs"]);
    assert_eq!(every.lines().count(), 4, "{every}");
    assert!(
        every.contains("  waiting   hidden=16  no epoch committed"),
        "{every}"
    );
}

#[test]
fn a_run_under_way_shows_its_pace_and_is_evaluated_at_its_best_epoch_so_far() {
    let dir = study_dir("  - name: s\n    model: {kind: mlp, hidden: 32}\n    training: {epochs: 400}\n    grid: {hidden: [32]}\n");
    let run = dir.path().join("out/s/hidden=32");
    let mut training = cellnets(dir.path())
        .args(["--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_epoch(&run, 2);
    let status = stdout_of(&cellnets_command(dir.path()).arg("status").output().unwrap());
    training.kill().unwrap();
    training.wait().unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("  training  hidden=32  epoch "))
        .unwrap_or_else(|| panic!("no training line:\n{status}"));
    assert!(
        line.contains("/400 committed, by ") && line.contains(" s/epoch, about "),
        "{line}"
    );

    let evaluated = stdout_of(
        &cellnets_command(dir.path())
            .args([
                "eval",
                "out/s/hidden=32",
                "--data-dir",
                "data",
                "--device",
                "cpu",
            ])
            .output()
            .unwrap(),
    );
    let committed = committed_epoch(&run).unwrap();
    assert!(
        evaluated.starts_with(&format!(
            "s/hidden=32 has not finished (epoch {committed} of 400 committed): scored at its \
             best epoch so far"
        )),
        "{evaluated}"
    );
    assert!(evaluated.contains("accuracy"), "{evaluated}");
    assert!(
        !run.join("result.yaml").exists(),
        "evaluating leaves the run unfinished"
    );

    let predicted = cellnets_command(dir.path())
        .args(["predict", "out/s/hidden=32", "x.png", "--device", "cpu"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&predicted.stderr);
    assert!(
        !predicted.status.success() && stderr.contains("has not finished (epoch"),
        "{stderr}"
    );
}

//! Several cellnets processes on one out/ without SLURM: `--shard`ed processes split
//! each stage, a SIGKILLed one's claim is taken over when it is rerun, a SIGTERMed one
//! stops at a batch and resumes, and the study ends exactly as one process ends it.

use crate::common;

use common::outputs::{
    assert_same_metrics, cellnets, cellnets_command, check_consistent, claims, metrics, study_dir,
    summary_rows, wait_for_epoch,
};
use std::path::Path;
use std::process::{Child, Stdio};

const STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 32}
    training: {epochs: 12}
    grid: {hidden: [32, 64, 96, 128]}
  - name: dropout
    from: width
    grid: {dropout: [0.0, 0.2, 0.5]}
";

fn spawn(dir: &Path, args: &[&str]) -> Child {
    cellnets(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, what: &str) -> String {
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{what} failed:\n{stderr}");
    stderr
}

fn straight_metrics() -> Vec<(String, Vec<Vec<String>>)> {
    let straight = study_dir(STUDY);
    let output = cellnets(straight.path()).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    metrics(&straight.path().join("out"))
}

#[test]
fn two_shards_share_out_and_a_killed_one_is_taken_over_when_rerun() {
    let dir = study_dir(STUDY);
    let out = dir.path().join("out");
    let shard = |i: &str| ["--shard", i, "--claim-timeout", "60"].map(String::from);
    let first = spawn(dir.path(), &shard("0/2").each_ref().map(String::as_str));
    let second = spawn(dir.path(), &shard("1/2").each_ref().map(String::as_str));
    // Shard 1/2 takes width's runs 1 and 3: killed inside the first of them.
    let victim = out.join("width/hidden=64");
    wait_for_epoch(&victim, 3);
    let mut second = second;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        victim.with_extension("claim").exists(),
        "a SIGKILL leaves the claim"
    );
    let status = cellnets_command(dir.path()).arg("status").output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("waiting   hidden=64  epoch "), "{status}");
    assert!(status.contains("stale claim of"), "{status}");

    let rerun = finish(
        spawn(dir.path(), &shard("1/2").each_ref().map(String::as_str)),
        "the rerun shard 1/2",
    );
    assert!(
        rerun.contains("width/hidden=64: took over the stale claim"),
        "{rerun}"
    );
    assert!(
        rerun.contains("width/hidden=64: resuming after epoch"),
        "{rerun}"
    );
    let first = finish(first, "shard 0/2");
    assert!(
        !first.contains("hidden=64: resuming"),
        "shard 0/2 never trains run 1"
    );

    assert_eq!(check_consistent(&out), 7);
    assert_eq!(
        (summary_rows(&out, "width"), summary_rows(&out, "dropout")),
        (4, 3)
    );
    assert!(out.join("width/winner.yaml").is_file() && out.join("dropout/winner.yaml").is_file());
    assert!(
        claims(&out).is_empty(),
        "every claim is released: {:?}",
        claims(&out)
    );
    let status = cellnets_command(dir.path()).arg("status").output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    let width = "width: 4 finished, 0 training, 0 waiting, 0 diverged, 0 failed (of 4), winner";
    assert!(status.contains(width), "{status}");
    assert_same_metrics(&metrics(&out), &straight_metrics());
}

#[test]
fn a_sigterm_stops_at_a_batch_keeps_the_committed_epochs_and_a_rerun_resumes() {
    let dir = study_dir(STUDY);
    let out = dir.path().join("out");
    let child = spawn(dir.path(), &[]);
    wait_for_epoch(&out.join("width/hidden=32"), 2);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("rerun the same command to resume"),
        "{stderr}"
    );
    assert!(
        claims(&out).is_empty(),
        "the claim is released: {:?}",
        claims(&out)
    );
    check_consistent(&out);

    let rerun = finish(spawn(dir.path(), &[]), "the rerun");
    assert!(rerun.contains("resuming after epoch"), "{rerun}");
    assert_eq!(check_consistent(&out), 7);
    assert_same_metrics(&metrics(&out), &straight_metrics());
}

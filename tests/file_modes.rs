//! What cellnets writes is as readable as the umask says (0644 and 0755 under 022,
//! private under 077), whether written in place or through a temporary file, and the
//! SLURM submit script is executable.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs cellnets in `dir` under `umask`, through the shell that sets it.
fn cellnets_under(umask: &str, dir: &Path, args: &str) {
    let command = format!("umask {umask} && exec \"$0\" {args}");
    let output = Command::new("sh")
        .args(["-c", &command, env!("CARGO_BIN_EXE_cellnets")])
        .current_dir(dir)
        .env("CELLNETS_DOWNLOAD_URL", "http://127.0.0.1:9")
        .env_remove("CELLNETS_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cellnets {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn everything_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(everything_under(&path));
        }
        found.push(path);
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Trains, reports and writes SLURM scripts under `umask`; checks every file and folder
/// under out/ has `file` or `folder` as its mode, and submit.sh `script`.
fn study_under(umask: &str, file: u32, folder: u32, script: u32) {
    let dir = common::toy_project(
        "  - name: mlp\n    model: {kind: mlp, hidden: 4}\n  - name: again\n    model: {kind: mlp, hidden: 4}\n",
    );
    cellnets_under(umask, dir.path(), "experiments.yaml --device cpu");
    cellnets_under(umask, dir.path(), "report experiments.yaml --device cpu");
    cellnets_under(umask, dir.path(), "slurm experiments.yaml --device cpu");
    let out = dir.path().join("out");
    let submit = out.join("slurm/submit.sh");
    assert_eq!(mode(&submit), script, "{}", submit.display());
    let paths = everything_under(&out);
    // A trained run, a reused one (hard-linked checkpoint), the report, the scripts.
    for expected in [
        "mlp/run/best.safetensors",
        "again/run/result.yaml",
        "mlp/summary.csv",
        "mlp/winner.yaml",
        "report.md",
        "report.html",
    ] {
        assert!(out.join(expected).is_file(), "{expected}");
    }
    for path in paths.iter().filter(|path| **path != submit) {
        let expected = if path.is_dir() { folder } else { file };
        assert_eq!(mode(path), expected, "{:o} {}", mode(path), path.display());
    }
}

#[test]
fn outputs_are_readable_by_the_group_and_others_under_umask_022() {
    study_under("022", 0o644, 0o755, 0o755);
}

#[test]
fn outputs_stay_private_under_umask_077() {
    study_under("077", 0o600, 0o700, 0o700);
}

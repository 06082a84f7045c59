//! A stage's winner belongs to the stage definition it was settled for: two manifests
//! whose stages share names, on one out/, each train their own models, and the
//! commands suggested to a user carry the manifest and out/ in use.

use crate::common;
use crate::common::outputs::cellnets_command;

use cellnets::storage::files::read_table;
use std::path::Path;
use std::process::Output;

/// A 2x2 shallow-CNN grid, unpinned, and a stage starting from its winner.
const A: &str = "  - name: cnn_grid
    model: {kind: cnn, kernels: 2, kernel_size: 1}
    grid: {kernels: [2, 4], kernel_size: [1, 3]}
  - name: cnn_best
    from: cnn_grid
";

/// The same stage names over a 3x3 grid.
const B_GRID: &str = "  - name: cnn_grid
    model: {kind: cnn, kernels: 2, kernel_size: 1}
    grid: {kernels: [2, 4, 6], kernel_size: [1, 3, 5]}
";

fn manifest(dir: &Path, name: &str, stages: &str) {
    let text =
        format!("dataset: {{name: toy}}\ndefaults: {{epochs: 1, seed: 1}}\nstages:\n{stages}");
    std::fs::write(dir.join(name), text).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cellnets_command(dir).args(args).output().unwrap()
}

fn succeeds(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cellnets {args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned() + &stderr
}

/// (kernels, kernel_size) of the run a stage's summary.csv records.
fn trained_model(dir: &Path, stage: &str) -> (String, String) {
    let (header, rows) = read_table(&dir.join("out").join(stage).join("summary.csv")).unwrap();
    let column = |name: &str| {
        let at = header.iter().position(|key| key == name).unwrap();
        rows.last().expect("a finished run")[at].clone()
    };
    (column("kernels"), column("kernel_size"))
}

/// A project with `data/toy.npz`, manifest A trained into out/.
fn trained_a() -> tempfile::TempDir {
    let dir = common::toy_project("");
    manifest(dir.path(), "a.yaml", A);
    succeeds(dir.path(), &["a.yaml"]);
    dir
}

#[test]
fn a_pinned_winner_wins_over_another_manifests_winner_yaml() {
    let dir = trained_a();
    let pinned = format!(
        "{B_GRID}    winner: kernels=6,kernel_size=5\n  - name: cnn_best\n    from: cnn_grid\n"
    );
    manifest(dir.path(), "b.yaml", &pinned);
    // B's cnn_best starts from its own pinned cell, although A's winner.yaml is there
    // and B's grid has not run.
    let listed = succeeds(dir.path(), &["list", "b.yaml"]);
    let best: Vec<&str> = listed
        .lines()
        .skip_while(|line| !line.starts_with("cnn_best"))
        .collect();
    // conv 3*6*25 + 6, head 6*4*4*4 + 4: the 6x5 cell's 844 parameters.
    assert!(best[2].contains(" 844 "), "{listed}");
    succeeds(dir.path(), &["only", "cnn_best", "--manifest", "b.yaml"]);
    assert_eq!(
        trained_model(dir.path(), "cnn_best"),
        ("6".into(), "5".into())
    );
    // status reports B's plan: 9 runs, A's winner not B's.
    let status = succeeds(dir.path(), &["status", "b.yaml"]);
    let grid_line = status
        .lines()
        .find(|line| line.starts_with("cnn_grid"))
        .unwrap();
    assert!(grid_line.contains("(of 9)"), "{status}");
    assert!(grid_line.contains("4 finished"), "{status}");
    assert!(grid_line.contains("not settled"), "{status}");
    assert!(!grid_line.contains("winner kernels"), "{status}");
}

#[test]
fn an_unpinned_stage_of_another_definition_is_not_settled_and_says_how_to_settle_it() {
    let dir = trained_a();
    manifest(
        dir.path(),
        "b.yaml",
        &format!("{B_GRID}  - name: cnn_best\n    from: cnn_grid\n"),
    );
    let output = run(
        dir.path(),
        &["only", "cnn_best", "--manifest", "b.yaml", "--out", "out"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for part in [
        "not settled for this manifest",
        "another definition of the stage",
        "5 of its 9 run(s) have no result",
        "cellnets only cnn_grid --manifest b.yaml --out out",
        "cellnets only cnn_grid cnn_best --manifest b.yaml --out out",
    ] {
        assert!(stderr.contains(part), "{part:?} not in: {stderr}");
    }
    // Its own finished runs settle it once the rest have run.
    succeeds(
        dir.path(),
        &["only", "cnn_grid", "cnn_best", "--manifest", "b.yaml"],
    );
    let winner = std::fs::read_to_string(dir.path().join("out/cnn_grid/winner.yaml")).unwrap();
    let (header, rows) = read_table(&dir.path().join("out/cnn_grid/summary.csv")).unwrap();
    assert_eq!(rows.len(), 9, "{header:?}");
    assert!(winner.contains("definition:"), "{winner}");
}

#[test]
fn a_winner_yaml_without_a_definition_is_settled_again_from_the_stages_runs() {
    let dir = trained_a();
    let path = dir.path().join("out/cnn_grid/winner.yaml");
    let recorded = std::fs::read_to_string(&path).unwrap();
    let older: String = recorded
        .lines()
        .filter(|line| !line.starts_with("definition:"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&path, older).unwrap();
    let said = succeeds(dir.path(), &["only", "cnn_best", "--manifest", "a.yaml"]);
    assert!(said.contains("stage cnn_grid: winner"), "{said}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), recorded);
}

#[test]
fn only_without_a_manifest_says_which_it_runs_and_a_manifest_may_name_its_out() {
    let dir = common::toy_project("  - name: mlp\n    model: {kind: mlp, hidden: 4}\n");
    let said = succeeds(dir.path(), &["only", "mlp"]);
    assert!(
        said.contains("no --manifest given, so running stages of experiments.yaml"),
        "{said}"
    );
    manifest(
        dir.path(),
        "quick.yaml",
        "  - name: mlp\n    model: {kind: mlp, hidden: 8}\n",
    );
    let text = std::fs::read_to_string(dir.path().join("quick.yaml")).unwrap();
    std::fs::write(
        dir.path().join("quick.yaml"),
        format!("out: out/quick\n{text}"),
    )
    .unwrap();
    succeeds(dir.path(), &["quick.yaml"]);
    assert!(dir.path().join("out/quick/mlp/summary.csv").is_file());
    let status = succeeds(dir.path(), &["status", "quick.yaml"]);
    assert!(status.contains("mlp: 1 finished"), "{status}");
    // --out still wins over the manifest's own.
    succeeds(dir.path(), &["quick.yaml", "--out", "elsewhere"]);
    assert!(dir.path().join("elsewhere/mlp/summary.csv").is_file());
}

#[test]
fn a_reused_run_names_the_run_that_trained_it() {
    let dir = common::toy_project(
        "  - name: first\n    model: {kind: mlp, hidden: 4}\n  - name: second\n    model: {kind: mlp, hidden: 4}\n  - name: third\n    model: {kind: mlp, hidden: 4}\n",
    );
    let said = succeeds(dir.path(), &["experiments.yaml"]);
    assert!(
        said.contains("second/run: same settings as first/run, which finished"),
        "{said}"
    );
    assert!(
        said.contains("third/run: same settings as first/run, which finished"),
        "{said}"
    );
}

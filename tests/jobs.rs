//! Runs trained side by side (`--jobs`) draw from seeds of their own: each run's epoch
//! table is the one it has when trained alone, bit for bit at the same thread count.

use crate::common;

use common::outputs::{
    assert_same_checkpoints, assert_same_metrics, cellnets, checkpoints, metrics,
};

/// Dropout, augmentation, Adam and RMSprop: every kind of draw, and optimizer state.
const GRID: &str = "  - name: grid
    model: {kind: mlp, hidden: 24, dropout: 0.3}
    training: {epochs: 6, augment: true}
    grid: {optimizer: [sgd, adam, rmsprop], seed: [1, 2]}
";

fn trained_with(jobs: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    common::write_npz(
        &dir.path().join("data"),
        "toy.npz",
        &common::learnable_arrays(),
    );
    common::write_manifest(dir.path(), GRID);
    let output = cellnets(dir.path())
        .args(["--threads", "1", "--jobs", jobs])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir
}

#[test]
fn a_runs_numbers_do_not_depend_on_the_runs_beside_it() {
    let (alone, together) = (trained_with("1"), trained_with("3"));
    let (alone, together) = (alone.path().join("out"), together.path().join("out"));
    let tables = metrics(&alone);
    assert_eq!(tables.len(), 6);
    assert_same_metrics(&metrics(&together), &tables);
    assert_same_checkpoints(&checkpoints(&together), &checkpoints(&alone));
}

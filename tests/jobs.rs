//! Runs trained side by side (`--jobs`) draw from seeds of their own: each run's epoch
//! table is the one it has when trained alone, bit for bit at the same thread count.

mod common;

use cellnets::files::read_table;
use std::path::Path;
use std::process::Command;
use tch::Tensor;

/// Dropout, augmentation, Adam and momentum: every kind of draw and optimizer state.
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
    let output = Command::new(env!("CARGO_BIN_EXE_cellnets"))
        .args(["--device", "cpu", "--threads", "1", "--jobs", jobs])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir
}

/// A run's name, epoch rows without the wall time, and best weights.
struct RunResult {
    name: String,
    rows: Vec<Vec<String>>,
    weights: Vec<(String, Tensor)>,
}

fn results(out: &Path) -> Vec<RunResult> {
    let mut runs: Vec<_> = std::fs::read_dir(out.join("grid"))
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| {
            let dir = entry.path();
            let (header, rows) = read_table(&dir.join("epochs.csv")).unwrap();
            let seconds = header.iter().position(|name| name == "seconds").unwrap();
            let rows = rows
                .into_iter()
                .map(|mut row| {
                    row.remove(seconds);
                    row
                })
                .collect();
            let mut weights = Tensor::read_safetensors(dir.join("best.safetensors")).unwrap();
            weights.sort_by(|a, b| a.0.cmp(&b.0));
            RunResult {
                name: entry.file_name().to_string_lossy().into_owned(),
                rows,
                weights,
            }
        })
        .collect();
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    runs
}

#[test]
fn a_runs_numbers_do_not_depend_on_the_runs_beside_it() {
    let alone = trained_with("1");
    let together = trained_with("3");
    let (alone, together) = (
        results(&alone.path().join("out")),
        results(&together.path().join("out")),
    );
    assert_eq!(alone.len(), 6);
    for (alone, together) in alone.iter().zip(&together) {
        let run = &alone.name;
        assert_eq!(run, &together.name);
        assert_eq!(alone.rows, together.rows, "{run}: epoch tables differ");
        for ((name, tensor), (_, other)) in alone.weights.iter().zip(&together.weights) {
            assert!(tensor.equal(other), "{run}: {name} differs");
        }
    }
}

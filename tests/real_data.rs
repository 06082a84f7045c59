//! One short check on the real BloodMNIST file: a small CNN learns it in 3 epochs.
//! CI has ../shared/data beside the clone; elsewhere set CELLNETS_REAL_DATA_DIR.

use cellnets::runner;
use cellnets::study::manifest;
use std::path::PathBuf;
use tch::Device;

#[test]
fn a_small_cnn_reaches_80_percent_val_accuracy_on_bloodmnist_in_3_epochs() {
    let data_dir = std::env::var_os("CELLNETS_REAL_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if !data_dir.join("bloodmnist.npz").is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this check, but {} has no bloodmnist.npz",
            data_dir.display()
        );
        eprintln!("skipped: no bloodmnist.npz in {}", data_dir.display());
        return;
    }
    let manifest = manifest::parse(
        "dataset: {name: bloodmnist}
stages:
  - name: smoke
    model: {kind: cnn, kernels: 64, kernel_size: 3}
    training: {epochs: 3, optimizer: adam, seed: 0}
",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let settings = runner::TrainSettings {
        out_dir: out.path().to_path_buf(),
        data_dir,
        device: Device::Cpu,
        fresh: false,
        jobs: 1,
        threads: None,
        retry_failed: false,
        precision: Default::default(),
        tensorboard: false,
    };
    let summaries = runner::run(&manifest, &[], &settings).unwrap();
    let summary = &summaries[0];
    assert_eq!(
        (summary.trainable_params, summary.frozen_params),
        (102_152, 0)
    );
    assert!(
        summary.best.as_ref().unwrap().val_accuracy >= 0.80,
        "{summary:?}"
    );
    assert!(summary.test.accuracy >= 0.78, "{summary:?}");
}

//! Stages that build on earlier ones: stepwise winners, reuse of finished runs, and
//! layers transferred from another stage's checkpoint.

use crate::common;

use cellnets::outputs::run_folder::{FinishedRun, RESULT_YAML};
use cellnets::outputs::winners::read_winner;
use cellnets::storage::files::read_table;
use std::path::Path;
use tch::Tensor;

const STEPWISE: &str = "  - name: hidden
    model: {kind: mlp, hidden: 4}
    grid: {hidden: [4, 16]}
  - name: activation
    from: hidden
    grid: {activation: [relu, sigmoid]}
";

fn run(dir: &Path, stages: &str, fresh: bool) -> Vec<cellnets::outputs::summary::RunSummary> {
    common::run_library(dir, stages, fresh)
}

fn finished(dir: &Path, stage: &str, run: &str) -> FinishedRun {
    let path = dir.join("out").join(stage).join(run).join(RESULT_YAML);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_stage_started_from_a_winner_trains_with_its_values_and_reuses_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = run(dir.path(), STEPWISE, false);
    let out = dir.path().join("out");

    let winner = read_winner(&out, "hidden").unwrap().unwrap();
    let best = summaries[..2]
        .iter()
        .max_by(|a, b| {
            a.best
                .as_ref()
                .unwrap()
                .val_accuracy
                .total_cmp(&b.best.as_ref().unwrap().val_accuracy)
        })
        .unwrap();
    assert_eq!(winner.run, best.run);
    let cellnets::models::ModelSpec::Mlp { hidden, .. } = winner.plan.model else {
        panic!("the winner is an MLP")
    };

    for run in ["activation=relu", "activation=sigmoid"] {
        let result = finished(dir.path(), "activation", run);
        let cellnets::models::ModelSpec::Mlp { hidden: used, .. } = result.plan.model else {
            panic!("an MLP")
        };
        assert_eq!(used, hidden, "{run} starts from the winner's hidden units");
    }

    // activation=relu repeats the winner exactly: it is reused, not retrained.
    let relu = &summaries[2];
    assert_eq!(
        relu.reused_from.as_deref(),
        Some(format!("hidden/{}", winner.run).as_str())
    );
    assert_eq!(relu.best, best.best);
    let (_, rows) = read_table(&out.join("activation/activation=relu/epochs.csv")).unwrap();
    assert!(rows
        .iter()
        .all(|row| row[0] == "activation" && row[1] == "activation=relu"));
    assert!(out
        .join("activation/activation=relu/best.safetensors")
        .is_file());
    assert_eq!(summaries[3].reused_from, None, "sigmoid is new and trains");
}

#[test]
fn only_a_stage_whose_source_has_not_run_fails_then_runs_once_it_has() {
    let dir = common::toy_project(STEPWISE);

    let early = common::cellnets(dir.path(), &["only", "activation"]);
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success());
    assert!(
        stderr.contains("needs the winner of stage `hidden`")
            && stderr.contains("cellnets only hidden"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());

    for stage in ["hidden", "activation"] {
        let output = common::cellnets(dir.path(), &["only", stage]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(dir.path().join("out/activation/winner.yaml").is_file());
}

#[test]
fn a_transferred_frozen_layer_stays_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let summaries = run(
        dir.path(),
        "  - name: source
    model: {kind: cnn, kernels: 2, kernel_size: 3}
  - name: head
    model: {kind: cnn, kernels: 2, kernel_size: 3}
    transfer: {from: source, layers: [conv]}
    training: {epochs: 3, learning_rate: 0.1}
    grid: {augment: [false, true]}
",
        false,
    );
    let out = dir.path().join("out");
    let load =
        |path: &str| -> Vec<(String, Tensor)> { Tensor::read_safetensors(out.join(path)).unwrap() };
    let get = |tensors: &[(String, Tensor)], name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .shallow_clone()
    };
    let source = load("source/run/best.safetensors");
    // augment=false trains the head on conv outputs computed once; augment=true runs the
    // frozen conv every batch. Both must leave it untouched.
    for run in ["augment=false", "augment=true"] {
        let trained = load(&format!("head/{run}/best.safetensors"));
        for name in ["conv.weight", "conv.bias"] {
            assert!(
                get(&source, name).equal(&get(&trained, name)),
                "{run}: {name} changed"
            );
        }
        assert!(!get(&source, "head.weight").equal(&get(&trained, "head.weight")));
    }
    for summary in &summaries[1..] {
        // conv 3*3*3*2 + 2 = 56 frozen; head 2*4*4*4 + 4 = 132 trainable
        assert_eq!((summary.trainable_params, summary.frozen_params), (132, 56));
    }
    // The quadrant task is not rotation-invariant, so only the plain head must learn it.
    assert!(
        summaries[1].best.as_ref().unwrap().val_accuracy > 0.5,
        "{:?}",
        summaries[1]
    );
}

#[test]
fn a_rerun_reuses_finished_runs_and_fresh_retrains_them() {
    let dir = tempfile::tempdir().unwrap();
    let stages = "  - name: once
    model: {kind: mlp, hidden: 4}
    training: {epochs: 1}
";
    let checkpoint = dir.path().join("out/once/run/best.safetensors");
    let modified = || std::fs::metadata(&checkpoint).unwrap().modified().unwrap();
    run(dir.path(), stages, false);
    let first = modified();
    run(dir.path(), stages, false);
    assert_eq!(modified(), first, "a finished run is not retrained");
    run(dir.path(), stages, true);
    assert_ne!(modified(), first, "--fresh retrains");
    let (_, rows) = read_table(&dir.path().join("out/once/summary.csv")).unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn a_run_whose_settings_changed_is_redone_and_its_old_folder_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let stages = |epochs: usize| {
        format!("  - name: once\n    model: {{kind: mlp, hidden: 4}}\n    training: {{epochs: {epochs}}}\n")
    };
    run(dir.path(), &stages(1), false);
    run(dir.path(), &stages(2), false);
    let stage = dir.path().join("out/once");
    let aside: Vec<_> = std::fs::read_dir(&stage)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("run.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let (_, old) = read_table(&stage.join(&aside[0]).join("epochs.csv")).unwrap();
    let (_, new) = read_table(&stage.join("run/epochs.csv")).unwrap();
    assert_eq!((old.len(), new.len()), (1, 2));
    let (_, rows) = read_table(&stage.join("summary.csv")).unwrap();
    assert_eq!(rows.len(), 1, "one summary row per run name");
}

#[test]
fn a_run_trained_by_an_older_revision_of_its_model_is_retrained() {
    let dir = tempfile::tempdir().unwrap();
    let stages = "  - name: deep
    model: {kind: dense_cnn, stem_filters: 2, stem_kernel: 3, layers: 1, growth: 2, bottleneck: 2}
    training: {epochs: 1}
  - name: shallow
    model: {kind: mlp, hidden: 4}
    training: {epochs: 1}
";
    run(dir.path(), stages, false);
    let out = dir.path().join("out");
    let modified = |stage: &str| {
        let checkpoint = out.join(stage).join("run/best.safetensors");
        std::fs::metadata(checkpoint).unwrap().modified().unwrap()
    };
    let before = (modified("deep"), modified("shallow"));
    // Results from before runs recorded a revision: no `revision` line.
    for stage in ["deep", "shallow"] {
        let path = out.join(stage).join("run").join(RESULT_YAML);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("revision:"), "{text}");
        let old: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("revision:"))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&path, old).unwrap();
    }
    run(dir.path(), stages, false);
    assert_ne!(
        modified("deep"),
        before.0,
        "a deep CNN trained before BatchNorm followed Keras is retrained"
    );
    assert_eq!(
        modified("shallow"),
        before.1,
        "an MLP, whose arithmetic did not change, is reused"
    );
    assert_eq!(finished(dir.path(), "deep", "run").plan.revision, 2);
    let aside = std::fs::read_dir(out.join("deep"))
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("run.replaced-")
        })
        .count();
    assert_eq!(aside, 1, "the old deep CNN run is kept aside");
}

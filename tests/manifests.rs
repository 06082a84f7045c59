//! The shipped manifests plan, and their models have the study's parameter counts.

use crate::common;

use cellnets::models::{count_parameters, InputShape};
use cellnets::runner::transfer::freeze;
use cellnets::study::manifest;
use cellnets::study::plan::plan_all;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device};

/// (trainable, frozen) per "stage/run" for a BloodMNIST-shaped input.
fn counts(manifest_path: &str) -> HashMap<String, (i64, i64)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest_path);
    let manifest = manifest::load(&path).unwrap();
    let mut counts = HashMap::new();
    for (stage, _) in plan_all(&manifest, |_| Ok(None)).unwrap() {
        for run in stage.runs {
            let size = i64::from(run.dataset.image_size);
            let input = InputShape {
                channels: 3,
                height: size,
                width: size,
                classes: 8,
            };
            let vs = nn::VarStore::new(Device::Cpu);
            // Only the counts are wanted, but building draws the initial weights.
            let _generator = common::torch_generator();
            run.model.build(&vs.root(), input);
            if let Some(transfer) = &run.transfer {
                freeze(&vs, &transfer.layers).unwrap();
            }
            counts.insert(format!("{}/{}", run.stage, run.name), count_parameters(&vs));
        }
    }
    counts
}

#[test]
fn the_full_study_has_the_reported_parameter_counts() {
    let counts = counts("experiments.yaml");
    assert_eq!(counts.len(), 5 + 2 + 3 + 2 + 20 + 1 + 1 + 1 + 1);
    assert_eq!(counts["hidden/hidden=4096"], (9_670_664, 0));
    assert_eq!(counts["cnn_grid/kernels=64,kernel_size=9"], (115_976, 0));
    // cnn_best and cnn_64 start from cnn_grid's pinned winner, 64 kernels of 9x9.
    assert_eq!(counts["cnn_best/run"], (115_976, 0));
    assert_eq!(counts["cnn_64/run"], (524_296, 15_616));
    assert_eq!(counts["deep_cnn/run"], (347_656, 0));
    assert_eq!(counts["resnet18/run"], (11_172_936, 0));
}

#[test]
fn the_quick_profile_has_the_same_models() {
    let counts = counts("experiments/quick.yaml");
    assert_eq!(counts["hidden/hidden=1024"], (2_417_672, 0));
    assert_eq!(counts["cnn_best/run"], (115_976, 0));
    assert_eq!(counts["cnn_64/run"], (524_296, 15_616));
    assert_eq!(counts["deep_cnn/run"], (347_656, 0));
    assert_eq!(counts["resnet18/run"], (11_172_936, 0));
}

#[test]
fn the_medmnist_benchmark_manifest_trains_every_2d_set_by_its_protocol() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/medmnist.yaml");
    let manifest = manifest::load(&path).unwrap();
    let plans = plan_all(&manifest, |_| Ok(None)).unwrap();
    let sets: Vec<&String> = cellnets::study::catalog::catalog().sets.keys().collect();
    assert_eq!(plans.len(), sets.len());
    for (stage, _) in &plans {
        let run = &stage.runs[0];
        assert!(sets.contains(&&run.dataset.name), "{}", run.dataset.name);
        assert_eq!(run.dataset.name, stage.name);
        assert_eq!(run.dataset.validation, manifest::Validation::Official);
        let training = &run.training;
        assert_eq!((training.epochs, training.batch_size), (100, 128));
        assert_eq!(training.milestones, [50, 75]);
        assert_eq!(training.learning_rate, 0.001);
    }
}

#[test]
fn the_fast_recipe_plans_as_one_resnet9_per_budget() {
    let counts = counts("experiments/fast.yaml");
    assert_eq!(counts.len(), 3);
    for stage in ["fast", "fast_long", "fast_64"] {
        assert_eq!(counts[&format!("{stage}/run")], (412_696, 0), "{stage}");
    }
}

#[test]
fn a_one_epoch_copy_of_the_fast_recipe_trains_and_tests_on_synthetic_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    common::tiny_bloodmnist(&dir.path().join("data"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/fast.yaml");
    let recipe = std::fs::read_to_string(path).unwrap();
    let one_epoch: String = recipe
        .lines()
        .map(|line| match line.find("training: {epochs:") {
            Some(at) => format!("{}training: {{epochs: 1}}\n", &line[..at]),
            None => format!("{line}\n"),
        })
        .collect();
    assert_eq!(one_epoch.matches("epochs: 1}").count(), 3, "{one_epoch}");
    std::fs::write(dir.path().join("fast.yaml"), one_epoch).unwrap();
    let output = common::outputs::cellnets_command(dir.path())
        .args(["fast.yaml", "--device", "cpu", "--out", "out"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for stage in ["fast", "fast_long", "fast_64"] {
        let result = dir.path().join("out").join(stage).join("run/result.yaml");
        assert!(result.is_file(), "{stage}");
    }
}

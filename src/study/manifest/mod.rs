//! The YAML manifest, deserialised into typed structs. Unknown keys and wrong types
//! are errors that name the file, line and column.
//!
//! The files depend on each other one way: `yaml` and `training` on nothing here,
//! `stage` on both, `checks` on all three; this file only gathers them.

mod checks;
mod stage;
mod training;
mod yaml;

pub use checks::{check_path_safe_name, load, parse};
pub use stage::{
    DatasetSpec, FolderSplit, Manifest, Stage, StageReport, Transfer, Validation, DEFAULT_OUT,
};
pub use training::{
    InvalidTraining, Monitor, OptimizerDefaults, OptimizerKind, Schedule, TestView, Training,
    TrainingOverrides, UpdateRules,
};
pub use yaml::{GRID_KEYS, TRAINING_KEYS};

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
dataset: {name: bloodmnist}
defaults: {epochs: 2}
stages:
  - name: mlp
    model: {kind: mlp, hidden: 16}
";

    #[test]
    fn a_minimal_manifest_gets_the_study_defaults() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.dataset.file_name(), "bloodmnist.npz");
        assert_eq!(manifest.dataset.train_fraction, 0.7);
        let training = manifest.stages[0]
            .training
            .over(&manifest.defaults)
            .resolve()
            .unwrap();
        assert_eq!(training.batch_size, 32);
        assert_eq!(training.optimizer, OptimizerKind::Sgd);
        assert_eq!(training.learning_rate, 0.01);
        assert_eq!(training.monitor, Monitor::ValLoss);
    }

    #[test]
    fn epochs_must_be_given() {
        let error = TrainingOverrides::default().resolve().unwrap_err();
        assert_eq!(error, InvalidTraining::EpochsUnset);
        assert!(
            error.to_string().contains("give it in `defaults`"),
            "{error}"
        );
    }

    #[test]
    fn impossible_training_values_are_told_apart() {
        let with = |text: &str| {
            serde_yaml::from_str::<TrainingOverrides>(&format!("{{epochs: 1, {text}}}"))
                .unwrap()
                .resolve()
                .unwrap_err()
        };
        assert_eq!(with("batch_size: 0"), InvalidTraining::BatchSize(0));
        assert_eq!(
            with("weight_decay: 1.5"),
            InvalidTraining::NotAFraction {
                name: "weight_decay",
                value: 1.5
            }
        );
        assert_eq!(
            with("optimizer: adam, momentum: 0.9"),
            InvalidTraining::NotASetting {
                name: "momentum",
                optimizer: OptimizerKind::Adam
            }
        );
        let message = with("optimizer: adam, momentum: 0.9").to_string();
        assert!(
            message.contains("momentum is not a setting of optimizer adam"),
            "{message}"
        );
        assert_eq!(
            with("rho: 0.9"),
            InvalidTraining::NotASetting {
                name: "rho",
                optimizer: OptimizerKind::Sgd
            }
        );
        assert_eq!(
            with("nesterov: true"),
            InvalidTraining::NesterovWithoutMomentum
        );
        assert_eq!(
            with("optimizer: adam, beta_2: 1.0"),
            InvalidTraining::NotAFraction {
                name: "beta_2",
                value: 1.0
            }
        );
        assert_eq!(
            with("optimizer: rmsprop, epsilon: 0"),
            InvalidTraining::Epsilon(0.0)
        );
        assert_eq!(with("patience: 0"), InvalidTraining::ZeroPatience);
        assert_eq!(with("crop_padding: 65"), InvalidTraining::CropPadding(65));
        assert_eq!(with("rotate: 200"), InvalidTraining::Rotate(200.0));
        assert_eq!(
            with("color_jitter: 1.5"),
            InvalidTraining::NotAFraction {
                name: "color_jitter",
                value: 1.5
            }
        );
        assert_eq!(
            with("label_smoothing: 1"),
            InvalidTraining::NotAFraction {
                name: "label_smoothing",
                value: 1.0
            }
        );
        assert_eq!(
            with("cutmix: -1"),
            InvalidTraining::MixingAlpha {
                name: "cutmix",
                alpha: -1.0
            }
        );
        let views = with("tta: [rot90, flips, rot90]");
        assert_eq!(views, InvalidTraining::RepeatedView(TestView::Rot90));
        assert!(views.to_string().contains("lists rot90 twice"), "{views}");
        let warmup = with("warmup_epochs: 20");
        assert!(matches!(warmup, InvalidTraining::Warmup { warmup: 20, .. }));
        assert!(warmup.to_string().contains("fewer than epochs"), "{warmup}");
    }

    #[test]
    fn adam_defaults_to_keras_learning_rate() {
        let adam = TrainingOverrides {
            epochs: Some(1),
            optimizer: Some(OptimizerKind::Adam),
            ..Default::default()
        };
        let adam = adam.resolve().unwrap();
        assert_eq!(adam.learning_rate, 0.001);
        assert_eq!(adam.epsilon, Some(1e-7));
    }

    #[test]
    fn each_optimizer_takes_the_defaults_of_its_rules() {
        let resolve = |text: &str| {
            serde_yaml::from_str::<TrainingOverrides>(&format!("{{epochs: 1, {text}}}"))
                .unwrap()
                .resolve()
                .unwrap()
        };
        let keras = resolve("optimizer: rmsprop");
        assert_eq!(
            (keras.learning_rate, keras.rho, keras.epsilon, keras.beta_1),
            (0.001, Some(0.9), Some(1e-7), None)
        );
        let pytorch = resolve("optimizer: rmsprop, update_rules: pytorch");
        assert_eq!(
            (pytorch.learning_rate, pytorch.rho, pytorch.epsilon),
            (0.01, Some(0.99), Some(1e-8))
        );
        assert_eq!(resolve("optimizer: adamw").weight_decay, 0.004);
        assert_eq!(
            resolve("optimizer: adamw, update_rules: pytorch").weight_decay,
            0.01
        );
        // A stage switching optimizer after an AdamW winner gets RMSprop's defaults, and
        // not the winner's own beta_1.
        let winner = TrainingOverrides::from(&resolve("optimizer: adamw, beta_1: 0.8"));
        assert_eq!((winner.weight_decay, winner.beta_1), (None, Some(0.8)));
        let switched = TrainingOverrides {
            optimizer: Some(OptimizerKind::Rmsprop),
            ..Default::default()
        }
        .over(&winner)
        .resolve()
        .unwrap();
        assert_eq!(
            (
                switched.weight_decay,
                switched.learning_rate,
                switched.beta_1
            ),
            (0.0, 0.001, None)
        );
        // A stage keeping the optimizer keeps its settings.
        let kept = TrainingOverrides {
            optimizer: Some(OptimizerKind::Adamw),
            ..Default::default()
        }
        .over(&winner)
        .resolve()
        .unwrap();
        assert_eq!(kept.beta_1, Some(0.8));
    }

    #[test]
    fn stage_settings_override_defaults() {
        let stage = TrainingOverrides {
            epochs: Some(3),
            ..Default::default()
        };
        let defaults = TrainingOverrides {
            epochs: Some(500),
            batch_size: Some(64),
            ..Default::default()
        };
        let merged = stage.over(&defaults).resolve().unwrap();
        assert_eq!((merged.epochs, merged.batch_size), (3, 64));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_line_and_column() {
        let unknown = parse(&MINIMAL.replace("hidden: 16", "hiden: 16")).unwrap_err();
        let message = format!("{unknown:#}");
        // An internally tagged enum is buffered: serde_yaml points at its stage entry.
        assert!(
            message.contains("hiden") && message.contains("line 5"),
            "{message}"
        );
        let wrong_type = parse(&format!("{MINIMAL}    training: {{epochs: many}}\n")).unwrap_err();
        let message = format!("{wrong_type:#}");
        assert!(message.contains("line 7"), "{message}");
    }

    #[test]
    fn monitors_and_repeats_are_checked_where_they_are_written() {
        for monitor in [
            "val_loss",
            "val_accuracy",
            "val_auc",
            "val_balanced_accuracy",
        ] {
            let text = format!("{MINIMAL}    training: {{monitor: {monitor}}}\n");
            assert!(parse(&text).is_ok(), "{monitor}");
        }
        let unknown = format!("{MINIMAL}    training: {{monitor: val_f1}}\n");
        let message = format!("{:#}", parse(&unknown).unwrap_err());
        assert!(
            message.contains("val_f1")
                && message.contains("val_auc")
                && message.contains("val_balanced_accuracy")
                && message.contains("line 7"),
            "{message}"
        );
        let none = format!(
            "{:#}",
            parse(&format!("{MINIMAL}    repeats: 0\n")).unwrap_err()
        );
        assert!(
            none.contains("repeats: 0") && none.contains("give 1"),
            "{none}"
        );
        let seeds = format!("{MINIMAL}    repeats: 3\n    grid: {{seed: [1, 2]}}\n");
        let both = format!("{:#}", parse(&seeds).unwrap_err());
        assert!(
            both.contains("repeats") && both.contains("drop `seed` from the grid"),
            "{both}"
        );
        let negative = format!("{MINIMAL}    repeats: -2\n");
        assert!(format!("{:#}", parse(&negative).unwrap_err()).contains("line 7"));
    }

    #[test]
    fn an_unknown_key_on_the_first_line_still_has_its_position() {
        let error = parse(&format!("name: study\n{MINIMAL}")).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("unknown field `name`") && message.contains("at line 1 column 1"),
            "{message}"
        );
    }

    #[test]
    fn near_misses_of_known_keys_are_named() {
        for (typo, meant, line) in [
            ("defaults: {epochs: 2}", "defualts: {epochs: 2}", 3),
            ("hidden: 16", "hiden: 16", 5),
            ("epochs: 2", "epoch: 2", 3),
        ] {
            let message = format!("{:#}", parse(&MINIMAL.replace(typo, meant)).unwrap_err());
            let key = typo.split(':').next().unwrap();
            assert!(
                message.contains(&format!("did you mean `{key}`?"))
                    && message.contains(&format!("line {line} column")),
                "{message}"
            );
        }
        let far = format!(
            "{:#}",
            parse(&MINIMAL.replace("defaults", "setup")).unwrap_err()
        );
        assert!(!far.contains("did you mean"), "{far}");
    }

    #[test]
    fn a_grid_key_that_no_model_or_training_has_is_named_where_it_is() {
        let text = format!("{MINIMAL}    grid: {{hidden: [8], dropuot: [0.1, 0.2]}}\n");
        let message = format!("{:#}", parse(&text).unwrap_err());
        assert!(
            message.contains("unknown field `dropuot`")
                && message.contains("line 7 column 25")
                && message.contains("did you mean `dropout`?"),
            "{message}"
        );
        let block = format!("{MINIMAL}    grid:\n      learning_rates: [0.1]\n");
        let message = format!("{:#}", parse(&block).unwrap_err());
        assert!(
            message.contains("line 8 column 7")
                && message.contains("did you mean `learning_rate`?"),
            "{message}"
        );
        let twice = format!("{MINIMAL}    grid: {{hidden: [8], hidden: [16]}}\n");
        assert!(parse(&twice).is_err());
    }

    #[test]
    fn every_model_and_training_key_may_be_varied() {
        let text = format!(
            "{MINIMAL}    grid: {{dropout: [0.1], learning_rate: [0.1], activation: [sigmoid]}}\n"
        );
        let grid = &parse(&text).unwrap().stages[0].grid;
        assert_eq!(grid.len(), 3);
    }

    #[test]
    fn stage_names_that_cellnets_writes_under_out_are_refused() {
        for name in ["report", "report.md", "Report", "slurm"] {
            let text = MINIMAL.replace("name: mlp", &format!("name: {name}"));
            let message = format!("{:#}", parse(&text).unwrap_err());
            assert!(
                message.contains(&format!("cannot be named `{name}`"))
                    && message.contains("Rename the stage"),
                "{message}"
            );
        }
        parse(&MINIMAL.replace("name: mlp", "name: reports")).unwrap();
    }

    #[test]
    fn unsafe_or_duplicate_stage_names_are_rejected() {
        for name in ["../escape", "a/b", "", ".hidden", "/abs"] {
            let text = MINIMAL.replace("name: mlp", &format!("name: '{name}'"));
            assert!(parse(&text).is_err(), "{name:?} was accepted");
        }
        let twice = format!("{MINIMAL}  - name: mlp\n    model: {{kind: mlp, hidden: 8}}\n");
        assert!(format!("{:#}", parse(&twice).unwrap_err()).contains("unique"));
    }
}

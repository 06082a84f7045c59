//! The numbers the reproduced study reported, built in from src/study/reference.yaml so
//! that reports compare against them without any file beside the project.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub dataset: String,
    pub class_names: Vec<String>,
    pub split_sizes: BTreeMap<String, u64>,
    pub models: BTreeMap<String, StudyModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyModel {
    pub title: String,
    pub source: String,
    /// The hyperparameter values the study settled on, by key.
    #[serde(default)]
    pub chosen: BTreeMap<String, String>,
    pub grid: Option<StudyGrid>,
    pub trainable_params: Option<i64>,
    pub frozen_params: Option<i64>,
    pub test: StudyTest,
    pub confusion: Option<Vec<Vec<u64>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyGrid {
    pub rows: GridAxis,
    pub cols: GridAxis,
    pub val_accuracy: Vec<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridAxis {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyTest {
    pub accuracy: f64,
    pub balanced_accuracy: Option<f64>,
}

/// The study, parsed once.
pub fn study() -> &'static Study {
    static STUDY: OnceLock<Study> = OnceLock::new();
    STUDY.get_or_init(|| {
        serde_yaml::from_str(include_str!("reference.yaml"))
            .expect("src/study/reference.yaml is valid")
    })
}

/// Display names of a dataset's classes (or labels): the study's short ones for its
/// dataset, else the MedMNIST collection's, else numbers.
pub fn class_names(dataset: &str, classes: usize) -> Vec<String> {
    let study = study();
    let collection = crate::study::catalog::set(dataset).map(|set| &set.labels);
    if dataset == study.dataset && study.class_names.len() == classes {
        study.class_names.clone()
    } else if let Some(labels) = collection.filter(|labels| labels.len() == classes) {
        labels.clone()
    } else {
        (0..classes).map(|class| format!("class {class}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Confusion;

    #[test]
    fn the_built_in_numbers_agree_with_themselves() {
        let study = study();
        let mlp = &study.models["mlp"];
        let confusion = Confusion {
            matrix: mlp.confusion.clone().unwrap(),
        };
        assert!((confusion.accuracy() - mlp.test.accuracy).abs() < 5e-5);
        let balanced = mlp.test.balanced_accuracy.unwrap();
        assert!((confusion.balanced_accuracy() - balanced).abs() < 5e-5);
        let grid = study.models["cnn_shallow"].grid.as_ref().unwrap();
        assert_eq!(grid.val_accuracy.len(), grid.rows.values.len());
        assert!(grid
            .val_accuracy
            .iter()
            .all(|row| row.len() == grid.cols.values.len()));
        assert_eq!(class_names("bloodmnist", 8)[3], "imm. granulocyte");
        assert_eq!(class_names("pathmnist", 9)[0], "adipose");
        assert_eq!(class_names("mine", 9)[8], "class 8");
    }
}

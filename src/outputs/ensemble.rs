//! An ensemble stage's result: out/<stage>/ensemble/ensemble.yaml beside the test
//! tables a run writes (confusion.csv, per_class.csv). Its summary row also goes to
//! the stage's summary.csv, like a run's.

use crate::models::InputShape;
use crate::outputs::run_folder::StageFolder;
use crate::outputs::summary::RunSummary;
use crate::storage::files::{read_yaml, write_yaml};
use crate::study::ensemble::ENSEMBLE_RUN;
use crate::study::manifest::DatasetSpec;
use crate::study::task::Task;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const ENSEMBLE_YAML: &str = "ensemble.yaml";

/// An evaluated ensemble: which runs it averaged, on what data, and how it scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleResult {
    /// Its members as `stage/run`, their run folders under out/.
    pub members: Vec<String>,
    /// The data set every member trained on, and the MD5 of its file.
    pub dataset: DatasetSpec,
    pub data_md5: String,
    pub input: InputShape,
    pub task: Task,
    /// Its test scores (with their 95% intervals), the members' parameters summed, and
    /// the seconds the evaluation took.
    pub summary: RunSummary,
    /// The test confusion matrix, `[true][predicted]`; none for independent labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// The folder of `stage`'s ensemble under `out_dir`.
pub fn ensemble_folder(out_dir: &Path, stage: &str) -> PathBuf {
    StageFolder::new(out_dir, stage)
        .run(ENSEMBLE_RUN)
        .dir()
        .to_path_buf()
}

/// The ensemble result in `dir`; none before it was evaluated.
pub fn read_ensemble_result(dir: &Path) -> Result<Option<EnsembleResult>> {
    read_yaml(&dir.join(ENSEMBLE_YAML))
}

/// Writes the result into `dir`, which holds the test tables already.
pub fn write_ensemble_result(dir: &Path, result: &EnsembleResult) -> Result<()> {
    write_yaml(&dir.join(ENSEMBLE_YAML), result)
}

//! Compute: the only step of the report that runs models. The winners the report tests
//! are re-evaluated from their best checkpoints on the test split, and their most
//! confident mistakes are picked with the images that explain them.

use super::gather::{first_of, picture, StageResults};
use crate::data::Dataset;
use crate::data::Datasets;
use crate::figures::Picture;
use crate::inference::saved::{Predictor, SavedRun};
use crate::metrics::{TaskOutcome, TestReport};
use crate::outputs::run_folder::FinishedRun;
use anyhow::{Context, Result};

/// A stage's winner, evaluated on the test split.
pub struct TestedWinner {
    /// `stage/run`.
    pub label: String,
    pub finished: FinishedRun,
    pub class_names: Vec<String>,
    pub report: TestReport,
    /// When the manifest asks for them: the most confident mistakes, most confident
    /// first (empty when there are none).
    pub mistakes: Option<Vec<Mistake>>,
}

/// A test image the winner got wrong, with what it was confused with.
pub struct Mistake {
    /// Its index in the test split.
    pub index: usize,
    pub truth: usize,
    pub predicted: usize,
    pub probabilities: Vec<f64>,
    pub image: Picture,
    /// The first training image of the predicted class, and of the true one.
    pub predicted_example: Picture,
    pub true_example: Picture,
}

impl Mistake {
    /// The probability given to the predicted class.
    pub fn confidence(&self) -> f64 {
        self.probabilities[self.predicted]
    }
}

/// An ensemble stage's ensemble, evaluated on the test split.
pub struct TestedEnsemble {
    pub dataset: crate::study::manifest::DatasetSpec,
    pub report: TestReport,
}

/// Each ensemble stage's ensemble tested again, in the order of `stages` (none for other
/// stages and for ensembles not tested yet).
pub fn test_ensembles(
    stages: &[StageResults],
    files: &mut Datasets,
) -> Result<Vec<Option<TestedEnsemble>>> {
    stages
        .iter()
        .map(|stage| {
            let Some(saved) = stage.ensemble.as_ref().and_then(|view| view.saved.as_ref()) else {
                return Ok(None);
            };
            let device = files.device();
            let data = files.open(saved.dataset())?;
            let report = saved
                .evaluate(data, &data.test, device)
                .with_context(|| format!("report of stage `{}`", stage.stage.name))?;
            Ok(Some(TestedEnsemble {
                dataset: saved.dataset().clone(),
                report,
            }))
        })
        .collect()
}

/// Each stage's tested winner, in the order of `stages`.
pub fn test_winners(
    stages: &[StageResults],
    files: &mut Datasets,
) -> Result<Vec<Option<TestedWinner>>> {
    stages
        .iter()
        .map(|stage| {
            let Some(saved) = &stage.to_test else {
                return Ok(None);
            };
            test_winner(saved, stage.stage.report.mistakes, files)
                .map(Some)
                .with_context(|| format!("report of stage `{}`", stage.stage.name))
        })
        .collect()
}

fn test_winner(saved: &SavedRun, mistakes: usize, files: &mut Datasets) -> Result<TestedWinner> {
    let device = files.device();
    let dataset = &saved.plan.dataset;
    let data = files.open(dataset)?;
    let report = saved.evaluate(data, &data.test, device)?;
    let class_names = crate::data::image_folder::class_names(dataset, data.input.classes as usize);
    // A multi-label prediction has no single wrong class to show.
    let mistakes = match mistakes {
        0 => None,
        _ if report.confusion().is_none() => None,
        count => Some(most_confident_mistakes(&report, count, data)?),
    };
    Ok(TestedWinner {
        label: saved.label(),
        finished: saved
            .finished()
            .expect("the report opens finished runs only")
            .clone(),
        class_names,
        report,
        mistakes,
    })
}

fn most_confident_mistakes(
    report: &TestReport,
    count: usize,
    data: &Dataset,
) -> Result<Vec<Mistake>> {
    let example = |class: usize| -> Result<Picture> {
        let first = first_of(&data.train.labels, class)?;
        picture(&data.train.images, first.unwrap_or(0))
    };
    let mut mistakes = Vec::new();
    let TaskOutcome::Classes {
        truth, predicted, ..
    } = &report.outcome
    else {
        return Ok(Vec::new());
    };
    for index in report.most_confident_mistakes(count) {
        let (truth, predicted) = (truth[index] as usize, predicted[index] as usize);
        mistakes.push(Mistake {
            index,
            truth,
            predicted,
            probabilities: report.probabilities[index].clone(),
            image: picture(&data.test.images, index)?,
            predicted_example: example(predicted)?,
            true_example: example(truth)?,
        });
    }
    Ok(mistakes)
}

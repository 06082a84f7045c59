//! A saved run or ensemble (`Saved`), as `cellnets eval`, `predict` and `export` take
//! either, and `cellnets eval` itself: scored on a split of a data file, its tables and
//! confusion heat map written under the run's folder, and on request each image's
//! prediction as CSV.

use crate::data::{Dataset, Split};
use crate::figures::{self, HeatMap};
use crate::inference::ensemble::SavedEnsemble;
use crate::inference::saved::{Completion, Predictor, SavedRun};
use crate::metrics::{TaskOutcome, TestReport, FEW_IMAGES};
use crate::models::InputShape;
use crate::outputs::ensemble::ENSEMBLE_YAML;
use crate::storage::files::write_table;
use crate::study::manifest::{DatasetSpec, Validation};
use crate::study::task::Task;
use anyhow::{Context, Result};
use std::path::Path;
use tch::Device;

/// A run or an ensemble, as `cellnets eval`, `predict` and `export` take either.
pub enum Saved {
    Run(Box<SavedRun>),
    Ensemble(SavedEnsemble),
}

impl Saved {
    /// The finished run or evaluated ensemble in `path` (a folder, or a run's
    /// best.safetensors).
    pub fn open(path: &Path) -> Result<Self> {
        match path.join(ENSEMBLE_YAML).is_file() {
            true => SavedEnsemble::open(path).map(Saved::Ensemble),
            false => SavedRun::open(path).map(|run| Saved::Run(Box::new(run))),
        }
    }

    /// `open`, reading an unfinished run at its best epoch so far.
    pub fn open_best_so_far(path: &Path) -> Result<Self> {
        match path.join(ENSEMBLE_YAML).is_file() {
            true => SavedEnsemble::open(path).map(Saved::Ensemble),
            false => SavedRun::open_best_so_far(path).map(|run| Saved::Run(Box::new(run))),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Saved::Run(run) => run.label(),
            Saved::Ensemble(ensemble) => ensemble.label.clone(),
        }
    }

    /// Its folder under out/.
    pub fn dir(&self) -> &Path {
        match self {
            Saved::Run(run) => run.folder.dir(),
            Saved::Ensemble(ensemble) => &ensemble.dir,
        }
    }

    pub fn dataset(&self) -> &DatasetSpec {
        match self {
            Saved::Run(run) => &run.plan.dataset,
            Saved::Ensemble(ensemble) => ensemble.dataset(),
        }
    }

    pub fn task(&self) -> Task {
        match self {
            Saved::Run(run) => run.task(),
            Saved::Ensemble(ensemble) => ensemble.task(),
        }
    }

    pub fn input_shape(&self) -> Result<InputShape> {
        match self {
            Saved::Run(run) => run.input_shape(),
            Saved::Ensemble(ensemble) => ensemble.input_shape(),
        }
    }

    pub fn evaluate(&self, data: &Dataset, split: &Split, device: Device) -> Result<TestReport> {
        match self {
            Saved::Run(run) => run.evaluate(data, split, device),
            Saved::Ensemble(ensemble) => ensemble.evaluate(data, split, device),
        }
    }
}

/// Which split of a file `cellnets eval` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// The file's official test split.
    Test,
    /// The images the run trained on: the first part of the study's holdout, or the
    /// official train split under `validation: official`.
    #[value(name = "train")]
    HoldoutTrain,
    /// The images the run validated on: the rest of the holdout, or the official val
    /// split.
    #[value(name = "val")]
    HoldoutVal,
}

impl EvalSplit {
    pub fn name(self) -> &'static str {
        match self {
            EvalSplit::Test => "test",
            EvalSplit::HoldoutTrain => "train",
            EvalSplit::HoldoutVal => "val",
        }
    }

    pub fn of(self, data: &Dataset) -> &Split {
        match self {
            EvalSplit::Test => &data.test,
            EvalSplit::HoldoutTrain => &data.train,
            EvalSplit::HoldoutVal => &data.val,
        }
    }

    /// The row in the data file's array of this split's first image: the study's holdout
    /// val split is the train array's rows after those that train.
    fn first_row(self, data: &Dataset, validation: Validation) -> i64 {
        match (self, validation) {
            (EvalSplit::HoldoutVal, Validation::Holdout) => data.train.len(),
            _ => 0,
        }
    }
}

/// Evaluates `saved` (a run or an ensemble) on `split` of `data`, writes the tables and
/// the confusion heat map into `<folder>/eval/<file>-<split>/` and, when asked, every
/// image's prediction to `predictions`, and returns a text summary for the terminal.
pub fn eval(
    saved: &Saved,
    data: &Dataset,
    split: EvalSplit,
    predictions: Option<&Path>,
    device: Device,
) -> Result<String> {
    let report = saved.evaluate(data, split.of(data), device)?;
    let stem = data
        .path
        .file_stem()
        .map_or("data".into(), |stem| stem.to_string_lossy().into_owned());
    let dir = saved
        .dir()
        .join("eval")
        .join(format!("{stem}-{}", split.name()));
    let names =
        crate::data::image_folder::class_names(saved.dataset(), data.input.classes as usize);
    let source = [
        saved.label(),
        data.path.display().to_string(),
        split.name().to_string(),
    ];
    write_eval(&dir, &source, &report, &names)?;
    let mut text = String::new();
    let progress = match saved {
        Saved::Run(run) => Some(&run.progress),
        Saved::Ensemble(_) => None,
    };
    if let Some(&Completion::Unfinished {
        last_epoch,
        epochs,
        best_epoch,
    }) = progress
    {
        let best = best_epoch.map_or(String::new(), |epoch| format!(" (epoch {epoch})"));
        text += &format!(
            "{} has not finished (epoch {last_epoch} of {epochs} committed): scored at its best \
             epoch so far{best}\n\n",
            saved.label()
        );
    }
    text += &render_eval(&source, &report, &names);
    let written = match report.confusion() {
        Some(_) => "metrics.csv, confusion.csv, per_class.csv and confusion.png/svg",
        None => "metrics.csv and per_class.csv (per label)",
    };
    text += &format!("\nwrote {written} to {}\n", dir.display());
    if let Some(path) = predictions {
        let first_row = split.first_row(data, saved.dataset().validation);
        write_predictions(path, &report, &names, first_row)?;
        text += &format!(
            "wrote each of the {} images' predictions to {}\n",
            report.len(),
            path.display()
        );
    }
    Ok(text)
}

/// Writes every image's prediction as CSV, atomically: `index` (the image's row in the
/// data file's array, `first_row` for the split's first image), `true` and `predicted`
/// (class numbers; for independent labels, the label numbers that apply joined by `+`,
/// a label predicted above probability 0.5), and `p_<name>`, each class's (label's)
/// probability, columns in class order.
pub fn write_predictions(
    path: &Path,
    report: &TestReport,
    names: &[String],
    first_row: i64,
) -> Result<()> {
    let header: Vec<String> = ["index", "true", "predicted"]
        .into_iter()
        .map(String::from)
        .chain(names.iter().map(|name| format!("p_{name}")))
        .collect();
    let labels = |set: &mut dyn Iterator<Item = bool>| -> String {
        let numbers: Vec<String> = set
            .enumerate()
            .filter(|&(_, applies)| applies)
            .map(|(label, _)| label.to_string())
            .collect();
        numbers.join("+")
    };
    let rows: Vec<Vec<String>> = report
        .probabilities
        .iter()
        .enumerate()
        .map(|(image, probabilities)| {
            let (truth, predicted) = match &report.outcome {
                TaskOutcome::Classes {
                    truth, predicted, ..
                } => (truth[image].to_string(), predicted[image].to_string()),
                TaskOutcome::Labels { truth, .. } => (
                    labels(&mut truth[image].iter().copied()),
                    labels(&mut probabilities.iter().map(|&p| p > 0.5)),
                ),
            };
            [(first_row + image as i64).to_string(), truth, predicted]
                .into_iter()
                .chain(probabilities.iter().map(f64::to_string))
                .collect()
        })
        .collect();
    write_table(path, &header, &rows)
        .with_context(|| format!("cannot write the predictions to {}", path.display()))
}

/// The evaluated run, data file and split: the first columns of `metrics.csv`.
const SOURCE_COLUMNS: [&str; 3] = ["run", "data", "split"];

fn write_eval(
    dir: &Path,
    source: &[String; 3],
    report: &TestReport,
    names: &[String],
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    report.write(dir)?;
    let scores = report.metrics();
    let metrics: Vec<(String, f64)> = scores
        .columns()
        .iter()
        .map(|&(name, value)| (name.to_string(), value))
        .chain(scores.ci95.columns())
        .collect();
    let header: Vec<String> = SOURCE_COLUMNS
        .into_iter()
        .chain(["images"])
        .map(String::from)
        .chain(metrics.iter().map(|(name, _)| name.clone()))
        .collect();
    let row: Vec<String> = source
        .iter()
        .cloned()
        .chain([report.len().to_string()])
        .chain(metrics.iter().map(|(_, value)| value.to_string()))
        .collect();
    write_table(&dir.join("metrics.csv"), &header, &[row])?;
    let [run, data, split] = source;
    let stem = Path::new(data)
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy();
    let title = format!("{run} on {stem} ({split})");
    if let Some(confusion) = report.confusion() {
        figures::save(
            &HeatMap::confusion(title, &confusion.matrix, names),
            dir,
            "confusion",
        )?;
    }
    Ok(())
}

/// The scores as the terminal shows them: the totals, then a line per class or label.
fn render_eval(source: &[String; 3], report: &TestReport, names: &[String]) -> String {
    let [run, data, split] = source;
    let scores = report.metrics();
    let mut text = format!(
        "{run} on {data} ({split} split, {} images)\n\
         loss {:.4}  accuracy {:.4}  balanced accuracy {:.4}  macro F1 {:.4}  AUC {:.4}\n\n",
        report.len(),
        scores.loss,
        scores.accuracy,
        scores.balanced_accuracy,
        scores.macro_f1,
        scores.auc
    );
    if scores.ci95.accuracy.is_defined() {
        let intervals: Vec<String> = scores
            .ci95
            .named()
            .iter()
            .map(|(name, interval)| {
                let name = name.replace('_', " ");
                format!("{name} [{:.4}, {:.4}]", interval.low, interval.high)
            })
            .collect();
        text += &format!(
            "95% intervals (accuracy: Wilson; others: bootstrap over the images, by class): {}\n\n",
            intervals.join("  ")
        );
    }
    let scarce = report.scarce_outputs();
    if !scarce.is_empty() {
        let listed: Vec<String> = scarce
            .iter()
            .map(|&(index, images)| format!("{} ({images})", names[index]))
            .collect();
        text += &format!(
            "unreliable intervals: fewer than {FEW_IMAGES} images of {}, too few for the \
             bootstrap to vary much\n\n",
            listed.join(", ")
        );
    }
    if let Some(exact) = report.exact_match() {
        text += &format!("every label right (exact match) {exact:.4}\n\n");
    }
    if let Some(error) = report.mean_absolute_error() {
        text += &format!("mean absolute grade error {error:.4}\n\n");
    }
    text += &format!(
        "{:<18} {:>7} {:>9} {:>7} {:>7} {:>7}\n",
        report.task.output_noun(),
        if report.task.has_classes() {
            "support"
        } else {
            "positives"
        },
        "precision",
        "recall",
        "f1",
        "auc"
    );
    for (name, (scores, auc)) in names.iter().zip(report.per_output()) {
        let auc = auc.map_or("-".into(), |auc| format!("{auc:.4}"));
        text += &format!(
            "{name:<18} {:>7} {:>9.4} {:>7.4} {:>7.4} {auc:>7}\n",
            scores.support, scores.precision, scores.recall, scores.f1
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_of_independent_labels_list_the_labels_that_apply() {
        let truth = vec![vec![true, false, true], vec![false, false, false]];
        let probabilities = vec![vec![0.75, 0.5, 0.25], vec![0.125, 0.625, 0.875]];
        let report = TestReport {
            task: Task::MultiLabel,
            loss: 0.0,
            outcome: TaskOutcome::labels(truth, &probabilities),
            probabilities,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictions.csv");
        let names = ["a", "b", "c"].map(String::from);
        write_predictions(&path, &report, &names, 10).unwrap();
        // A label applies above 0.5: image 10 is predicted {0} (0.5 is not above), image
        // 11 {1, 2}; it truly has none.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "index,true,predicted,p_a,p_b,p_c\n10,0+2,0,0.75,0.5,0.25\n11,,1+2,0.125,0.625,0.875\n"
        );
    }
}

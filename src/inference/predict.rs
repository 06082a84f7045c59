//! `cellnets predict`: a saved run's best checkpoint (or an ensemble's members, their
//! probabilities averaged) classifies image files. Each file
//! is prepared as the run's training data was (see `images`), the model runs in
//! batches on the chosen device, and every file gets a row: its class probabilities,
//! or why it could not be read. One bad file never stops the others.

use crate::data::images;
use crate::inference::eval::Saved;
use crate::inference::saved::SavedRun;
use crate::models::InputShape;
use crate::storage::files::write_table;
use crate::study::manifest::TestView;
use crate::study::task::Task;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Images decoded and run together: large enough to keep the model busy, small enough
/// that a batch of 224 x 224 images stays far below a gigabyte.
const BATCH: usize = 256;

/// One file's outcome: class probabilities, or why it was not predicted.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub file: PathBuf,
    pub outcome: Result<Vec<f64>, String>,
}

impl Prediction {
    /// The most probable class, if the file was predicted.
    pub fn class(&self) -> Option<usize> {
        let probabilities = self.outcome.as_ref().ok()?;
        (0..probabilities.len()).max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]))
    }
}

/// The files named by `inputs`: a file as given, a folder's image files (by ending,
/// in every subfolder) in sorted order. A path that does not exist is kept, so that it
/// is reported as a row like any other unreadable file.
pub fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let before = found.len();
            images::find_in(input, &mut found)?;
            if found.len() == before {
                bail!(
                    "{} holds no image files (endings {}); name files or folders of images",
                    input.display(),
                    images::EXTENSIONS.join(", ")
                );
            }
        } else {
            found.push(input.clone());
        }
    }
    Ok(found)
}

/// `cellnets predict`: predicts the files named by `inputs`, writes the CSV to
/// `output`, and returns the text for the terminal. Fails only when no file could be
/// predicted (the CSV is written first, with every file's reason).
pub fn run(
    saved: &Saved,
    inputs: &[PathBuf],
    output: &Path,
    top: usize,
    device: Device,
) -> Result<String> {
    let files = files(inputs)?;
    let input = saved.input_shape()?;
    let predictions = predict(saved, input, &files, device)?;
    let names = crate::data::image_folder::class_names(saved.dataset(), input.classes as usize);
    let task = saved.task();
    write_csv(output, &predictions, &names, task)?;
    let predicted = predictions.iter().filter(|p| p.outcome.is_ok()).count();
    if predicted == 0 {
        bail!(
            "none of the {} files could be predicted (reasons in {}):\n{}",
            files.len(),
            output.display(),
            summary(&predictions, &names, top)
        );
    }
    let mut text = summary(&predictions, &names, top);
    let _ = writeln!(
        text,
        "wrote {} ({predicted} of {} files predicted by {})",
        output.display(),
        files.len(),
        saved.label()
    );
    Ok(text)
}

/// Predicts every file with `saved` on `device`, for images of `input`: a run's best
/// checkpoint, or the mean of an ensemble's members' probabilities.
pub fn predict(
    saved: &Saved,
    input: InputShape,
    files: &[PathBuf],
    device: Device,
) -> Result<Vec<Prediction>> {
    let ensemble = match saved {
        Saved::Run(run) => return predict_run(run, input, files, device),
        Saved::Ensemble(ensemble) => ensemble,
    };
    let mut mean = predict_run(&ensemble.members[0], input, files, device)?;
    for member in &ensemble.members[1..] {
        // Members read the same files the same way: the same ones fail.
        for (sum, prediction) in mean
            .iter_mut()
            .zip(predict_run(member, input, files, device)?)
        {
            if let (Ok(sum), Ok(probabilities)) = (&mut sum.outcome, prediction.outcome) {
                sum.iter_mut()
                    .zip(probabilities)
                    .for_each(|(sum, p)| *sum += p);
            }
        }
    }
    let members = ensemble.members.len() as f64;
    for prediction in &mut mean {
        if let Ok(sum) = &mut prediction.outcome {
            sum.iter_mut().for_each(|sum| *sum /= members);
        }
    }
    Ok(mean)
}

/// Predicts every file with `run`'s best checkpoint on `device`, for images of `input`.
fn predict_run(
    run: &SavedRun,
    input: InputShape,
    files: &[PathBuf],
    device: Device,
) -> Result<Vec<Prediction>> {
    let model = run.load(input, device)?;
    let task = run.task();
    let mut predictions = Vec::with_capacity(files.len());
    for chunk in files.chunks(BATCH) {
        let prepared: Vec<Result<Vec<u8>, String>> =
            chunk.iter().map(|file| read(file, input)).collect();
        let readable: Vec<&[u8]> = prepared
            .iter()
            .filter_map(|bytes| bytes.as_deref().ok())
            .collect();
        let mut probabilities = if readable.is_empty() {
            Vec::new()
        } else {
            let views = &run.plan.training.tta;
            classify(
                model.network.as_ref(),
                &readable,
                input,
                task,
                views,
                device,
            )
            .with_context(|| format!("libtorch failed predicting with {}", run.label()))?
        }
        .into_iter();
        for (file, bytes) in chunk.iter().zip(prepared) {
            let outcome = bytes.map(|_| probabilities.next().expect("one row per readable file"));
            predictions.push(Prediction {
                file: file.clone(),
                outcome,
            });
        }
    }
    Ok(predictions)
}

/// One file as the model's input bytes (channels last), or why it cannot be.
fn read(file: &Path, input: InputShape) -> Result<Vec<u8>, String> {
    let (height, width) = (input.height as u32, input.width as u32);
    images::read(file, height, width)
        .map(|prepared| prepared.bytes(input.channels))
        .map_err(|error| error.to_string())
}

/// Class probabilities of prepared images, as `cellnets eval` computes them: pixels
/// over 255, logits in eval mode, softmax in double precision.
fn classify(
    model: &dyn tch::nn::ModuleT,
    prepared: &[&[u8]],
    input: InputShape,
    task: Task,
    views: &[TestView],
    device: Device,
) -> Result<Vec<Vec<f64>>> {
    let rows = prepared.len() as i64;
    let bytes: Vec<u8> = prepared.concat();
    let probabilities = panic::catch_unwind(AssertUnwindSafe(|| {
        let pixels = Tensor::from_slice(&bytes)
            .view([rows, input.height, input.width, input.channels])
            .to_device(device);
        let images = crate::data::Images::Pixels(pixels);
        let logits = crate::train::predict_with_views(model, &images, task, views)?;
        anyhow::Ok(
            task.probabilities(&logits)
                .to_device(Device::Cpu)
                .flatten(0, -1),
        )
    }))
    .map_err(|payload| anyhow!("{}", crate::panic_summary(payload.as_ref())))??;
    let flat = Vec::<f64>::try_from(probabilities)?;
    Ok(flat
        .chunks(input.classes as usize)
        .map(<[f64]>::to_vec)
        .collect())
}

/// Writes the predictions as CSV: file, predicted class (for a multi-label model, its
/// labels above 0.5, joined by `+`), one probability column per class or label, and the
/// reason for files that could not be read (their other cells empty).
pub fn write_csv(
    path: &Path,
    predictions: &[Prediction],
    names: &[String],
    task: Task,
) -> Result<()> {
    let header: Vec<String> = ["file", "predicted"]
        .into_iter()
        .map(String::from)
        .chain(names.iter().map(|name| format!("p_{name}")))
        .chain(std::iter::once("error".into()))
        .collect();
    let rows: Vec<Vec<String>> = predictions
        .iter()
        .map(|prediction| {
            let mut row = vec![prediction.file.display().to_string()];
            match &prediction.outcome {
                Ok(probabilities) => {
                    let predicted: Vec<&str> = if task.has_classes() {
                        vec![&names[prediction.class().unwrap_or(0)]]
                    } else {
                        let above = probabilities.iter().zip(names).filter(|(&p, _)| p > 0.5);
                        above.map(|(_, name)| name.as_str()).collect()
                    };
                    row.push(predicted.join("+"));
                    row.extend(probabilities.iter().map(f64::to_string));
                    row.push(String::new());
                }
                Err(why) => {
                    row.extend(std::iter::repeat_n(String::new(), names.len() + 1));
                    row.push(why.clone());
                }
            }
            row
        })
        .collect();
    write_table(path, &header, &rows)
}

/// A line per file with its `top` most probable classes, then the unreadable files.
pub fn summary(predictions: &[Prediction], names: &[String], top: usize) -> String {
    let mut text = String::new();
    let mut failed = Vec::new();
    for prediction in predictions {
        let file = prediction.file.display();
        match &prediction.outcome {
            Ok(probabilities) => {
                let mut ranked: Vec<usize> = (0..probabilities.len()).collect();
                ranked.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
                let best: Vec<String> = ranked
                    .iter()
                    .take(top)
                    .map(|&class| format!("{} {:.4}", names[class], probabilities[class]))
                    .collect();
                let _ = writeln!(text, "{file}: {}", best.join(", "));
            }
            Err(why) => failed.push(format!("{file}: {why}")),
        }
    }
    if !failed.is_empty() {
        let _ = writeln!(
            text,
            "\n{} of {} files could not be predicted:",
            failed.len(),
            predictions.len()
        );
        for line in failed {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}

//! `cellnets report`: reads a manifest's outputs under out/ and writes out/report.md,
//! with the figures under out/report/, setting every table and figure of the study
//! beside the numbers it reported. Reads outputs and data only; trains nothing.

mod data_overview;
mod final_model;
mod markdown;
mod stage;

use crate::data::Datasets;
use crate::files::write_atomically;
use crate::manifest::{DatasetSpec, Manifest};
use crate::study;
use crate::winners;
use anyhow::{bail, Context, Result};
use markdown::{metric, table};
use std::path::{Path, PathBuf};
use tch::Device;

pub const REPORT_MD: &str = "report.md";
/// The folder beside report.md that holds its figures and tables.
pub const REPORT_DIR: &str = "report";

pub struct Settings {
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: Device,
}

/// Writes out/report.md for `manifest` (read from `manifest_path`); returns its path.
pub fn write(manifest: &Manifest, manifest_path: &Path, settings: &Settings) -> Result<PathBuf> {
    let out = &settings.out_dir;
    if !out.is_dir() {
        bail!(
            "{} does not exist: run the manifest first (`cellnets {}`), or give the folder \
             its outputs went to with --out",
            out.display(),
            manifest_path.display()
        );
    }
    let plans = winners::plan_with_recorded_winners(manifest, out)?;
    let figures = out.join(REPORT_DIR);
    let mut datasets = Datasets::new(&settings.data_dir, settings.device);

    let mut stages_md = String::new();
    let mut final_rows = Vec::new();
    let mut ran: Vec<DatasetSpec> = Vec::new();
    for (index, (stage, (plan, _))) in manifest.stages.iter().zip(&plans).enumerate() {
        let later = &manifest.stages[index + 1..];
        let started_from = later.iter().any(|s| s.from.as_ref() == Some(&stage.name));
        let last_of_study = stage
            .report
            .study
            .as_ref()
            .is_some_and(|key| !later.iter().any(|s| s.report.study.as_ref() == Some(key)));
        let is_final = last_of_study || (!started_from && stage.report.study.is_none());
        let dir = figures.join(&stage.name);
        let link = format!("{REPORT_DIR}/{}", stage.name);
        let input = stage::StageInput {
            stage,
            plan,
            is_final,
            out,
            dir: &dir,
            link: &link,
        };
        let section = stage::render(&input, &mut datasets)
            .with_context(|| format!("report of stage `{}`", stage.name))?;
        stages_md += &section.markdown;
        final_rows.extend(section.final_row);
        // One overview per data file, whatever train fraction the stages hold out.
        let spec = &plan.runs[0].dataset;
        if section.has_results
            && !ran
                .iter()
                .any(|known| known.file_name() == spec.file_name())
        {
            ran.push(spec.clone());
        }
    }

    let mut data_md = String::new();
    for spec in &ran {
        let stem = spec.file_name().trim_end_matches(".npz").to_string();
        let dir = figures.join(format!("data-{stem}"));
        let link = format!("{REPORT_DIR}/data-{stem}");
        let data = datasets.open(spec)?;
        data_md += &data_overview::render(spec, data, &dir, &link)?;
    }

    let mut md = format!(
        "# cellnets report: {}\n\nEvery stage of the manifest, from the outputs in this folder, \
         with the numbers the reproduced study reported beside them where it reported any \
         (IA048 \"Atividade 3 – Redes Neurais\", UNICAMP, 2024). Val accuracy is the best \
         epoch's; test results are those of the best-val-loss checkpoint. Regenerate with \
         `cellnets report {}`.\n\n",
        manifest_path.display(),
        manifest_path.display()
    );
    if final_rows.is_empty() {
        md += "No stage has a final model yet: run the manifest first.\n\n";
    } else {
        md += "## Final models\n\n";
        md += &table(
            &[
                "stage: winner",
                "epochs",
                "test acc",
                "study",
                "bal. acc",
                "study",
                "macro F1",
                "AUC",
                "trainable",
                "study model",
            ],
            &final_rows,
        );
        let published: Vec<String> = study::study()
            .published
            .iter()
            .map(|(model, accuracy)| format!("{model} {}", metric(Some(*accuracy))))
            .collect();
        md += &format!(
            "\nOther published BloodMNIST test accuracies (MedMNIST v2): {}.\n\n",
            published.join(", ")
        );
    }
    md += &data_md;
    md += &stages_md;

    let path = out.join(REPORT_MD);
    write_atomically(&path, |tmp| Ok(std::fs::write(tmp, &md)?))?;
    Ok(path)
}

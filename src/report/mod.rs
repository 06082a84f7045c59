//! `cellnets report`: out/report.md and out/report.html from a manifest's outputs, in
//! three steps (`gather`, `compute`, `render`). The markdown has its figures under
//! out/report/ and sets every table and figure of the study beside the numbers it
//! reported; report.html is the same as one self-contained page. Reads outputs under
//! out/ and data only; trains nothing.
//!
//! Three steps, each in a module of its own: `gather` reads every file it needs into
//! plain structs, `compute` runs the tested winners on the test split, and `render`
//! turns both into markdown and figures, which `output` writes. `html` makes the page of
//! the markdown and figures, with the interactive part drawn from a `snapshot` of the
//! outputs (which `cellnets serve` also hands out, live).

mod compute;
mod gather;
pub mod html;
pub mod listing;
pub(crate) mod markdown;
mod output;
mod render;
pub mod snapshot;

use crate::cluster::claim;
use crate::study::manifest::Manifest;
use anyhow::{bail, Result};
pub use output::{REPORT_DIR, REPORT_HTML, REPORT_MD, STAGES_CSV};
use std::path::{Path, PathBuf};
use tch::Device;

pub struct ReportSettings {
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: Device,
}

/// The files `write` wrote.
pub struct Written {
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Writes out/report.md and out/report.html for `manifest` (read from `manifest_path`).
pub fn write(
    manifest: &Manifest,
    manifest_path: &Path,
    settings: &ReportSettings,
) -> Result<Written> {
    let out = &settings.out_dir;
    if !out.is_dir() {
        bail!(
            "{} does not exist: run the manifest first (`cellnets {}`), or give the folder \
             its outputs went to with --out",
            out.display(),
            manifest_path.display()
        );
    }
    let mut data_files = crate::data::Datasets::new(&settings.data_dir, settings.device);
    let plans = gather::plans(manifest, out)?;
    let stages = gather::stages(manifest, &plans, out)?;
    let tested = compute::test_winners(&stages, &mut data_files)?;
    let ensembles = compute::test_ensembles(&stages, &mut data_files)?;
    let data = gather::data_overviews(&stages, &mut data_files)?;
    let report = render::report(manifest_path, &stages, &tested, &ensembles, &data);
    let markdown = output::write(out, &report)?;
    let snapshot = snapshot::gather(manifest, manifest_path, out, claim::DEFAULT_TIMEOUT)?;
    let title = format!("cellnets report: {}", manifest_path.display());
    let html = output::write_html(out, &report, &title, &snapshot::to_script_json(&snapshot))?;
    Ok(Written { markdown, html })
}

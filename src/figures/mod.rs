//! Figures cellnets draws itself with plotters: PNG to look at, SVG to put in a paper.
//! Text uses the font bundled in assets/, so every machine renders the same picture
//! without system fonts.

mod charts;
mod draw;
mod pictures;
mod search;

pub use charts::{
    CategoryLines, Curves, GroupedBars, HeatMap, Panel, RunCurve, RungCurves, TimeCurves,
};
pub use draw::{DrawResult, Figure};
pub use pictures::{MistakePanel, Montage, Picture};
pub use search::{BestPoint, BestSoFar, ProposalPanel, Proposals};

use crate::storage::files::write_atomically;
use anyhow::Result;
use draw::{drawing_error, register_font};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Writes `dir/name.png`; returns its path.
pub fn save_png(figure: &impl Figure, dir: &Path, name: &str) -> Result<PathBuf> {
    register_font();
    let path = dir.join(format!("{name}.png"));
    write_atomically(&path, |tmp| {
        let area = BitMapBackend::new(tmp, figure.size()).into_drawing_area();
        area.fill(&WHITE).map_err(drawing_error)?;
        figure.draw(&area).map_err(drawing_error)?;
        area.present().map_err(drawing_error)
    })?;
    Ok(path)
}

/// Writes `dir/name.png` and `dir/name.svg`; returns the PNG's path.
pub fn save(figure: &impl Figure, dir: &Path, name: &str) -> Result<PathBuf> {
    let png = save_png(figure, dir, name)?;
    write_atomically(&dir.join(format!("{name}.svg")), |tmp| {
        let area = SVGBackend::new(tmp, figure.size()).into_drawing_area();
        area.fill(&WHITE).map_err(drawing_error)?;
        figure.draw(&area).map_err(drawing_error)?;
        area.present().map_err(drawing_error)
    })?;
    Ok(png)
}

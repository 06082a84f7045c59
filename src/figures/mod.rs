//! Figures cellnets draws itself with plotters: PNG to look at, SVG to put in a paper.
//! Text uses the font bundled in assets/, so every machine renders the same picture
//! without system fonts.

mod charts;
mod pictures;

pub use charts::{CategoryLines, Curves, GroupedBars, HeatMap, Panel, RunCurve, RungCurves};
pub use pictures::{MistakePanel, Montage, Picture};

use crate::storage::files::write_atomically;
use anyhow::{anyhow, Result};
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::RangedCoordi32;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;

pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something that can be drawn on any plotters backend.
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}

/// Text of `size` centred on its position.
fn centered(size: f64) -> TextStyle<'static> {
    font(size).pos(Pos::new(HPos::Center, VPos::Center))
}

/// A title centred at the top of a figure laid out by hand.
fn draw_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    size: f64,
) -> DrawResult<DB> {
    let (width, _) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (width as i32 / 2, 22),
        centered(size),
    ))
}

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let registered = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
        assert!(
            registered.is_ok(),
            "the bundled font is a valid TrueType file"
        );
    });
}

fn drawing_error<E: std::error::Error + Send + Sync>(
    error: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("cannot draw the figure: {error}")
}

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

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const PALETTE: [RGBColor; 4] = [TRAIN, VAL, RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
const GOOD: RGBColor = RGBColor(44, 160, 44);
const BAD: RGBColor = RGBColor(214, 39, 40);
const NEUTRAL: RGBColor = RGBColor(160, 160, 160);

/// White to dark blue, for `shade` in [0, 1].
fn blues(shade: f64) -> RGBColor {
    let (light, dark) = ([247.0, 251.0, 255.0], [8.0, 48.0, 107.0]);
    let t = shade.clamp(0.0, 1.0);
    let mix = |i: usize| (light[i] + (dark[i] - light[i]) * t) as u8;
    RGBColor(mix(0), mix(1), mix(2))
}

/// Steps of the x axis per category: category `i` sits at `i * CATEGORY`, so bars can
/// be placed between categories on an integer axis (plotters labels integer axes).
const CATEGORY: i32 = 100;

/// An x axis of `n` categories with a tick at each.
fn category_axis(n: usize) -> WithKeyPoints<RangedCoordi32> {
    let ticks = (0..n as i32).map(|i| i * CATEGORY).collect();
    (-CATEGORY / 2..n as i32 * CATEGORY - CATEGORY / 2).with_key_points(ticks)
}

/// The label of the category at tick `x`.
fn category_label(names: &[String], x: i32) -> String {
    if x % CATEGORY == 0 && x >= 0 {
        names
            .get((x / CATEGORY) as usize)
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    }
}

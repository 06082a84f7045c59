//! Charts of a search: the best value found against configurations tried and against
//! epochs spent, one line per method; and a search's proposals over its space, one
//! panel per key, random draws told apart from the model's.

use super::draw::{font, DrawResult, Figure, BAD, NEUTRAL, PALETTE, TRAIN};
use plotters::coord::Shift;
use plotters::prelude::*;

/// (configurations tried, epochs spent, best value so far).
pub type BestPoint = (f64, f64, f64);

/// The best value so far, per method: two panels, against configurations tried and
/// against epochs spent.
pub struct BestSoFar {
    pub title: String,
    pub y_desc: String,
    /// Each method's name, and its points after each configuration.
    pub methods: Vec<(String, Vec<BestPoint>)>,
}

impl Figure for BestSoFar {
    fn size(&self) -> (u32, u32) {
        (1100, 440)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, font(20.0))?;
        let (left, right) = area.split_horizontally(550);
        self.panel(&left, "configurations tried", |&(tried, _, best)| {
            (tried, best)
        })?;
        self.panel(&right, "epochs spent", |&(_, epochs, best)| (epochs, best))
    }
}

impl BestSoFar {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        x_desc: &str,
        pick: fn(&BestPoint) -> (f64, f64),
    ) -> DrawResult<DB> {
        let points: Vec<(f64, f64)> = (self.methods.iter())
            .flat_map(|(_, points)| points.iter().map(pick))
            .filter(|(_, y)| y.is_finite())
            .collect();
        let right = points.iter().map(|p| p.0).fold(1.0, f64::max);
        let low = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let high = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let (low, high) = match low.is_finite() {
            true => (low, high.max(low + 1e-3)),
            false => (0.0, 1.0),
        };
        let margin = (high - low) * 0.05;
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..right * 1.02, (low - margin)..(high + margin))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(self.y_desc.as_str())
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE)
            .draw()?;
        for (i, (name, points)) in self.methods.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let line: Vec<(f64, f64)> = points
                .iter()
                .map(pick)
                .filter(|p| p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .label_font(font(13.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        Ok(())
    }
}

/// One key of a search's space: each proposal's value against its index.
pub struct ProposalPanel {
    /// The key, with `(log10)` for a log-uniform one.
    pub y_desc: String,
    /// (proposal number from 1, value, drawn by the model rather than at random).
    pub points: Vec<(f64, f64, bool)>,
    /// The names of a `choice`'s values, bottom first (the values are their indices).
    pub choices: Vec<String>,
    /// The proposal of the stage's winner, marked.
    pub winner: Option<usize>,
}

/// A search's proposals over its space, a panel per key.
pub struct Proposals {
    pub title: String,
    pub panels: Vec<ProposalPanel>,
}

impl ProposalPanel {
    /// The value axis: the values seen with a margin, or every choice.
    fn value_range(&self) -> std::ops::Range<f64> {
        if !self.choices.is_empty() {
            return -0.5..self.choices.len() as f64 - 0.5;
        }
        let values = || self.points.iter().map(|p| p.1);
        let low = values().fold(f64::INFINITY, f64::min);
        let high = values().fold(f64::NEG_INFINITY, f64::max);
        if !low.is_finite() {
            return 0.0..1.0;
        }
        let high = high.max(low + 1e-9);
        let margin = (high - low) * 0.05;
        low - margin..high + margin
    }
}

const PANEL_WIDTH: u32 = 360;
const PANELS_PER_ROW: usize = 3;

impl Figure for Proposals {
    fn size(&self) -> (u32, u32) {
        let columns = self.panels.len().clamp(1, PANELS_PER_ROW);
        let rows = self.panels.len().div_ceil(PANELS_PER_ROW).max(1);
        (PANEL_WIDTH * columns as u32, 40 + 300 * rows as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, font(18.0))?;
        let rows = self.panels.len().div_ceil(PANELS_PER_ROW).max(1);
        let columns = self.panels.len().clamp(1, PANELS_PER_ROW);
        for (panel, cell) in self.panels.iter().zip(area.split_evenly((rows, columns))) {
            draw_proposals(panel, &cell)?;
        }
        Ok(())
    }
}

fn draw_proposals<DB: DrawingBackend>(
    panel: &ProposalPanel,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let count = panel.points.iter().map(|p| p.0).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..count + 1.0, panel.value_range())?;
    let choices = panel.choices.clone();
    let label = move |y: &f64| match choices.is_empty() {
        true => {
            let text = format!("{y:.3}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        false => choices
            .get(y.round().max(0.0) as usize)
            .filter(|_| (y - y.round()).abs() < 1e-6)
            .cloned()
            .unwrap_or_default(),
    };
    chart
        .configure_mesh()
        .x_desc("proposal")
        .y_desc(panel.y_desc.as_str())
        .y_label_formatter(&label)
        .y_labels(match panel.choices.len() {
            0 => 6,
            n => n * 2 + 1,
        })
        .label_style(font(12.0))
        .axis_desc_style(font(13.0))
        .light_line_style(WHITE)
        .draw()?;
    // No legend over the points: the figure's title says what the marks are.
    let (random, model): (Vec<&(f64, f64, bool)>, Vec<_>) = panel.points.iter().partition(|p| !p.2);
    chart.draw_series(
        random
            .iter()
            .map(|p| Circle::new((p.0, p.1), 4, NEUTRAL.filled())),
    )?;
    chart.draw_series(
        model
            .iter()
            .map(|p| Circle::new((p.0, p.1), 4, TRAIN.filled())),
    )?;
    if let Some(winner) = panel.winner {
        let marked = panel.points.iter().filter(|p| p.0 as usize == winner);
        chart.draw_series(marked.map(|p| Circle::new((p.0, p.1), 7, BAD.stroke_width(2))))?;
    }
    Ok(())
}

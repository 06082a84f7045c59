//! Line, bar and heat-map charts.

use super::draw::{
    blues, category_axis, category_label, centered, draw_title, font, DrawResult, Figure, BAD,
    CATEGORY, NEUTRAL, PALETTE, TRAIN, VAL,
};
use crate::train::EpochRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A run's train and val loss and accuracy per epoch, side by side.
pub struct Curves {
    pub title: String,
    pub epochs: Vec<EpochRecord>,
    /// The checkpointed epoch, marked on both panels.
    pub best_epoch: Option<usize>,
}

impl Figure for Curves {
    fn size(&self) -> (u32, u32) {
        (1100, 420)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, font(20.0))?;
        let (left, right) = area.split_horizontally(550);
        self.panel(&left, "loss", |r| (r.train_loss, r.val_loss))?;
        self.panel(&right, "accuracy", |r| (r.train_accuracy, r.val_accuracy))
    }
}

impl Curves {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        metric: &str,
        pick: fn(&EpochRecord) -> (f64, f64),
    ) -> DrawResult<DB> {
        let last = self.epochs.last().map_or(1, |r| r.epoch).max(2) as i32;
        let accuracy = metric == "accuracy";
        let highest = self
            .epochs
            .iter()
            .flat_map(|r| {
                let (train, val) = pick(r);
                [train, val]
            })
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let top = if accuracy {
            1.0
        } else {
            (highest * 1.05).max(1e-3)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1..last, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(metric)
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE)
            .draw()?;
        let finite = |points: Vec<(i32, f64)>| -> Vec<(i32, f64)> {
            points.into_iter().filter(|(_, v)| v.is_finite()).collect()
        };
        let series = [
            ("train", TRAIN, finite(self.points(|r| pick(r).0))),
            ("val", VAL, finite(self.points(|r| pick(r).1))),
        ];
        for (name, color, points) in series {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if points.len() <= 40 {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
        if let Some(best) = self.best_epoch {
            let best = best as i32;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(best, 0.0), (best, top)],
                    NEUTRAL.stroke_width(1),
                )))?
                .label(format!("best epoch {best}"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], NEUTRAL));
        }
        draw_legend(
            &mut chart,
            if accuracy {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            },
        )
    }

    fn points(&self, value: impl Fn(&EpochRecord) -> f64) -> Vec<(i32, f64)> {
        self.epochs
            .iter()
            .map(|r| (r.epoch as i32, value(r)))
            .collect()
    }
}

/// One chart panel of values over named categories.
pub struct Panel {
    pub y_desc: String,
    pub values: Vec<f64>,
}

/// Values against the categories of a varied hyperparameter, one panel per metric,
/// the winner marked.
pub struct CategoryLines {
    pub title: String,
    pub x_desc: String,
    pub categories: Vec<String>,
    pub panels: Vec<Panel>,
    pub highlight: Option<usize>,
}

impl Figure for CategoryLines {
    fn size(&self) -> (u32, u32) {
        (520 * self.panels.len().max(1) as u32, 420)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, font(20.0))?;
        let panels = area.split_evenly((1, self.panels.len().max(1)));
        for (panel, region) in self.panels.iter().zip(&panels) {
            self.panel(region, panel)?;
        }
        Ok(())
    }
}

impl CategoryLines {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        panel: &Panel,
    ) -> DrawResult<DB> {
        let n = self.categories.len();
        let finite: Vec<f64> = panel
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let (low, high) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let pad = if high > low {
            (high - low) * 0.15
        } else {
            0.05
        };
        let (low, high) = if finite.is_empty() {
            (0.0, 1.0)
        } else {
            (low - pad, high + pad)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(category_axis(n), low..high)?;
        let label = |x: &i32| category_label(&self.categories, *x);
        chart
            .configure_mesh()
            .x_desc(&self.x_desc)
            .y_desc(&panel.y_desc)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| format!("{y:.3}"))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE)
            .disable_x_mesh()
            .draw()?;
        let points: Vec<(i32, f64)> = panel
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| (i as i32 * CATEGORY, v))
            .collect();
        chart.draw_series(LineSeries::new(points.clone(), TRAIN.stroke_width(2)))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, TRAIN.filled())))?;
        if let Some((x, y)) = self
            .highlight
            .and_then(|i| points.iter().find(|p| p.0 == i as i32 * CATEGORY))
        {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (*x, *y),
                    7,
                    BAD.stroke_width(2),
                )))?
                .label("winner")
                .legend(|(x, y)| Circle::new((x + 10, y), 5, BAD.stroke_width(2)));
            draw_legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
        }
        Ok(())
    }
}

/// Side-by-side bars: one group per category, one bar per series.
pub struct GroupedBars {
    pub title: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    pub series: Vec<(String, Vec<f64>)>,
}

impl Figure for GroupedBars {
    fn size(&self) -> (u32, u32) {
        (140 * self.categories.len().max(4) as u32 + 100, 460)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, font(20.0))?;
        let n = self.categories.len();
        let top = self
            .series
            .iter()
            .flat_map(|(_, values)| values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(category_axis(n), 0.0..top.max(1e-9))?;
        let label = |x: &i32| category_label(&self.categories, *x);
        let integers = self
            .series
            .iter()
            .all(|(_, values)| values.iter().all(|v| v.fract() == 0.0));
        chart
            .configure_mesh()
            .y_desc(&self.y_desc)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| {
                if integers {
                    format!("{y:.0}")
                } else {
                    format!("{y:.2}")
                }
            })
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE)
            .disable_x_mesh()
            .draw()?;
        let width = CATEGORY * 8 / 10 / self.series.len().max(1) as i32;
        for (s, (name, values)) in self.series.iter().enumerate() {
            let color = PALETTE[s % PALETTE.len()];
            let left = |i: usize| i as i32 * CATEGORY - CATEGORY * 4 / 10 + s as i32 * width;
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    Rectangle::new([(left(i), 0.0), (left(i) + width - 2, v)], color.filled())
                }))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// The chart's series labels in a framed box at `position`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .label_font(font(13.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
}

/// A table of cells coloured by `shade` (0 to 1) and labelled with `text`; row 0 on top.
pub struct HeatMap {
    pub title: String,
    pub row_desc: String,
    pub col_desc: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    pub shade: Vec<Vec<Option<f64>>>,
    pub text: Vec<Vec<String>>,
}

const CELL: u32 = 64;
const TITLE: u32 = 50;
const FOOTER: u32 = 60;

impl HeatMap {
    /// A confusion matrix (rows = true class), each row shaded by its share of the row.
    pub fn confusion(title: String, matrix: &[Vec<u64>], names: &[String]) -> Self {
        let shade = matrix
            .iter()
            .map(|row| {
                let total: u64 = row.iter().sum();
                row.iter()
                    .map(|&n| {
                        Some(if total == 0 {
                            0.0
                        } else {
                            n as f64 / total as f64
                        })
                    })
                    .collect()
            })
            .collect();
        HeatMap {
            title,
            row_desc: "true class".into(),
            col_desc: "predicted class".into(),
            rows: (0..matrix.len())
                .map(|i| format!("{i} {}", names.get(i).map_or("", String::as_str)))
                .collect(),
            cols: (0..matrix.len()).map(|i| i.to_string()).collect(),
            shade,
            text: matrix
                .iter()
                .map(|row| row.iter().map(u64::to_string).collect())
                .collect(),
        }
    }

    /// Values of a two-way grid, shaded from the lowest (white) to the highest.
    pub fn grid(
        title: String,
        (row_desc, rows): (String, Vec<String>),
        (col_desc, cols): (String, Vec<String>),
        values: &[Vec<Option<f64>>],
    ) -> Self {
        let known = values.iter().flatten().flatten().copied();
        let (low, high) = known.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let span = if high > low { high - low } else { 1.0 };
        HeatMap {
            title,
            row_desc,
            col_desc,
            rows,
            cols,
            shade: values
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| v.map(|v| 0.15 + 0.85 * (v - low) / span))
                        .collect()
                })
                .collect(),
            text: values
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| v.map_or("–".into(), |v| format!("{v:.4}")))
                        .collect()
                })
                .collect(),
        }
    }

    fn label_width(&self) -> u32 {
        let longest = self
            .rows
            .iter()
            .chain(std::iter::once(&self.row_desc))
            .map(|label| label.chars().count())
            .max()
            .unwrap_or(0);
        longest as u32 * 9 + 24
    }
}

impl Figure for HeatMap {
    fn size(&self) -> (u32, u32) {
        let grid_width = CELL * self.cols.len() as u32;
        let title_width = self.title.chars().count() as u32 * 11 + 40;
        (
            (self.label_width() + grid_width + 30).max(title_width),
            TITLE + 24 + CELL * self.rows.len() as u32 + FOOTER,
        )
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_title(area, &self.title, 20.0)?;
        let left = self.label_width() as i32;
        let top = (TITLE + 24) as i32;
        let cell = CELL as i32;
        let right_aligned = font(14.0).pos(Pos::new(HPos::Right, VPos::Center));
        area.draw(&Text::new(
            format!("{} ↓", self.row_desc),
            (left - 10, top - 14),
            right_aligned.clone(),
        ))?;
        for (r, (label, shades)) in self.rows.iter().zip(&self.shade).enumerate() {
            let y = top + r as i32 * cell;
            area.draw(&Text::new(
                label.clone(),
                (left - 10, y + cell / 2),
                right_aligned.clone(),
            ))?;
            for (c, shade) in shades.iter().enumerate() {
                let x = left + c as i32 * cell;
                let fill = shade.map_or(RGBColor(230, 230, 230), blues);
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))?;
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    WHITE.stroke_width(1),
                ))?;
                let ink = if shade.unwrap_or(0.0) > 0.55 {
                    WHITE
                } else {
                    BLACK
                };
                area.draw(&Text::new(
                    self.text[r][c].clone(),
                    (x + cell / 2, y + cell / 2),
                    centered(14.0).color(&ink),
                ))?;
            }
        }
        let bottom = top + self.rows.len() as i32 * cell;
        for (c, label) in self.cols.iter().enumerate() {
            let x = left + c as i32 * cell + cell / 2;
            area.draw(&Text::new(label.clone(), (x, bottom + 14), centered(14.0)))?;
        }
        let middle = left + self.cols.len() as i32 * cell / 2;
        area.draw(&Text::new(
            self.col_desc.clone(),
            (middle, bottom + 42),
            centered(15.0),
        ))?;
        Ok(())
    }
}

/// A halving stage's val accuracy curves in one chart: the rungs as vertical lines, the
/// runs a rung halted faded, the runs that went on to the budget drawn in colour.
pub struct RungCurves {
    pub title: String,
    pub runs: Vec<RunCurve>,
    pub rungs: Vec<usize>,
    pub y_desc: String,
}

/// One run of `RungCurves`.
pub struct RunCurve {
    pub name: String,
    /// (epoch, value).
    pub points: Vec<(usize, f64)>,
    /// Whether it trained to the budget (else a rung halted it, or it waits).
    pub reached_budget: bool,
}

impl Figure for RungCurves {
    fn size(&self) -> (u32, u32) {
        (900, 520)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, font(20.0))?;
        let last = self.rungs.last().copied().unwrap_or(1).max(2) as i32;
        let values = self.runs.iter().flat_map(|run| &run.points);
        let finite: Vec<f64> = values.map(|&(_, v)| v).filter(|v| v.is_finite()).collect();
        let low = finite.iter().copied().fold(1.0, f64::min).min(1.0);
        let high = finite.iter().copied().fold(0.0, f64::max).max(low + 1e-3);
        let margin = (high - low) * 0.05;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1..last, (low - margin)..(high + margin))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(self.y_desc.as_str())
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE)
            .draw()?;
        for &rung in &self.rungs {
            chart.draw_series(std::iter::once(PathElement::new(
                [(rung as i32, low - margin), (rung as i32, high + margin)],
                NEUTRAL.stroke_width(1),
            )))?;
        }
        let points = |points: &[(usize, f64)]| -> Vec<(i32, f64)> {
            points
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|&(epoch, v)| (epoch as i32, v))
                .collect()
        };
        // The faded runs first, so the ones that went on are drawn over them.
        for run in self.runs.iter().filter(|run| !run.reached_budget) {
            let faded = NEUTRAL.mix(0.6);
            let points = points(&run.points);
            // A run halted at the first rung has one point: no line, so a dot ends each.
            let end = points.last().copied();
            chart.draw_series(LineSeries::new(points, faded.stroke_width(1)))?;
            chart.draw_series(end.map(|end| Circle::new(end, 3, faded.filled())))?;
        }
        let survivors = self.runs.iter().filter(|run| run.reached_budget);
        for (i, run) in survivors.enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(points(&run.points), color.stroke_width(2)))?
                .label(run.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// Val accuracy against wall minutes of training: how soon each model reached what.
pub struct TimeCurves {
    pub title: String,
    /// Each model's name and (cumulative wall minutes, val accuracy) after each epoch.
    pub runs: Vec<(String, Vec<(f64, f64)>)>,
}

impl Figure for TimeCurves {
    fn size(&self) -> (u32, u32) {
        (900, 520)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = area.titled(&self.title, font(20.0))?;
        let points: Vec<&(f64, f64)> = self.runs.iter().flat_map(|(_, points)| points).collect();
        let minutes = points
            .iter()
            .map(|&&(x, _)| x)
            .fold(0.0, f64::max)
            .max(1e-3);
        let low = points
            .iter()
            .map(|&&(_, y)| y)
            .fold(1.0, f64::min)
            .min(0.999);
        let high = points
            .iter()
            .map(|&&(_, y)| y)
            .fold(0.0, f64::max)
            .max(low + 1e-3);
        let margin = (high - low) * 0.05;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..minutes * 1.02, (low - margin)..(high + margin))?;
        chart
            .configure_mesh()
            .x_desc("wall minutes of training")
            .y_desc("val accuracy")
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE)
            .draw()?;
        for (i, (name, points)) in self.runs.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

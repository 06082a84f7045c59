//! Figures made of the data's own images: a montage of samples and the error-analysis
//! panel (a mistaken sample beside training examples of both classes, with the model's
//! class probabilities).

use super::draw::{
    category_axis, category_label, centered, draw_title, font, DrawResult, Figure, BAD, CATEGORY,
    GOOD, NEUTRAL,
};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use tch::{Kind, Tensor};

/// An RGB image, row by row.
#[derive(Debug, Clone)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<[u8; 3]>,
}

impl Picture {
    /// From one (C, H, W) image with values in [0, 1]; one channel is drawn as grey.
    pub fn from_tensor(image: &Tensor) -> Result<Self> {
        let [channels, height, width] = image.size()[..] else {
            anyhow::bail!("an image has 3 dimensions, not {:?}", image.size());
        };
        let bytes = Vec::<u8>::try_from(
            (image.to_device(tch::Device::Cpu) * 255.0)
                .round()
                .clamp(0.0, 255.0)
                .to_kind(Kind::Uint8)
                .permute([1, 2, 0])
                .contiguous()
                .flatten(0, -1),
        )?;
        let rgb = bytes
            .chunks(channels as usize)
            .map(|pixel| match pixel {
                [r, g, b, ..] => [*r, *g, *b],
                [grey, ..] => [*grey; 3],
                [] => [0; 3],
            })
            .collect();
        Ok(Picture {
            width: width as usize,
            height: height as usize,
            rgb,
        })
    }

    /// Draws the picture with its top-left corner at `corner`, each pixel `scale` wide.
    fn draw_at<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        (left, top): (i32, i32),
        scale: i32,
    ) -> DrawResult<DB> {
        for (i, &[r, g, b]) in self.rgb.iter().enumerate() {
            let x = left + (i % self.width) as i32 * scale;
            let y = top + (i / self.width) as i32 * scale;
            area.draw(&Rectangle::new(
                [(x, y), (x + scale, y + scale)],
                RGBColor(r, g, b).filled(),
            ))?;
        }
        Ok(())
    }
}

/// How many times a picture is enlarged to be about `side` pixels wide.
fn scale_for(picture: &Picture, side: usize) -> i32 {
    (side / picture.width.max(1)).max(1) as i32
}

/// Labelled pictures in one row, enlarged.
pub struct Montage {
    pub title: String,
    pub tiles: Vec<(String, Picture)>,
}

const TILE: usize = 120;

impl Figure for Montage {
    fn size(&self) -> (u32, u32) {
        let tiles = self.tiles.len().max(1) as u32;
        (tiles * (TILE as u32 + 24) + 24, TILE as u32 + 90)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_title(area, &self.title, 20.0)?;
        for (i, (label, picture)) in self.tiles.iter().enumerate() {
            let scale = scale_for(picture, TILE);
            let left = 24 + i as i32 * (TILE as i32 + 24);
            picture.draw_at(area, (left, 50), scale)?;
            let below = 50 + picture.height as i32 * scale + 18;
            area.draw(&Text::new(
                label.clone(),
                (left + TILE as i32 / 2, below),
                centered(13.0),
            ))?;
        }
        Ok(())
    }
}

/// One misclassified sample, as the study's error-analysis figures show it.
pub struct MistakePanel {
    pub title: String,
    pub sample: Picture,
    pub predicted_example: Picture,
    pub true_example: Picture,
    pub class_names: Vec<String>,
    pub probabilities: Vec<f64>,
    pub predicted: usize,
    pub truth: usize,
}

const PANEL_TILE: usize = 180;

impl Figure for MistakePanel {
    fn size(&self) -> (u32, u32) {
        (900, 640)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_title(area, &self.title, 18.0)?;
        let name = |class: usize| self.class_names.get(class).cloned().unwrap_or_default();
        let tiles = [
            ("test sample".to_string(), &self.sample),
            (
                format!("train: {} (predicted)", name(self.predicted)),
                &self.predicted_example,
            ),
            (
                format!("train: {} (true)", name(self.truth)),
                &self.true_example,
            ),
        ];
        let (width, _) = self.size();
        let gap = (width as i32 - 3 * PANEL_TILE as i32) / 4;
        for (i, (label, picture)) in tiles.iter().enumerate() {
            let left = gap + i as i32 * (PANEL_TILE as i32 + gap);
            picture.draw_at(area, (left, 50), scale_for(picture, PANEL_TILE))?;
            let below = 50 + PANEL_TILE as i32 + 18;
            area.draw(&Text::new(
                label.clone(),
                (left + PANEL_TILE as i32 / 2, below),
                centered(14.0),
            ))?;
        }
        let (_, bars) = area.split_vertically(270);
        self.draw_probabilities(&bars)
    }
}

impl MistakePanel {
    fn draw_probabilities<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> DrawResult<DB> {
        let n = self.probabilities.len();
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(category_axis(n), 0.0..1.0)?;
        let label = |x: &i32| category_label(&self.class_names, *x);
        chart
            .configure_mesh()
            .y_desc("probability")
            .x_label_formatter(&label)
            .label_style(font(12.0))
            .axis_desc_style(font(14.0))
            .light_line_style(WHITE)
            .disable_x_mesh()
            .draw()?;
        let color = |class: usize| {
            if class == self.truth {
                GOOD
            } else if class == self.predicted {
                BAD
            } else {
                NEUTRAL
            }
        };
        chart.draw_series(self.probabilities.iter().enumerate().map(|(i, &p)| {
            let x = i as i32 * CATEGORY;
            Rectangle::new([(x - 35, 0.0), (x + 35, p)], color(i).filled())
        }))?;
        chart.draw_series(self.probabilities.iter().enumerate().map(|(i, &p)| {
            Text::new(
                format!("{p:.2}"),
                (i as i32 * CATEGORY, (p + 0.06).min(0.97)),
                centered(12.0),
            )
        }))?;
        Ok(())
    }
}

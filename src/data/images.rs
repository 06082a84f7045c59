//! Image files prepared as MedMNIST prepared its sources (crop, resize, channels), so
//! that a model sees a new image as it saw its training data. The largest centred
//! square (MedMNIST centre-cropped its non-square sources) is resized with a bicubic
//! filter that widens when it shrinks (PIL's `BICUBIC`, which MedMNIST+ used), as 8-bit
//! RGB or PIL's `L` grey levels.

use anyhow::{anyhow, Context, Result};
use image::imageops::{self, FilterType};
use image::{DynamicImage, RgbImage};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// File endings taken from a folder; a file named on the command line is read whatever
/// its ending, since the format is guessed from its content.
pub const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"];

/// Whether `path` ends in one of `EXTENSIONS` (any case).
pub fn has_image_extension(path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    EXTENSIONS
        .iter()
        .any(|known| extension.eq_ignore_ascii_case(known))
}

/// Adds the image files under `dir` (by ending, in every subfolder) to `found`, in
/// sorted order.
pub fn find_in(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            find_in(&path, found)?;
        } else if has_image_extension(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// One image as a model's input: `side x side` pixels, channels last, 8 bits each.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub pixels: RgbImage,
    /// Whether the file held grey levels only (no colour channels).
    pub grey: bool,
}

impl Prepared {
    /// The pixels as `channels` (1 or 3) bytes per pixel, row by row.
    pub fn bytes(&self, channels: i64) -> Vec<u8> {
        if channels == 3 {
            return self.pixels.as_raw().clone();
        }
        self.pixels
            .pixels()
            .map(|pixel| pil_luma(pixel.0))
            .collect()
    }
}

/// PIL's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point, as MedMNIST's grey
/// images were made. A grey file has R = G = B, which this returns unchanged.
fn pil_luma([r, g, b]: [u8; 3]) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Reads `path` and prepares it as a `height x width` image. Any reason it cannot be
/// read (missing, not an image, truncated, too large) is an error naming the file;
/// a decoder that panics on a hostile file is caught and reported the same way.
pub fn read(path: &Path, height: u32, width: u32) -> Result<Prepared> {
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| decode(path)))
        .map_err(|payload| anyhow!("the decoder failed: {}", crate::panic_summary(&*payload)))??;
    Ok(prepare(&decoded, height, width))
}

/// Decodes by content, not by ending: a JPEG named .png is read as the JPEG it is.
fn decode(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|error| anyhow!("cannot open it: {error}"))?;
    let format = image::guess_format(&bytes).map_err(|_| {
        anyhow!("not a PNG, JPEG, TIFF or BMP image (its first bytes match none of them)")
    })?;
    image::load_from_memory_with_format(&bytes, format)
        .map_err(|error| anyhow!("cannot decode it as {format:?}: {error}"))
}

/// Centre crop to the target's aspect ratio, resize, and 8-bit RGB (16-bit samples are
/// scaled down, alpha is dropped, grey is copied into the three channels).
pub fn prepare(image: &DynamicImage, height: u32, width: u32) -> Prepared {
    let grey = !image.color().has_color();
    let (w, h) = (image.width(), image.height());
    // The largest centred crop with the target's aspect ratio; at least one pixel.
    let scaled = |side: u32, num: u32, den: u32| side as u64 * num as u64 / den.max(1) as u64;
    let crop_w = (w as u64).min(scaled(h, width, height)).clamp(1, w as u64) as u32;
    let crop_h = (h as u64).min(scaled(w, height, width)).clamp(1, h as u64) as u32;
    let cropped = image
        .crop_imm((w - crop_w) / 2, (h - crop_h) / 2, crop_w, crop_h)
        .to_rgb8();
    let pixels = if cropped.dimensions() == (width, height) {
        cropped
    } else {
        imageops::resize(&cropped, width, height, FilterType::CatmullRom)
    };
    Prepared { pixels, grey }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb};

    #[test]
    fn a_wide_image_loses_its_sides_and_keeps_its_centre() {
        // 30 x 10: a red left third, a green middle, a blue right third.
        let image = RgbImage::from_fn(30, 10, |x, _| match x / 10 {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        let prepared = prepare(&DynamicImage::ImageRgb8(image), 10, 10);
        assert_eq!(prepared.pixels.dimensions(), (10, 10));
        assert!(prepared.pixels.pixels().all(|p| *p == Rgb([0, 255, 0])));
        assert!(!prepared.grey);
    }

    #[test]
    fn an_image_of_the_target_size_is_kept_exactly() {
        let image = RgbImage::from_fn(8, 8, |x, y| Rgb([x as u8 * 30, y as u8 * 30, 7]));
        let prepared = prepare(&DynamicImage::ImageRgb8(image.clone()), 8, 8);
        assert_eq!(prepared.pixels, image);
        assert_eq!(prepared.bytes(3), image.into_raw());
    }

    #[test]
    fn grey_images_fill_three_channels_and_colour_becomes_pil_luma() {
        let grey = GrayImage::from_pixel(4, 4, Luma([90]));
        let prepared = prepare(&DynamicImage::ImageLuma8(grey), 4, 4);
        assert!(prepared.grey);
        assert_eq!(prepared.bytes(3)[..3], [90, 90, 90]);
        assert_eq!(prepared.bytes(1), vec![90; 16]);
        // PIL: Image.new("RGB", (1, 1), (200, 100, 50)).convert("L").getpixel((0, 0)) == 124
        assert_eq!(pil_luma([200, 100, 50]), 124);
    }

    #[test]
    fn a_single_pixel_grows_to_the_target() {
        let dot = RgbImage::from_pixel(1, 1, Rgb([10, 20, 30]));
        let prepared = prepare(&DynamicImage::ImageRgb8(dot), 28, 28);
        assert_eq!(prepared.pixels.dimensions(), (28, 28));
        assert!(prepared.pixels.pixels().all(|p| *p == Rgb([10, 20, 30])));
    }
}

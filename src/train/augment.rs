//! The random transforms of training images: flips, quarter turns, shifts, rotations,
//! colour jitter. Each image of a batch draws its own parameters from the run's
//! streams, in a fixed order: flips and quarter turns (`augment`), a shift
//! (`crop_padding`), a small rotation (`rotate`), then brightness, contrast and
//! saturation (`color_jitter`). Blood-cell images have no up or left, so every symmetry
//! of the square is a fair view of a cell. Each transform is a function of the batch
//! and its drawn parameters, so tests can give it the parameters.

use crate::random;
use crate::study::manifest::Training;
use tch::{Kind, Tensor};

/// `images` (N, C, H, W, float in [0, 1]) as the run's settings transform them.
pub fn augment(images: &Tensor, training: &Training) -> Tensor {
    let mut images = images.shallow_clone();
    if training.augment {
        images = flips_and_turns(&images);
    }
    let (rows, device) = (images.size()[0], images.device());
    if training.crop_padding > 0 {
        let padding = training.crop_padding as i64;
        let offsets =
            random::draw(|| Tensor::randint(2 * padding + 1, [rows, 2], (Kind::Int64, device)));
        images = shift(&images, padding, &offsets);
    }
    if training.rotate > 0.0 {
        let degrees = random::draw(|| Tensor::rand([rows], (Kind::Float, device)));
        images = rotate(&images, &((degrees * 2.0 - 1.0) * training.rotate));
    }
    if training.color_jitter > 0.0 {
        let spread = training.color_jitter;
        let factors = random::draw(|| Tensor::rand([rows, 3], (Kind::Float, device)));
        images = jitter_colors(&images, &(factors * (2.0 * spread) + (1.0 - spread)));
    }
    images
}

/// A random horizontal flip and a random multiple of 90 degrees of rotation per image:
/// blood cells have no preferred orientation. Rotations need square images.
fn flips_and_turns(images: &Tensor) -> Tensor {
    let rows = images.size()[0];
    let device = images.device();
    let [.., height, width] = images.size()[..] else {
        unreachable!("images are (N, C, H, W)")
    };
    let (flip, turns) = random::draw(|| {
        let flip = Tensor::rand([rows, 1, 1, 1], (Kind::Float, device)).lt(0.5);
        let turns = Tensor::randint(4, [rows, 1, 1, 1], (Kind::Int64, device));
        (flip, turns)
    });
    let mut out = images.flip([3]).where_self(&flip, images);
    if height == width {
        let turned = out.shallow_clone();
        for k in 1..4 {
            out = turned.rot90(k, [2, 3]).where_self(&turns.eq(k), &out);
        }
    }
    out
}

/// Each image padded with `padding` zero pixels on every side and cropped back to its
/// size with its top-left corner at `offsets` (N, 2: row, column, each in
/// 0..=2*padding): the image moved by `padding - offset` pixels, zeros coming in.
fn shift(images: &Tensor, padding: i64, offsets: &Tensor) -> Tensor {
    let [rows, channels, height, width] = images.size()[..] else {
        unreachable!("images are (N, C, H, W)")
    };
    let device = images.device();
    let padded = images.constant_pad_nd([padding, padding, padding, padding]);
    let along = |size: i64, offset: Tensor| {
        Tensor::arange(size, (Kind::Int64, device)).unsqueeze(0) + offset.unsqueeze(1)
    };
    let row_index = along(height, offsets.select(1, 0))
        .view([rows, 1, height, 1])
        .expand([rows, channels, height, width + 2 * padding], false);
    let column_index = along(width, offsets.select(1, 1))
        .view([rows, 1, 1, width])
        .expand([rows, channels, height, width], false);
    padded
        .gather(2, &row_index, false)
        .gather(3, &column_index, false)
}

/// Each image rotated by its angle in `degrees` (N) about its centre, bilinear, the
/// corners filled from the nearest edge pixels (zeros would be black corners on a
/// light background).
fn rotate(images: &Tensor, degrees: &Tensor) -> Tensor {
    let [rows, channels, height, width] = images.size()[..] else {
        unreachable!("images are (N, C, H, W)")
    };
    let radians = degrees.to_kind(Kind::Float) * (std::f64::consts::PI / 180.0);
    let (cos, sin) = (radians.cos(), radians.sin());
    let zero = cos.zeros_like();
    // affine_grid works in coordinates scaled to [-1, 1] along each side; the aspect
    // ratios keep the rotation rigid on a rectangle.
    let aspect = height as f64 / width as f64;
    let theta = Tensor::stack(
        &[
            cos.shallow_clone(),
            -&sin * aspect,
            zero.shallow_clone(),
            &sin / aspect,
            cos,
            zero,
        ],
        1,
    )
    .view([rows, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, [rows, channels, height, width], false);
    const BILINEAR: i64 = 0;
    const BORDER: i64 = 1;
    images.grid_sampler(&grid.to_kind(images.kind()), BILINEAR, BORDER, false)
}

/// torchvision's ColorJitter in a fixed order, with `factors` (N, 3) of brightness,
/// contrast and saturation per image: brightness scales the pixels, contrast blends
/// with the image's mean grey, saturation with each pixel's grey (ITU-R 601 weights),
/// each result clipped to [0, 1]. Saturation needs three channels.
fn jitter_colors(images: &Tensor, factors: &Tensor) -> Tensor {
    let rows = images.size()[0];
    let channels = images.size()[1];
    let factor = |k: i64| factors.select(1, k).view([rows, 1, 1, 1]);
    let grey = |x: &Tensor| match channels {
        3 => x.narrow(1, 0, 1) * 0.299 + x.narrow(1, 1, 1) * 0.587 + x.narrow(1, 2, 1) * 0.114,
        _ => x.mean_dim(1, true, x.kind()),
    };
    let blend = |x: &Tensor, with: &Tensor, k: i64| ((x - with) * factor(k) + with).clamp(0.0, 1.0);
    let bright = (images * factor(0)).clamp(0.0, 1.0);
    let mean_grey = grey(&bright).mean_dim(&[1i64, 2, 3][..], true, bright.kind());
    let contrasted = blend(&bright, &mean_grey, 1);
    if channels == 3 {
        blend(&contrasted, &grey(&contrasted), 2)
    } else {
        contrasted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn images(rows: i64, channels: i64, side: i64) -> Tensor {
        Tensor::rand([rows, channels, side, side], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn flips_and_turns_only_flip_and_turn_each_image() {
        let images = images(64, 3, 5);
        let out = flips_and_turns(&images);
        assert_eq!(out.size(), images.size());
        let mut changed = 0;
        for i in 0..64 {
            let (original, seen) = (images.get(i), out.get(i));
            let variants: Vec<Tensor> = [original.shallow_clone(), original.flip([2])]
                .iter()
                .flat_map(|base| (0..4).map(move |k| base.rot90(k, [1, 2])))
                .collect();
            assert!(
                variants.iter().any(|v| v.equal(&seen)),
                "image {i} is not a flip/turn"
            );
            changed += i64::from(!seen.equal(&original));
        }
        assert!(changed > 32, "only {changed} of 64 images changed");
    }

    #[test]
    fn a_shift_moves_each_image_by_its_offset_with_zeros_coming_in() {
        let images = images(3, 2, 6);
        // Offsets 0, 2 and 4 with padding 2: moved by +2, 0 and -2 pixels.
        let offsets = Tensor::from_slice(&[0i64, 0, 2, 2, 4, 1]).view([3, 2]);
        let out = shift(&images, 2, &offsets);
        assert_eq!(out.size(), images.size());
        for (i, (down, right)) in [(2i64, 2i64), (0, 0), (-2, 1)].into_iter().enumerate() {
            let (original, moved) = (images.get(i as i64), out.get(i as i64));
            for y in 0..6 {
                for x in 0..6 {
                    let (from_y, from_x) = (y - down, x - right);
                    let expected = if (0..6).contains(&from_y) && (0..6).contains(&from_x) {
                        original.double_value(&[1, from_y, from_x])
                    } else {
                        0.0
                    };
                    assert_eq!(
                        moved.double_value(&[1, y, x]),
                        expected,
                        "image {i} at {y},{x}"
                    );
                }
            }
        }
    }

    #[test]
    fn rotations_of_0_and_90_degrees_are_the_image_and_its_quarter_turn() {
        let images = images(2, 3, 7);
        let out = rotate(&images, &Tensor::from_slice(&[0.0f32, 90.0]));
        assert!(out.get(0).allclose(&images.get(0), 1e-5, 1e-5, false));
        let turned = images.get(1).rot90(1, [1, 2]);
        let turned_back = images.get(1).rot90(-1, [1, 2]);
        let quarter = out.get(1);
        assert!(
            quarter.allclose(&turned, 1e-4, 1e-4, false)
                || quarter.allclose(&turned_back, 1e-4, 1e-4, false)
        );
    }

    #[test]
    fn a_small_rotation_keeps_the_centre_pixel_and_moves_the_rest() {
        let images = images(1, 1, 9);
        let out = rotate(&images, &Tensor::from_slice(&[10.0f32]));
        let centre = |t: &Tensor| t.double_value(&[0, 0, 4, 4]);
        assert!((centre(&out) - centre(&images)).abs() < 1e-5);
        assert!(!out.allclose(&images, 1e-3, 1e-3, false));
    }

    #[test]
    fn colour_jitter_follows_torchvision_s_formulas() {
        let images = images(4, 3, 5) * 0.8;
        let identity = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
        let same = jitter_colors(&images, &identity);
        assert!(same.allclose(&images, 1e-6, 1e-6, false));
        // Brightness 1.2 alone multiplies every pixel, clipped at 1.
        let brighter = Tensor::from_slice(&[1.2f32, 1.0, 1.0]).repeat([4, 1]);
        let out = jitter_colors(&images, &brighter);
        assert!(out.allclose(&(&images * 1.2).clamp(0.0, 1.0), 1e-6, 1e-6, false));
        // Saturation 0 leaves each pixel's grey in all three channels.
        let grey = Tensor::from_slice(&[1.0f32, 1.0, 0.0]).repeat([4, 1]);
        let out = jitter_colors(&images, &grey);
        let expected = images.narrow(1, 0, 1) * 0.299
            + images.narrow(1, 1, 1) * 0.587
            + images.narrow(1, 2, 1) * 0.114;
        for channel in 0..3 {
            assert!(out
                .narrow(1, channel, 1)
                .allclose(&expected, 1e-6, 1e-6, false));
        }
        // Contrast 0 leaves the image's mean grey everywhere.
        let flat = Tensor::from_slice(&[1.0f32, 0.0, 1.0]).repeat([4, 1]);
        let out = jitter_colors(&images, &flat);
        let mean = expected.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
        assert!(out.allclose(&mean.expand_as(&out), 1e-6, 1e-6, false));
    }
}

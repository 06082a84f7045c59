//! Label smoothing, mixup and cutmix: what a training batch's loss is taken against
//! when its targets are not its labels. Label smoothing follows Szegedy et al. 2016;
//! mixup (Zhang et al. 2018) and cutmix (Yun et al. 2019) mix pairs of images, and
//! their targets in the same shares. Each image's partner is the image at the mirror
//! position of the batch, whose order is already random (timm pairs them the same way),
//! so a pairing draws nothing.

use crate::random;
use crate::study::manifest::Training;
use crate::study::task::Task;
use tch::{Device, Kind, Tensor};

/// A batch's images after mixing, and the share of each image's own targets in its
/// mixed targets (the partner's share is the rest).
pub struct Mixed {
    pub images: Tensor,
    pub own_share: f64,
}

/// How one batch is mixed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mixing {
    /// `own * x + (1 - own) * partner`.
    Blend { own: f64 },
    /// The partner's pixels in rows `top..top + height`, columns `left..left + width`.
    Paste {
        top: i64,
        left: i64,
        height: i64,
        width: i64,
    },
}

/// The batch mixed as the run's settings say, or None when they do not mix.
pub fn mix(images: &Tensor, training: &Training) -> Option<Mixed> {
    if !training.mixes_images() {
        return None;
    }
    let [.., height, width] = images.size()[..] else {
        unreachable!("images are (N, C, H, W)")
    };
    let mixing = random::draw(|| draw_mixing(training, height, width));
    Some(apply(images, mixing))
}

/// The draws are few numbers the host needs (a weight, a box), made on the CPU's
/// generator so that a GPU run never waits for its device to hand them over.
fn draw_mixing(training: &Training, height: i64, width: i64) -> Mixing {
    let uniform = |count: i64| {
        // Host numbers: drawn on the CPU.
        Vec::<f64>::try_from(Tensor::rand([count], (Kind::Double, Device::Cpu))).expect("doubles")
    };
    let beta = |alpha: f64| {
        // Beta(a, a) as G1 / (G1 + G2) of two Gamma(a) draws, on the CPU.
        let gammas =
            Tensor::full([2], alpha, (Kind::Double, Device::Cpu)).internal_standard_gamma();
        let [first, second] = <[f64; 2]>::try_from(Vec::<f64>::try_from(gammas).expect("doubles"))
            .expect("two draws");
        first / (first + second)
    };
    let cutmix = match (training.mixup > 0.0, training.cutmix > 0.0) {
        (true, true) => uniform(1)[0] < 0.5,
        (_, cutmix) => cutmix,
    };
    if !cutmix {
        return Mixing::Blend {
            own: beta(training.mixup),
        };
    }
    // The pasted box covers about 1 - lambda of the image, centred anywhere, clipped
    // at the edges; the shares then follow the area actually pasted.
    let lambda = beta(training.cutmix);
    let side = (1.0 - lambda).sqrt();
    let (box_height, box_width) = ((height as f64 * side) as i64, (width as f64 * side) as i64);
    let centre = uniform(2);
    let (centre_y, centre_x) = (
        (centre[0] * height as f64) as i64,
        (centre[1] * width as f64) as i64,
    );
    let clip = |centre: i64, size: i64, limit: i64| {
        let start = (centre - size / 2).clamp(0, limit);
        let end = (centre + size / 2).clamp(0, limit);
        (start, end - start)
    };
    let (top, rows) = clip(centre_y, box_height, height);
    let (left, columns) = clip(centre_x, box_width, width);
    Mixing::Paste {
        top,
        left,
        height: rows,
        width: columns,
    }
}

fn apply(images: &Tensor, mixing: Mixing) -> Mixed {
    let partner = images.flip([0]);
    match mixing {
        Mixing::Blend { own } => Mixed {
            images: images * own + partner * (1.0 - own),
            own_share: own,
        },
        Mixing::Paste {
            top,
            left,
            height,
            width,
        } => {
            let mixed = images.copy();
            mixed
                .narrow(2, top, height)
                .narrow(3, left, width)
                .copy_(&partner.narrow(2, top, height).narrow(3, left, width));
            let [.., image_height, image_width] = images.size()[..] else {
                unreachable!("images are (N, C, H, W)")
            };
            let pasted = (height * width) as f64 / (image_height * image_width) as f64;
            Mixed {
                images: mixed,
                own_share: 1.0 - pasted,
            }
        }
    }
}

/// The targets of `labels` as probabilities over `outputs` classes (or per label),
/// smoothed by `smoothing`: 1 - e + e/K on the true class and e/K on each other of K, or y(1 - e)
/// + e/2 for a yes/no label.
pub fn smoothed(task: Task, labels: &Tensor, outputs: i64, smoothing: f64) -> Tensor {
    let hard = if task.has_classes() {
        labels.one_hot(outputs).to_kind(Kind::Float)
    } else {
        labels.to_kind(Kind::Float)
    };
    let spread = if task.has_classes() {
        outputs as f64
    } else {
        2.0
    };
    hard * (1.0 - smoothing) + smoothing / spread
}

/// The targets of a mixed batch: each image's own, and its partner's, in their shares.
pub fn mixed(targets: &Tensor, own_share: f64) -> Tensor {
    targets * own_share + targets.flip([0]) * (1.0 - own_share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::training;

    #[test]
    fn smoothing_puts_one_minus_e_plus_e_over_k_on_the_true_class() {
        let labels = Tensor::from_slice(&[2i64, 0]);
        let targets = smoothed(Task::MultiClass, &labels, 4, 0.1);
        let expected = [0.025f32, 0.025, 0.925, 0.025, 0.925, 0.025, 0.025, 0.025];
        assert!(targets.allclose(
            &Tensor::from_slice(&expected).view([2, 4]),
            1e-6,
            1e-7,
            false
        ));
        let yes_no = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
        let targets = smoothed(Task::MultiLabel, &yes_no, 2, 0.2);
        assert!(targets.allclose(
            &Tensor::from_slice(&[0.9f32, 0.1]).view([1, 2]),
            1e-6,
            1e-7,
            false
        ));
    }

    #[test]
    fn mixup_blends_images_and_targets_with_the_mirror_image() {
        let images = Tensor::rand([4, 1, 2, 2], (Kind::Float, Device::Cpu));
        let mixed_batch = apply(&images, Mixing::Blend { own: 0.7 });
        assert_eq!(mixed_batch.own_share, 0.7);
        let expected = &images * 0.7 + images.flip([0]) * 0.3;
        assert!(mixed_batch.images.allclose(&expected, 1e-6, 1e-7, false));
        assert!(mixed_batch.images.get(0).allclose(
            &(images.get(0) * 0.7 + images.get(3) * 0.3),
            1e-6,
            1e-7,
            false
        ));
        let targets = smoothed(
            Task::MultiClass,
            &Tensor::from_slice(&[0i64, 1, 2, 3]),
            4,
            0.0,
        );
        let mixed_targets = mixed(&targets, 0.7);
        let first = Vec::<f32>::try_from(mixed_targets.get(0)).unwrap();
        assert_eq!(first, [0.7, 0.0, 0.0, 0.3]);
    }

    #[test]
    fn cutmix_pastes_the_partner_s_box_and_shares_follow_its_area() {
        let images = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let paste = Mixing::Paste {
            top: 1,
            left: 2,
            height: 2,
            width: 3,
        };
        let out = apply(&images, paste);
        assert!((out.own_share - (1.0 - 6.0 / 20.0)).abs() < 1e-12);
        let from_partner = out.images.get(0).ne_tensor(&images.get(0));
        assert_eq!(from_partner.sum(Kind::Int64).int64_value(&[]), 3 * 6);
        let box_of = |image: &Tensor| image.narrow(1, 1, 2).narrow(2, 2, 3);
        assert!(box_of(&out.images.get(0)).equal(&box_of(&images.get(1))));
    }

    #[test]
    fn drawn_boxes_stay_inside_and_weights_follow_beta() {
        let settings = training("{epochs: 1, cutmix: 1.0}");
        let mut shares = Vec::new();
        for draw in 0..200 {
            match random::draw_seeded(draw, || draw_mixing(&settings, 28, 28)) {
                Mixing::Paste {
                    top,
                    left,
                    height,
                    width,
                } => {
                    assert!(top >= 0 && left >= 0 && top + height <= 28 && left + width <= 28);
                    shares.push(1.0 - (height * width) as f64 / 784.0);
                }
                other => panic!("cutmix alone drew {other:?}"),
            }
        }
        // Beta(1, 1) is uniform: unclipped, the kept share would average 1/2; boxes
        // clipped at the edges keep more. Large boxes and small ones both occur.
        let mean = shares.iter().sum::<f64>() / shares.len() as f64;
        assert!((0.5..0.8).contains(&mean), "mean kept share {mean}");
        assert!(shares.iter().any(|&share| share < 0.25));
        assert!(shares.iter().any(|&share| share > 0.95));
        let both = training("{epochs: 1, mixup: 0.2, cutmix: 1.0}");
        let kinds: Vec<bool> = (0..100)
            .map(|draw| {
                matches!(
                    random::draw_seeded(draw, || draw_mixing(&both, 28, 28)),
                    Mixing::Paste { .. }
                )
            })
            .collect();
        let pastes = kinds.iter().filter(|&&paste| paste).count();
        assert!(
            (30..70).contains(&pastes),
            "{pastes} of 100 batches took cutmix"
        );
    }
}

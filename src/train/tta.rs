//! Test-time augmentation (`tta`): a prediction averages the model's probabilities over
//! flips and quarter turns of each image, the views `augment` showed it in training.
//! `flips` adds each image's mirror image, `rot90` its three quarter turns; both
//! together give all eight symmetries of the square.

use super::predict;
use crate::data::Images;
use crate::study::manifest::TestView;
use crate::study::task::Task;
use anyhow::{bail, Result};
use tch::{nn, Kind, Tensor};

/// What a model predicts for `images`, as logits: its own logits without views, else
/// the logits of the mean probabilities over the views (`log p` for classes, the log
/// odds for yes/no labels), so that whatever reads logits reads the average.
pub fn predict_with_views(
    model: &dyn nn::ModuleT,
    images: &Images,
    task: Task,
    views: &[TestView],
) -> Result<Tensor> {
    if views.is_empty() {
        return Ok(predict(model, images));
    }
    if matches!(images, Images::Features(_)) {
        bail!("test-time views need images, not the features of frozen layers");
    }
    let transforms = transforms(views);
    let batches: Vec<Tensor> = tch::no_grad(|| {
        images
            .batches()
            .map(|batch| {
                let [.., height, width] = batch.size()[..] else {
                    unreachable!("images are (N, C, H, W)")
                };
                if height != width && transforms.iter().any(|&(_, turns)| turns > 0) {
                    bail!("`tta: [rot90]` needs square images, not {height}x{width}");
                }
                let mean = transforms
                    .iter()
                    .map(|&(flip, turns)| {
                        let view = if flip {
                            batch.flip([3])
                        } else {
                            batch.shallow_clone()
                        };
                        let view = if turns > 0 {
                            view.rot90(turns, [2, 3])
                        } else {
                            view
                        };
                        task.probabilities(&model.forward_t(&view, false))
                    })
                    .reduce(|sum, probabilities| sum + probabilities)
                    .expect("at least the image itself")
                    / transforms.len() as f64;
                Ok(logits_of(task, &mean))
            })
            .collect::<Result<_>>()
    })?;
    Ok(Tensor::cat(&batches, 0))
}

/// (mirror, quarter turns) of every view, the image itself first.
fn transforms(views: &[TestView]) -> Vec<(bool, i64)> {
    let flips: &[bool] = if views.contains(&TestView::Flips) {
        &[false, true]
    } else {
        &[false]
    };
    let turns = if views.contains(&TestView::Rot90) {
        0..4
    } else {
        0..1
    };
    flips
        .iter()
        .flat_map(|&flip| turns.clone().map(move |turn| (flip, turn)))
        .collect()
}

/// Logits whose probabilities under `task` are `probabilities`: what a mean of
/// probabilities (over views, or an ensemble's members) is handed on as.
pub fn logits_of(task: Task, probabilities: &Tensor) -> Tensor {
    // The smallest float32 above zero that is not subnormal: an average of exactly 0
    // would be a logit of minus infinity.
    let tiny = f64::from(f32::MIN_POSITIVE);
    let p = probabilities.clamp(tiny, 1.0 - tiny);
    let logits = if task.has_classes() {
        p.log()
    } else {
        p.log() - (-&p).log1p()
    };
    logits.to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;
    use tch::Device;

    /// A linear model on the flattened image: it sees orientation.
    fn model(vs: &nn::VarStore, pixels: i64, classes: i64) -> nn::Linear {
        nn::linear(vs.root(), pixels, classes, Default::default())
    }

    #[derive(Debug)]
    struct Flat(nn::Linear);
    impl ModuleT for Flat {
        fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
            xs.flatten(1, -1).apply(&self.0)
        }
    }

    #[test]
    fn views_are_the_image_its_mirror_and_quarter_turns() {
        assert_eq!(transforms(&[]), [(false, 0)]);
        assert_eq!(transforms(&[TestView::Flips]), [(false, 0), (true, 0)]);
        assert_eq!(transforms(&[TestView::Rot90]).len(), 4);
        assert_eq!(transforms(&[TestView::Flips, TestView::Rot90]).len(), 8);
    }

    #[test]
    fn the_prediction_is_the_mean_of_the_views_probabilities() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Flat(model(&vs, 2 * 3 * 3, 4));
        let pixels = Tensor::randint(256, [5, 3, 3, 2], (Kind::Uint8, Device::Cpu));
        let images = Images::Pixels(pixels);
        let views = [TestView::Flips, TestView::Rot90];
        let logits = predict_with_views(&model, &images, Task::MultiClass, &views).unwrap();
        let batch = images.batches().next().unwrap();
        let mut by_hand = Tensor::zeros([5, 4], (Kind::Double, Device::Cpu));
        for flip in [false, true] {
            for turns in 0..4 {
                let view = if flip {
                    batch.flip([3])
                } else {
                    batch.shallow_clone()
                };
                let logits = model.forward_t(&view.rot90(turns, [2, 3]), false);
                by_hand += Task::MultiClass.probabilities(&logits) / 8.0;
            }
        }
        let ours = Task::MultiClass.probabilities(&logits);
        assert!(ours.allclose(&by_hand, 1e-5, 1e-7, false));
        // Without views, the model's own logits.
        let plain = predict_with_views(&model, &images, Task::MultiClass, &[]).unwrap();
        assert!(plain.equal(&predict(&model, &images)));
    }

    #[test]
    fn yes_no_labels_average_their_probabilities_too() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Flat(model(&vs, 4, 3));
        let images = Images::Pixels(Tensor::randint(
            256,
            [2, 2, 2, 1],
            (Kind::Uint8, Device::Cpu),
        ));
        let logits =
            predict_with_views(&model, &images, Task::MultiLabel, &[TestView::Flips]).unwrap();
        let batch = images.batches().next().unwrap();
        let sigmoid = |xs: &Tensor| Task::MultiLabel.probabilities(xs);
        let by_hand = (sigmoid(&model.forward_t(&batch, false))
            + sigmoid(&model.forward_t(&batch.flip([3]), false)))
            / 2.0;
        assert!(sigmoid(&logits).allclose(&by_hand, 1e-5, 1e-7, false));
    }
}

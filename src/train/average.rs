//! The moving average of a run's weights (`ema`), kept in the optimizer's state. An
//! exponential moving average, as timm and TensorFlow keep one: updated after every
//! optimizer step, it is what the run evaluates and checkpoints. Its decay ramps up as
//! TensorFlow's `num_updates` rule has it, `min(decay, (1 + t) / (10 + t))` at step t,
//! so that the first epochs do not average in the random initial weights for thousands
//! of steps.
//!
//! While an epoch is evaluated and committed, the averages sit in the variables
//! themselves and the training weights are set aside: a commit then saves the averaged
//! weights (as the best weights, and as the resume weights `eval` reads), and the
//! optimizer's state carries the training weights, which a resumed run takes back.

use anyhow::{bail, Result};
use tch::{nn, Tensor};

pub struct WeightAverage {
    decay: f64,
    /// Each variable by name (BatchNorm's running statistics among them), with its
    /// average.
    variables: Vec<(String, Tensor, Tensor)>,
    /// The training weights while the averages sit in the variables.
    set_aside: Option<Vec<Tensor>>,
}

/// The prefix of the training weights' names in an optimizer state.
const TRAINING_WEIGHTS: &str = "training_weights/";

impl WeightAverage {
    pub fn new(vs: &nn::VarStore, decay: f64) -> Self {
        let mut variables: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, value)| value.is_floating_point())
            .collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let variables = variables
            .into_iter()
            .map(|(name, value)| {
                let average = tch::no_grad(|| value.detach().copy());
                (name, value, average)
            })
            .collect();
        WeightAverage {
            decay,
            variables,
            set_aside: None,
        }
    }

    /// The decay at step `steps` (1 after the first step).
    pub fn decay_at(&self, steps: i64) -> f64 {
        self.decay.min((1 + steps) as f64 / (10 + steps) as f64)
    }

    /// Moves each average towards its variable after optimizer step `steps`.
    pub fn update(&mut self, steps: i64) {
        let decay = self.decay_at(steps);
        tch::no_grad(|| {
            for (_, value, average) in &mut self.variables {
                let _ = average.g_mul_scalar_(decay);
                let _ = average.g_add_(&(value.detach() * (1.0 - decay)));
            }
        });
    }

    /// Puts the averages in the variables, setting the training weights aside.
    pub fn swap_in(&mut self) {
        if self.set_aside.is_some() {
            return;
        }
        let training = tch::no_grad(|| {
            self.variables
                .iter()
                .map(|(_, value, average)| {
                    let kept = value.detach().copy();
                    value.detach().copy_(average);
                    kept
                })
                .collect()
        });
        self.set_aside = Some(training);
    }

    /// Puts the training weights back in the variables.
    pub fn swap_out(&mut self) {
        if let Some(training) = self.set_aside.take() {
            tch::no_grad(|| {
                for ((_, value, _), kept) in self.variables.iter().zip(training) {
                    value.detach().copy_(&kept);
                }
            });
        }
    }

    /// The training weights, named for an optimizer state: set aside while the
    /// averages are in the variables (as at a commit), else the variables themselves.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.variables
            .iter()
            .enumerate()
            .map(|(index, (name, value, _))| {
                let weights = match &self.set_aside {
                    Some(training) => training[index].shallow_clone(),
                    None => value.detach(),
                };
                (format!("{TRAINING_WEIGHTS}{name}"), weights)
            })
            .collect()
    }

    /// Continues from a commit: the variables hold the averages (the resume weights)
    /// and `find` gives the training weights of the state `state` made.
    pub fn restore<'t>(&mut self, find: impl Fn(&str) -> Option<&'t Tensor>) -> Result<()> {
        self.set_aside = None;
        tch::no_grad(|| {
            for (name, value, average) in &mut self.variables {
                let key = format!("{TRAINING_WEIGHTS}{name}");
                let Some(saved) = find(&key) else {
                    bail!("the optimizer state has no `{key}`: was the run trained without `ema`?");
                };
                average.copy_(&value.detach());
                value.detach().copy_(saved);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn store(values: &[f32]) -> nn::VarStore {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().var_copy("w", &Tensor::from_slice(values));
        vs
    }

    fn values(tensor: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(tensor.detach().to_kind(Kind::Float)).unwrap()
    }

    #[test]
    fn each_step_moves_the_average_by_one_minus_the_ramped_decay() {
        let vs = store(&[1.0, 2.0]);
        let mut average = WeightAverage::new(&vs, 0.999);
        // (1 + t) / (10 + t): 2/11 after the first step, up to the decay itself.
        assert!((average.decay_at(1) - 2.0 / 11.0).abs() < 1e-15);
        assert_eq!(average.decay_at(100_000), 0.999);
        let w = vs.variables()["w"].shallow_clone();
        tch::no_grad(|| w.detach().copy_(&Tensor::from_slice(&[3.0f32, 2.0])));
        average.update(1);
        let d = 2.0 / 11.0;
        let expected = [d * 1.0 + (1.0 - d) * 3.0, 2.0];
        let got = values(&average.variables[0].2);
        assert!((got[0] as f64 - expected[0]).abs() < 1e-6 && got[1] == 2.0);
    }

    #[test]
    fn a_swap_shows_the_average_and_the_state_keeps_the_training_weights() {
        let vs = store(&[1.0]);
        let mut average = WeightAverage::new(&vs, 0.5);
        let w = vs.variables()["w"].shallow_clone();
        tch::no_grad(|| w.detach().copy_(&Tensor::from_slice(&[5.0f32])));
        average.update(1_000);
        average.swap_in();
        assert_eq!(values(&w), [3.0]);
        let state = average.state();
        assert_eq!(state[0].0, "training_weights/w");
        assert_eq!(values(&state[0].1), [5.0]);
        average.swap_out();
        assert_eq!(values(&w), [5.0]);

        // A resumed run: its variables hold the averages, the state the training weights.
        let resumed = store(&[3.0]);
        let mut again = WeightAverage::new(&resumed, 0.5);
        again
            .restore(|name| state.iter().find(|(key, _)| key == name).map(|(_, t)| t))
            .unwrap();
        assert_eq!(values(&resumed.variables()["w"]), [5.0]);
        assert_eq!(values(&again.variables[0].2), [3.0]);
    }
}

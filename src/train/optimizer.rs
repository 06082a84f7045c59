//! The optimizers and their state: SGD (momentum, Nesterov), Adam, AdamW and RMSprop,
//! under Keras 3's update rules (the study's) or PyTorch's. They are cellnets code over
//! tensors, with a state (buffers and step count) that a resume point saves beside the
//! weights, so that a resumed run steps exactly as an uninterrupted one.
//!
//! Where the rules differ:
//! - SGD momentum: Keras keeps a velocity in units of the rate (`m = mu m - lr g`,
//!   `p += m`), PyTorch one of gradients (`b = mu b + g`, `p -= lr b`); equal while the
//!   rate is constant.
//! - Adam: Keras folds both bias corrections into the step size and adds epsilon to
//!   `sqrt(v)` ("epsilon hat"); PyTorch adds it to the bias-corrected `sqrt(v)`.
//! - RMSprop: Keras divides by `sqrt(v + eps)`, PyTorch by `sqrt(v) + eps`.
//! - Weight decay: Keras decouples it for every optimizer (`p -= lr wd p` before the
//!   step); PyTorch adds `wd p` to the gradient (L2), except AdamW, which decouples it.

use super::average::WeightAverage;
use crate::study::manifest::{OptimizerKind, Training, UpdateRules};
use anyhow::{bail, Result};
use tch::{nn, Device, Tensor};

/// A run's optimizer over the trainable variables of its VarStore.
pub struct Optimizer {
    rule: Rule,
    rules: UpdateRules,
    decay: Decay,
    params: Vec<Param>,
    /// Steps taken: Adam's bias corrections need it.
    steps: i64,
    /// The moving average of the weights that the run evaluates, under `ema`.
    average: Option<WeightAverage>,
}

struct Param {
    name: String,
    value: Tensor,
    /// The rule's buffers, in the order of `Rule::buffers`.
    buffers: Vec<Tensor>,
    /// Room for the intermediate tensors of Adam's and RMSprop's steps, so that a step
    /// allocates nothing the size of the variable (38 MB a step for the 4096-unit MLP).
    scratch: Option<Tensor>,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
    Adam {
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    Rmsprop {
        rho: f64,
        momentum: f64,
        epsilon: f64,
    },
}

/// How weight decay enters a step.
#[derive(Debug, Clone, Copy)]
enum Decay {
    None,
    /// `wd p` added to the gradient: L2 regularisation.
    Coupled(f64),
    /// `p -= lr wd p` before the step, apart from the gradient.
    Decoupled(f64),
}

/// An optimizer's state as named tensors: `steps`, and `<variable>/<buffer>` for each
/// buffer of each trained variable.
#[derive(Debug, Default)]
pub struct OptimizerState(pub Vec<(String, Tensor)>);

const STEPS: &str = "steps";

impl Rule {
    fn of(training: &Training) -> Rule {
        // Settings recorded before the optimizer had them are its defaults.
        let defaults = training.optimizer.defaults(training.update_rules);
        let setting = |value: Option<f64>, default: Option<f64>| {
            value.or(default).expect("the optimizer has this setting")
        };
        match training.optimizer {
            OptimizerKind::Sgd => Rule::Sgd {
                momentum: training.momentum,
                nesterov: training.nesterov,
            },
            OptimizerKind::Adam | OptimizerKind::Adamw => Rule::Adam {
                beta_1: setting(training.beta_1, defaults.beta_1),
                beta_2: setting(training.beta_2, defaults.beta_2),
                epsilon: setting(training.epsilon, defaults.epsilon),
            },
            OptimizerKind::Rmsprop => Rule::Rmsprop {
                rho: setting(training.rho, defaults.rho),
                momentum: training.momentum,
                epsilon: setting(training.epsilon, defaults.epsilon),
            },
        }
    }

    fn buffers(self) -> &'static [&'static str] {
        match self {
            Rule::Sgd { momentum, .. } if momentum > 0.0 => &["momentum"],
            Rule::Sgd { .. } => &[],
            Rule::Adam { .. } => &["m", "v"],
            Rule::Rmsprop { momentum, .. } if momentum > 0.0 => &["mean_square", "momentum"],
            Rule::Rmsprop { .. } => &["mean_square"],
        }
    }
}

impl Optimizer {
    pub fn new(vs: &nn::VarStore, training: &Training) -> Optimizer {
        let rule = Rule::of(training);
        let mut variables: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, value)| value.requires_grad())
            .collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let params = variables
            .into_iter()
            .map(|(name, value)| Param {
                buffers: rule.buffers().iter().map(|_| value.zeros_like()).collect(),
                scratch: (!matches!(rule, Rule::Sgd { .. })).then(|| value.zeros_like()),
                name,
                value,
            })
            .collect();
        let rate = training.weight_decay;
        let decay = match (training.update_rules, training.optimizer) {
            _ if rate == 0.0 => Decay::None,
            (UpdateRules::Keras, _) | (UpdateRules::Pytorch, OptimizerKind::Adamw) => {
                Decay::Decoupled(rate)
            }
            (UpdateRules::Pytorch, _) => Decay::Coupled(rate),
        };
        Optimizer {
            rule,
            rules: training.update_rules,
            decay,
            params,
            steps: 0,
            average: (training.ema > 0.0).then(|| WeightAverage::new(vs, training.ema)),
        }
    }

    /// Backpropagates `loss` and steps at `learning_rate`; returns the gradients of
    /// `also`, tensors outside the optimizer (a fused layer's output). Gradients are
    /// returned by autograd, never accumulated into `.grad`: nothing to zero before the
    /// next step, as libtorch's `zero_grad(set_to_none)` had it.
    pub fn backward_step(
        &mut self,
        loss: &Tensor,
        learning_rate: f64,
        also: &[&Tensor],
    ) -> Vec<Tensor> {
        let inputs: Vec<&Tensor> = self
            .params
            .iter()
            .map(|param| &param.value)
            .chain(also.iter().copied())
            .collect();
        let mut grads = Tensor::run_backward(&[loss], &inputs, false, false);
        let also_grads = grads.split_off(self.params.len());
        self.step(grads, learning_rate);
        also_grads
    }

    /// One update of every variable with a gradient in `grads` (in `params` order); a
    /// first layer updated by the fused step has none. The gradients are the step's own
    /// to overwrite.
    fn step(&mut self, grads: Vec<Tensor>, learning_rate: f64) {
        self.steps += 1;
        let (rule, rules, decay, steps) = (self.rule, self.rules, self.decay, self.steps);
        tch::no_grad(|| {
            for (param, mut grad) in self.params.iter_mut().zip(grads) {
                if cfg!(debug_assertions) {
                    let mut tensors = vec![("gradient", &grad)];
                    tensors.extend(param.buffers.iter().map(|buffer| ("buffer", buffer)));
                    tensors.extend(param.scratch.iter().map(|scratch| ("scratch", scratch)));
                    super::device::debug_assert_on(param.value.device(), &tensors);
                }
                if grad.defined() {
                    update(param, &mut grad, learning_rate, rule, rules, decay, steps);
                }
            }
        });
        if let Some(average) = &mut self.average {
            average.update(self.steps);
        }
    }

    /// Puts the weights the run evaluates in its variables: the moving average under
    /// `ema` (the training weights set aside until `swap_out_average`), else nothing
    /// changes.
    pub fn swap_in_average(&mut self) {
        if let Some(average) = &mut self.average {
            average.swap_in();
        }
    }

    /// Puts the training weights back after `swap_in_average`.
    pub fn swap_out_average(&mut self) {
        if let Some(average) = &mut self.average {
            average.swap_out();
        }
    }

    /// The buffers and step count, sharing storage with the optimizer's own, and under
    /// `ema` the training weights (the variables hold the averages at a commit).
    pub fn state(&self) -> OptimizerState {
        // A count the host keeps: on the CPU whatever the run's device.
        let mut tensors = vec![(STEPS.to_string(), Tensor::from(self.steps))];
        for param in &self.params {
            for (buffer, value) in self.rule.buffers().iter().zip(&param.buffers) {
                tensors.push((format!("{}/{buffer}", param.name), value.shallow_clone()));
            }
        }
        if let Some(average) = &self.average {
            tensors.extend(average.state());
        }
        OptimizerState(tensors)
    }

    /// Takes back a state that `state` gave, from an optimizer of the same settings over
    /// the same variables.
    pub fn restore(&mut self, state: &OptimizerState) -> Result<()> {
        let find = |name: &str| state.0.iter().find(|(key, _)| key == name).map(|(_, t)| t);
        match find(STEPS) {
            Some(steps) => self.steps = steps.int64_value(&[]),
            // Plain SGD keeps nothing: resume points from before optimizer states.
            None if self.rule.buffers().is_empty() => self.steps = 0,
            None => bail!("the optimizer state has no step count"),
        }
        for param in &mut self.params {
            for (buffer, value) in self.rule.buffers().iter().zip(&mut param.buffers) {
                let name = format!("{}/{buffer}", param.name);
                let Some(saved) = find(&name) else {
                    bail!("the optimizer state has no `{name}`");
                };
                if saved.size() != value.size() {
                    bail!(
                        "the optimizer state's `{name}` has shape {:?}, the variable {:?}",
                        saved.size(),
                        value.size()
                    );
                }
                tch::no_grad(|| value.copy_(saved));
            }
        }
        if let Some(average) = &mut self.average {
            average.restore(find)?;
        }
        Ok(())
    }
}

/// `target += scale * tensor`. On the CPU through libtorch's fused multiply-add, the
/// arithmetic of `add_(tensor, alpha)` that libtorch's SGD used, so plain-SGD runs keep
/// every bit of the numbers they had before cellnets had optimizers of its own.
fn add_scaled(target: &mut Tensor, tensor: &Tensor, scale: f64) {
    // A CPU run only: on a GPU the scale as a CPU scalar tensor would be a host copy
    // every call, so the GPU multiplies by the number itself.
    if target.device() == Device::Cpu {
        let _ = target.addcmul_(tensor, &Tensor::from(scale).to_kind(target.kind()));
    } else {
        let _ = target.g_add_(&(tensor * scale));
    }
}

/// What one step of every variable shares.
#[derive(Clone, Copy)]
struct StepOf {
    rate: f64,
    keras: bool,
    /// Steps taken, this one included.
    steps: i64,
}

fn update(
    param: &mut Param,
    grad: &mut Tensor,
    rate: f64,
    rule: Rule,
    rules: UpdateRules,
    decay: Decay,
    steps: i64,
) {
    let p = &mut param.value;
    match decay {
        Decay::Coupled(wd) => add_scaled(grad, p, wd),
        Decay::Decoupled(wd) => drop(p.g_mul_scalar_(1.0 - rate * wd)),
        Decay::None => {}
    }
    let step = StepOf {
        rate,
        keras: rules == UpdateRules::Keras,
        steps,
    };
    let buffers = param.buffers.as_mut_slice();
    match (rule, param.scratch.as_mut()) {
        (Rule::Sgd { momentum, nesterov }, _) => sgd(p, grad, buffers, momentum, nesterov, step),
        (Rule::Adam { .. }, Some(scratch)) => adam(p, grad, buffers, scratch, rule, step),
        (Rule::Rmsprop { .. }, Some(scratch)) => rmsprop(p, grad, buffers, scratch, rule, step),
        (rule, None) => unreachable!("{rule:?} keeps a scratch tensor"),
    }
}

fn sgd(
    p: &mut Tensor,
    grad: &mut Tensor,
    buffers: &mut [Tensor],
    momentum: f64,
    nesterov: bool,
    step: StepOf,
) {
    let rate = step.rate;
    match buffers {
        [] => add_scaled(p, grad, -rate),
        [velocity] if step.keras => {
            let _ = velocity.g_mul_scalar_(momentum);
            add_scaled(velocity, grad, -rate);
            if nesterov {
                add_scaled(p, velocity, momentum);
                add_scaled(p, grad, -rate);
            } else {
                let _ = p.g_add_(velocity);
            }
        }
        [buffer] => {
            let _ = buffer.g_mul_scalar_(momentum).g_add_(grad);
            if nesterov {
                add_scaled(grad, buffer, momentum);
                add_scaled(p, grad, -rate);
            } else {
                add_scaled(p, buffer, -rate);
            }
        }
        _ => unreachable!("SGD keeps at most one buffer"),
    }
}

fn adam(
    p: &mut Tensor,
    grad: &Tensor,
    buffers: &mut [Tensor],
    scratch: &mut Tensor,
    rule: Rule,
    step: StepOf,
) {
    let (
        Rule::Adam {
            beta_1,
            beta_2,
            epsilon,
        },
        [m, v],
    ) = (rule, buffers)
    else {
        unreachable!("Adam keeps m and v")
    };
    let _ = m.lerp_(grad, 1.0 - beta_1);
    let _ = grad.mul_out(scratch, grad);
    let correction_1 = 1.0 - beta_1.powi(step.steps as i32);
    let correction_2 = 1.0 - beta_2.powi(step.steps as i32);
    let step_size = if step.keras {
        let _ = v.lerp_(scratch, 1.0 - beta_2);
        let _ = v.sqrt_out(scratch);
        step.rate * correction_2.sqrt() / correction_1
    } else {
        let _ = v.g_mul_scalar_(beta_2);
        add_scaled(v, scratch, 1.0 - beta_2);
        let _ = v.sqrt_out(scratch).g_div_scalar_(correction_2.sqrt());
        step.rate / correction_1
    };
    let _ = scratch.g_add_scalar_(epsilon);
    let _ = m.div_out(scratch, scratch);
    add_scaled(p, scratch, -step_size);
}

fn rmsprop(
    p: &mut Tensor,
    grad: &Tensor,
    buffers: &mut [Tensor],
    scratch: &mut Tensor,
    rule: Rule,
    step: StepOf,
) {
    let (
        Rule::Rmsprop {
            rho,
            momentum,
            epsilon,
        },
        [mean_square, rest @ ..],
    ) = (rule, buffers)
    else {
        unreachable!("RMSprop keeps its mean square")
    };
    let _ = grad.mul_out(scratch, grad);
    let _ = mean_square.g_mul_scalar_(rho);
    add_scaled(mean_square, scratch, 1.0 - rho);
    if step.keras {
        let _ = mean_square.add_scalar_out(scratch, epsilon).sqrt_();
    } else {
        let _ = mean_square.sqrt_out(scratch).g_add_scalar_(epsilon);
    }
    // The gradient over the root mean square.
    let _ = grad.div_out(scratch, scratch);
    match rest {
        [velocity] if step.keras => {
            let _ = velocity.g_mul_scalar_(momentum);
            add_scaled(velocity, scratch, step.rate);
            let _ = p.g_sub_(velocity);
        }
        [buffer] => {
            let _ = buffer.g_mul_scalar_(momentum).g_add_(scratch);
            add_scaled(p, buffer, -step.rate);
        }
        _ => add_scaled(p, scratch, -step.rate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::manifest::TrainingOverrides;
    use tch::Kind;

    fn training(text: &str) -> Training {
        serde_yaml::from_str::<TrainingOverrides>(&format!("{{epochs: 1, {text}}}"))
            .unwrap()
            .resolve()
            .unwrap()
    }

    /// The published update rules written out element by element in f64, apart from
    /// the tensor code: (settings, per-element state, step t, rate, gradient) -> new value.
    fn reference_step(
        t: &Training,
        state: &mut [f64; 3],
        p: f64,
        g: f64,
        lr: f64,
        step: i32,
    ) -> f64 {
        let keras = t.update_rules == UpdateRules::Keras;
        let wd = t.weight_decay;
        let decoupled = keras || t.optimizer == OptimizerKind::Adamw;
        let (mut p, g) = if decoupled {
            (p - p * wd * lr, g)
        } else {
            (p, g + wd * p)
        };
        match t.optimizer {
            OptimizerKind::Sgd if t.momentum == 0.0 => p -= lr * g,
            OptimizerKind::Sgd => {
                let mu = t.momentum;
                if keras {
                    state[0] = mu * state[0] - lr * g;
                    p += if t.nesterov {
                        mu * state[0] - lr * g
                    } else {
                        state[0]
                    };
                } else {
                    state[0] = mu * state[0] + g;
                    p -= lr
                        * if t.nesterov {
                            g + mu * state[0]
                        } else {
                            state[0]
                        };
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let (b1, b2, eps) = (t.beta_1.unwrap(), t.beta_2.unwrap(), t.epsilon.unwrap());
                state[0] = b1 * state[0] + (1.0 - b1) * g;
                state[1] = b2 * state[1] + (1.0 - b2) * g * g;
                let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
                if keras {
                    p -= lr * c2.sqrt() / c1 * state[0] / (state[1].sqrt() + eps);
                } else {
                    p -= lr / c1 * state[0] / ((state[1] / c2).sqrt() + eps);
                }
            }
            OptimizerKind::Rmsprop => {
                let (rho, eps, mu) = (t.rho.unwrap(), t.epsilon.unwrap(), t.momentum);
                state[1] = rho * state[1] + (1.0 - rho) * g * g;
                let scaled = if keras {
                    g / (state[1] + eps).sqrt()
                } else {
                    g / (state[1].sqrt() + eps)
                };
                if mu > 0.0 {
                    state[2] = mu * state[2] + if keras { lr * scaled } else { scaled };
                    p -= if keras { state[2] } else { lr * state[2] };
                } else {
                    p -= lr * scaled;
                }
            }
        }
        p
    }

    /// Least squares `0.5 |A p - b|^2` over 300 steps with a rate that changes every
    /// 50 steps (as schedules do), by `Optimizer` in f64 tensors and by the reference.
    fn trajectories(settings: &str) -> (Vec<f64>, Vec<f64>) {
        let t = training(settings);
        let a: Vec<f64> = (0..24).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
        let b = [1.0, -2.0, 0.5, 3.0, -1.0, 2.0];
        let mut vs = nn::VarStore::new(Device::Cpu);
        let start = [0.3, -0.7, 1.1, 0.05];
        let _ = vs.root().var_copy("p", &Tensor::from_slice(&start));
        vs.double();
        let p = vs.variables()["p"].shallow_clone();
        let mut optimizer = Optimizer::new(&vs, &t);
        let a_tensor = Tensor::from_slice(&a).reshape([6, 4]);
        let b_tensor = Tensor::from_slice(&b);
        let mut reference = start.to_vec();
        let mut states = [[0.0; 3]; 4];
        for step in 1..=300 {
            let lr = t.learning_rate * (1.0 - 0.15 * (step / 50) as f64);
            let residual = a_tensor.mv(&p) - &b_tensor;
            let loss = (&residual * &residual).sum(Kind::Double) * 0.5;
            optimizer.backward_step(&loss, lr, &[]);
            let r: Vec<f64> = (0..6)
                .map(|row| {
                    (0..4)
                        .map(|col| a[row * 4 + col] * reference[col])
                        .sum::<f64>()
                        - b[row]
                })
                .collect();
            for col in 0..4 {
                let g: f64 = (0..6).map(|row| a[row * 4 + col] * r[row]).sum();
                reference[col] = reference_step(&t, &mut states[col], reference[col], g, lr, step);
            }
        }
        (Vec::<f64>::try_from(&p.detach()).unwrap(), reference)
    }

    #[test]
    fn every_optimizer_follows_its_published_rule() {
        for settings in [
            "optimizer: sgd, learning_rate: 0.02",
            "optimizer: sgd, learning_rate: 0.02, weight_decay: 0.01",
            "optimizer: sgd, momentum: 0.9",
            "optimizer: sgd, momentum: 0.9, nesterov: true, weight_decay: 0.01",
            "optimizer: adam, learning_rate: 0.05",
            "optimizer: adam, learning_rate: 0.05, epsilon: 0.1, weight_decay: 0.01",
            "optimizer: adamw, learning_rate: 0.05",
            "optimizer: rmsprop, learning_rate: 0.01",
            "optimizer: rmsprop, learning_rate: 0.01, momentum: 0.5, epsilon: 0.01",
        ] {
            for rules in ["keras", "pytorch"] {
                let settings = format!("{settings}, update_rules: {rules}");
                let (cellnets, reference) = trajectories(&settings);
                for (ours, theirs) in cellnets.iter().zip(&reference) {
                    assert!(
                        (ours - theirs).abs() < 1e-6,
                        "{settings}: {cellnets:?} vs the rule's {reference:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn keras_and_pytorch_adam_part_where_epsilon_meets_the_bias_correction() {
        let (keras, _) = trajectories("optimizer: adam, learning_rate: 0.05, epsilon: 0.1");
        let (pytorch, _) = trajectories(
            "optimizer: adam, learning_rate: 0.05, epsilon: 0.1, update_rules: pytorch",
        );
        let apart = keras.iter().zip(&pytorch).map(|(k, p)| (k - p).abs());
        assert!(apart.fold(0.0, f64::max) > 1e-3, "{keras:?} vs {pytorch:?}");
    }

    #[test]
    fn plain_sgd_is_bit_for_bit_libtorchs() {
        use tch::nn::OptimizerConfig;
        let (vs, ours) = (
            nn::VarStore::new(Device::Cpu),
            nn::VarStore::new(Device::Cpu),
        );
        let weights = vs.root().randn("w", &[37, 29], 0.0, 1.0);
        let mine = ours.root().var_copy("w", &weights);
        let target = Tensor::randn([37, 29], (Kind::Float, Device::Cpu));
        let mut libtorch = nn::Sgd::default().build(&vs, 0.0137).unwrap();
        let mut cellnets = Optimizer::new(&ours, &training("learning_rate: 0.0137"));
        for _ in 0..20 {
            libtorch.backward_step(&(&weights * &target).sin().sum(Kind::Float));
            let loss = (&mine * &target).sin().sum(Kind::Float);
            cellnets.backward_step(&loss, 0.0137, &[]);
        }
        assert!(mine.equal(&weights));
    }

    #[test]
    fn a_restored_optimizer_steps_as_the_one_it_was_saved_from() {
        let t = training("optimizer: adam, learning_rate: 0.1");
        let step = |vs: &nn::VarStore, optimizer: &mut Optimizer| {
            let p = vs.variables()["p"].shallow_clone();
            optimizer.backward_step(&(&p * &p).sum(Kind::Float), t.learning_rate, &[]);
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs
            .root()
            .var_copy("p", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
        let mut optimizer = Optimizer::new(&vs, &t);
        (0..3).for_each(|_| step(&vs, &mut optimizer));
        let saved = OptimizerState(
            optimizer
                .state()
                .0
                .into_iter()
                .map(|(name, tensor)| (name, tensor.copy()))
                .collect(),
        );
        let mut copy = nn::VarStore::new(Device::Cpu);
        let _ = copy.root().zeros("p", &[3]);
        copy.copy(&vs).unwrap();
        let mut restored = Optimizer::new(&copy, &t);
        restored.restore(&saved).unwrap();
        step(&vs, &mut optimizer);
        step(&copy, &mut restored);
        assert!(vs.variables()["p"].equal(&copy.variables()["p"]));

        let mut fresh = Optimizer::new(&copy, &t);
        let error = fresh.restore(&OptimizerState::default()).unwrap_err();
        assert!(error.to_string().contains("no step count"), "{error}");
    }
}

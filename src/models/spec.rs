//! A model as a manifest describes it (`ModelSpec`): its kind and hyperparameters,
//! checked, and built into the network of that kind.

use super::cnn::ShallowCnn;
use super::dense_cnn::DenseCnn;
use super::mlp::Mlp;
use super::network::{Activation, InputShape, Network, Pool};
use super::resnet::ResNet18;
use super::resnet9::ResNet9;
use serde::{Deserialize, Serialize};
use tch::nn;

/// A model as the manifest describes it: `kind` picks the architecture, the other
/// keys are its hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// flatten -> dense(hidden, activation) -> dropout -> dense(classes)
    Mlp {
        hidden: i64,
        #[serde(default)]
        activation: Activation,
        #[serde(default)]
        dropout: f64,
    },
    /// conv(kernels, kernel_size x kernel_size, "same") -> relu -> pool 2 -> flatten -> dense(classes)
    Cnn {
        kernels: i64,
        kernel_size: i64,
        #[serde(default)]
        pool: Pool,
    },
    /// The study's DenseNet-style deep CNN (its section 4).
    DenseCnn {
        #[serde(default = "default_stem_filters")]
        stem_filters: i64,
        #[serde(default = "default_stem_kernel")]
        stem_kernel: i64,
        #[serde(default = "default_dense_layers")]
        layers: i64,
        #[serde(default = "default_growth")]
        growth: i64,
        #[serde(default = "default_bottleneck")]
        bottleneck: i64,
    },
    /// ResNet-18 adapted to small images (3x3 stem, no initial pooling).
    Resnet18 {},
    /// The DAWNBench ResNet-9: stages of `width` (default 64), 2, 4 and 8 times as many
    /// channels, two of them with a residual pair.
    Resnet9 {
        #[serde(default = "default_resnet9_width")]
        width: i64,
    },
}

fn default_resnet9_width() -> i64 {
    64
}

fn default_stem_filters() -> i64 {
    64
}
fn default_stem_kernel() -> i64 {
    7
}
fn default_dense_layers() -> i64 {
    6
}
fn default_growth() -> i64 {
    32
}
fn default_bottleneck() -> i64 {
    128
}

/// Bounds far above any sensible model, so that a typo fails in the manifest check
/// rather than as a failed allocation inside libtorch.
const MAX_WIDTH: i64 = 1 << 20;
const MAX_CHANNELS: i64 = 1 << 14;
const MAX_KERNEL: i64 = 63;

/// Model values that deserialise but cannot build a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidModel {
    #[error("mlp hidden must be between 1 and {max}, got {0}", max = MAX_WIDTH)]
    MlpHidden(i64),
    #[error("mlp dropout must be in [0, 1), got {0}")]
    MlpDropout(f64),
    #[error("dense_cnn sizes must be between 1 and {max}", max = MAX_CHANNELS)]
    DenseCnnSize,
    #[error("dense_cnn stem_kernel must be a positive odd number, got {0}")]
    DenseCnnStemKernel(i64),
    #[error("cnn kernels must be between 1 and {max}, got {0}", max = MAX_CHANNELS)]
    CnnKernels(i64),
    #[error("cnn kernel_size must be a positive odd number, got {0}")]
    CnnKernelSize(i64),
    #[error("resnet9 width must be between 1 and {max}, got {0}", max = MAX_CHANNELS / 8)]
    Resnet9Width(i64),
}

impl InvalidModel {
    /// The manifest key whose value is wrong, to point at it in the file.
    pub fn key(&self) -> &'static str {
        match self {
            InvalidModel::MlpHidden(_) => "hidden",
            InvalidModel::MlpDropout(_) => "dropout",
            InvalidModel::DenseCnnSize => "kind",
            InvalidModel::DenseCnnStemKernel(_) => "stem_kernel",
            InvalidModel::CnnKernels(_) => "kernels",
            InvalidModel::CnnKernelSize(_) => "kernel_size",
            InvalidModel::Resnet9Width(_) => "width",
        }
    }
}

impl ModelSpec {
    /// Checks values that deserialise but cannot build a model.
    pub fn validate(&self) -> Result<(), InvalidModel> {
        match *self {
            ModelSpec::Mlp {
                hidden, dropout, ..
            } => {
                if !(1..=MAX_WIDTH).contains(&hidden) {
                    return Err(InvalidModel::MlpHidden(hidden));
                }
                if !(0.0..1.0).contains(&dropout) {
                    return Err(InvalidModel::MlpDropout(dropout));
                }
            }
            ModelSpec::DenseCnn {
                stem_filters,
                stem_kernel,
                layers,
                growth,
                bottleneck,
            } => {
                if [stem_filters, layers, growth, bottleneck]
                    .iter()
                    .any(|&n| !(1..=MAX_CHANNELS).contains(&n))
                {
                    return Err(InvalidModel::DenseCnnSize);
                }
                if !(1..=MAX_KERNEL).contains(&stem_kernel) || stem_kernel % 2 == 0 {
                    return Err(InvalidModel::DenseCnnStemKernel(stem_kernel));
                }
            }
            ModelSpec::Resnet18 {} => {}
            ModelSpec::Resnet9 { width } => {
                if !(1..=MAX_CHANNELS / 8).contains(&width) {
                    return Err(InvalidModel::Resnet9Width(width));
                }
            }
            ModelSpec::Cnn {
                kernels,
                kernel_size,
                ..
            } => {
                if !(1..=MAX_CHANNELS).contains(&kernels) {
                    return Err(InvalidModel::CnnKernels(kernels));
                }
                // Keras' "same" padding is symmetric only for odd kernels.
                if !(1..=MAX_KERNEL).contains(&kernel_size) || kernel_size % 2 == 0 {
                    return Err(InvalidModel::CnnKernelSize(kernel_size));
                }
            }
        }
        Ok(())
    }

    /// The latest change to cellnets' arithmetic that alters the numbers this model
    /// produces (its initialisation, a layer's computation); see `RunPlan::revision`.
    pub fn revision(&self) -> u32 {
        match self {
            // 3: dropout masks drawn from the run's own seeds.
            ModelSpec::Mlp { dropout, .. } if *dropout > 0.0 => 3,
            ModelSpec::Mlp { .. } | ModelSpec::Cnn { .. } => 1,
            // 2: BatchNorm scales start at ones (tch drew them from [0, 1)), and the
            // deep CNN keeps Keras' biased moving variance.
            ModelSpec::DenseCnn { .. } | ModelSpec::Resnet18 {} | ModelSpec::Resnet9 { .. } => 2,
        }
    }

    /// Builds the model's parameters under `path`, initialised as Keras does.
    pub fn build(&self, path: &nn::Path, input: InputShape) -> Box<dyn Network> {
        match *self {
            ModelSpec::Mlp {
                hidden,
                activation,
                dropout,
            } => Box::new(Mlp::new(path, input, hidden, activation, dropout)),
            ModelSpec::Cnn {
                kernels,
                kernel_size,
                pool,
            } => Box::new(ShallowCnn::new(path, input, kernels, kernel_size, pool)),
            ModelSpec::DenseCnn {
                stem_filters,
                stem_kernel,
                layers,
                growth,
                bottleneck,
            } => Box::new(DenseCnn::new(
                path,
                input,
                stem_filters,
                stem_kernel,
                layers,
                growth,
                bottleneck,
            )),
            ModelSpec::Resnet18 {} => Box::new(ResNet18::new(path, input)),
            ModelSpec::Resnet9 { width } => Box::new(ResNet9::new(path, input, width)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::count_parameters;
    use tch::{Device, Kind, Tensor};

    const BLOODMNIST: InputShape = InputShape {
        channels: 3,
        height: 28,
        width: 28,
        classes: 8,
    };

    fn counts(spec: &ModelSpec, input: InputShape) -> (i64, i64) {
        let vs = nn::VarStore::new(Device::Cpu);
        spec.build(&vs.root(), input);
        count_parameters(&vs)
    }

    #[test]
    fn parameter_counts_match_the_study() {
        let mlp = ModelSpec::Mlp {
            hidden: 4096,
            activation: Activation::Relu,
            dropout: 0.25,
        };
        assert_eq!(counts(&mlp, BLOODMNIST), (9_670_664, 0));
        let cnn = ModelSpec::Cnn {
            kernels: 64,
            kernel_size: 9,
            pool: Pool::Max,
        };
        assert_eq!(counts(&cnn, BLOODMNIST), (115_976, 0));
        let vs = nn::VarStore::new(Device::Cpu);
        cnn.build(&vs.root(), BLOODMNIST);
        let conv: i64 = vs
            .variables()
            .iter()
            .filter(|(name, _)| name.starts_with("conv."))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        assert_eq!(conv, 15_616);
    }

    #[test]
    fn models_map_a_batch_to_class_logits() {
        let input = InputShape {
            channels: 1,
            height: 6,
            width: 5,
            classes: 3,
        };
        let specs = [
            ModelSpec::Mlp {
                hidden: 4,
                activation: Activation::Sigmoid,
                dropout: 0.5,
            },
            ModelSpec::Cnn {
                kernels: 2,
                kernel_size: 3,
                pool: Pool::Avg,
            },
        ];
        for spec in specs {
            let vs = nn::VarStore::new(Device::Cpu);
            let model = spec.build(&vs.root(), input);
            let x = Tensor::rand([7, 1, 6, 5], (Kind::Float, Device::Cpu));
            assert_eq!(model.forward_t(&x, true).size(), [7, 3], "{spec:?}");
        }
    }

    #[test]
    fn the_residual_and_deep_cnns_run_forward_and_backward_on_a_tiny_batch() {
        let input = InputShape {
            channels: 3,
            height: 28,
            width: 28,
            classes: 8,
        };
        for spec in [
            serde_yaml::from_str::<ModelSpec>("kind: dense_cnn").unwrap(),
            ModelSpec::Resnet18 {},
            ModelSpec::Resnet9 { width: 8 },
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let model = spec.build(&vs.root(), input);
            let x = Tensor::rand([2, 3, 28, 28], (Kind::Float, Device::Cpu));
            let logits = model.forward_t(&x, true);
            assert_eq!(logits.size(), [2, 8], "{spec:?}");
            logits
                .cross_entropy_for_logits(&Tensor::from_slice(&[0i64, 7]))
                .backward();
            for (name, tensor) in vs.variables() {
                if tensor.requires_grad() {
                    assert!(tensor.grad().defined(), "{spec:?}: no gradient for {name}");
                }
            }
            assert_eq!(model.forward_t(&x, false).size(), [2, 8]);
        }
    }

    #[test]
    fn folded_batch_norms_give_the_unfolded_models_logits_to_1e_5() {
        let input = InputShape {
            channels: 3,
            height: 28,
            width: 28,
            classes: 8,
        };
        for spec in [
            serde_yaml::from_str::<ModelSpec>("kind: dense_cnn").unwrap(),
            ModelSpec::Resnet18 {},
            ModelSpec::Resnet9 { width: 8 },
            ModelSpec::Cnn {
                kernels: 4,
                kernel_size: 3,
                pool: Pool::Max,
            },
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let mut model = spec.build(&vs.root(), input);
            // Statistics and affine parameters far from their starting ones, so that
            // each fold has something to fold.
            tch::no_grad(|| {
                let variables = vs.variables();
                for (name, tensor) in &variables {
                    let Some(norm) = name.strip_suffix(".running_var") else {
                        continue;
                    };
                    let set = |suffix: &str, values: Tensor| {
                        variables[&format!("{norm}.{suffix}")]
                            .shallow_clone()
                            .copy_(&values)
                    };
                    let shape = (Kind::Float, Device::Cpu);
                    let size = tensor.size();
                    set("running_var", Tensor::rand(&size, shape) * 1.5 + 0.5);
                    set("running_mean", Tensor::randn(&size, shape) * 0.3);
                    set("weight", Tensor::rand(&size, shape) + 0.5);
                    set("bias", Tensor::randn(&size, shape) * 0.2);
                }
            });
            let x = Tensor::rand([16, 3, 28, 28], (Kind::Float, Device::Cpu));
            let unfolded = model.forward_t(&x, false);
            model.fold_batch_norms();
            let folded = model.forward_t(&x, false);
            let difference = (&folded - &unfolded).abs().max().double_value(&[]);
            let scale = unfolded.abs().max().double_value(&[]).max(1.0);
            assert!(
                difference <= 1e-5 * scale,
                "{spec:?}: folded logits differ by {difference:e} (logits up to {scale})"
            );
            // Each norm that follows a convolution is folded, so its statistics are no
            // longer read; the deep CNN's first norm of each layer follows a
            // concatenation and stays.
            tch::no_grad(|| {
                for (name, tensor) in vs.variables() {
                    let follows_a_concatenation =
                        name.starts_with("block") && name.ends_with(".norm1.running_mean");
                    if name.ends_with(".running_mean") && !follows_a_concatenation {
                        let _ = tensor.shallow_clone().fill_(100.0);
                    }
                }
            });
            assert!(
                model
                    .forward_t(&x, false)
                    .allclose(&folded, 0.0, 0.0, false),
                "{spec:?}: a norm that follows a convolution was not folded"
            );
        }
    }

    #[test]
    fn deep_model_parameter_counts() {
        // Stem 7*7*3*64+64, its BN 2*64, six dense layers, head 256*8+8.
        let dense_layers: i64 = (0..6)
            .map(|i| {
                let c = 64 + 32 * i;
                2 * c + (c * 128 + 128) + 2 * 128 + (9 * 128 * 32 + 32)
            })
            .sum();
        let spec = serde_yaml::from_str::<ModelSpec>("kind: dense_cnn").unwrap();
        assert_eq!(
            counts(&spec, BLOODMNIST),
            (9472 + 128 + dense_layers + 2056, 0)
        );
        // torchvision's ResNet-18 has 11,689,512 parameters with a 7x7 stem and 1000
        // classes: 9,408 stem weights and 513,000 head ones.
        let resnet = counts(&ModelSpec::Resnet18 {}, BLOODMNIST);
        assert_eq!(resnet, (11_689_512 - 9_408 + 1_728 - 513_000 + 4_104, 0));
        // ResNet-9: 3x3 convolutions without biases, each with a BatchNorm's scale and
        // shift, and a linear head.
        let conv_norm = |inputs: i64, outputs: i64| 9 * inputs * outputs + 2 * outputs;
        let expected = conv_norm(3, 64)
            + conv_norm(64, 128)
            + 2 * conv_norm(128, 128)
            + conv_norm(128, 256)
            + conv_norm(256, 512)
            + 2 * conv_norm(512, 512)
            + 512 * 8
            + 8;
        let resnet9 = counts(&ModelSpec::Resnet9 { width: 64 }, BLOODMNIST);
        assert_eq!(resnet9, (expected, 0));
    }

    #[test]
    fn glorot_weights_stay_within_their_limit_and_biases_start_at_zero() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = ModelSpec::Cnn {
            kernels: 16,
            kernel_size: 5,
            pool: Pool::Max,
        };
        spec.build(&vs.root(), BLOODMNIST);
        let vars = vs.variables();
        let limit = (6.0 / ((3 * 25 + 16 * 25) as f64)).sqrt();
        let max = vars["conv.weight"].abs().max().double_value(&[]);
        assert!(
            max <= limit && max > 0.5 * limit,
            "max {max}, limit {limit}"
        );
        assert_eq!(
            vars["conv.bias"].abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
    }

    /// Every variable of a freshly built model of each kind starts as Keras starts it:
    /// dense and conv kernels Glorot-uniform over their fans, biases and BatchNorm shifts
    /// zero, BatchNorm scales and moving variances one, moving means zero.
    #[test]
    fn every_layer_of_every_model_starts_as_keras_initialises_it() {
        let specs = [
            "{kind: mlp, hidden: 512}",
            "{kind: cnn, kernels: 64, kernel_size: 9}",
            "{kind: dense_cnn}",
            "{kind: resnet18}",
        ];
        for spec in specs {
            let spec: ModelSpec = serde_yaml::from_str(spec).unwrap();
            let vs = nn::VarStore::new(Device::Cpu);
            spec.build(&vs.root(), BLOODMNIST);
            for (name, tensor) in vs.variables() {
                let what = format!("{spec:?}: {name}");
                let values = |value: f64| tensor.eq(value).all().int64_value(&[]) == 1;
                match (name.rsplit('.').next().unwrap(), tensor.dim()) {
                    ("running_mean", 1) | ("bias", 1) => assert!(values(0.0), "{what} != 0"),
                    ("running_var", 1) | ("weight", 1) => assert!(values(1.0), "{what} != 1"),
                    ("weight", 2 | 4) => assert_glorot_uniform(&tensor, &what),
                    _ => panic!("{what}: a variable of no known layer kind"),
                }
            }
        }
    }

    /// U(-l, l) with l = sqrt(6 / (fan_in + fan_out)): all values inside the limit, and
    /// a standard deviation near l / sqrt(3).
    fn assert_glorot_uniform(weight: &Tensor, what: &str) {
        let size = weight.size();
        let window: i64 = size[2..].iter().product();
        let (fan_out, fan_in) = (size[0] * window, size[1] * window);
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        let max = weight.abs().max().double_value(&[]);
        // The limit itself, rounded to float32, may lie a hair above it.
        assert!(
            max <= limit * (1.0 + 1e-6),
            "{what}: {max} beyond the limit {limit}"
        );
        if weight.numel() >= 1000 {
            let std = weight.std(false).double_value(&[]);
            let expected = limit / 3f64.sqrt();
            assert!(
                (std / expected - 1.0).abs() < 0.1,
                "{what}: standard deviation {std}, Glorot-uniform gives {expected}"
            );
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        let even = ModelSpec::Cnn {
            kernels: 8,
            kernel_size: 4,
            pool: Pool::Max,
        };
        assert_eq!(even.validate(), Err(InvalidModel::CnnKernelSize(4)));
        assert!(even.validate().unwrap_err().to_string().contains("odd"));
        let dropout = ModelSpec::Mlp {
            hidden: 8,
            activation: Activation::Relu,
            dropout: 1.0,
        };
        assert_eq!(dropout.validate(), Err(InvalidModel::MlpDropout(1.0)));
    }
}

//! The timing behind `cellnets bench`: seconds per training epoch of the study's
//! models, and of the validation pass on its own. It times them at the study's settings
//! (batch 32, plain SGD at 0.01, or another batch size), on real data. bench/pytorch_bench.py measures the
//! same in PyTorch; bench/compare.py runs both interleaved and prints the ratios.

use crate::data::Dataset;
use crate::models::{count_parameters, Activation, ModelSpec, Pool};
use crate::precision::{Bf16Autocast, Precision};
use crate::study::manifest::TrainingOverrides;
use crate::train::{evaluate, train_epoch, FusedInputDense, Optimizer};
use anyhow::{bail, Result};
use std::time::Instant;
use tch::nn;

/// The benchmarked models by name: the MLP search's start and winner, the smallest and
/// the chosen shallow CNN, the deep CNN, ResNet-18 (the MedMNIST benchmark's), the
/// DAWNBench ResNet-9 and, at width 16, the fast recipe's net (experiments/fast.yaml).
pub fn models() -> Vec<(&'static str, ModelSpec)> {
    let mlp = |hidden, dropout| ModelSpec::Mlp {
        hidden,
        activation: Activation::Relu,
        dropout,
    };
    let cnn = |kernels, kernel_size| ModelSpec::Cnn {
        kernels,
        kernel_size,
        pool: Pool::Max,
    };
    vec![
        ("mlp256", mlp(256, 0.0)),
        ("mlp4096", mlp(4096, 0.25)),
        ("cnn8x3", cnn(8, 3)),
        ("cnn64x9", cnn(64, 9)),
        (
            "deep",
            serde_yaml::from_str("kind: dense_cnn").expect("a valid model"),
        ),
        ("resnet18", ModelSpec::Resnet18 {}),
        ("resnet9", ModelSpec::Resnet9 { width: 64 }),
        ("resnet9w16", ModelSpec::Resnet9 { width: 16 }),
    ]
}

/// The optimizers a bench can time, by name: the study's plain SGD at 0.01, SGD with
/// momentum 0.9, and Adam at 0.001 (Keras' defaults otherwise).
pub const OPTIMIZERS: [(&str, &str); 3] = [
    ("sgd", "{}"),
    ("momentum", "{momentum: 0.9}"),
    ("adam", "{optimizer: adam}"),
];

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub model: String,
    /// Median over the timed epochs of one training pass.
    pub epoch_seconds: f64,
    pub samples_per_second: f64,
    /// Median of the validation passes.
    pub val_seconds: f64,
    pub params: i64,
}

/// What a bench times, besides the models.
pub struct BenchSettings<'a> {
    /// Timed epochs, after one untimed warm-up epoch.
    pub epochs: usize,
    /// Training batch size; the study's 32 when `None`.
    pub batch_size: Option<usize>,
    /// Turns off the optimisations that change how a step is computed, to measure what
    /// they buy.
    pub textbook: bool,
    /// A name from `OPTIMIZERS`.
    pub optimizer: &'a str,
    /// Its process-wide switches are the caller's to set.
    pub precision: Precision,
}

/// Times training epochs and validation passes of each named model.
pub fn bench(
    names: &[String],
    data: &Dataset,
    settings: &BenchSettings,
) -> Result<Vec<BenchResult>> {
    let BenchSettings {
        epochs,
        batch_size,
        textbook,
        optimizer,
        precision,
    } = *settings;
    let known = models();
    let Some((_, settings)) = OPTIMIZERS.iter().find(|(name, _)| *name == optimizer) else {
        let all: Vec<&str> = OPTIMIZERS.iter().map(|(name, _)| *name).collect();
        bail!(
            "no bench optimizer `{optimizer}`; the optimizers are {}",
            all.join(", ")
        );
    };
    let training = TrainingOverrides {
        epochs: Some(epochs),
        batch_size,
        ..serde_yaml::from_str(settings).expect("valid bench settings")
    }
    .resolve()?;
    let device = data.train.images.device();
    let _autocast = precision
        .bf16
        .then(|| Bf16Autocast::enter(device))
        .transpose()?;
    let mut results = Vec::new();
    for name in names {
        let Some((_, spec)) = known.iter().find(|(known, _)| known == name) else {
            let all: Vec<&str> = known.iter().map(|(name, _)| *name).collect();
            bail!("no bench model `{name}`; the models are {}", all.join(", "));
        };
        tch::manual_seed(0);
        let vs = nn::VarStore::new(device);
        let model = spec.build(&vs.root(), data.input);
        if precision.channels_last(device) {
            crate::precision::layout::to_channels_last(&vs)?;
        }
        let mut optimizer = Optimizer::new(&vs, &training);
        let fused = FusedInputDense::for_training(model.split_input_dense(), &training)
            .filter(|_| !textbook && !precision.bf16);
        let (mut train_times, mut val_times) = (Vec::new(), Vec::new());
        for epoch in 0..=epochs {
            let start = Instant::now();
            let rate = training.learning_rate;
            train_epoch(
                model.as_ref(),
                fused,
                &mut optimizer,
                rate,
                &data.train,
                &training,
            );
            let trained = Instant::now();
            evaluate(model.as_ref(), &data.val)?;
            if epoch > 0 {
                train_times.push((trained - start).as_secs_f64());
                val_times.push(trained.elapsed().as_secs_f64());
            }
            crate::notes::say(&format!(
                "{name}: epoch {epoch}/{epochs}{} {:.3} s",
                if epoch == 0 { " (warm-up)" } else { "" },
                (trained - start).as_secs_f64()
            ));
        }
        let epoch_seconds = median(&mut train_times);
        results.push(BenchResult {
            model: name.clone(),
            epoch_seconds,
            samples_per_second: data.train.len() as f64 / epoch_seconds,
            val_seconds: median(&mut val_times),
            params: count_parameters(&vs).0,
        });
    }
    Ok(results)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// The table bench/compare.py parses: a header, then one whitespace-separated line per model.
pub fn table(results: &[BenchResult]) -> String {
    let mut text = String::from("model epoch_seconds samples_per_second val_seconds params\n");
    for result in results {
        text.push_str(&format!(
            "{} {:.3} {:.1} {:.3} {}\n",
            result.model,
            result.epoch_seconds,
            result.samples_per_second,
            result.val_seconds,
            result.params
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn bench_models_have_the_study_parameter_counts() {
        let input = crate::models::InputShape {
            channels: 3,
            height: 28,
            width: 28,
            classes: 8,
        };
        let counts: Vec<i64> = models()
            .iter()
            .map(|(_, spec)| {
                let vs = nn::VarStore::new(tch::Device::Cpu);
                spec.build(&vs.root(), input);
                count_parameters(&vs).0
            })
            .collect();
        let resnet18 = 11_689_512 - 9_408 + 1_728 - 513_000 + 4_104;
        assert_eq!(
            counts,
            [604_424, 9_670_664, 12_776, 115_976, 347_656, resnet18, 6_572_104, 412_696]
        );
    }
}

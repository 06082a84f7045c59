//! Searching a stage's configurations: `sample` draws them at random from ranges,
//! `halving` spends epochs only on those that can still win (successive halving, with
//! every rung's decision waiting for all its runs, or ASHA's, which never waits); the
//! rungs and the promotion rule are in `rungs`; `sample: {method: tpe}` proposes each
//! configuration from the results before it (`tpe`, over the estimator in `parzen`).

pub mod parzen;
pub mod rungs;
pub mod tpe;

use crate::random::SplitMix64;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

/// `halving:` on a stage: rungs at `min_epochs`, `min_epochs * reduction`, ... and the
/// stage's epochs; after each rung only the best 1/`reduction` of its runs train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Halving {
    /// The first rung: epochs every run trains before the first decision.
    #[serde(default = "default_min_epochs")]
    pub min_epochs: usize,
    /// Each rung keeps the best ceil(n / reduction) of its n runs, and is `reduction`
    /// times as long as the one before (KerasTuner's and Hyperband's factor: 3).
    #[serde(default = "default_reduction")]
    pub reduction: usize,
    #[serde(default)]
    pub mode: HalvingMode,
}

fn default_min_epochs() -> usize {
    1
}

fn default_reduction() -> usize {
    3
}

/// When a rung decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HalvingMode {
    /// Once every run has reached the rung: the same promotions whatever the number of
    /// processes and the order they finish in.
    #[default]
    Sync,
    /// ASHA: a run moves on as soon as it is in the best 1/reduction of the runs that
    /// have reached its rung so far; nothing waits, and promotions depend on the order
    /// runs arrive in.
    Async,
}

impl HalvingMode {
    pub fn name(self) -> &'static str {
        match self {
            HalvingMode::Sync => "sync",
            HalvingMode::Async => "async",
        }
    }
}

impl Halving {
    /// What can be checked without the stage's epochs and runs.
    pub fn check(&self) -> Result<()> {
        if self.min_epochs == 0 {
            bail!("`halving.min_epochs: 0` trains nothing before the first rung: give 1 or more");
        }
        if self.reduction < 2 {
            bail!(
                "`halving.reduction: {}` keeps every run: give 2 or more (3 keeps the best \
                 third at each rung)",
                self.reduction
            );
        }
        Ok(())
    }

    /// The rung epochs for a budget of `epochs`: min_epochs, min_epochs * reduction, ...
    /// below `epochs`, then `epochs` itself.
    pub fn rungs(&self, epochs: usize) -> Result<Vec<usize>> {
        if self.min_epochs >= epochs {
            bail!(
                "`halving.min_epochs: {}` must be below the stage's epochs ({epochs}), the \
                 budget of the runs that win every rung: lower it or raise `epochs`",
                self.min_epochs
            );
        }
        let mut rungs = vec![self.min_epochs];
        while let Some(next) = rungs
            .last()
            .and_then(|last| last.checked_mul(self.reduction))
            .filter(|&next| next < epochs)
        {
            rungs.push(next);
        }
        rungs.push(epochs);
        Ok(rungs)
    }

    /// How many of `n` runs at a rung train on.
    pub fn keeps(&self, n: usize) -> usize {
        n.div_ceil(self.reduction)
    }
}

/// The positions of the best `count` of `values` (position, value; higher is better),
/// best first. A value that is not a number ranks last; equal values rank by position,
/// so a decision never depends on the order runs finished in.
pub fn best_positions(values: &[(usize, f64)], count: usize) -> Vec<usize> {
    let mut ranked = values.to_vec();
    ranked.sort_by(|(a_position, a), (b_position, b)| {
        let key = |value: f64| {
            if value.is_nan() {
                f64::NEG_INFINITY
            } else {
                value
            }
        };
        key(*b).total_cmp(&key(*a)).then(a_position.cmp(b_position))
    });
    ranked
        .into_iter()
        .take(count)
        .map(|(position, _)| position)
        .collect()
}

/// `sample:` on a stage: `count` configurations drawn from `space` with `seed`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// `random` (the default): every configuration drawn from the seed alone, before
    /// anything trains; `tpe`: each proposed from the results before it.
    #[serde(default)]
    pub method: SampleMethod,
    pub count: usize,
    #[serde(default)]
    pub seed: u64,
    /// Setting name to `{uniform: [a, b]}`, `{loguniform: [a, b]}`, `{int: [a, b]}` or
    /// `{choice: [...]}`, in the order draws are made.
    pub space: Mapping,
    /// TPE's settings (`tpe::TpeSettings`), each Optuna's default when left out.
    pub n_startup_trials: Option<usize>,
    pub n_ei_candidates: Option<usize>,
    pub prior_weight: Option<f64>,
    pub multivariate: Option<bool>,
    pub random_fraction: Option<f64>,
}

/// How a stage's `sample` draws its configurations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleMethod {
    #[default]
    Random,
    Tpe,
}

/// Where a sampled setting's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Uniform(f64, f64),
    /// Uniform in the logarithm: as likely between 0.001 and 0.01 as between 0.01 and 0.1.
    LogUniform(f64, f64),
    /// An integer from a to b, both included.
    Int(i64, i64),
    Choice(Vec<Value>),
}

impl Distribution {
    fn parse(key: &str, spec: &Value) -> Result<Distribution> {
        let kinds = "{uniform: [a, b]}, {loguniform: [a, b]}, {int: [a, b]} or {choice: [...]}";
        let Some((kind, range)) = spec
            .as_mapping()
            .filter(|mapping| mapping.len() == 1)
            .and_then(|mapping| mapping.iter().next())
        else {
            bail!("`sample.space.{key}` must be one of {kinds}");
        };
        let kind = kind.as_str().unwrap_or_default();
        let pair = |what: &str| -> Result<(Value, Value)> {
            match range.as_sequence().map(Vec::as_slice) {
                Some([low, high]) => Ok((low.clone(), high.clone())),
                _ => bail!("`sample.space.{key}.{kind}` must be a list of two {what}: [low, high]"),
            }
        };
        let numbers = || -> Result<(f64, f64)> {
            let (low, high) = pair("numbers")?;
            match (low.as_f64(), high.as_f64()) {
                (Some(low), Some(high)) if low.is_finite() && high.is_finite() => Ok((low, high)),
                _ => {
                    bail!("`sample.space.{key}.{kind}` must be a list of two numbers: [low, high]")
                }
            }
        };
        let distribution = match kind {
            "uniform" => {
                let (low, high) = numbers()?;
                Distribution::Uniform(low, high)
            }
            "loguniform" => {
                let (low, high) = numbers()?;
                if low <= 0.0 {
                    bail!(
                        "`sample.space.{key}.loguniform: [{low}, {high}]`: a log-uniform range \
                         needs bounds above 0; use `uniform` for a range that reaches 0"
                    );
                }
                Distribution::LogUniform(low, high)
            }
            "int" => {
                let (low, high) = pair("integers")?;
                match (low.as_i64(), high.as_i64()) {
                    (Some(low), Some(high)) => Distribution::Int(low, high),
                    _ => bail!(
                        "`sample.space.{key}.int` must be a list of two integers: [low, high]"
                    ),
                }
            }
            "choice" => match range.as_sequence() {
                Some(values) if !values.is_empty() => {
                    if values.iter().any(|v| v.is_mapping() || v.is_sequence()) {
                        bail!("`sample.space.{key}.choice` values must be plain values");
                    }
                    Distribution::Choice(values.clone())
                }
                _ => bail!("`sample.space.{key}.choice` must be a non-empty list of values"),
            },
            other => {
                bail!("`sample.space.{key}`: `{other}` is no distribution; use one of {kinds}")
            }
        };
        let reversed = match &distribution {
            Distribution::Uniform(low, high) | Distribution::LogUniform(low, high) => low > high,
            Distribution::Int(low, high) => low > high,
            Distribution::Choice(_) => false,
        };
        if reversed {
            bail!("`sample.space.{key}.{kind}` has its ends reversed: write [low, high]");
        }
        Ok(distribution)
    }

    /// Whether it can give only one value (a one-value choice, a range of one point).
    fn single_valued(&self) -> bool {
        match self {
            Distribution::Uniform(low, high) | Distribution::LogUniform(low, high) => low == high,
            Distribution::Int(low, high) => low == high,
            Distribution::Choice(values) => values.len() == 1,
        }
    }

    pub(super) fn draw(&self, random: &mut SplitMix64) -> Value {
        // 53 random bits: every double in [0, 1) that a uniform draw can give.
        let mut unit = || (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        match self {
            Distribution::Uniform(low, high) => Value::from(low + (high - low) * unit()),
            Distribution::LogUniform(low, high) => {
                let (low, high) = (low.ln(), high.ln());
                Value::from((low + (high - low) * unit()).exp())
            }
            Distribution::Int(low, high) => {
                let span = (high - low) as u64 as usize + 1;
                Value::from(low + random.below(span) as i64)
            }
            Distribution::Choice(values) => values[random.below(values.len())].clone(),
        }
    }
}

impl Sample {
    /// The space's distributions, in the order written, each checked. `grid_keys` are
    /// the keys a grid may have; `grid` is the stage's own grid.
    pub fn distributions(
        &self,
        grid_keys: &[&str],
        grid: &Mapping,
    ) -> Result<Vec<(String, Distribution)>> {
        if self.count == 0 {
            bail!("`sample.count: 0` draws nothing: give the number of configurations to draw");
        }
        if self.space.is_empty() {
            bail!("`sample.space` is empty: name the settings to draw and their ranges");
        }
        self.space
            .iter()
            .map(|(key, spec)| {
                let key = key.as_str().unwrap_or_default();
                if !grid_keys.contains(&key) {
                    bail!(
                        "`sample.space.{key}`: `{key}` is no setting a grid may vary; use one \
                         of {}",
                        grid_keys.join(", ")
                    );
                }
                if grid.contains_key(Value::from(key)) {
                    bail!(
                        "`{key}` is both in the grid and in `sample.space`: each run would get \
                         two values; keep it in one of them"
                    );
                }
                Ok((key.to_string(), Distribution::parse(key, spec)?))
            })
            .collect()
    }

    /// TPE's settings when the method is `tpe` (none for `random`), checked; `halving`
    /// says whether the stage halves, which makes BOHB's random share the default.
    pub fn tpe(
        &self,
        distributions: &[(String, Distribution)],
        halving: bool,
    ) -> Result<Option<tpe::TpeSettings>> {
        let given = [
            ("n_startup_trials", self.n_startup_trials.is_some()),
            ("n_ei_candidates", self.n_ei_candidates.is_some()),
            ("prior_weight", self.prior_weight.is_some()),
            ("multivariate", self.multivariate.is_some()),
            ("random_fraction", self.random_fraction.is_some()),
        ];
        if self.method == SampleMethod::Random {
            if let Some((key, _)) = given.iter().find(|(_, given)| *given) {
                bail!(
                    "`sample.{key}` is a setting of TPE: add `method: tpe` to the sample, or \
                     drop it"
                );
            }
            return Ok(None);
        }
        if distributions.iter().all(|(_, d)| d.single_valued()) {
            bail!(
                "`sample.method: tpe` over a space where every key has one value proposes \
                 the same configuration every time: widen a range, or drop `sample`"
            );
        }
        let defaults = tpe::TpeSettings::OPTUNA;
        let settings = tpe::TpeSettings {
            n_startup_trials: self.n_startup_trials.unwrap_or(defaults.n_startup_trials),
            n_ei_candidates: self.n_ei_candidates.unwrap_or(defaults.n_ei_candidates),
            prior_weight: self.prior_weight.unwrap_or(defaults.prior_weight),
            multivariate: self.multivariate.unwrap_or(defaults.multivariate),
            random_fraction: self.random_fraction.unwrap_or(match halving {
                true => tpe::TpeSettings::BOHB_RANDOM_FRACTION,
                false => 0.0,
            }),
        };
        settings.check(self.count, halving)?;
        Ok(Some(settings))
    }

    /// The `count` configurations, each a (setting, value) per key of the space, drawn
    /// in order from the seed alone: the same manifest draws the same configurations.
    pub fn draw(&self, distributions: &[(String, Distribution)]) -> Vec<Vec<(String, Value)>> {
        let mut random = SplitMix64(self.seed);
        (0..self.count)
            .map(|_| {
                distributions
                    .iter()
                    .map(|(key, distribution)| (key.clone(), distribution.draw(&mut random)))
                    .collect()
            })
            .collect()
    }
}

/// A sampled value as a run's name shows it: four significant digits for a real number
/// (the run's settings keep it exactly).
pub fn short_text(value: &Value) -> String {
    match value.as_f64() {
        Some(number) if value.is_f64() && number != 0.0 => {
            let digits = 3 - number.abs().log10().floor() as i32;
            if (0..=8).contains(&digits) {
                let text = format!("{number:.*}", digits as usize);
                let text = text.trim_end_matches('0').trim_end_matches('.');
                text.to_string()
            } else {
                format!("{number:.3e}")
            }
        }
        _ => match value {
            Value::String(text) => text.clone(),
            other => serde_yaml::to_string(other)
                .map(|text| text.trim_end().to_string())
                .unwrap_or_default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halving(min_epochs: usize, reduction: usize) -> Halving {
        Halving {
            min_epochs,
            reduction,
            mode: HalvingMode::Sync,
        }
    }

    #[test]
    fn rungs_grow_by_the_reduction_and_end_at_the_budget() {
        assert_eq!(halving(1, 3).rungs(9).unwrap(), [1, 3, 9]);
        assert_eq!(halving(1, 3).rungs(27).unwrap(), [1, 3, 9, 27]);
        assert_eq!(
            halving(1, 3).rungs(500).unwrap(),
            [1, 3, 9, 27, 81, 243, 500]
        );
        assert_eq!(halving(2, 4).rungs(20).unwrap(), [2, 8, 20]);
        assert!(halving(9, 3).rungs(9).is_err());
        assert_eq!(halving(1, 3).keeps(6), 2);
        assert_eq!(halving(1, 3).keeps(7), 3);
        assert_eq!(halving(1, 3).keeps(1), 1);
        let rungs = rungs::Rungs {
            halving: halving(1, 3),
            epochs: halving(1, 3).rungs(27).unwrap(),
        };
        // The study's CNN grid: 20 runs to 1, 7 to 3, 3 to 9, 1 to 27.
        assert_eq!(rungs.planned_epochs(20), 20 + 7 * 2 + 3 * 6 + 18);
        assert_eq!(
            rungs.describe(),
            "rungs at epochs 1, 3, 9, 27 (sync, reduction 3)"
        );
    }

    #[test]
    fn the_best_rank_first_ties_by_position_and_nan_last() {
        let values = [(0, 0.5), (1, f64::NAN), (2, 0.7), (3, 0.5), (4, 0.9)];
        assert_eq!(best_positions(&values, 3), [4, 2, 0]);
        assert_eq!(best_positions(&values, 5), [4, 2, 0, 3, 1]);
    }

    fn sample(text: &str) -> Sample {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn draws_depend_on_the_seed_alone_and_stay_in_their_ranges() {
        let spec = "{count: 200, seed: 4, space: {learning_rate: {loguniform: [0.001, 0.1]}, \
                    momentum: {uniform: [0.5, 0.9]}, kernels: {int: [2, 4]}, \
                    optimizer: {choice: [sgd, adam]}}}";
        let drawn = sample(spec);
        let distributions =
            drawn.distributions(&crate::study::manifest::GRID_KEYS, &Mapping::new());
        let distributions = distributions.unwrap();
        let configurations = drawn.draw(&distributions);
        assert_eq!(configurations, drawn.draw(&distributions));
        let other = sample(&spec.replace("seed: 4", "seed: 5"));
        assert_ne!(configurations, other.draw(&distributions));
        let mut kernels = std::collections::BTreeSet::new();
        let mut below_hundredth = 0;
        for configuration in &configurations {
            let value = |key: &str| &configuration.iter().find(|(k, _)| k == key).unwrap().1;
            let rate = value("learning_rate").as_f64().unwrap();
            assert!((0.001..0.1).contains(&rate));
            below_hundredth += usize::from(rate < 0.01);
            assert!((0.5..0.9).contains(&value("momentum").as_f64().unwrap()));
            kernels.insert(value("kernels").as_i64().unwrap());
            assert!(["sgd", "adam"].contains(&value("optimizer").as_str().unwrap()));
        }
        assert_eq!(kernels.into_iter().collect::<Vec<_>>(), [2, 3, 4]);
        // Log-uniform: half the draws in each decade.
        assert!((70..130).contains(&below_hundredth), "{below_hundredth}");
    }

    #[test]
    fn bad_spaces_are_refused_naming_the_key_and_the_fix() {
        let mut grid = Mapping::new();
        grid.insert(Value::from("dropout"), Value::from(vec![0.0, 0.5]));
        for (space, expected) in [
            (
                "{count: 0, space: {dropout: {uniform: [0, 1]}}}",
                "count: 0",
            ),
            (
                "{count: 2, space: {momentum: {uniform: [0.5, 0.1]}}}",
                "reversed",
            ),
            (
                "{count: 2, space: {momentum: {loguniform: [0, 1]}}}",
                "above 0",
            ),
            ("{count: 2, space: {momentum: {int: [3, 1]}}}", "reversed"),
            (
                "{count: 2, space: {dropout: {choice: [0.1]}}}",
                "both in the grid",
            ),
            (
                "{count: 2, space: {hiden: {choice: [1]}}}",
                "no setting a grid may vary",
            ),
            (
                "{count: 2, space: {momentum: {normal: [0, 1]}}}",
                "no distribution",
            ),
            ("{count: 2, space: {momentum: [0, 1]}}", "must be one of"),
            ("{count: 2, space: {}}", "empty"),
        ] {
            let error = sample(space)
                .distributions(&crate::study::manifest::GRID_KEYS, &grid)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{space}: {error}");
        }
        assert!(halving(0, 3)
            .check()
            .unwrap_err()
            .to_string()
            .contains("min_epochs: 0"));
        assert!(halving(1, 1)
            .check()
            .unwrap_err()
            .to_string()
            .contains("reduction: 1"));
    }

    #[test]
    fn short_text_keeps_four_significant_digits() {
        assert_eq!(short_text(&Value::from(0.012345678)), "0.01235");
        assert_eq!(short_text(&Value::from(0.5)), "0.5");
        assert_eq!(short_text(&Value::from(123.456)), "123.5");
        assert_eq!(short_text(&Value::from(7)), "7");
        assert_eq!(short_text(&Value::from("adam")), "adam");
        assert_eq!(short_text(&Value::from(1.5e-9)), "1.500e-9");
    }
}

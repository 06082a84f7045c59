//! `sample: {method: tpe}`: the Tree-structured Parzen Estimator (Bergstra et al.
//! 2011) with Optuna's TPESampler defaults, proposing each configuration from the
//! results known when it is drawn; and BOHB's rule for halving stages (Falkner et al.
//! 2018): the model fitted on the highest rung with enough results, a share of
//! proposals drawn at random. A proposal is a function of (seed, its index, the
//! history it saw) alone, so a recorded proposal can be checked and replayed.

use super::parzen::{unit, Dimension, EstimatorSettings, Parzen};
use super::Distribution;
use crate::random::SplitMix64;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// TPE's settings, Optuna's defaults unless the manifest says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpeSettings {
    /// Proposals drawn at random until this many results are known (Optuna: 10).
    pub n_startup_trials: usize,
    /// Candidates drawn from the good density; the one with the best ratio is proposed
    /// (Optuna: 24).
    pub n_ei_candidates: usize,
    /// The prior kernel's weight (Optuna: 1.0).
    pub prior_weight: f64,
    /// One joint density over every key instead of one per key (Optuna: false).
    pub multivariate: bool,
    /// Under `halving`, the share of proposals drawn at random (BOHB: 1/3); without
    /// halving it must stay 0.
    pub random_fraction: f64,
}

impl TpeSettings {
    pub const OPTUNA: TpeSettings = TpeSettings {
        n_startup_trials: 10,
        n_ei_candidates: 24,
        prior_weight: 1.0,
        multivariate: false,
        random_fraction: 0.0,
    };

    /// BOHB's share of random proposals, the default under halving.
    pub const BOHB_RANDOM_FRACTION: f64 = 1.0 / 3.0;

    /// Refuses settings TPE cannot use, naming the fix.
    pub fn check(&self, count: usize, halving: bool) -> Result<()> {
        if self.n_startup_trials == 0 {
            bail!(
                "`sample.n_startup_trials: 0`: TPE needs at least one result to model; give 1 \
                 or more (Optuna's default is 10)"
            );
        }
        if self.n_startup_trials >= count {
            bail!(
                "`sample.n_startup_trials: {}` is not below `count: {count}`: every \
                 configuration would be drawn at random; lower it or raise `count` (or use \
                 `method: random`)",
                self.n_startup_trials
            );
        }
        if self.n_ei_candidates == 0 {
            bail!("`sample.n_ei_candidates: 0` proposes nothing: give 1 or more (Optuna: 24)");
        }
        if !(self.prior_weight.is_finite() && self.prior_weight > 0.0) {
            bail!(
                "`sample.prior_weight: {}` must be a number above 0 (Optuna: 1.0)",
                self.prior_weight
            );
        }
        if !(0.0..=1.0).contains(&self.random_fraction) {
            bail!(
                "`sample.random_fraction: {}` is a share of the proposals: give a number \
                 from 0 to 1 (BOHB: 0.333)",
                self.random_fraction
            );
        }
        if !halving && self.random_fraction > 0.0 {
            bail!(
                "`sample.random_fraction` is BOHB's share of random proposals under \
                 `halving`; without `halving`, drop it"
            );
        }
        Ok(())
    }
}

/// Optuna's `default_gamma`: the number of best results that make the good density.
pub fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// One earlier configuration as a proposal sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Its value of each key of the space, in the space's order.
    pub values: Vec<Value>,
    /// Its objective (higher is better), or none while it trains (pending: Optuna's
    /// constant liar counts it among the bad ones). Not a number ranks worst.
    pub score: Option<f64>,
}

/// How a proposal was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drawn {
    /// At random: fewer than `n_startup_trials` results known.
    Startup,
    /// At random: BOHB's share of random proposals.
    RandomFraction,
    /// From the densities of the `good` best results and the `bad` others (pending
    /// configurations among them).
    Model { good: usize, bad: usize },
}

/// The random stream of proposal `index` under `seed`: proposals are drawn from streams
/// of their own, so one never shifts another's draws.
pub fn proposal_stream(seed: u64, index: usize) -> SplitMix64 {
    let mut mixer = SplitMix64(seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    SplitMix64(mixer.next_u64())
}

/// Proposes configuration `index` of a TPE search over `space` from `history`.
pub fn propose(
    space: &[(String, Distribution)],
    settings: &TpeSettings,
    seed: u64,
    index: usize,
    history: &[Observation],
) -> (Vec<Value>, Drawn) {
    let mut random = proposal_stream(seed, index);
    let random_share =
        settings.random_fraction > 0.0 && unit(&mut random) < settings.random_fraction;
    let finished = history.iter().filter(|seen| seen.score.is_some()).count();
    let at_random = |random: &mut SplitMix64| {
        space
            .iter()
            .map(|(_, distribution)| distribution.draw(random))
            .collect()
    };
    if finished < settings.n_startup_trials {
        return (at_random(&mut random), Drawn::Startup);
    }
    if random_share {
        return (at_random(&mut random), Drawn::RandomFraction);
    }
    let (good, bad) = split(history);
    let dimensions: Vec<Dimension> = space.iter().map(|(_, d)| dimension(d)).collect();
    let internal = |rows: &[usize], keys: &[usize]| -> Vec<Vec<f64>> {
        rows.iter()
            .map(|&row| {
                keys.iter()
                    .map(|&key| internal(&space[key].1, &history[row].values[key]))
                    .collect()
            })
            .collect()
    };
    let estimator = EstimatorSettings {
        prior_weight: settings.prior_weight,
    };
    let groups: Vec<Vec<usize>> = match settings.multivariate {
        true => vec![(0..space.len()).collect()],
        false => (0..space.len()).map(|key| vec![key]).collect(),
    };
    let mut point = vec![0.0; space.len()];
    for keys in groups {
        let dims: Vec<Dimension> = keys.iter().map(|&key| dimensions[key]).collect();
        let below = Parzen::fit(&internal(&good, &keys), &dims, estimator);
        let above = Parzen::fit(&internal(&bad, &keys), &dims, estimator);
        let candidates = below.sample(&mut random, settings.n_ei_candidates);
        let ratios: Vec<f64> = (candidates.iter())
            .map(|candidate| below.log_pdf(candidate) - above.log_pdf(candidate))
            .collect();
        for (&key, &x) in keys.iter().zip(&candidates[best_candidate(&ratios)]) {
            point[key] = x;
        }
    }
    let values = space
        .iter()
        .zip(point)
        .map(|((_, distribution), x)| external(distribution, x))
        .collect();
    let drawn = Drawn::Model {
        good: good.len(),
        bad: bad.len(),
    };
    (values, drawn)
}

/// The first candidate of the highest ratio. Ratios equal but for rounding count as
/// equal: two choices observed equally often have the same ratio, which the order of a
/// mixture's sum would otherwise decide, always for the same one (Optuna's argmax takes
/// the first of exactly equal ones).
fn best_candidate(ratios: &[f64]) -> usize {
    let mut best = 0;
    for (i, &ratio) in ratios.iter().enumerate() {
        if ratio > ratios[best] + 1e-9 * ratios[best].abs().max(1.0) {
            best = i;
        }
    }
    best
}

/// The positions of the good (the best gamma(n) of the n finished) and the bad (the
/// other finished and every pending) observations, each oldest first; equal scores
/// rank the older first.
pub fn split(history: &[Observation]) -> (Vec<usize>, Vec<usize>) {
    let mut finished: Vec<(usize, f64)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, seen)| seen.score.map(|score| (i, score)))
        .collect();
    let key = |score: f64| {
        if score.is_nan() {
            f64::NEG_INFINITY
        } else {
            score
        }
    };
    finished.sort_by(|(a, x), (b, y)| key(*y).total_cmp(&key(*x)).then(a.cmp(b)));
    let mut good: Vec<usize> = finished[..gamma(finished.len())]
        .iter()
        .map(|(i, _)| *i)
        .collect();
    good.sort_unstable();
    let bad = (0..history.len()).filter(|i| !good.contains(i)).collect();
    (good, bad)
}

fn dimension(distribution: &Distribution) -> Dimension {
    match distribution {
        Distribution::Uniform(low, high) => Dimension::Real {
            low: *low,
            high: *high,
        },
        Distribution::LogUniform(low, high) => Dimension::Real {
            low: low.ln(),
            high: high.ln(),
        },
        Distribution::Int(low, high) => Dimension::Integer {
            low: *low as f64,
            high: *high as f64,
        },
        Distribution::Choice(values) => Dimension::Categorical {
            count: values.len(),
        },
    }
}

/// A value in the estimator's representation: log for log-uniform, the index of a
/// choice.
fn internal(distribution: &Distribution, value: &Value) -> f64 {
    match distribution {
        Distribution::LogUniform(..) => value.as_f64().unwrap_or(f64::NAN).ln(),
        Distribution::Choice(values) => values
            .iter()
            .position(|choice| choice == value)
            .unwrap_or_default() as f64,
        _ => value.as_f64().unwrap_or(f64::NAN),
    }
}

fn external(distribution: &Distribution, x: f64) -> Value {
    match distribution {
        Distribution::Uniform(..) => Value::from(x),
        Distribution::LogUniform(low, high) => Value::from(x.exp().clamp(*low, *high)),
        Distribution::Int(..) => Value::from(x.round() as i64),
        Distribution::Choice(values) => values[x as usize].clone(),
    }
}

/// BOHB's choice of the rung a proposal's model is fitted on: the highest rung at which
/// at least `max(n_startup_trials, keys + 1)` runs have a value (BOHB wants one more
/// result than dimensions for a stable density; TPE its startup results). `reached`
/// holds, per rung in ascending order, how many runs reached it. None: draw at random.
pub fn model_rung(reached: &[usize], settings: &TpeSettings, keys: usize) -> Option<usize> {
    let enough = settings.n_startup_trials.max(keys + 1);
    (0..reached.len())
        .rev()
        .find(|&rung| reached[rung] >= enough)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Vec<(String, Distribution)> {
        vec![
            ("x".into(), Distribution::Uniform(-5.0, 5.0)),
            ("rate".into(), Distribution::LogUniform(1e-4, 1.0)),
            ("k".into(), Distribution::Int(1, 16)),
            (
                "c".into(),
                Distribution::Choice(vec!["a".into(), "b".into(), "c".into()]),
            ),
        ]
    }

    /// A synthetic objective with its optimum at x = 1.5, rate = 0.01, k = 12, c = b.
    fn objective(values: &[Value]) -> f64 {
        let x = values[0].as_f64().unwrap();
        let rate = values[1].as_f64().unwrap().log10();
        let k = values[2].as_i64().unwrap() as f64;
        let c = if values[3].as_str() == Some("b") {
            0.0
        } else {
            1.0
        };
        -((x - 1.5).powi(2) + (rate + 2.0).powi(2) + ((k - 12.0) / 4.0).powi(2) + c)
    }

    /// A search of `count` proposals, each seeing every earlier result.
    fn search(settings: &TpeSettings, seed: u64, count: usize) -> Vec<(Vec<Value>, Drawn)> {
        let space = space();
        let mut history: Vec<Observation> = Vec::new();
        let mut proposals = Vec::new();
        for index in 0..count {
            let (values, drawn) = propose(&space, settings, seed, index, &history);
            history.push(Observation {
                score: Some(objective(&values)),
                values: values.clone(),
            });
            proposals.push((values, drawn));
        }
        proposals
    }

    fn mean_distance_of_last(proposals: &[(Vec<Value>, Drawn)], last: usize) -> f64 {
        let tail = &proposals[proposals.len() - last..];
        tail.iter()
            .map(|(values, _)| -objective(values))
            .sum::<f64>()
            / last as f64
    }

    #[test]
    fn later_proposals_concentrate_near_the_optimum_and_random_ones_do_not() {
        // Over 8 seeds: the last 20 of 60 TPE proposals against 20 random ones (TPE with
        // only startup draws, which are the random search of the same space).
        let random_only = TpeSettings {
            n_startup_trials: 1000,
            ..TpeSettings::OPTUNA
        };
        for multivariate in [false, true] {
            let settings = TpeSettings {
                multivariate,
                ..TpeSettings::OPTUNA
            };
            let (mut tpe, mut random) = (0.0, 0.0);
            for seed in 0..8 {
                let proposals = search(&settings, seed, 60);
                assert!(proposals[..10].iter().all(|(_, d)| *d == Drawn::Startup));
                assert!(matches!(proposals[59].1, Drawn::Model { good: 6, bad: 53 }));
                tpe += mean_distance_of_last(&proposals, 20) / 8.0;
                random += mean_distance_of_last(&search(&random_only, seed, 60), 20) / 8.0;
            }
            // The random search's mean distance is about 12 (x alone contributes ~10).
            assert!(random > 6.0, "random {random}");
            assert!(
                tpe < random / 2.0,
                "multivariate {multivariate}: tpe {tpe}, random {random}"
            );
        }
    }

    #[test]
    fn a_proposal_depends_on_seed_index_and_history_alone() {
        let proposals = search(&TpeSettings::OPTUNA, 3, 15);
        assert_eq!(proposals, search(&TpeSettings::OPTUNA, 3, 15));
        assert_ne!(proposals, search(&TpeSettings::OPTUNA, 4, 15));
        for (values, _) in &proposals {
            let k = values[2].as_i64().unwrap();
            assert!((1..=16).contains(&k));
            assert!((1e-4..=1.0).contains(&values[1].as_f64().unwrap()));
        }
    }

    #[test]
    fn pending_configurations_count_as_bad_and_not_towards_gamma() {
        let history: Vec<Observation> = [Some(0.5), None, Some(0.9), Some(f64::NAN), None]
            .into_iter()
            .map(|score| Observation {
                values: vec![],
                score,
            })
            .collect();
        assert_eq!(split(&history), (vec![2], vec![0, 1, 3, 4]));
        assert_eq!((gamma(1), gamma(10), gamma(11), gamma(400)), (1, 1, 2, 25));
        // The pending ones push later proposals away from where they sit: with the
        // same finished results, a proposal seeing pending configurations at the
        // optimum proposes elsewhere than one that does not.
        let space = space();
        let mut finished: Vec<Observation> = search(&TpeSettings::OPTUNA, 1, 12)
            .into_iter()
            .map(|(values, _)| Observation {
                score: Some(objective(&values)),
                values,
            })
            .collect();
        let plain = propose(&space, &TpeSettings::OPTUNA, 1, 12, &finished);
        let optimum = vec![1.5.into(), 0.01.into(), 12.into(), "b".into()];
        finished.extend((0..12).map(|_| Observation {
            values: optimum.clone(),
            score: None,
        }));
        let liar = propose(&space, &TpeSettings::OPTUNA, 1, 12, &finished);
        assert_ne!(plain.0, liar.0);
    }

    #[test]
    fn choices_seen_equally_often_tie_and_the_first_candidate_takes_it() {
        assert_eq!(best_candidate(&[0.5, 1.0 + 1e-15, 1.0, 0.9]), 1);
        assert_eq!(best_candidate(&[0.5, 1.0, 1.0 + 1e-15, 0.9]), 1);
        assert_eq!(best_candidate(&[0.5, 1.0, 1.001]), 2);
        // The good are two `a`s; the bad eight `a`s, two `b`s and two `c`s: `b` and
        // `c` then have the same, highest ratio (as batch sizes of a real history
        // had), and each is proposed about as often, not always the one that the
        // rounding of the bad density's sum favours.
        let space = vec![(
            "c".to_string(),
            Distribution::Choice(vec!["a".into(), "b".into(), "c".into()]),
        )];
        let seen = |choice: &str, score: f64| Observation {
            values: vec![choice.into()],
            score: Some(score),
        };
        let mut history = vec![seen("a", 1.0), seen("a", 0.9)];
        history.extend((0..8).map(|_| seen("a", 0.1)));
        history.extend(["b", "b", "c", "c"].map(|choice| seen(choice, 0.0)));
        let mut counts = std::collections::HashMap::new();
        for seed in 0..400 {
            let (values, _) = propose(&space, &TpeSettings::OPTUNA, seed, 14, &history);
            *counts
                .entry(values[0].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        let count = |choice: &str| counts.get(choice).copied().unwrap_or(0);
        assert!(count("b") > 120 && count("c") > 120, "{counts:?}");
    }

    #[test]
    fn bohb_fits_the_highest_rung_with_enough_results_and_draws_a_share_at_random() {
        let settings = TpeSettings {
            random_fraction: TpeSettings::BOHB_RANDOM_FRACTION,
            ..TpeSettings::OPTUNA
        };
        assert_eq!(model_rung(&[12, 4, 1], &settings, 4), Some(0));
        assert_eq!(model_rung(&[30, 10, 3], &settings, 4), Some(1));
        assert_eq!(model_rung(&[9, 0, 0], &settings, 4), None);
        // With 12 keys, BOHB's dimension + 1 (13) rules.
        assert_eq!(model_rung(&[12, 4, 1], &settings, 12), None);
        let proposals = search(&settings, 5, 300);
        let random = proposals
            .iter()
            .filter(|(_, drawn)| *drawn == Drawn::RandomFraction)
            .count();
        // About a third of the 290 proposals after startup.
        assert!((70..125).contains(&random), "{random}");
    }

    #[test]
    fn settings_out_of_range_are_refused_with_the_fix() {
        let check = |settings: TpeSettings, halving: bool| {
            settings.check(20, halving).unwrap_err().to_string()
        };
        let base = TpeSettings::OPTUNA;
        assert!(check(
            TpeSettings {
                n_startup_trials: 0,
                ..base
            },
            false
        )
        .contains("at least one"));
        assert!(check(
            TpeSettings {
                n_startup_trials: 20,
                ..base
            },
            false
        )
        .contains("not below"));
        assert!(check(
            TpeSettings {
                n_ei_candidates: 0,
                ..base
            },
            false
        )
        .contains("n_ei_candidates"));
        assert!(check(
            TpeSettings {
                prior_weight: -1.0,
                ..base
            },
            false
        )
        .contains("above 0"));
        assert!(check(
            TpeSettings {
                random_fraction: 1.5,
                ..base
            },
            true
        )
        .contains("0 to 1"));
        assert!(check(
            TpeSettings {
                random_fraction: 0.3,
                ..base
            },
            false
        )
        .contains("halving"));
        assert!(base.check(20, false).is_ok());
    }
}

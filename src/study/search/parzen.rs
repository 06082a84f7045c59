//! TPE's Parzen estimator, as Optuna's TPESampler builds it: a mixture of one kernel
//! per observation plus a prior kernel, truncated normals for numbers (rounded to the
//! integers for `int`), smoothed frequencies for `choice`; with sampling and the log
//! density that TPE's acquisition compares. Also the normal distribution's functions
//! it needs, written here (the standard library has no erf).

use crate::random::SplitMix64;

/// One dimension of the space, in the estimator's internal representation: a real
/// number (log of the value for `loguniform`), an integer, or a choice's index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dimension {
    /// A real number in [low, high] (already in log space for log-uniform ranges).
    Real { low: f64, high: f64 },
    /// An integer from low to high, both included.
    Integer { low: f64, high: f64 },
    /// One of `count` values, by index.
    Categorical { count: usize },
}

/// Optuna's settings of the estimator that cellnets exposes (the rest are its
/// defaults: the prior always considered, the magic clip on, endpoints not considered).
/// Whether the estimator is joint (multivariate) is whether it is fitted over one
/// dimension or several: kernel widths are each dimension's own either way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimatorSettings {
    /// The prior kernel's weight against the observations' (Optuna: 1.0).
    pub prior_weight: f64,
}

/// A kernel mixture over `dimensions`; every dimension shares the mixture's components.
#[derive(Debug, Clone)]
pub struct Parzen {
    /// Component weights, summing to 1: the observations', then the prior's.
    weights: Vec<f64>,
    kernels: Vec<Kernels>,
}

/// One dimension's kernels, one per mixture component.
#[derive(Debug, Clone)]
enum Kernels {
    Numeric {
        mus: Vec<f64>,
        sigmas: Vec<f64>,
        low: f64,
        high: f64,
        /// 1 for integers: kernels cover [low - 1/2, high + 1/2] and samples round.
        step: Option<f64>,
    },
    /// Each component's probabilities of the choices.
    Categorical { probabilities: Vec<Vec<f64>> },
}

/// Optuna's `default_weights`: equal weights for the 25 latest observations, a ramp
/// from 1/n up for older ones. `n` observations, oldest first.
pub fn observation_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let start = 1.0 / n as f64;
    (0..ramp)
        .map(|i| match ramp {
            1 => start,
            _ => start + (1.0 - start) * i as f64 / (ramp - 1) as f64,
        })
        .chain(std::iter::repeat_n(1.0, 25))
        .collect()
}

impl Parzen {
    /// The estimator of `observations` (each a point in internal representation, oldest
    /// first) over `dimensions`.
    pub fn fit(
        observations: &[Vec<f64>],
        dimensions: &[Dimension],
        settings: EstimatorSettings,
    ) -> Parzen {
        let n = observations.len();
        let mut weights = observation_weights(n);
        weights.push(settings.prior_weight);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|weight| *weight /= total);
        let kernels = dimensions
            .iter()
            .enumerate()
            .map(|(d, dimension)| {
                let column: Vec<f64> = observations.iter().map(|point| point[d]).collect();
                Kernels::fit(&column, *dimension, settings)
            })
            .collect();
        Parzen { weights, kernels }
    }

    /// `count` points drawn from the mixture.
    pub fn sample(&self, random: &mut SplitMix64, count: usize) -> Vec<Vec<f64>> {
        (0..count)
            .map(|_| {
                let component = pick(&self.weights, unit(random));
                self.kernels
                    .iter()
                    .map(|kernels| kernels.sample(component, random))
                    .collect()
            })
            .collect()
    }

    /// The log density (mass, for integers and choices) of `point`.
    pub fn log_pdf(&self, point: &[f64]) -> f64 {
        let terms: Vec<f64> = (0..self.weights.len())
            .map(|component| {
                let within: f64 = self
                    .kernels
                    .iter()
                    .zip(point)
                    .map(|(kernels, &x)| kernels.log_pdf(component, x))
                    .sum();
                self.weights[component].ln() + within
            })
            .collect();
        log_sum_exp(&terms)
    }
}

impl Kernels {
    fn fit(observed: &[f64], dimension: Dimension, settings: EstimatorSettings) -> Kernels {
        let (low, high, step) = match dimension {
            Dimension::Categorical { count } => {
                return Kernels::categorical(observed, count, settings.prior_weight)
            }
            Dimension::Real { low, high } => (low, high, None),
            Dimension::Integer { low, high } => (low, high, Some(1.0)),
        };
        // Integers: each value owns the unit interval around it.
        let half = step.map_or(0.0, |step| step / 2.0);
        let (wide_low, wide_high) = (low - half, high + half);
        let span = wide_high - wide_low;
        let n = observed.len();
        // Optuna's "magic clip": no kernel narrower than span / min(100, kernels + 1),
        // the prior counted among the kernels.
        let min_sigma = span / f64::min(100.0, 1.0 + (n + 1) as f64);
        let mut sigmas: Vec<f64> = neighbour_sigmas(observed, wide_low, wide_high)
            .into_iter()
            .map(|sigma| sigma.clamp(min_sigma, span))
            .collect();
        let mut mus = observed.to_vec();
        mus.push(0.5 * (wide_low + wide_high));
        sigmas.push(span);
        Kernels::Numeric {
            mus,
            sigmas,
            low,
            high,
            step,
        }
    }

    /// Each component puts `prior_weight / kernels` on every choice, plus 1 on its own
    /// observation's; the prior component is uniform.
    fn categorical(observed: &[f64], count: usize, prior_weight: f64) -> Kernels {
        let kernels = observed.len() + 1;
        let base = prior_weight / kernels as f64;
        let mut probabilities: Vec<Vec<f64>> = observed
            .iter()
            .map(|&index| {
                let mut row = vec![base; count];
                row[index as usize] += 1.0;
                row
            })
            .collect();
        probabilities.push(vec![base; count]);
        for row in &mut probabilities {
            let total: f64 = row.iter().sum();
            row.iter_mut().for_each(|p| *p /= total);
        }
        Kernels::Categorical { probabilities }
    }

    fn sample(&self, component: usize, random: &mut SplitMix64) -> f64 {
        match self {
            Kernels::Categorical { probabilities } => {
                pick(&probabilities[component], unit(random)) as f64
            }
            Kernels::Numeric {
                mus,
                sigmas,
                low,
                high,
                step,
            } => {
                let half = step.map_or(0.0, |step| step / 2.0);
                let (mu, sigma) = (mus[component], sigmas[component]);
                let a = (low - half - mu) / sigma;
                let b = (high + half - mu) / sigma;
                let x = mu + sigma * truncated_normal(a, b, unit(random));
                match step {
                    Some(step) => (low + ((x - low) / step).round() * step).clamp(*low, *high),
                    None => x.clamp(*low, *high),
                }
            }
        }
    }

    fn log_pdf(&self, component: usize, x: f64) -> f64 {
        match self {
            Kernels::Categorical { probabilities } => probabilities[component][x as usize].ln(),
            Kernels::Numeric {
                mus,
                sigmas,
                low,
                high,
                step,
            } => {
                let (mu, sigma) = (mus[component], sigmas[component]);
                match step {
                    None => {
                        let z = (x - mu) / sigma;
                        -0.5 * z * z
                            - 0.5 * (2.0 * std::f64::consts::PI).ln()
                            - sigma.ln()
                            - log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
                    }
                    Some(step) => {
                        let half = step / 2.0;
                        let (lower, upper) = (low - half, high + half);
                        let from = (x - half).max(lower);
                        let to = (x + half).min(upper);
                        log_gauss_mass((from - mu) / sigma, (to - mu) / sigma)
                            - log_gauss_mass((lower - mu) / sigma, (upper - mu) / sigma)
                    }
                }
            }
        }
    }
}

/// Optuna's kernel widths (the same for its univariate and multivariate TPE since
/// Optuna 3): the larger gap to a neighbour among the sorted observations, the range's
/// ends included, except that the first and last take their inner gap (endpoints not
/// considered). One width per observation, before the magic clip.
fn neighbour_sigmas(mus: &[f64], low: f64, high: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..mus.len()).collect();
    order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]).then(a.cmp(&b)));
    let mut ends = vec![low];
    ends.extend(order.iter().map(|&i| mus[i]));
    ends.push(high);
    let mut sorted: Vec<f64> = (1..ends.len() - 1)
        .map(|i| f64::max(ends[i] - ends[i - 1], ends[i + 1] - ends[i]))
        .collect();
    if ends.len() >= 4 {
        let last = sorted.len() - 1;
        sorted[0] = ends[2] - ends[1];
        sorted[last] = ends[ends.len() - 2] - ends[ends.len() - 3];
    }
    let mut sigmas = vec![0.0; mus.len()];
    for (position, &i) in order.iter().enumerate() {
        sigmas[i] = sorted[position];
    }
    sigmas
}

/// A uniform number in [0, 1) from 53 random bits.
pub fn unit(random: &mut SplitMix64) -> f64 {
    (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The index whose cumulative weight first passes `u` times the total.
fn pick(weights: &[f64], u: f64) -> usize {
    let total: f64 = weights.iter().sum();
    let mut cumulative = 0.0;
    for (i, weight) in weights.iter().enumerate() {
        cumulative += weight;
        if u * total < cumulative {
            return i;
        }
    }
    weights.len() - 1
}

fn log_sum_exp(terms: &[f64]) -> f64 {
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// ln erfc(z) for z >= 0, from Numerical Recipes' Chebyshev fit (relative error of
/// erfc below 1.2e-7 everywhere), in log space so that far tails do not underflow.
fn ln_erfc(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t.ln() + poly
}

/// The standard normal's cumulative distribution.
pub fn ndtr(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let tail = 0.5 * ln_erfc(z).exp();
    if x >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// ln of `ndtr(x)`, accurate in the far lower tail.
fn log_ndtr(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    if x >= 0.0 {
        (-0.5 * ln_erfc(z).exp()).ln_1p()
    } else {
        0.5f64.ln() + ln_erfc(z)
    }
}

/// ln of the standard normal's mass on [a, b] (Optuna's `_log_gauss_mass`).
fn log_gauss_mass(a: f64, b: f64) -> f64 {
    // ln(e^x - e^y) for x > y.
    let log_diff = |x: f64, y: f64| x + (-(y - x).exp()).ln_1p();
    if b <= 0.0 {
        log_diff(log_ndtr(b), log_ndtr(a))
    } else if a >= 0.0 {
        log_diff(log_ndtr(-a), log_ndtr(-b))
    } else {
        (1.0 - ndtr(a) - ndtr(-b)).ln()
    }
}

/// A standard normal truncated to [a, b] (a <= 0 <= b here: every kernel's centre lies
/// in its range), by inverting its distribution at `u`.
fn truncated_normal(a: f64, b: f64, u: f64) -> f64 {
    let (low, high) = (ndtr(a), ndtr(b));
    let p = (low + u * (high - low)).clamp(1e-300, 1.0 - 1e-16);
    ndtri(p).clamp(a, b)
}

/// The standard normal's quantile function, by Peter Acklam's rational approximation
/// (relative error below 1.2e-9).
pub fn ndtri(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_functions_match_known_values() {
        assert!((ndtr(0.0) - 0.5).abs() < 1e-7);
        assert!((ndtr(1.959_963_985) - 0.975).abs() < 1e-7);
        assert!((ndtr(-3.0) - 0.001_349_898).abs() < 1e-9);
        for p in [1e-10, 0.001, 0.1, 0.5, 0.9, 0.999] {
            assert!((ndtr(ndtri(p)) - p).abs() < 1e-6 * p.max(1e-3), "{p}");
        }
        // ln Phi(-40): about -804.6; a plain ln(Phi) would be -inf.
        assert!((log_ndtr(-40.0) + 804.608_442).abs() < 1e-3);
        assert!((log_gauss_mass(-1.0, 1.0) - 0.682_689_49f64.ln()).abs() < 1e-6);
        assert!((log_gauss_mass(30.0, 31.0) - log_gauss_mass(-31.0, -30.0)).abs() < 1e-9);
    }

    #[test]
    fn the_default_weights_ramp_only_beyond_25_observations() {
        assert_eq!(observation_weights(3), [1.0, 1.0, 1.0]);
        let weights = observation_weights(30);
        assert_eq!(weights.len(), 30);
        assert!((weights[0] - 1.0 / 30.0).abs() < 1e-12);
        assert_eq!(&weights[4..], &[1.0; 26]);
    }

    #[test]
    fn kernel_widths_are_optunas_neighbour_gaps_and_magic_clip() {
        // Observations 0.1 and 0.9 on [0, 1]: each takes the inner gap (0.8); the prior
        // sits at 0.5 and is the range wide.
        let parzen = Parzen::fit(
            &[vec![0.1], vec![0.9]],
            &[Dimension::Real {
                low: 0.0,
                high: 1.0,
            }],
            EstimatorSettings { prior_weight: 1.0 },
        );
        let Kernels::Numeric { sigmas, mus, .. } = &parzen.kernels[0] else {
            panic!("numeric")
        };
        assert_eq!(mus, &[0.1, 0.9, 0.5]);
        assert!(sigmas
            .iter()
            .zip([0.8, 0.8, 1.0])
            .all(|(a, b)| (a - b).abs() < 1e-12));
        assert_eq!(parzen.weights, [1.0 / 3.0; 3]);
        // The density integrates to 1 over the range, and integer masses sum to 1.
        let steps = 10_000;
        let integral: f64 = (0..steps)
            .map(|i| parzen.log_pdf(&[(i as f64 + 0.5) / steps as f64]).exp() / steps as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
        let integers = Parzen::fit(
            &[vec![2.0], vec![5.0]],
            &[Dimension::Integer {
                low: 1.0,
                high: 6.0,
            }],
            EstimatorSettings { prior_weight: 1.0 },
        );
        let mass: f64 = (1..=6).map(|x| integers.log_pdf(&[x as f64]).exp()).sum();
        assert!((mass - 1.0).abs() < 1e-6, "{mass}");
        let mut random = SplitMix64(1);
        for point in integers.sample(&mut random, 200) {
            assert!(point[0].fract() == 0.0 && (1.0..=6.0).contains(&point[0]));
        }
    }

    #[test]
    fn categorical_kernels_smooth_their_observation_with_the_prior() {
        let parzen = Parzen::fit(
            &[vec![1.0], vec![1.0], vec![0.0]],
            &[Dimension::Categorical { count: 3 }],
            EstimatorSettings { prior_weight: 1.0 },
        );
        let p: Vec<f64> = (0..3).map(|i| parzen.log_pdf(&[i as f64]).exp()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[1] > p[0] && p[0] > p[2], "{p:?}");
    }
}

//! 95% intervals (Wilson, seeded stratified bootstrap, Student's t across seeds),
//! Welch's t-test, McNemar's exact test and Holm's correction, on plain numbers. They
//! say how far a measured number can be trusted: Wilson's interval for a proportion, a
//! seeded, stratified percentile bootstrap for anything else computed from test
//! images, Student's t across repeated seeds, Welch's t-test of two configurations'
//! seeds, and McNemar's exact test of two models scored on the same images, with
//! Holm's correction when several such tests are read together. Pure arithmetic on
//! plain numbers: what the numbers are is the business of `metrics` and the report.

use crate::random::SplitMix64;

/// The normal quantile of 0.975: a two-sided 95% interval is +/- this many standard
/// errors.
const Z_95: f64 = 1.959_963_984_540_054;

/// A two-sided 95% interval. Undefined (NaN bounds) where there is nothing to measure.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub const UNDEFINED: Interval = Interval {
        low: f64::NAN,
        high: f64::NAN,
    };

    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }

    pub fn is_defined(&self) -> bool {
        self.low.is_finite() && self.high.is_finite()
    }
}

impl Default for Interval {
    fn default() -> Self {
        Interval::UNDEFINED
    }
}

/// Wilson's score interval for `successes` of `trials`: unlike the normal
/// approximation it stays inside [0, 1] and keeps its coverage near 0 and 1, where
/// good classifiers' accuracies lie.
pub fn wilson(successes: u64, trials: u64) -> Interval {
    if trials == 0 {
        return Interval::UNDEFINED;
    }
    let (n, p) = (trials as f64, successes as f64 / trials as f64);
    let z2 = Z_95 * Z_95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

/// Resamples drawn by `bootstrap`: the 2.5th and 97.5th percentiles of 1000 resamples
/// move by about 0.001 between seeds for a metric near 0.9 on 3,000 images, finer
/// than the four decimals tables show.
pub const RESAMPLES: usize = 1000;

/// The bootstrap's own seed: the same predictions always get the same interval.
pub const BOOTSTRAP_SEED: u64 = 23;

/// Percentile bootstrap intervals of `K` statistics of a sample. The sample's items
/// are grouped in `strata` (their indices; for classification, the images of each true
/// class), and every resample draws, with replacement, as many items from each stratum
/// as it holds, so each resample keeps the test split's class counts. `statistics`
/// gets each item's weight (how often the resample drew it) and returns the `K`
/// values; a value that is not finite (a class the resample left without positives)
/// is left out of that statistic's percentiles.
pub fn bootstrap<const K: usize>(
    strata: &[Vec<usize>],
    resamples: usize,
    seed: u64,
    mut statistics: impl FnMut(&[u32]) -> [f64; K],
) -> [Interval; K] {
    let items = strata.iter().flatten().max().map_or(0, |&last| last + 1);
    let mut random = SplitMix64(seed);
    let mut weights = vec![0u32; items];
    let mut values: [Vec<f64>; K] = std::array::from_fn(|_| Vec::with_capacity(resamples));
    for _ in 0..resamples {
        weights.fill(0);
        for stratum in strata {
            for _ in 0..stratum.len() {
                weights[stratum[random.below(stratum.len())]] += 1;
            }
        }
        for (value, collected) in statistics(&weights).into_iter().zip(&mut values) {
            if value.is_finite() {
                collected.push(value);
            }
        }
    }
    values.map(|mut collected| {
        collected.sort_by(f64::total_cmp);
        Interval {
            low: percentile(&collected, 2.5),
            high: percentile(&collected, 97.5),
        }
    })
}

/// The `p`th percentile of sorted `values`, interpolating linearly between the two
/// nearest ranks (NumPy's default); NaN for no values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = p / 100.0 * last as f64;
    let below = rank.floor() as usize;
    let above = (below + 1).min(last);
    sorted[below] + (rank - below as f64) * (sorted[above] - sorted[below])
}

/// Mean, sample standard deviation and Student's t 95% interval of the mean of values
/// measured once per seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub mean: f64,
    /// With n - 1 in the denominator; NaN for fewer than two values.
    pub standard_deviation: f64,
    pub interval: Interval,
}

impl Spread {
    /// The spread of `values`; NaN fields where they are too few.
    pub fn of(values: &[f64]) -> Spread {
        let count = values.len();
        let n = count as f64;
        let mean = mean(values);
        if count < 2 {
            return Spread {
                count,
                mean,
                standard_deviation: f64::NAN,
                interval: Interval::UNDEFINED,
            };
        }
        let standard_deviation = sample_variance(values, mean).sqrt();
        let half = t_quantile_975(count - 1) * standard_deviation / n.sqrt();
        Spread {
            count,
            mean,
            standard_deviation,
            interval: Interval {
                low: mean - half,
                high: mean + half,
            },
        }
    }
}

/// The mean of `values`, summed in order; NaN for none.
fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// The variance of `values` about their `mean`, with n - 1 in the denominator.
fn sample_variance(values: &[f64], mean: f64) -> f64 {
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() as f64 - 1.0)
}

/// Student's t quantile of 0.975 for `degrees` of freedom: tabulated up to 30, where
/// repeats of one configuration lie, and Cornish and Fisher's expansion beyond (within
/// 1e-4 of the exact value there).
pub fn t_quantile_975(degrees: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
        2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739,
        2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
    ];
    match degrees {
        0 => f64::NAN,
        1..=30 => TABLE[degrees - 1],
        _ => {
            let (z, v) = (Z_95, degrees as f64);
            z + (z.powi(3) + z) / (4.0 * v)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        }
    }
}

/// McNemar's exact test of two models scored on the same images: of the images only
/// one of them gets right, `only_first` are the first model's and `only_second` the
/// second's. Without a difference between the models each such image is a fair coin,
/// so the two-sided p-value is twice the binomial tail of the smaller count (at most
/// 1). Images both get right or both get wrong say nothing about which is better.
pub fn mcnemar_exact(only_first: u64, only_second: u64) -> f64 {
    let n = only_first + only_second;
    let smaller = only_first.min(only_second);
    // ln C(n, k) - n ln 2, summed from k = 0, in logarithms: 0.5^n underflows past
    // about a thousand discordant images.
    let mut log_choose = 0.0;
    let mut tail = 0.0;
    for k in 0..=smaller {
        if k > 0 {
            log_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        tail += (log_choose - n as f64 * std::f64::consts::LN_2).exp();
    }
    (2.0 * tail).min(1.0)
}

/// Welch's t-test of two samples' means without assuming equal variances: what
/// `scipy.stats.ttest_ind(first, second, equal_var=False)` computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchTest {
    /// (mean of first - mean of second) / its standard error.
    pub t: f64,
    /// Welch-Satterthwaite's degrees of freedom.
    pub degrees: f64,
    /// Two-sided: the chance of a |t| at least this large if the means were equal.
    pub p: f64,
}

impl WelchTest {
    /// None with fewer than two values on a side: a side's variance needs two.
    pub fn of(first: &[f64], second: &[f64]) -> Option<WelchTest> {
        if first.len() < 2 || second.len() < 2 {
            return None;
        }
        let (n1, n2) = (first.len() as f64, second.len() as f64);
        let (first_mean, second_mean) = (mean(first), mean(second));
        let first_share = sample_variance(first, first_mean) / n1;
        let second_share = sample_variance(second, second_mean) / n2;
        let variance = first_share + second_share;
        let degrees = variance.powi(2)
            / (first_share.powi(2) / (n1 - 1.0) + second_share.powi(2) / (n2 - 1.0));
        // Seeds that all agree leave no variance: scipy then takes one degree of
        // freedom, which cannot matter, as t is infinite (or 0 / 0, undefined).
        let degrees = if degrees.is_nan() { 1.0 } else { degrees };
        let t = (first_mean - second_mean) / variance.sqrt();
        Some(WelchTest {
            t,
            degrees,
            p: t_two_sided_p(t, degrees),
        })
    }
}

/// The two-sided p-value of Student's t at `t` with `degrees` (any positive real) of
/// freedom, P(|T| >= |t|): the regularised incomplete beta function
/// I_x(degrees / 2, 1 / 2) at x = degrees / (degrees + t^2).
pub fn t_two_sided_p(t: f64, degrees: f64) -> f64 {
    if t.is_nan() || degrees.is_nan() || degrees <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    let square = t * t;
    // x and 1 - x each from their own ratio: 1 - x computed as a difference would lose
    // the digits of a small t.
    let (x, complement) = (degrees / (degrees + square), square / (degrees + square));
    regularized_incomplete_beta(degrees / 2.0, 0.5, x, complement)
}

/// I_x(a, b), the regularised incomplete beta function, by its continued fraction
/// (Numerical Recipes, 3rd edition, 6.4) on whichever side converges fast;
/// `complement` is 1 - x, given separately so it keeps its own precision.
fn regularized_incomplete_beta(a: f64, b: f64, x: f64, complement: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if complement <= 0.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * complement.ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_continued_fraction(b, a, complement) / b
    }
}

/// The continued fraction of I_x(a, b), evaluated by Lentz's method.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let guard = |value: f64| if value.abs() < TINY { TINY } else { value };
    let (sum, plus, minus) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - sum * x / plus);
    let mut fraction = d;
    for m in 1..10_000 {
        let (m, twice) = (f64::from(m), f64::from(2 * m));
        let even = m * (b - m) * x / ((minus + twice) * (a + twice));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        fraction *= d * c;
        let odd = -(a + m) * (sum + m) * x / ((a + twice) * (plus + twice));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        fraction *= step;
        if (step - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    fraction
}

/// ln Γ(x) for x > 0, by Lanczos' series as Numerical Recipes (3rd edition, 6.1)
/// gives it, good to about the last digit of a double.
// The coefficients as published, digits past a double's included, so they can be
// checked against the book.
#[allow(clippy::excessive_precision)]
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 14] = [
        57.156_235_665_862_923_5,
        -59.597_960_355_475_491_2,
        14.136_097_974_741_747_1,
        -0.491_913_816_097_620_199,
        0.339_946_499_848_118_887e-4,
        0.465_236_289_270_485_756e-4,
        -0.983_744_753_048_795_646e-4,
        0.158_088_703_224_912_494e-3,
        -0.210_264_441_724_104_883e-3,
        0.217_439_618_115_212_643e-3,
        -0.164_318_106_536_763_890e-3,
        0.844_182_239_838_527_433e-4,
        -0.261_908_384_015_814_087e-4,
        0.368_991_826_595_316_234e-5,
    ];
    let shifted = x + 5.242_187_5;
    let head = (x + 0.5) * shifted.ln() - shifted;
    let mut series = 0.999_999_999_999_997_092;
    let mut y = x;
    for coefficient in COEFFICIENTS {
        y += 1.0;
        series += coefficient / y;
    }
    head + (2.506_628_274_631_000_5 * series / x).ln()
}

/// Holm's step-down adjustment of `p` values read together, as statsmodels'
/// `multipletests(p, method="holm")` computes it: the i-th smallest (from 0) times
/// the m - i tests still in play, never below the adjusted value before it, at most 1.
/// Rejecting where the adjusted p is below 0.05 keeps the chance of any false
/// rejection among all m below 0.05.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![f64::NAN; p.len()];
    let mut running = f64::NEG_INFINITY;
    for (rank, &index) in order.iter().enumerate() {
        running = running.max(p[index] * (p.len() - rank) as f64);
        adjusted[index] = running.min(1.0);
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn wilson_matches_the_formula_worked_by_hand() {
        // 90 of 100: centre (0.9 + 1.92/100) / 1.0384 = 0.88523, half-width
        // 1.96 / 1.0384 * sqrt(0.0009 + 0.0000960) = 0.05958.
        let interval = wilson(90, 100);
        assert!(close(interval.low, 0.8256, 5e-5), "{interval:?}");
        assert!(close(interval.high, 0.9448, 5e-5), "{interval:?}");
        // 3103 of 3421 (0.9070, about the study's CNN): the interval is +/- 0.0098.
        let study = wilson(3103, 3421);
        assert!(close(study.low, 0.89685, 5e-5), "{study:?}");
        assert!(close(study.high, 0.91632, 5e-5), "{study:?}");
        // All right: the interval still has width, and ends at 1.
        let perfect = wilson(20, 20);
        assert!(
            close(perfect.low, 0.83887, 5e-5) && perfect.high == 1.0,
            "{perfect:?}"
        );
        assert!(!wilson(0, 0).is_defined());
    }

    #[test]
    fn percentiles_interpolate_as_numpy_does() {
        let values = [1.0, 2.0, 3.0, 4.0, 10.0];
        // numpy.percentile([1, 2, 3, 4, 10], [2.5, 50, 97.5]) = [1.1, 3.0, 9.4].
        assert!(close(percentile(&values, 2.5), 1.1, 1e-12));
        assert_eq!(percentile(&values, 50.0), 3.0);
        assert!(close(percentile(&values, 97.5), 9.4, 1e-12));
        assert!(percentile(&[], 50.0).is_nan());
    }

    /// Items 0..n with the first `right` of them right.
    fn hits(n: usize, right: usize) -> Vec<bool> {
        (0..n).map(|i| i < right).collect()
    }

    #[test]
    fn the_bootstrap_of_a_share_agrees_with_its_normal_interval() {
        // 900 of 1000 right: the share's standard error is sqrt(0.9 * 0.1 / 1000), so a
        // 95% interval is 0.9 +/- 0.0186; the percentile bootstrap of one stratum must
        // land within a few thousandths of that.
        let right = hits(1000, 900);
        let all: Vec<usize> = (0..1000).collect();
        let [interval] = bootstrap(&[all], RESAMPLES, BOOTSTRAP_SEED, |weights| {
            let hits: u32 = weights
                .iter()
                .zip(&right)
                .filter(|(_, r)| **r)
                .map(|(w, _)| w)
                .sum();
            [f64::from(hits) / 1000.0]
        });
        let half = Z_95 * (0.9f64 * 0.1 / 1000.0).sqrt();
        assert!(close(interval.low, 0.9 - half, 0.003), "{interval:?}");
        assert!(close(interval.high, 0.9 + half, 0.003), "{interval:?}");
    }

    #[test]
    fn a_stratified_bootstrap_keeps_each_stratum_whole_and_repeats_itself() {
        let strata = vec![vec![0, 1, 2], vec![3, 4, 5, 6, 7]];
        let drawn_per_stratum = |weights: &[u32]| {
            let first: u32 = weights[..3].iter().sum();
            let second: u32 = weights[3..].iter().sum();
            [f64::from(first), f64::from(second)]
        };
        let [first, second] = bootstrap(&strata, 50, 1, drawn_per_stratum);
        assert_eq!((first.low, first.high), (3.0, 3.0));
        assert_eq!((second.low, second.high), (5.0, 5.0));

        let mean_of = |weights: &[u32]| {
            let sum: u32 = weights.iter().enumerate().map(|(i, w)| i as u32 * w).sum();
            [f64::from(sum) / 8.0]
        };
        let once = bootstrap(&strata, 200, 7, mean_of);
        assert_eq!(
            once,
            bootstrap(&strata, 200, 7, mean_of),
            "same seed, same interval"
        );
        assert_ne!(once, bootstrap(&strata, 200, 8, mean_of));
    }

    #[test]
    fn values_that_are_not_finite_are_left_out_of_the_percentiles() {
        let [interval] = bootstrap(&[vec![0, 1]], 100, 3, |weights| {
            [if weights[0] == 2 { f64::NAN } else { 1.0 }]
        });
        assert_eq!((interval.low, interval.high), (1.0, 1.0));
    }

    #[test]
    fn the_spread_across_seeds_is_the_textbook_one() {
        // Mean 0.9, sample sd sqrt((0.0001 + 0 + 0.0001) / 2) = 0.01; t(2) = 4.3027, so
        // the mean's interval is 0.9 +/- 4.3027 * 0.01 / sqrt(3) = 0.9 +/- 0.024842.
        let spread = Spread::of(&[0.89, 0.90, 0.91]);
        assert_eq!(spread.count, 3);
        assert!(close(spread.mean, 0.9, 1e-12));
        assert!(close(spread.standard_deviation, 0.01, 1e-12));
        assert!(close(spread.interval.low, 0.875158, 1e-6), "{spread:?}");
        assert!(close(spread.interval.high, 0.924842, 1e-6), "{spread:?}");
        let single = Spread::of(&[0.9]);
        assert_eq!(single.mean, 0.9);
        assert!(single.standard_deviation.is_nan() && !single.interval.is_defined());
        // scipy.stats.t.ppf(0.975, 40) = 2.021075; 100: 1.983972.
        assert!(close(t_quantile_975(40), 2.021075, 1e-4));
        assert!(close(t_quantile_975(100), 1.983972, 1e-4));
    }

    #[test]
    fn mcnemar_matches_the_binomial_worked_by_hand() {
        // 1 against 9 discordant images: P(X <= 1) for X ~ Bin(10, 1/2) is
        // (1 + 10) / 1024, so p = 22 / 1024.
        assert!(close(mcnemar_exact(1, 9), 22.0 / 1024.0, 1e-15));
        assert!(close(mcnemar_exact(9, 1), 22.0 / 1024.0, 1e-15));
        // 2 against 5: (1 + 7 + 21) / 128 * 2 = 58 / 128.
        assert!(close(mcnemar_exact(2, 5), 58.0 / 128.0, 1e-15));
        assert_eq!(mcnemar_exact(4, 4), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Thousands of discordant images neither underflow nor overflow:
        // scipy.stats.binomtest(950, 2000).pvalue = 0.026824 (exact integers in Python).
        assert!(close(mcnemar_exact(950, 1050), 0.026824, 1e-6));
    }

    #[test]
    fn welchs_test_equals_scipys_ttest_ind_without_equal_variances() {
        // scipy 1.17.1: scipy.stats.ttest_ind(first, second, equal_var=False) gives
        // (statistic, pvalue, df), printed with repr.
        let cases: [(&[f64], &[f64], [f64; 3]); 4] = [
            (
                &[0.91, 0.93, 0.92],
                &[0.89, 0.90, 0.94],
                [0.6123724356957958, 0.5903318162661175, 2.5600000000000023],
            ),
            (
                &[0.8, 0.85],
                &[0.7, 0.72, 0.71, 0.69],
                [4.647580015448906, 0.11251948385289678, 1.1360946745562135],
            ),
            (
                &[0.951, 0.948, 0.953, 0.95, 0.949],
                &[0.9, 0.91],
                [8.909106766235485, 0.06319511810321378, 1.0598440117676622],
            ),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                &[20.0, 21.5, 19.0],
                [
                    -14.792361322262652,
                    2.341432389436329e-06,
                    6.687160940325499,
                ],
            ),
        ];
        for (first, second, [t, p, degrees]) in cases {
            let test = WelchTest::of(first, second).unwrap();
            let same =
                |ours: f64, scipy: f64| (ours - scipy).abs() <= 4.0 * f64::EPSILON * scipy.abs();
            assert!(same(test.t, t), "{test:?} against t {t}");
            assert!(same(test.degrees, degrees), "{test:?} against df {degrees}");
            assert!(same(test.p, p), "{test:?} against p {p}");
        }
        assert_eq!(
            WelchTest::of(&[0.9], &[0.8, 0.85]),
            None,
            "one seed has no variance"
        );
        // Seeds that all agree: scipy gives t = inf and p = 0 for different means,
        // NaN for equal ones.
        let apart = WelchTest::of(&[0.9, 0.9], &[0.8, 0.8]).unwrap();
        assert_eq!((apart.t, apart.p), (f64::INFINITY, 0.0));
        assert!(WelchTest::of(&[0.9, 0.9], &[0.9, 0.9]).unwrap().p.is_nan());
    }

    #[test]
    fn the_t_distributions_tail_equals_scipys_for_any_degrees_of_freedom() {
        // 2 * scipy.stats.t.sf(abs(t), df), scipy 1.17.1.
        for (t, degrees, p) in [
            (0.5, 3.0, 0.651447964848151),
            (2.0, 2.5, 0.1573914957579659),
            (10.0, 1.7, 0.016481660566682682),
            (-3.0, 12.3, 0.010801254069997048),
            (1e-9, 4.0, 0.99999999925),
            (40.0, 30.0, 1.3726045194406417e-27),
        ] {
            let ours = t_two_sided_p(t, degrees);
            assert!(
                (ours - p).abs() <= 1e-14 * p,
                "t {t}, df {degrees}: {ours} against scipy's {p}"
            );
        }
        assert_eq!(t_two_sided_p(0.0, 3.0), 1.0);
        assert_eq!(t_two_sided_p(f64::NEG_INFINITY, 3.0), 0.0);
        assert!(t_two_sided_p(1.0, 0.0).is_nan());
    }

    #[test]
    fn holm_equals_statsmodels_multipletests() {
        // statsmodels 0.15.0: multipletests(p, method="holm")[1].
        let cases: [(&[f64], &[f64]); 4] = [
            (&[0.01, 0.04, 0.03, 0.005], &[0.03, 0.06, 0.06, 0.02]),
            (&[0.2, 0.01, 0.5], &[0.4, 0.03, 0.5]),
            (&[0.04, 0.04, 0.04], &[0.12, 0.12, 0.12]),
            (
                &[0.001, 0.6, 0.02, 0.03, 0.9],
                &[0.005, 1.0, 0.08, 0.09, 1.0],
            ),
        ];
        for (p, adjusted) in cases {
            assert_eq!(holm(p), adjusted, "{p:?}");
        }
        assert_eq!(holm(&[0.2]), [0.2], "one test needs no correction");
        assert!(holm(&[]).is_empty());
    }
}

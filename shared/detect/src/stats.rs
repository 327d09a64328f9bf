//! Small online estimators shared by the detectors.

use serde::{Deserialize, Serialize};

/// Exponentially weighted mean and variance. The first samples use an
/// effective weight of `max(alpha, 1/n)`, so early estimates equal the plain
/// (Welford) mean/variance instead of being biased toward the first value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EwmaVar {
    pub n: u64,
    pub mean: f64,
    pub var: f64,
}

impl EwmaVar {
    pub fn update(&mut self, x: f64, alpha: f64) {
        if !x.is_finite() {
            return;
        }
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.mean = x;
            self.var = 0.0;
            return;
        }
        let a = alpha.max(1.0 / self.n as f64).clamp(0.0, 1.0);
        let diff = x - self.mean;
        let incr = a * diff;
        self.mean += incr;
        self.var = (1.0 - a) * (self.var + diff * incr);
    }

    pub fn std(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// `P(X ≥ k)` for `X ~ Poisson(lambda)`, summed from the tail term in log
/// space (no `1 − CDF` cancellation for tiny probabilities).
pub fn poisson_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    let ln_fact: f64 = (1..=k).map(|i| (i as f64).ln()).sum();
    let mut term = (-lambda + k as f64 * lambda.ln() - ln_fact).exp();
    let mut sum = 0.0;
    let mut i = k;
    while term > sum * 1e-12 && i < k + 10_000 {
        sum += term;
        i += 1;
        term *= lambda / i as f64;
    }
    sum.min(1.0)
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`: the Poisson tail while `p` is
/// small (where it is the better approximation), the normal approximation
/// with continuity correction above 10 % (the Poisson tail, whose variance
/// is `np` instead of `np(1 − p)`, would call a burst from 60 % to 95 %
/// errors ordinary).
pub fn binomial_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let mean = n as f64 * p;
    if p < 0.1 {
        return poisson_tail(k, mean);
    }
    let sd = (mean * (1.0 - p)).sqrt();
    crate::calibrate::normal_tail((k as f64 - 0.5 - mean) / sd)
}

/// Maps a |z| score into `[0, 1]`: 0 at z = 0, 0.5 at the threshold, → 1.
pub fn score(z_abs: f64, threshold: f64) -> f64 {
    if !z_abs.is_finite() {
        return 1.0;
    }
    let th = threshold.max(f64::EPSILON);
    (z_abs / (z_abs + th)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_tail_matches_known_values() {
        assert_eq!(poisson_tail(0, 3.0), 1.0);
        // P(X >= 1 | 2) = 1 - e^-2
        assert!((poisson_tail(1, 2.0) - (1.0 - (-2.0f64).exp())).abs() < 1e-12);
        // P(X >= 5 | 0.75) ≈ 8.4e-4 (1 − Σ_{i<5})
        let direct: f64 = 1.0
            - (0..5)
                .map(|i| {
                    (-0.75f64).exp() * 0.75f64.powi(i) / (1..=i).product::<i32>().max(1) as f64
                })
                .sum::<f64>();
        assert!((poisson_tail(5, 0.75) - direct).abs() < 1e-9);
        assert!(poisson_tail(27, 1.2) < 1e-20 && poisson_tail(27, 1.2) > 0.0);
    }

    #[test]
    fn binomial_tail_is_poisson_for_small_p_and_normal_above() {
        assert_eq!(binomial_tail(5, 100, 0.01), poisson_tail(5, 1.0));
        // P(X ≥ 60 | 100, 0.6) ≈ 0.54; P(X ≥ 95 | 100, 0.6) is tiny
        assert!((binomial_tail(60, 100, 0.6) - 0.54).abs() < 0.02);
        assert!(binomial_tail(95, 100, 0.6) < 1e-10);
        assert_eq!(
            (binomial_tail(0, 5, 0.5), binomial_tail(6, 5, 0.5)),
            (1.0, 0.0)
        );
    }

    #[test]
    fn early_samples_match_plain_mean() {
        let mut e = EwmaVar::default();
        for x in [1.0, 2.0, 3.0] {
            e.update(x, 0.01);
        }
        assert!((e.mean - 2.0).abs() < 1e-12);
        e.update(f64::NAN, 0.1);
        assert_eq!(e.n, 3);
        assert!((score(3.0, 3.0) - 0.5).abs() < 1e-12);
        assert_eq!(score(0.0, 3.0), 0.0);
    }
}

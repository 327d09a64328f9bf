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

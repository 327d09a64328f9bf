//! The reference detector: a plain EWMA z-score, `|x − mean| / σ` with
//! mean and variance exponentially weighted (α = 0.05, i.e. a span of 39
//! points; the first points weigh `1/n`), learning from every point.

use crate::Detector;
use crate::generate::Series;

pub struct EwmaZScore {
    pub alpha: f64,
}

impl Default for EwmaZScore {
    fn default() -> Self {
        EwmaZScore { alpha: 0.05 }
    }
}

impl Detector for EwmaZScore {
    fn name(&self) -> &'static str {
        "baseline"
    }
    fn score_series(&self, series: &Series) -> Vec<f64> {
        let (mut n, mut mean, mut var) = (0u64, 0.0f64, 0.0f64);
        series
            .values
            .iter()
            .map(|&x| {
                let z = if n >= 2 {
                    (x - mean).abs() / var.sqrt().max(1e-12)
                } else {
                    0.0
                };
                n += 1;
                let a = self.alpha.max(1.0 / n as f64);
                let d = x - mean;
                mean += a * d;
                var = (1.0 - a) * (var + a * d * d);
                z
            })
            .collect()
    }
}

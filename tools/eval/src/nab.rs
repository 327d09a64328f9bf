//! NAB-style scoring (Lavin & Ahmad, "Evaluating Real-time Anomaly
//! Detection Algorithms", 2015), as the Numenta Anomaly Benchmark does it:
//!
//! - every point whose score reaches the threshold is a detection;
//! - in each anomaly window only the first detection counts, earning
//!   `A_TP · σ(y)` where `y ∈ [−1, 0]` is its position in the window
//!   (−1 at the start, 0 at the end) and `σ(y) = 2 / (1 + e^{5y}) − 1`;
//! - a window without a detection costs `A_FN`;
//! - a detection outside every window costs `A_FP · σ(y)` with `y` its
//!   distance after the last window's end in window lengths (so a late
//!   detection just after a window costs little), or `A_FP` when no window
//!   precedes it;
//! - detections in the probationary period are not counted;
//! - one threshold per profile for the whole split, chosen by sweep;
//! - normalised: `100 · (S − S_null) / (S_perfect − S_null)`, where the
//!   null detector never fires and the perfect one fires at every window's
//!   first point only.

use crate::generate::Series;

/// NAB's application profiles (weights of true positives, false
/// positives, false negatives).
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "low_fp",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "low_fn",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

fn sigmoid(y: f64) -> f64 {
    2.0 / (1.0 + (5.0 * y).exp()) - 1.0
}

/// A detector's scores on one series.
pub struct Scored<'a> {
    pub series: &'a Series,
    pub scores: Vec<f64>,
}

/// The raw (unnormalised) score of one series at `threshold`.
fn raw_score(s: &Scored<'_>, threshold: f64, p: &Profile) -> f64 {
    let series = s.series;
    let mut total = 0.0;
    let mut found = vec![false; series.windows.len()];
    let mut w = 0; // next window not yet passed
    for (i, &score) in s.scores.iter().enumerate() {
        while w < series.windows.len() && i >= series.windows[w].1 {
            w += 1;
        }
        if i < series.probation || score < threshold {
            continue;
        }
        match series.windows.get(w) {
            Some(&(start, end)) if i >= start => {
                if !found[w] {
                    found[w] = true;
                    let len = (end - start) as f64;
                    let y = -((end - 1 - i) as f64 + 1.0) / len;
                    total += p.tp * sigmoid(y);
                }
            }
            _ => {
                total += match w.checked_sub(1).map(|prev| series.windows[prev]) {
                    Some((start, end)) => {
                        let len = (end - start) as f64;
                        let y = (i + 1 - end) as f64 / len;
                        p.fp * sigmoid(y)
                    }
                    None => -p.fp,
                };
            }
        }
    }
    total - p.fn_ * found.iter().filter(|f| !**f).count() as f64
}

/// Normalised score of a split at `threshold`.
pub fn normalised(scored: &[Scored<'_>], threshold: f64, p: &Profile) -> f64 {
    let windows: usize = scored.iter().map(|s| s.series.windows.len()).sum();
    let null = -p.fn_ * windows as f64;
    let perfect: f64 = scored
        .iter()
        .flat_map(|s| &s.series.windows)
        .map(|_| p.tp * sigmoid(-1.0))
        .sum();
    let raw: f64 = scored.iter().map(|s| raw_score(s, threshold, p)).sum();
    100.0 * (raw - null) / (perfect - null)
}

/// The best threshold for the profile and its normalised score. The
/// candidates are the scores at geometric ranks of the sorted scores
/// (dense at the top, where thresholds matter), plus "never fire".
pub fn sweep(scored: &[Scored<'_>], p: &Profile) -> (f64, f64) {
    let mut all: Vec<f64> = scored
        .iter()
        .flat_map(|s| s.scores[s.series.probation..].iter().copied())
        .filter(|x| x.is_finite())
        .collect();
    all.sort_by(|a, b| b.total_cmp(a));
    all.dedup();
    let mut best = (f64::INFINITY, normalised(scored, f64::INFINITY, p));
    let mut rank = 1.0f64;
    while (rank as usize) <= all.len() {
        let th = all[rank as usize - 1];
        let n = normalised(scored, th, p);
        if n > best.1 {
            best = (th, n);
        }
        rank = (rank * 1.08).max(rank + 1.0);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(len: usize, windows: Vec<(usize, usize)>) -> Series {
        Series {
            name: "t".into(),
            times: (0..len as i64).collect(),
            values: vec![0.0; len],
            anomalies: windows
                .iter()
                .map(|w| (w.0, crate::generate::Kind::Spike))
                .collect(),
            windows,
            probation: 10,
        }
    }

    #[test]
    fn null_is_zero_perfect_is_hundred_and_early_beats_late() {
        let s = series(200, vec![(50, 70), (120, 140)]);
        let p = &PROFILES[0];
        let at = |hits: &[usize]| {
            let mut scores = vec![0.0; 200];
            for &h in hits {
                scores[h] = 1.0;
            }
            normalised(&[Scored { series: &s, scores }], 0.5, p)
        };
        assert!(at(&[]).abs() < 1e-9);
        assert!((at(&[50, 120]) - 100.0).abs() < 1e-6);
        assert!(at(&[52, 122]) > at(&[65, 135]));
        // a false positive costs, one in probation does not
        assert!(at(&[50, 120, 100]) < at(&[50, 120]));
        assert!((at(&[50, 120, 5]) - 100.0).abs() < 1e-6);
        // only the first detection in a window counts
        assert!((at(&[50, 51, 52, 120]) - 100.0).abs() < 1e-6);
        // one detection in one of two windows scores about half
        assert!((at(&[50]) - 50.0).abs() < 1.0);
        let (th, best) = sweep(
            &[Scored {
                series: &s,
                scores: (0..200)
                    .map(|i| if i == 50 || i == 120 { 0.9 } else { 0.1 })
                    .collect(),
            }],
            p,
        );
        assert_eq!(th, 0.9);
        assert!((best - 100.0).abs() < 1e-6);
    }
}

//! [`SeriesScorer`] per anomaly kind and per clean family, on seeded
//! hourly series (hourly so the day/week profiles can learn).
//!
//! Bounds, derived from the score's meaning rather than tuned: a score of
//! at least [`DEFAULT_ALERT_SCORE`] means `2 · min p ≤ 5e-4` over the two
//! components, i.e. at most ~5 alerts per 10,000 points on a series that
//! behaves like its own history. The calibrator fits that history with a
//! normal law on a log scale (an approximation), so the clean bound allows
//! four times that: **≤ 20 alerts per 10,000 points**. Detection delays are
//! stated per kind in points: a spike or dip at once, a level shift within
//! 3, a variance change or a stuck signal within the level window (24), a
//! seasonal break within a day (24).

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::testutil::{Rng, t};

const CLEAN_BOUND_PER_10K: usize = 20;

fn at(i: usize) -> DateTime<Utc> {
    t("2026-01-05T00:00:00Z") + Duration::hours(i as i64)
}

fn scores(values: &[f64]) -> Vec<f64> {
    let mut s = SeriesScorer::default();
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| s.score_then_learn(at(i), v).score)
        .collect()
}

fn alerts(scores: &[f64]) -> Vec<usize> {
    (0..scores.len())
        .filter(|&i| scores[i] >= DEFAULT_ALERT_SCORE)
        .collect()
}

fn noise(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| mean + sd * rng.normal()).collect()
}

/// A daily cycle of amplitude `amp` on N(mean, sd²).
fn daily(seed: u64, n: usize, mean: f64, amp: f64, sd: f64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let phase = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
            mean + amp * phase.sin() + sd * rng.normal()
        })
        .collect()
}

/// The first alert at or after `from`, as a delay in points.
fn delay(scores: &[f64], from: usize) -> Option<usize> {
    alerts(scores)
        .into_iter()
        .find(|&i| i >= from)
        .map(|i| i - from)
}

/// Asserts the scorer alerts on `v` within `max` points of `from`.
fn assert_found_within(v: &[f64], from: usize, max: usize) {
    let d = delay(&scores(v), from);
    assert!(d.is_some_and(|d| d <= max), "delay {d:?} > {max}");
}

const N: usize = 10_000;
const AT: usize = 2_000;

#[test]
fn clean_families_stay_under_the_stated_bound() {
    let mut rng = Rng::new(9);
    let families: Vec<(&str, Vec<f64>)> = vec![
        ("gaussian", noise(1, N, 100.0, 5.0)),
        ("negative", noise(2, N, -40.0, 3.0)),
        ("small", noise(3, N, 0.1, 0.02)),
        ("daily", daily(4, N, 500.0, 200.0, 10.0)),
        (
            "counts",
            (0..N)
                .map(|_| (20.0 + 20f64.sqrt() * rng.normal()).round().max(0.0))
                .collect(),
        ),
    ];
    for (name, values) in families {
        let s = scores(&values);
        assert!(s.iter().all(|x| (0.0..=1.0).contains(x)), "{name}");
        let n = alerts(&s).len();
        assert!(
            n * 10_000 <= CLEAN_BOUND_PER_10K * values.len(),
            "{name}: {n} alerts in {} points",
            values.len()
        );
    }
}

#[test]
fn a_spike_and_a_dip_are_found_at_once() {
    let mut v = noise(5, 3_000, 100.0, 5.0);
    v[AT] += 100.0; // 20 σ
    v[AT + 500..AT + 503].fill(40.0); // a three-point dip of 12 σ
    let s = scores(&v);
    assert_eq!(delay(&s, AT), Some(0), "spike");
    assert!(delay(&s, AT + 500).is_some_and(|d| d < 3), "dip");
}

#[test]
fn a_level_shift_is_found_early_and_becomes_the_new_normal() {
    let mut v = noise(6, 4_000, 100.0, 5.0);
    v[AT..].iter_mut().for_each(|x| *x += 40.0); // 8 σ
    let s = scores(&v);
    assert!(delay(&s, AT).is_some_and(|d| d <= 3), "found within 3");
    // the median window (24) has moved past the shift: quiet after that,
    // within the clean bound
    let late = alerts(&s).into_iter().filter(|&i| i >= AT + 24).count();
    assert!(
        late * 10_000 <= CLEAN_BOUND_PER_10K * (v.len() - AT),
        "{late}"
    );
}

#[test]
fn a_variance_change_is_found_within_the_window() {
    let mut v = noise(7, 3_000, 100.0, 5.0);
    let wide = noise(8, 1_000, 0.0, 20.0);
    for (x, w) in v[AT..].iter_mut().zip(wide) {
        *x = 100.0 + w;
    }
    assert_found_within(&v, AT, 24);
}

#[test]
fn a_stuck_signal_is_found_within_the_window() {
    let mut v = noise(10, 3_000, 100.0, 5.0);
    let last = v[AT - 1];
    v[AT..].fill(last);
    assert_found_within(&v, AT, 24);
}

#[test]
fn a_seasonal_break_is_found_within_a_day() {
    // a strong daily cycle that stops (the series stays at its mean)
    let mut v = daily(11, 3_000, 500.0, 200.0, 10.0);
    let flat = noise(12, 1_000, 500.0, 10.0);
    v[AT..].copy_from_slice(&flat);
    assert_found_within(&v, AT, 24);
    // or moves by a quarter period (6 h) for a day, then comes back
    let mut v = daily(11, 3_000, 500.0, 200.0, 10.0);
    let ahead = daily(12, 24 + 24, 500.0, 200.0, 10.0);
    let phase = (AT + 6) % 24;
    v[AT..AT + 24].copy_from_slice(&ahead[phase..phase + 24]);
    assert_found_within(&v, AT, 24);
}

/// Lognormal values (σ = 0.5 on the log scale) raise 35-40 alerts per 10,000
/// points at the default score, over the stated bound: right-skewed series
/// want `--log` / the outlier detector's log transform.
#[test]
#[ignore = "known limit: 35-40 alerts per 10k on lognormal values without a log transform"]
fn heavy_tailed_values_stay_under_the_bound() {
    let mut rng = Rng::new(15);
    let v: Vec<f64> = (0..N).map(|_| (3.0 + 0.5 * rng.normal()).exp()).collect();
    let n = alerts(&scores(&v)).len();
    assert!(n * 10_000 <= CLEAN_BOUND_PER_10K * v.len(), "{n}");
}

#[test]
fn ordinary_noise_after_a_flat_stretch_is_not_a_certainty() {
    let mut v = vec![7.0; 500];
    v.extend(noise(13, 500, 7.0, 0.5));
    let s = scores(&v);
    let sure: Vec<usize> = (500..s.len()).filter(|&i| s[i] >= 1.0).collect();
    assert!(sure.is_empty(), "a certainty after flat: {sure:?}");
    // and the noise becomes normal: no alert after the window has refilled
    let late = alerts(&s).into_iter().filter(|&i| i >= 500 + 24).count();
    assert_eq!(late, 0, "{:?}", alerts(&s));
}

#[test]
fn negative_and_small_series_find_a_spike_like_any_other() {
    for (mean, sd) in [(-40.0, 3.0), (0.1, 0.02), (-0.001, 0.0002)] {
        let mut v = noise(14, 3_000, mean, sd);
        v[AT] += 20.0 * sd;
        let s = scores(&v);
        assert_eq!(delay(&s, AT), Some(0), "{mean} ± {sd}");
        let clean = alerts(&s).into_iter().filter(|&i| i != AT).count();
        assert!(
            clean * 10_000 <= CLEAN_BOUND_PER_10K * v.len(),
            "{mean}: {clean}"
        );
    }
}

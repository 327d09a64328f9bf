//! Calibrated anomaly scores for numeric series.
//!
//! A raw deviation (|z| of some kind) means different things on different
//! series: 4 σ is rare on Gaussian noise and routine on a heavy-tailed
//! latency. So every numeric detector hands its raw deviations to a
//! [`Calibrator`], which keeps a rolling estimate of the distribution of
//! that series' own recent (short-window smoothed) raw deviations and turns
//! the current one into `score = 1 − P(a deviation at least this large)`:
//! an "anomaly likelihood" (as in Numenta's HTM detector, here on robust
//! statistics). A score of 0.999 means "rarer than 1 in 1,000 of this
//! series' own points", whatever the series' units, noise or shape, so one
//! threshold serves every series.
//!
//! [`SeriesScorer`] is the numeric-series scorer built on it (the outlier
//! and volume detectors, and the backtest CLI's numeric mode, all use it):
//!
//! - an optional seasonal profile (hour of day and hour of week, whichever
//!   explains the series better, used once it explains it at all) is
//!   subtracted first;
//! - **level**: deviation from the median of the last `window` values, in
//!   units of their MAD (spikes, dips, level shifts);
//!   after a level shift the median has moved within `window / 2` points,
//!   so the shift becomes the new normal by itself (nothing is winsorized);
//! - **spread**: `|ln(short spread / long spread)|` of the same deviations
//!   (variance changes both ways, and stuck / flat-lined signals, whose
//!   spread collapses);
//! - **season**, while a profile is in use: the residual against the
//!   profile and its slow level (≈ 6 h), in units of the profile's own σ
//!   (from its typical |residual|). The level window follows a slowly
//!   changing residual, so a pattern that vanishes or moves for a day reads
//!   as a slow drift there; against the profile it is a residual of a share
//!   of the amplitude for hours (seasonal breaks: `make eval` found 0 of 15
//!   without it). It also finds spikes and dips on seasonal series, where
//!   the level window's spread includes what is left of the pattern;
//! - each has its own calibrator; the score is `1 − k · min pᵢ` over the `k`
//!   components in play (2, or 3 while a profile is in use: a Bonferroni
//!   bound, so an ensemble does not fire more often than one component
//!   would).
//!
//! The spread in the level deviation never falls below a floor: half the
//! smallest step the series has ever taken (its resolution: 1 for counts,
//! the quantum of a rounded gauge), a tenth of its long-run spread, and a
//! millionth of its magnitude. So after a flat stretch the next ordinary
//! wiggle is a large but finite deviation, and the calibrator, which has
//! seen wiggles of that size before (or sees them now), does not call it a
//! certainty. Negative and tiny values are ordinary values: nothing is
//! rounded or clipped at zero.

use std::collections::VecDeque;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// `P(Z ≥ z)` for a standard normal `Z` (complementary error function,
/// Numerical Recipes' Chebyshev fit: relative error < 1.2e-7 everywhere).
pub fn normal_tail(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    let x = z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -a * a - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    (0.5 * erfc).clamp(0.0, 1.0)
}

/// Settings of a [`Calibrator`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibratorConfig {
    /// Weight of the current raw deviation in the short-window smoothing
    /// (1 = no smoothing; 0.5 ≈ the last three points).
    pub smoothing: f64,
    /// EWMA weight of the rolling distribution (its span is ≈ 2/weight
    /// points; the first points weigh `1/n`).
    pub history_alpha: f64,
    /// Points before the calibrator scores at all (score 0 until then).
    pub warmup: u64,
}

impl Default for CalibratorConfig {
    fn default() -> Self {
        CalibratorConfig {
            smoothing: 0.6,
            history_alpha: 0.005,
            warmup: 30,
        }
    }
}

/// The rolling distribution of one series' smoothed raw deviations, on a
/// `ln(1 + raw)` scale (raw deviations are heavy-tailed; the logarithm
/// keeps one huge value from dominating the variance).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    pub n: u64,
    /// Smoothed current deviation.
    pub recent: f64,
    pub mean: f64,
    pub var: f64,
}

/// Spread floor of the calibrated distribution (in `ln(1 + raw)` units):
/// a series whose raw deviation was constant must not call the first
/// different one a certainty.
const MIN_HISTORY_STD: f64 = 0.1;

impl Calibrator {
    /// The tail probability of `raw` (≥ 0) under this series' history, and
    /// learns from it. 1 during warm-up.
    pub fn tail_then_learn(&mut self, raw: f64, cfg: &CalibratorConfig) -> f64 {
        let u = if raw.is_finite() {
            raw.max(0.0).ln_1p()
        } else {
            50.0
        };
        let s = if self.n == 0 {
            u
        } else {
            self.recent + cfg.smoothing.clamp(0.0, 1.0) * (u - self.recent)
        };
        self.recent = s;
        let std = self
            .var
            .max(0.0)
            .sqrt()
            .max(MIN_HISTORY_STD + 0.1 * self.mean);
        let mut p = if self.n >= cfg.warmup.max(2) {
            normal_tail((s - self.mean) / std)
        } else {
            1.0
        };
        if self.var < MIN_HISTORY_STD * MIN_HISTORY_STD {
            // a (nearly) constant history says nothing about the tail: the
            // first different value is as rare as "the first of n + 1
            // values differs" (rule of succession), never a certainty
            p = p.max(1.0 / (self.n as f64 + 2.0));
        }
        // Learn the smoothed deviation, bounded to 4 σ above the mean so a
        // spike does not blind the calibrator for the next few hundred points.
        self.n = self.n.saturating_add(1);
        let learn = if self.n > cfg.warmup {
            s.min(self.mean + 4.0 * std)
        } else {
            s
        };
        let a = cfg.history_alpha.max(1.0 / self.n as f64).clamp(0.0, 1.0);
        let d = learn - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        p
    }
}

/// Settings of a [`SeriesScorer`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesScorerConfig {
    /// Values behind the median/MAD level estimate.
    pub window: usize,
    /// EWMA weight of the short spread (the spread component's numerator).
    pub short_alpha: f64,
    /// EWMA weight of the long spread (its denominator, and the floor).
    pub long_alpha: f64,
    /// Learn an hour-of-day / hour-of-week profile and subtract it.
    pub seasonality: bool,
    /// Score only deviations above the expected value (latencies).
    pub upper_only: bool,
    /// Values are counts: the spread is at least `√expected / 2`.
    pub counts: bool,
    /// The robust σ is at least this share of the long-run σ (so a window
    /// of repeated values does not make an ordinary step extreme).
    pub long_floor: f64,
    pub calibrator: CalibratorConfig,
}

impl Default for SeriesScorerConfig {
    fn default() -> Self {
        SeriesScorerConfig {
            window: 24,
            short_alpha: 0.2,
            long_alpha: 0.01,
            seasonality: true,
            upper_only: false,
            counts: false,
            long_floor: 1.0,
            calibrator: CalibratorConfig::default(),
        }
    }
}

/// What [`SeriesScorer`] says about one value (before learning from it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesVerdict {
    /// Calibrated, in `[0, 1]`: `1 −` the tail probability of the value's
    /// deviation under the series' own history; 0 during warm-up.
    pub score: f64,
    /// Signed level deviation in robust σ (> 0 above the expected value).
    pub z: f64,
    /// Expected value and its ±4 σ band, in the series' units.
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// Points seen before this one.
    pub samples: u64,
}

/// Default calibrated score at or above which the numeric detectors alert:
/// the best general threshold of `make eval`'s tuning split (standard
/// profile), i.e. a deviation rarer than about 1 in 2,000 of the series'
/// own points.
pub const DEFAULT_ALERT_SCORE: f64 = 0.9995;

/// Band half-width reported with a verdict, in robust σ.
pub const BAND_Z: f64 = 4.0;

const DAY_SLOTS: usize = 24;
const WEEK_SLOTS: usize = 168;

/// Hour-of-day and hour-of-week profiles of a series' deviation from its
/// day-long level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seasonal {
    /// Slow level (EWMA over about a quarter of a day of time).
    pub level: Option<f64>,
    pub daily: Vec<f64>,
    pub weekly: Vec<f64>,
    /// EWMA |residual| without a profile, with the daily and with the weekly one.
    pub err_none: f64,
    pub err_daily: f64,
    pub err_weekly: f64,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

impl Seasonal {
    fn slots(at: DateTime<Utc>) -> (usize, usize) {
        let h = at.hour() as usize;
        (h, at.weekday().num_days_from_monday() as usize * 24 + h)
    }

    /// The profile in use at `at`, if one explains the series yet: its
    /// value there and its typical |residual| (`err_daily` or `err_weekly`).
    fn profile(&self, at: DateTime<Utc>) -> Option<(f64, f64)> {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return None;
        };
        let (d, w) = Self::slots(at);
        let span = last - first;
        let week_ok =
            span >= 14 * 86_400 && self.err_weekly < 0.8 * self.err_none.min(self.err_daily);
        let day_ok = span >= 2 * 86_400 && self.err_daily < 0.8 * self.err_none;
        if week_ok {
            Some((self.weekly.get(w).copied().unwrap_or(0.0), self.err_weekly))
        } else if day_ok {
            Some((self.daily.get(d).copied().unwrap_or(0.0), self.err_daily))
        } else {
            None
        }
    }

    /// The profile value to subtract at `at` (0 when no profile explains
    /// the series yet).
    fn offset(&self, at: DateTime<Utc>) -> f64 {
        self.profile(at).map_or(0.0, |(v, _)| v)
    }

    /// The seasonal residual of `x` at `at` (before learning it): its
    /// deviation from the slow level *and* the profile, and the profile's
    /// typical |residual|. `None` while no profile explains the series.
    fn residual(&self, at: DateTime<Utc>, x: f64) -> Option<(f64, f64)> {
        let level = self.level?;
        let (v, err) = self.profile(at)?;
        Some((x - level - v, err))
    }

    fn learn(&mut self, at: DateTime<Utc>, x: f64) {
        let t = at.timestamp();
        let dt = self.last.map_or(3600, |l| (t - l).clamp(1, 86_400)) as f64;
        self.first.get_or_insert(t);
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        if self.daily.len() != DAY_SLOTS {
            self.daily = vec![0.0; DAY_SLOTS];
            self.weekly = vec![0.0; WEEK_SLOTS];
        }
        let level = *self.level.get_or_insert(x);
        let dev = x - level;
        let (d, w) = Self::slots(at);
        let e = 0.01;
        self.err_none += e * (dev.abs() - self.err_none);
        self.err_daily += e * ((dev - self.daily[d]).abs() - self.err_daily);
        self.err_weekly += e * ((dev - self.weekly[w]).abs() - self.err_weekly);
        // a slot is visited for an hour: weigh each point so a visit moves it ~25 %
        let slot_a = (0.3 * dt / 3600.0).clamp(0.001, 0.3);
        self.daily[d] += slot_a * (dev - self.daily[d]);
        self.weekly[w] += (2.0 * slot_a).min(0.5) * (dev - self.weekly[w]);
        let level_a = (dt / 21_600.0).clamp(1e-4, 0.5);
        self.level = Some(level + level_a * dev);
    }
}

/// The numeric-series scorer (see the module docs). Serializable: callers
/// persist it between invocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesScorer {
    pub config: SeriesScorerConfig,
    pub n: u64,
    /// The last `window` deseasonalised values.
    pub recent: VecDeque<f64>,
    pub last: Option<f64>,
    /// Smallest non-zero step between consecutive values (0: none yet).
    pub resolution: f64,
    /// EWMA of |value| (the magnitude floor).
    pub magnitude: f64,
    pub short_spread: f64,
    pub long_spread: f64,
    /// Points since the series first deviated from its level (the long
    /// spread's history starts there, so a flat start does not freeze it).
    #[serde(default)]
    pub moving: u64,
    pub seasonal: Seasonal,
    pub level_cal: Calibrator,
    pub spread_cal: Calibrator,
    #[serde(default)]
    pub season_cal: Calibrator,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len().is_multiple_of(2) {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + m) / 2.0
    } else {
        m
    }
}

impl Default for SeriesScorer {
    fn default() -> Self {
        SeriesScorer::new(SeriesScorerConfig::default())
    }
}

impl SeriesScorer {
    pub fn new(config: SeriesScorerConfig) -> SeriesScorer {
        SeriesScorer {
            config,
            n: 0,
            recent: VecDeque::new(),
            last: None,
            resolution: 0.0,
            magnitude: 0.0,
            short_spread: 0.0,
            long_spread: 0.0,
            moving: 0,
            seasonal: Seasonal::default(),
            level_cal: Calibrator::default(),
            spread_cal: Calibrator::default(),
            season_cal: Calibrator::default(),
        }
    }

    /// Points learned so far.
    pub fn samples(&self) -> u64 {
        self.n
    }

    /// Median and robust σ of the recent window (with the floors).
    fn centre_and_scale(&self) -> (f64, f64) {
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        let med = median(&mut v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        let mad = 1.4826 * median(&mut dev);
        let mut floor = (0.5 * self.resolution)
            .max(self.config.long_floor * 1.2533 * self.long_spread)
            .max(1e-6 * self.magnitude)
            .max(1e-12);
        if self.config.counts {
            floor = floor.max(0.5 * med.max(1.0).sqrt());
        }
        (med, mad.max(floor))
    }

    /// Scores `value` at `at` against what was learned, then learns it.
    pub fn score_then_learn(&mut self, at: DateTime<Utc>, value: f64) -> SeriesVerdict {
        if !value.is_finite() {
            return self.verdict_without_learning(at);
        }
        let cfg = self.config;
        let offset = if cfg.seasonality {
            self.seasonal.offset(at)
        } else {
            0.0
        };
        let y = value - offset;
        let (centre, scale) = self.centre_and_scale();
        let warm = !self.recent.is_empty();
        let z = if warm { (y - centre) / scale } else { 0.0 };

        // level component
        let level_raw = if cfg.upper_only { z.max(0.0) } else { z.abs() };
        let p_level = self.level_cal.tail_then_learn(level_raw, &cfg.calibrator);
        // rare in robust-σ terms *and* in the series' own history (`make
        // eval`: either alone raises more false alarms than both together)
        let sides = if cfg.upper_only { 1.0 } else { 2.0 };
        let p_level = p_level.max((sides * normal_tail(level_raw)).min(1.0));
        // spread component: this deviation joins the short spread
        // (upper side only: deviations below the expected value are not
        // spread either, so a dip does not raise the spread component)
        let dev = match (warm, cfg.upper_only) {
            (false, _) => 0.0,
            (true, false) => (y - centre).abs(),
            (true, true) => (y - centre).max(0.0),
        };
        // one spike is the level component's business: clipped to the band,
        // it cannot keep the short spread (and the score) up for the next
        // several points, while a sustained wider spread still fills it
        let dev = dev.min(BAND_Z * scale);
        let floor = scale.min(self.long_spread.max(1e-12));
        let short = self.short_spread + cfg.short_alpha * (dev - self.short_spread);
        let ratio = ((short + 0.5 * floor) / (self.long_spread + 0.5 * floor)).ln();
        let spread_raw = if cfg.upper_only {
            ratio.max(0.0)
        } else {
            ratio.abs()
        };
        let p_spread = if self.n > cfg.window as u64 {
            self.spread_cal.tail_then_learn(spread_raw, &cfg.calibrator)
        } else {
            1.0
        };

        // season component, while a profile explains the series: the
        // residual against the profile and its slow level, in units of the
        // profile's own σ (its calibrator smooths it over the last few
        // points; a longer mean of the residual did worse in `make eval`)
        let season = if cfg.seasonality {
            self.seasonal.residual(at, value)
        } else {
            None
        };
        let p_season = match season {
            Some((r, err)) => {
                let floor = (0.5 * self.resolution)
                    .max(1e-6 * self.magnitude)
                    .max(1e-12);
                let z = r / (1.2533 * err).max(floor);
                let raw = if cfg.upper_only { z.max(0.0) } else { z.abs() };
                let p = self.season_cal.tail_then_learn(raw, &cfg.calibrator);
                p.max((sides * normal_tail(raw)).min(1.0))
            }
            None => 1.0,
        };

        let k = if season.is_some() { 3.0 } else { 2.0 };
        let p = (k * p_level.min(p_spread).min(p_season)).min(1.0);
        let verdict = SeriesVerdict {
            score: 1.0 - p,
            z,
            expected: centre + offset,
            lower: centre + offset - BAND_Z * scale,
            upper: centre + offset + BAND_Z * scale,
            samples: self.n,
        };

        // learn
        self.n = self.n.saturating_add(1);
        if warm {
            self.short_spread = short;
            if dev > 0.0 || self.moving > 0 {
                self.moving = self.moving.saturating_add(1);
            }
            let la = cfg.long_alpha.max(1.0 / self.moving.max(1) as f64);
            self.long_spread += la * (dev - self.long_spread);
        }
        if let Some(last) = self.last {
            let step = (value - last).abs();
            if step > 0.0 && (self.resolution == 0.0 || step < self.resolution) {
                self.resolution = step;
            }
        }
        self.last = Some(value);
        self.magnitude += cfg.long_alpha.max(1.0 / self.n as f64) * (value.abs() - self.magnitude);
        self.recent.push_back(y);
        while self.recent.len() > cfg.window.max(3) {
            self.recent.pop_front();
        }
        if cfg.seasonality {
            self.seasonal.learn(at, value);
        }
        verdict
    }

    fn verdict_without_learning(&self, at: DateTime<Utc>) -> SeriesVerdict {
        let offset = if self.config.seasonality {
            self.seasonal.offset(at)
        } else {
            0.0
        };
        let (centre, scale) = self.centre_and_scale();
        SeriesVerdict {
            score: 0.0,
            z: 0.0,
            expected: centre + offset,
            lower: centre + offset - BAND_Z * scale,
            upper: centre + offset + BAND_Z * scale,
            samples: self.n,
        }
    }
}

#[cfg(test)]
#[path = "calibrate_tests.rs"]
mod tests;

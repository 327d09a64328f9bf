//! The labelled series families.
//!
//! Every series is built from parts: a level, an optional trend, an optional
//! daily or weekly pattern, and noise of a family's kind (Gaussian,
//! Student-t, Poisson counts, log-normal bytes, a quantised gauge that often
//! repeats its value). Then 0–3 anomalies of one or more kinds are laid on
//! it, each with a labelled window:
//!
//! | kind | what changes from its onset |
//! |---|---|
//! | `spike` | 1–3 points far above the series (6–12 noise σ, ×8–30 for bytes) |
//! | `dip` | 1–3 points far below it |
//! | `level_shift` | the level moves by 4–8 σ and stays there |
//! | `variance` | the noise grows 3–5× for 150–400 points |
//! | `stuck` | the value is frozen at its onset value for 80–200 points |
//! | `seasonal_break` | the daily/weekly pattern vanishes or moves by a quarter period for one period |
//!
//! The first 15 % of a series is probation (no anomaly, detections not
//! counted), as in NAB. The two splits use different seeds *and* different
//! family variants (noise shapes, periods, sampling steps, magnitudes), so
//! the held-back split is not the data the defaults were tuned on.

/// Which split a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Tuning,
    HeldBack,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Tuning => "tuning",
            Split::HeldBack => "heldback",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Spike,
    Dip,
    LevelShift,
    Variance,
    Stuck,
    SeasonalBreak,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Spike => "spike",
            Kind::Dip => "dip",
            Kind::LevelShift => "level_shift",
            Kind::Variance => "variance",
            Kind::Stuck => "stuck",
            Kind::SeasonalBreak => "seasonal_break",
        }
    }
}

/// One labelled series.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// Unix seconds, one per value.
    pub times: Vec<i64>,
    pub values: Vec<f64>,
    /// Onset index and kind of each anomaly.
    pub anomalies: Vec<(usize, Kind)>,
    /// `[start, end)` index range of each anomaly's window.
    pub windows: Vec<(usize, usize)>,
    /// Detections before this index are not counted.
    pub probation: usize,
}

/// xorshift64* with Box–Muller (no RNG crate: the benchmark must not
/// change when a dependency does).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Student-t with `nu` degrees of freedom, scaled to unit variance.
    fn student(&mut self, nu: f64) -> f64 {
        let chi2: f64 = (0..nu as usize).map(|_| self.normal().powi(2)).sum();
        self.normal() / (chi2 / nu).sqrt() * ((nu - 2.0) / nu).sqrt()
    }
    fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda <= 0.0 {
            return 0.0;
        }
        if lambda > 50.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0);
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0.0, 1.0);
        loop {
            p *= self.uniform();
            if p <= l {
                return k;
            }
            k += 1.0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Noise {
    Gaussian,
    /// Student-t (ν = 4): heavier tails than the Gaussian.
    Heavy,
    /// Poisson counts around the signal.
    Counts,
    /// exp(signal + σ·ε): bytes, latencies.
    LogNormal,
    /// A gauge rounded to `quantum` that repeats its last value with
    /// probability 0.6 (flat stretches are normal for it).
    Gauge {
        quantum: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Season {
    None,
    Daily,
    Weekly,
}

/// A family: how its series are drawn.
#[derive(Debug, Clone, Copy)]
struct Family {
    name: &'static str,
    step_secs: i64,
    len: usize,
    level: (f64, f64),
    /// Noise σ (absolute; in log units for log-normal).
    sigma: (f64, f64),
    /// Seasonal amplitude in σ units.
    amplitude: (f64, f64),
    /// Trend over the whole series in σ units.
    trend: (f64, f64),
    noise: Noise,
    season: Season,
    /// The series starts with a constant stretch of this share (normal).
    flat_start: f64,
}

const DAY: i64 = 86_400;

fn tuning_families() -> Vec<Family> {
    let base = Family {
        name: "",
        step_secs: 300,
        len: 4032,
        level: (0.0, 0.0),
        sigma: (1.0, 1.0),
        amplitude: (0.0, 0.0),
        trend: (0.0, 0.0),
        noise: Noise::Gaussian,
        season: Season::None,
        flat_start: 0.0,
    };
    vec![
        Family {
            name: "noise_low",
            level: (50.0, 500.0),
            sigma: (0.5, 2.0),
            ..base
        },
        Family {
            name: "noise_high",
            level: (100.0, 200.0),
            sigma: (10.0, 30.0),
            ..base
        },
        Family {
            name: "negative",
            level: (-80.0, -20.0),
            sigma: (1.0, 5.0),
            ..base
        },
        Family {
            name: "small",
            level: (0.08, 0.12),
            sigma: (0.01, 0.03),
            ..base
        },
        Family {
            name: "trend",
            level: (100.0, 300.0),
            sigma: (2.0, 5.0),
            trend: (10.0, 30.0),
            ..base
        },
        Family {
            name: "daily",
            level: (200.0, 400.0),
            sigma: (3.0, 8.0),
            amplitude: (4.0, 10.0),
            season: Season::Daily,
            ..base
        },
        Family {
            name: "weekly",
            step_secs: 1800,
            level: (300.0, 600.0),
            sigma: (5.0, 10.0),
            amplitude: (4.0, 8.0),
            season: Season::Weekly,
            ..base
        },
        Family {
            name: "counts_low",
            level: (1.5, 4.0),
            noise: Noise::Counts,
            ..base
        },
        Family {
            name: "counts_high",
            level: (150.0, 400.0),
            amplitude: (2.0, 6.0),
            noise: Noise::Counts,
            season: Season::Daily,
            ..base
        },
        Family {
            name: "bytes",
            level: (10.0, 13.0),
            sigma: (0.3, 0.7),
            noise: Noise::LogNormal,
            ..base
        },
        Family {
            name: "flat_start",
            level: (20.0, 60.0),
            sigma: (0.5, 1.5),
            noise: Noise::Gauge { quantum: 0.5 },
            flat_start: 0.25,
            ..base
        },
    ]
}

fn heldback_families() -> Vec<Family> {
    let base = Family {
        name: "",
        step_secs: 60,
        len: 5000,
        level: (0.0, 0.0),
        sigma: (1.0, 1.0),
        amplitude: (0.0, 0.0),
        trend: (0.0, 0.0),
        noise: Noise::Heavy,
        season: Season::None,
        flat_start: 0.0,
    };
    vec![
        Family {
            name: "heavy_tails",
            level: (1_000.0, 5_000.0),
            sigma: (20.0, 80.0),
            ..base
        },
        Family {
            name: "negative_trend",
            level: (-5.0, 5.0),
            sigma: (0.2, 1.0),
            trend: (-40.0, 40.0),
            noise: Noise::Gaussian,
            ..base
        },
        Family {
            name: "tiny",
            level: (0.001, 0.004),
            sigma: (0.0002, 0.0006),
            noise: Noise::Gaussian,
            ..base
        },
        Family {
            name: "daily_1m",
            step_secs: 120,
            level: (50.0, 80.0),
            sigma: (1.0, 2.0),
            amplitude: (6.0, 15.0),
            season: Season::Daily,
            ..base
        },
        Family {
            name: "weekly_1h",
            step_secs: 3600,
            len: 3000,
            level: (1_000.0, 2_000.0),
            sigma: (20.0, 40.0),
            amplitude: (3.0, 6.0),
            season: Season::Weekly,
            noise: Noise::Gaussian,
            ..base
        },
        Family {
            name: "counts_sparse",
            level: (0.3, 1.0),
            noise: Noise::Counts,
            ..base
        },
        Family {
            name: "counts_daily",
            step_secs: 600,
            level: (20.0, 60.0),
            amplitude: (1.5, 3.0),
            noise: Noise::Counts,
            season: Season::Daily,
            ..base
        },
        Family {
            name: "latency",
            level: (3.0, 6.0),
            sigma: (0.2, 0.5),
            noise: Noise::LogNormal,
            ..base
        },
        Family {
            name: "gauge",
            level: (-10.0, 10.0),
            sigma: (0.2, 0.6),
            noise: Noise::Gauge { quantum: 0.1 },
            flat_start: 0.3,
            ..base
        },
    ]
}

/// `per_family` series of every family of `split`.
pub fn generate(split: Split, per_family: usize) -> Vec<Series> {
    let (families, seed) = match split {
        Split::Tuning => (tuning_families(), 11),
        Split::HeldBack => (heldback_families(), 7_919),
    };
    let mut out = Vec::new();
    for (f, family) in families.iter().enumerate() {
        for i in 0..per_family {
            let mut rng = Rng::new(seed * 1_000 + (f * 100 + i) as u64);
            out.push(draw(family, i, &mut rng));
        }
    }
    out
}

fn kinds_for(family: &Family) -> Vec<Kind> {
    let mut kinds = vec![Kind::Spike, Kind::Dip, Kind::LevelShift, Kind::Variance];
    // a gauge that repeats itself by nature cannot be told stuck
    if !matches!(family.noise, Noise::Gauge { .. }) {
        kinds.push(Kind::Stuck);
    }
    if family.season != Season::None {
        kinds.push(Kind::SeasonalBreak);
    }
    kinds
}

fn draw(family: &Family, index: usize, rng: &mut Rng) -> Series {
    let len = family.len;
    let level = rng.range(family.level.0, family.level.1);
    let sigma = rng.range(family.sigma.0, family.sigma.1);
    let amplitude = rng.range(family.amplitude.0, family.amplitude.1) * sigma;
    let trend = rng.range(family.trend.0, family.trend.1) * sigma;
    let start = 1_795_000_000 - 1_795_000_000 % (7 * DAY) + 4 * DAY; // a Monday 00:00
    let times: Vec<i64> = (0..len as i64)
        .map(|i| start + i * family.step_secs)
        .collect();
    let probation = len * 15 / 100;

    // Anomalies: every 5th series is clean; the others get 1–3.
    let kinds = kinds_for(family);
    let count = if index % 5 == 4 { 0 } else { 1 + rng.below(3) };
    let window_len = (len / 10 / count.max(1)).max(20);
    let mut anomalies: Vec<(usize, Kind)> = Vec::new();
    let usable = len - probation - window_len;
    for slot in 0..count {
        // spread onsets over the usable range, one per equal slot
        let slot_len = usable / count;
        let lo = probation + window_len / 5 + slot * slot_len;
        let onset = lo + rng.below(slot_len.saturating_sub(window_len).max(1));
        let kind = kinds[(index + slot * 3 + rng.below(kinds.len())) % kinds.len()];
        anomalies.push((onset, kind));
    }
    // one level shift at most (it lasts to the end)
    let mut shifted = false;
    anomalies.retain(|&(_, k)| {
        if k == Kind::LevelShift {
            let keep = !shifted;
            shifted = true;
            keep
        } else {
            true
        }
    });

    let mut level_at = vec![level; len];
    let mut sd_at = vec![sigma; len];
    let mut season_on = vec![1.0; len];
    let mut season_shift = vec![0i64; len];
    let mut point_offsets: Vec<(usize, f64)> = Vec::new();
    let mut stuck: Vec<(usize, usize)> = Vec::new();
    let period = match family.season {
        Season::Weekly => 7 * DAY,
        _ => DAY,
    };
    let per_period = (period / family.step_secs) as usize;
    for &(onset, kind) in &anomalies {
        match kind {
            Kind::Spike | Kind::Dip => {
                let sign = if kind == Kind::Spike { 1.0 } else { -1.0 };
                let size = rng.range(6.0, 12.0);
                for j in 0..1 + rng.below(3) {
                    point_offsets.push((onset + j, sign * size));
                }
            }
            Kind::LevelShift => {
                let sign = if rng.uniform() < 0.5 { 1.0 } else { -1.0 };
                let by = sign * rng.range(4.0, 8.0) * sigma;
                for l in &mut level_at[onset..] {
                    *l += by;
                }
            }
            Kind::Variance => {
                let m = rng.range(3.0, 5.0);
                let end = (onset + 150 + rng.below(250)).min(len);
                for s in &mut sd_at[onset..end] {
                    *s *= m;
                }
            }
            Kind::Stuck => stuck.push((onset, (onset + 80 + rng.below(120)).min(len))),
            Kind::SeasonalBreak => {
                let end = (onset + per_period).min(len);
                let vanish = rng.uniform() < 0.5;
                for i in onset..end {
                    if vanish {
                        season_on[i] = 0.0;
                    } else {
                        season_shift[i] = period / 4;
                    }
                }
            }
        }
    }

    let season_value = |t: i64| -> f64 {
        let day_phase = (t % DAY) as f64 / DAY as f64;
        match family.season {
            Season::None => 0.0,
            Season::Daily => (std::f64::consts::TAU * (day_phase - 0.3)).sin(),
            Season::Weekly => {
                let weekday = ((t - start).rem_euclid(7 * DAY) / DAY) as usize;
                let daily = (std::f64::consts::TAU * (day_phase - 0.3)).sin();
                if weekday >= 5 {
                    0.3 * daily - 0.8
                } else {
                    daily
                }
            }
        }
    };

    let flat_until = (len as f64 * family.flat_start) as usize;
    let mut values = Vec::with_capacity(len);
    let mut previous = level;
    for i in 0..len {
        let t = times[i] + season_shift[i];
        let signal = level_at[i]
            + trend * i as f64 / len as f64
            + amplitude * season_value(t) * season_on[i];
        let mut x = match family.noise {
            Noise::Gaussian => signal + sd_at[i] * rng.normal(),
            Noise::Heavy => signal + sd_at[i] * rng.student(4.0),
            Noise::Counts => {
                let lambda = signal.max(0.05);
                let p = rng.poisson(lambda);
                (lambda + (p - lambda) * sd_at[i] / sigma).round().max(0.0)
            }
            Noise::LogNormal => (signal + sd_at[i] * rng.normal()).exp(),
            Noise::Gauge { quantum } => {
                if i > 0 && rng.uniform() < 0.6 && sd_at[i] == sigma {
                    previous
                } else {
                    ((signal + sd_at[i] * rng.normal()) / quantum).round() * quantum
                }
            }
        };
        if i < flat_until {
            x = (level / 0.5).round() * 0.5;
        }
        previous = x;
        values.push(x);
    }
    for (i, size) in point_offsets {
        if i >= len {
            continue;
        }
        values[i] = match family.noise {
            Noise::LogNormal => values[i] * (size * sigma).exp().clamp(1.0 / 30.0, 30.0),
            Noise::Counts => {
                let sd = level_at[i].max(0.5).sqrt();
                (values[i] + size * sd.max(1.0)).round().max(0.0)
            }
            _ => values[i] + size * sigma,
        };
    }
    for (from, to) in stuck {
        let held = values[from];
        for v in &mut values[from..to] {
            *v = held;
        }
    }

    // Windows start a tenth of their length before the onset (a causal
    // detector cannot see it earlier), so that catching the onset itself
    // earns nearly full credit.
    let windows = anomalies
        .iter()
        .map(|&(onset, _)| {
            let start = onset.saturating_sub(window_len / 10).max(probation);
            (start, (start + window_len).min(len))
        })
        .collect();
    let kinds: Vec<&str> = anomalies.iter().map(|(_, k)| k.name()).collect();
    Series {
        name: format!("{}-{index}[{}]", family.name, kinds.join(",")),
        times,
        values,
        anomalies,
        windows,
        probation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_differ_and_windows_hold_their_onsets() {
        let a = generate(Split::Tuning, 5);
        let b = generate(Split::HeldBack, 5);
        assert!(a.len() > 40 && b.len() > 40);
        for s in a.iter().chain(&b) {
            assert_eq!(s.values.len(), s.times.len());
            assert!(s.values.iter().all(|v| v.is_finite()), "{}", s.name);
            for (&(onset, _), &(ws, we)) in s.anomalies.iter().zip(&s.windows) {
                assert!(ws <= onset && onset < we && ws >= s.probation, "{}", s.name);
            }
            // windows do not overlap
            assert!(s.windows.windows(2).all(|w| w[0].1 <= w[1].0), "{}", s.name);
        }
        let names = |v: &[Series]| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert!(names(&a).iter().all(|n| !names(&b).contains(n)));
        // every kind occurs in each split
        for split in [&a, &b] {
            for kind in [
                "spike",
                "dip",
                "level_shift",
                "variance",
                "stuck",
                "seasonal_break",
            ] {
                assert!(
                    split
                        .iter()
                        .any(|s| s.anomalies.iter().any(|(_, k)| k.name() == kind)),
                    "{kind}"
                );
            }
        }
    }
}

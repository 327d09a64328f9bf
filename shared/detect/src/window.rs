//! Event-time tumbling windows with allowed lateness.
//!
//! The watermark is `max event time seen − allowed lateness`. A window
//! `[start, end)` is closed once `end ≤ watermark`; a record whose window is
//! already closed is late: it is dropped and counted.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use logpipe_schema::{Level, LogRecord};
use serde::{Deserialize, Serialize};

use crate::record_id_of;

/// Sample record ids kept per window (and per error sample list).
pub const MAX_SAMPLES: usize = 5;

/// Widest window the core works with; wider settings are clamped. Keeps
/// every window boundary within `i64` seconds and `TimeDelta` range.
pub const MAX_WINDOW_SECS: i64 = 366 * 86_400;

/// The window width actually used for `width_secs`: `1..=MAX_WINDOW_SECS`.
pub fn clamp_width(width_secs: i64) -> i64 {
    width_secs.clamp(1, MAX_WINDOW_SECS)
}

/// Start (Unix seconds, floored to the width) of the window containing
/// second `secs`. It may lie before [`DateTime::MIN_UTC`]: keys and
/// boundaries stay exact integers, only their display saturates.
pub fn window_start_secs(secs: i64, width_secs: i64) -> i64 {
    let w = clamp_width(width_secs);
    secs.saturating_sub(secs.rem_euclid(w))
}

/// The instant of Unix second `secs`, saturated to chrono's range. A
/// window end saturated to [`DateTime::MAX_UTC`] (never a whole second)
/// marks a window that no watermark can close.
pub fn time_of(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `t − secs`, saturated at [`DateTime::MIN_UTC`] (any `secs ≥ 0`).
pub fn saturating_sub_secs(t: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    TimeDelta::try_seconds(secs.max(0))
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `[start, end)` of the window of width `width_secs` (clamped to
/// `1..=MAX_WINDOW_SECS`) containing `t`; both ends saturate at chrono's
/// range (see [`time_of`]). Never panics.
pub fn window_bounds(t: DateTime<Utc>, width_secs: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let w = clamp_width(width_secs);
    let start = window_start_secs(t.timestamp(), w);
    (time_of(start), time_of(start.saturating_add(w)))
}

/// Whether a window ending at `end` is closed by watermark `wm`.
fn closes(end: DateTime<Utc>, wm: DateTime<Utc>) -> bool {
    end <= wm && end != DateTime::<Utc>::MAX_UTC
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    pub width_secs: i64,
    pub allowed_lateness_secs: i64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            width_secs: 60,
            allowed_lateness_secs: 30,
        }
    }
}

/// What one window accumulated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowAgg {
    pub count: u64,
    /// Records with level ≥ error.
    pub errors: u64,
    /// Records carrying an HTTP status.
    pub http_total: u64,
    pub http_5xx: u64,
    pub sample_record_ids: Vec<String>,
    /// Samples of error / 5xx records.
    pub error_sample_ids: Vec<String>,
}

impl WindowAgg {
    pub fn add(&mut self, record: &LogRecord) {
        self.count += 1;
        let is_error = record.level.is_some_and(|l| l >= Level::Error);
        let status = record.http.as_ref().and_then(|h| h.status);
        let is_5xx = status.is_some_and(|s| (500..600).contains(&s));
        self.errors += u64::from(is_error);
        self.http_total += u64::from(status.is_some());
        self.http_5xx += u64::from(is_5xx);
        if let Some(id) = record_id_of(record) {
            if (is_error || is_5xx) && self.error_sample_ids.len() < MAX_SAMPLES {
                self.error_sample_ids.push(id.clone());
            }
            if self.sample_record_ids.len() < MAX_SAMPLES {
                self.sample_record_ids.push(id);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedWindow {
    pub entity: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub agg: WindowAgg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Accepted { window_start: DateTime<Utc> },
    DroppedLate,
}

/// Accumulator of open windows keyed by (entity, window start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    pub config: WindowConfig,
    pub max_event_time: Option<DateTime<Utc>>,
    pub dropped_late: u64,
    /// Key: `"<window start secs>|<entity>"` (string keys keep JSON simple).
    open: BTreeMap<String, ClosedWindow>,
}

impl Windows {
    pub fn new(config: WindowConfig) -> Windows {
        Windows {
            config,
            max_event_time: None,
            dropped_late: 0,
            open: BTreeMap::new(),
        }
    }

    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.max_event_time
            .map(|m| saturating_sub_secs(m, self.config.allowed_lateness_secs))
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The still-open window of `entity` starting at `window_start`: what it
    /// holds so far (e.g. to score a window before it closes).
    pub fn open_window(&self, entity: &str, window_start: DateTime<Utc>) -> Option<&ClosedWindow> {
        self.open
            .get(&format!("{}|{entity}", window_start.timestamp()))
    }

    /// Adds `record` to its window for `entity`, or drops it when late.
    pub fn add(&mut self, entity: &str, record: &LogRecord) -> AddOutcome {
        let t = record.event_time;
        self.max_event_time = Some(self.max_event_time.map_or(t, |m| m.max(t)));
        let (start, end) = window_bounds(t, self.config.width_secs);
        if self.watermark().is_some_and(|wm| closes(end, wm)) {
            self.dropped_late += 1;
            return AddOutcome::DroppedLate;
        }
        let key = format!("{}|{entity}", start.timestamp());
        self.open
            .entry(key)
            .or_insert_with(|| ClosedWindow {
                entity: entity.to_string(),
                window_start: start,
                window_end: end,
                agg: WindowAgg::default(),
            })
            .agg
            .add(record);
        AddOutcome::Accepted {
            window_start: start,
        }
    }

    /// Removes and returns the windows closed by the current watermark,
    /// ordered by (window start, entity).
    pub fn close_ready(&mut self) -> Vec<ClosedWindow> {
        match self.watermark() {
            Some(wm) => self.close_until(wm),
            None => Vec::new(),
        }
    }

    /// Removes and returns every window with `end ≤ until` (e.g. a forced
    /// flush); later records for those windows will still be accepted unless
    /// the watermark has passed them.
    pub fn close_until(&mut self, until: DateTime<Utc>) -> Vec<ClosedWindow> {
        let keys: Vec<String> = self
            .open
            .iter()
            .filter(|(_, w)| closes(w.window_end, until))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<ClosedWindow> = keys.iter().filter_map(|k| self.open.remove(k)).collect();
        out.sort_by(|a, b| (a.window_start, &a.entity).cmp(&(b.window_start, &b.entity)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{http, record, t};

    #[test]
    fn bounds_floor_to_width() {
        let (s, e) = window_bounds(t("2026-11-22T10:05:59Z"), 60);
        assert_eq!(
            (s, e),
            (t("2026-11-22T10:05:00Z"), t("2026-11-22T10:06:00Z"))
        );
    }

    #[test]
    fn windows_close_on_watermark_and_drop_late() {
        let mut w = Windows::new(WindowConfig {
            width_secs: 60,
            allowed_lateness_secs: 30,
        });
        w.add("a", &record(t("2026-11-22T10:00:10Z"), "a"));
        w.add("b", &http(t("2026-11-22T10:00:20Z"), "b", 503, 1.0));
        w.add("a", &record(t("2026-11-22T10:01:20Z"), "a"));
        // watermark 10:00:50 → nothing closed yet
        assert!(w.close_ready().is_empty());
        // within lateness: accepted into the 10:00 window
        assert!(matches!(
            w.add("a", &record(t("2026-11-22T10:00:59Z"), "a")),
            AddOutcome::Accepted { .. }
        ));
        w.add("a", &record(t("2026-11-22T10:01:31Z"), "a")); // watermark 10:01:01
        let closed = w.close_ready();
        assert_eq!(closed.len(), 2);
        assert_eq!((closed[0].entity.as_str(), closed[0].agg.count), ("a", 2));
        assert_eq!(
            (closed[1].agg.http_5xx, closed[1].agg.error_sample_ids.len()),
            (1, 1)
        );
        // late for a closed window: dropped and counted
        assert_eq!(
            w.add("a", &record(t("2026-11-22T10:00:30Z"), "a")),
            AddOutcome::DroppedLate
        );
        assert_eq!(w.dropped_late, 1);
        let open = w.open_window("a", t("2026-11-22T10:01:00Z")).expect("open");
        assert_eq!(open.agg.count, 2);
        assert!(w.open_window("a", t("2026-11-22T10:00:00Z")).is_none());
        // state round-trips through JSON
        let json = serde_json::to_string(&w).unwrap();
        let back: Windows = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.open_count(), 1);
    }
}

#[cfg(test)]
mod extreme_tests {
    use super::*;
    use crate::testutil::record;

    const MIN: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;
    const MAX: DateTime<Utc> = DateTime::<Utc>::MAX_UTC;

    #[test]
    fn bounds_saturate_at_the_ends_of_time_for_any_width() {
        for width in [i64::MIN, -1, 0, 1, 60, 86_400, MAX_WINDOW_SECS, i64::MAX] {
            let (s, e) = window_bounds(MIN, width);
            assert_eq!(s, MIN, "width {width}");
            assert!(e > s);
            let (s, e) = window_bounds(MAX, width);
            assert!(s <= MAX);
            // the last window's end is past chrono's range: shown as MAX_UTC
            assert_eq!(e, MAX, "width {width}");
        }
        assert_eq!(time_of(i64::MIN), MIN);
        assert_eq!(time_of(i64::MAX), MAX);
        assert_eq!(window_start_secs(i64::MIN, 60), i64::MIN);
        assert_eq!(window_start_secs(-1, 60), -60);
        assert_eq!(saturating_sub_secs(MIN, i64::MAX), MIN);
        assert_eq!(saturating_sub_secs(MAX, -5), MAX);
    }

    #[test]
    fn windows_at_the_ends_of_time_neither_panic_nor_close_early() {
        let mut w = Windows::new(WindowConfig {
            width_secs: 60,
            allowed_lateness_secs: 0,
        });
        assert!(matches!(
            w.add("a", &record(MIN, "a")),
            AddOutcome::Accepted { .. }
        ));
        // watermark MAX_UTC closes every window except the last one, whose
        // end no watermark reaches: a record there is never late.
        assert!(matches!(
            w.add("a", &record(MAX, "a")),
            AddOutcome::Accepted { .. }
        ));
        assert_eq!(w.watermark(), Some(MAX));
        let closed = w.close_ready();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].window_start, MIN);
        assert!(matches!(
            w.add("a", &record(MAX, "a")),
            AddOutcome::Accepted { .. }
        ));
        assert_eq!(w.open_count(), 1);
        assert_eq!(w.add("a", &record(MIN, "a")), AddOutcome::DroppedLate);
        let mut huge = Windows::new(WindowConfig {
            width_secs: i64::MAX,
            allowed_lateness_secs: i64::MAX,
        });
        huge.add("a", &record(MIN, "a"));
        huge.add("a", &record(MAX, "a"));
        assert_eq!(huge.watermark(), Some(MIN));
        assert!(huge.close_ready().is_empty());
    }
}

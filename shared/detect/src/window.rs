//! Event-time tumbling windows with allowed lateness.
//!
//! The watermark is `max event time seen − allowed lateness`. A window
//! `[start, end)` is closed once `end ≤ watermark`; a record whose window is
//! already closed is late: it is dropped and counted.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use logpipe_schema::{Level, LogRecord};
use serde::{Deserialize, Serialize};

use crate::record_id_of;

/// Sample record ids kept per window (and per error sample list).
pub const MAX_SAMPLES: usize = 5;

/// `[start, end)` of the window of width `width_secs` (≥ 1) containing `t`.
pub fn window_bounds(t: DateTime<Utc>, width_secs: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let w = width_secs.max(1);
    let start_secs = t.timestamp().div_euclid(w) * w;
    let start = DateTime::from_timestamp(start_secs, 0).unwrap_or(t);
    (start, start + Duration::seconds(w))
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
            .map(|m| m - Duration::seconds(self.config.allowed_lateness_secs.max(0)))
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
        if self.watermark().is_some_and(|wm| end <= wm) {
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
            .filter(|(_, w)| w.window_end <= until)
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

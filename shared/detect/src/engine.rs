//! The streaming engine: every detector combined per entity, fed records one
//! at a time and closed by a watermark. Pure: the caller loads and saves
//! [`EntityState`] (the detect function keeps it in PostgreSQL, one row per
//! entity, locked while a batch updates it).
//!
//! Per record: threshold rules, template mining (new templates) and numeric
//! outliers, and the record joins its event-time window. Per closed window:
//! error / 5xx rates and the seasonal volume baseline (a [`Prediction`] for
//! every window, silent ones included). Every alert passes the entity's
//! cooldown, so one incident is one alert.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use logpipe_schema::LogRecord;
use serde::{Deserialize, Serialize};

use crate::cooldown::Cooldown;
use crate::drain::{DrainConfig, TemplateMiner};
use crate::model::{Alert, Prediction, alert_key};
use crate::outlier::{OutlierConfig, OutlierDetector};
use crate::rate::{RateConfig, RateDetector};
use crate::record_id_of;
use crate::threshold::{ThresholdEngine, ThresholdRule, default_sensor_rules, field_value};
use crate::volume::{VolumeConfig, VolumeDetector};
use crate::window::{
    ClosedWindow, WindowAgg, WindowConfig, clamp_width, saturating_sub_secs, time_of,
    window_start_secs,
};

/// Ceiling of [`EngineConfig::max_fill_windows`], whatever is configured.
pub const MAX_FILL_WINDOWS: i64 = 10_080;

/// Default of [`EngineConfig::max_alert_message_bytes`] (2 KiB).
pub const DEFAULT_MAX_ALERT_MESSAGE_BYTES: usize = 2048;

/// Floor of [`EngineConfig::max_alert_message_bytes`]: room for a finding
/// and the truncation marker.
pub const MIN_ALERT_MESSAGE_BYTES: usize = 64;

/// Sample record ids one alert carries at most.
pub const MAX_ALERT_SAMPLES: usize = 10;

/// A sample id longer than this is dropped (a record id is Kafka
/// coordinates; a longer one is not worth carrying, and a cut one is wrong).
pub const MAX_SAMPLE_ID_BYTES: usize = 512;

/// Per-record findings held per open window at most (the most severe are
/// kept); the others are only counted, in `EntityState::pending_dropped`.
pub const MAX_PENDING_PER_WINDOW: usize = 64;

/// Other findings listed by name and message in a merged alert at most;
/// the rest are counted in the truncation marker.
pub const MAX_ALSO_FINDINGS: usize = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub window: WindowConfig,
    pub rate: RateConfig,
    pub volume: VolumeConfig,
    pub drain: DrainConfig,
    pub outliers: Vec<OutlierConfig>,
    pub rules: Vec<ThresholdRule>,
    /// Clear windows after which a detector may fire again for an entity.
    pub cooldown_windows: i64,
    /// A silence of at most this many windows (clamped to
    /// `1..=MAX_FILL_WINDOWS`) is scored window by window, each a zero
    /// count the volume baseline learns from; a longer one, closed in one
    /// step (a replay, a sparse entity), is one summary [`Prediction`]
    /// spanning the whole gap, scored as the zero count of its first
    /// window and not learned from (a month-long gap is one prediction,
    /// not 40,000). So one [`Engine::close`] emits at most
    /// `W + max_fill_windows × (W + 1)` predictions for an entity, where
    /// `W` is the number of its windows with records that it closes.
    pub max_fill_windows: i64,
    /// An alert's message is cut to this many bytes (at least
    /// `MIN_ALERT_MESSAGE_BYTES`) on a char boundary, ending in
    /// `… (truncated, N more findings)`.
    pub max_alert_message_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            window: WindowConfig::default(),
            rate: RateConfig::default(),
            volume: VolumeConfig::default(),
            drain: DrainConfig::default(),
            outliers: vec![OutlierConfig::default()],
            rules: default_sensor_rules(),
            cooldown_windows: 5,
            // A live stream closes one silent window per tick whatever
            // this is; it bounds what a replay's jump over a gap costs.
            max_fill_windows: 10,
            max_alert_message_bytes: DEFAULT_MAX_ALERT_MESSAGE_BYTES,
        }
    }
}

/// Everything the engine remembers about one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// Open windows by start (Unix seconds).
    pub open: BTreeMap<i64, WindowAgg>,
    /// End of the last closed window; records for windows ending at or
    /// before it are late.
    pub closed_until: Option<DateTime<Utc>>,
    pub rate: RateDetector,
    pub volume: VolumeDetector,
    /// By field name.
    pub outliers: BTreeMap<String, OutlierDetector>,
    pub templates: TemplateMiner,
    pub cooldown: Cooldown,
    pub records_seen: u64,
    pub records_late: u64,
    /// Per-record alerts (thresholds, outliers, new templates) waiting for
    /// their window to close, so that everything one window showed about
    /// the entity becomes one alert. By window start (Unix seconds).
    #[serde(default)]
    pub pending: BTreeMap<i64, Vec<Finding>>,
    /// Findings beyond `MAX_PENDING_PER_WINDOW` per window: counted (in
    /// the alert's message and `suppressed`), not kept.
    #[serde(default)]
    pub pending_dropped: BTreeMap<i64, u64>,
    /// Sample record ids of the last window that had records: the samples
    /// of an alert about a silence.
    #[serde(default)]
    pub last_samples: Vec<String>,
    /// The entity's own clock: its newest event time (see
    /// [`Engine::note_event_time`]). `None` for states saved before it
    /// existed; they follow the group's clock until their next record.
    #[serde(default)]
    pub newest: Option<DateTime<Utc>>,
    /// Wall time of the invocation that last brought the entity records:
    /// once it has been silent for longer than the idle allowance, its
    /// clock moves on with the wall time, so its silent windows close.
    #[serde(default)]
    pub seen_at: Option<DateTime<Utc>>,
}

/// A per-record finding held until its window closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredFinding")]
pub struct Finding {
    pub alert: Alert,
    /// For a numeric outlier of warning severity: its calibrated tail
    /// probability and the false-alarm rate it was allowed
    /// (`1 − alert_score`). When the window closes it must stay within that
    /// rate for the whole window: `tail × records in the window ≤ budget`
    /// (a Bonferroni bound), so a busy window does not turn the one slow
    /// request in every few thousand into an alert. `None`: kept as is.
    #[serde(default)]
    pub tail: Option<(f64, f64)>,
}

impl Finding {
    pub fn plain(alert: Alert) -> Finding {
        Finding { alert, tail: None }
    }

    /// Whether the finding stands for a window of `records` records.
    pub fn significant(&self, records: u64) -> bool {
        self.tail
            .is_none_or(|(tail, budget)| tail * records.max(1) as f64 <= budget)
    }
}

/// Held findings as saved: states saved before [`Finding`] held bare alerts.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredFinding {
    Finding {
        alert: Alert,
        #[serde(default)]
        tail: Option<(f64, f64)>,
    },
    Bare(Alert),
}

impl From<StoredFinding> for Finding {
    fn from(s: StoredFinding) -> Finding {
        match s {
            StoredFinding::Finding { alert, tail } => Finding { alert, tail },
            StoredFinding::Bare(alert) => Finding::plain(alert),
        }
    }
}

/// The alerts of `findings` that stand for a window of `records` records.
fn significant(findings: Vec<Finding>, records: u64) -> Vec<Alert> {
    findings
        .into_iter()
        .filter(|f| f.significant(records))
        .map(|f| f.alert)
        .collect()
}

/// What one call produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Emitted {
    pub alerts: Vec<Alert>,
    pub predictions: Vec<Prediction>,
    /// Alerts suppressed because their incident was already open.
    pub suppressed: u64,
    /// Templates evicted at the per-entity cap (`DrainConfig::max_templates`).
    pub template_evictions: u64,
    /// The leads of the suppressed candidates: what an incident that is
    /// already open showed in a later window (the backtest marks their
    /// records as part of the incident; the function publishes nothing).
    pub continuing: Vec<Alert>,
}

impl Emitted {
    pub fn extend(&mut self, other: Emitted) {
        self.alerts.extend(other.alerts);
        self.predictions.extend(other.predictions);
        self.suppressed += other.suppressed;
        self.template_evictions += other.template_evictions;
        self.continuing.extend(other.continuing);
    }
}

pub struct Engine {
    config: EngineConfig,
    thresholds: ThresholdEngine,
}

/// Cooldown key: one open incident per entity, whatever detectors see it.
const INCIDENT: &str = "incident";

/// Which finding leads an incident's alert (at equal severity).
fn priority(detector: &str) -> u8 {
    match detector {
        "error_rate" | "http_5xx_rate" => 5,
        "threshold" => 4,
        "volume" => 3,
        "outlier" => 2,
        _ => 1,
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let thresholds = ThresholdEngine::new(config.rules.clone(), config.window.width_secs);
        Engine { config, thresholds }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn width(&self) -> i64 {
        clamp_width(self.config.window.width_secs)
    }

    fn max_fill(&self) -> i64 {
        self.config.max_fill_windows.clamp(1, MAX_FILL_WINDOWS)
    }

    /// A fresh state for an entity never seen before.
    pub fn new_state(&self) -> EntityState {
        EntityState {
            open: BTreeMap::new(),
            closed_until: None,
            rate: RateDetector::new(self.config.rate),
            volume: VolumeDetector::new(self.config.volume),
            outliers: BTreeMap::new(),
            templates: TemplateMiner::new(self.config.drain),
            cooldown: Cooldown::new(self.width(), self.config.cooldown_windows),
            records_seen: 0,
            records_late: 0,
            pending: BTreeMap::new(),
            pending_dropped: BTreeMap::new(),
            last_samples: Vec::new(),
            newest: None,
            seen_at: None,
        }
    }

    /// Moves the entity's own clock to `event_time` (never back), and
    /// notes that it sent records at wall time `now`. Callers leave out
    /// event times too far in the future to trust.
    pub fn note_event_time(
        &self,
        state: &mut EntityState,
        event_time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        state.newest = Some(state.newest.map_or(event_time, |n| n.max(event_time)));
        state.seen_at = Some(state.seen_at.map_or(now, |s| s.max(now)));
    }

    /// The entity's own watermark at wall time `now`: its newest event time
    /// less the allowed lateness, so a source whose clock (or replay) runs
    /// behind the others is judged on its own time, never marked late by
    /// theirs. Once it has sent nothing for longer than `idle_secs` of wall
    /// time, its clock moves on by the wall time beyond that, so the windows
    /// of a silent entity close (and score the silence). A state saved
    /// before entities had clocks follows `group_clock`.
    pub fn entity_watermark(
        &self,
        state: &EntityState,
        now: DateTime<Utc>,
        idle_secs: i64,
        group_clock: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let (Some(newest), Some(seen)) = (state.newest, state.seen_at) else {
            return group_clock.map(|g| self.watermark(g));
        };
        let silent = now
            .signed_duration_since(seen)
            .num_seconds()
            .saturating_sub(idle_secs.max(0));
        let own = if silent > 0 {
            TimeDelta::try_seconds(silent)
                .and_then(|d| newest.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        } else {
            newest
        };
        Some(self.watermark(own))
    }

    /// The wall time at which [`Engine::entity_watermark`] reaches the
    /// state's next window end ([`Engine::next_close`]), if ever: when a
    /// silent entity is due. (For a state without a clock: that end plus
    /// the lateness, the group clock's old rule.)
    pub fn next_due_at(&self, state: &EntityState, idle_secs: i64) -> Option<DateTime<Utc>> {
        let end = self.next_close(state)?;
        let lateness = self.config.window.allowed_lateness_secs.max(0);
        let (Some(newest), Some(seen)) = (state.newest, state.seen_at) else {
            return TimeDelta::try_seconds(lateness).and_then(|d| end.checked_add_signed(d));
        };
        // newest + silent − lateness ≥ end, with silent = now − seen − idle.
        let needed = end
            .signed_duration_since(newest)
            .num_seconds()
            .saturating_add(lateness);
        if needed <= 0 {
            return Some(seen);
        }
        TimeDelta::try_seconds(needed.saturating_add(idle_secs.max(0)))
            .and_then(|d| seen.checked_add_signed(d))
    }

    /// Applies the current configuration to a loaded state (settings may
    /// have changed since it was saved; what was learned is kept).
    pub fn refresh(&self, state: &mut EntityState) {
        state.rate.config = self.config.rate;
        state.volume.config = self.config.volume;
        state.templates.config = self.config.drain;
        state.cooldown.window_secs = self.width();
        state.cooldown.cooldown_windows = self.config.cooldown_windows.max(0);
        for cfg in &self.config.outliers {
            if let Some(d) = state.outliers.get_mut(&cfg.field) {
                d.config = cfg.clone();
            }
        }
    }

    /// Everything one window showed about an entity is one candidate
    /// alert: the most telling finding, with the others listed in its
    /// message. It is emitted only if it opens a new incident for the
    /// entity (see [`Cooldown`]): a burst that raises the error rate, the
    /// latency and a new error template is one alert, not three.
    /// `unlisted` findings were counted but not kept (see `MAX_PENDING_PER_WINDOW`).
    fn admit(
        &self,
        state: &mut EntityState,
        mut alerts: Vec<Alert>,
        unlisted: u64,
        out: &mut Emitted,
    ) {
        if alerts.is_empty() {
            return;
        }
        sort_by_rank(&mut alerts);
        let count = (alerts.len() as u64).saturating_add(unlisted);
        let rest = alerts.split_off(1);
        let Some(mut lead) = alerts.pop() else {
            return;
        };
        let also: Vec<String> = rest
            .iter()
            .map(|a| {
                format!(
                    "{}: {}",
                    alert_key(&a.detector, a.rule.as_deref()),
                    a.message
                )
            })
            .collect();
        lead.message = bound_message(
            &lead.message,
            &also,
            unlisted,
            self.config.max_alert_message_bytes,
        );
        let mut samples = std::mem::take(&mut lead.sample_record_ids);
        samples.extend(rest.into_iter().flat_map(|a| a.sample_record_ids));
        for id in samples {
            if lead.sample_record_ids.len() < MAX_ALERT_SAMPLES
                && id.len() <= MAX_SAMPLE_ID_BYTES
                && !lead.sample_record_ids.contains(&id)
            {
                lead.sample_record_ids.push(id);
            }
        }
        if state.cooldown.fire_ranked(
            INCIDENT,
            &lead.entity,
            lead.window_start,
            priority(&lead.detector),
        ) {
            out.alerts.push(lead);
            out.suppressed += count - 1;
        } else {
            out.suppressed += count;
            out.continuing.push(lead);
        }
    }

    /// Feeds one record of `entity`. Returns false when it was late for its
    /// window (the per-record detectors still saw it).
    pub fn observe(
        &self,
        state: &mut EntityState,
        entity: &str,
        record: &LogRecord,
        out: &mut Emitted,
    ) -> bool {
        state.records_seen = state.records_seen.saturating_add(1);
        let w = self.width();
        // Exact seconds (the start may precede chrono's range), displayed saturated.
        let start_secs = window_start_secs(record.event_time.timestamp(), w);
        let end_secs = start_secs.saturating_add(w);
        let (start, end) = (time_of(start_secs), time_of(end_secs));
        let mut alerts: Vec<Finding> = self
            .thresholds
            .evaluate(record)
            .into_iter()
            .map(Finding::plain)
            .collect();
        let on_time = state.closed_until.is_none_or(|c| end_secs > c.timestamp());
        if on_time {
            state.open.entry(start_secs).or_default().add(record);
        } else {
            state.records_late = state.records_late.saturating_add(1);
        }
        let id = record_id_of(record);
        if !record.message.trim().is_empty() {
            let evicted = state.templates.evictions;
            let m = state.templates.add(&record.message);
            out.template_evictions += state.templates.evictions.saturating_sub(evicted);
            alerts.extend(
                state
                    .templates
                    .new_template_alert(&m, entity, start, end, id.clone())
                    .map(Finding::plain),
            );
        }
        for cfg in &self.config.outliers {
            if let Some(v) = field_value(record, &cfg.field) {
                let detector = state
                    .outliers
                    .entry(cfg.field.clone())
                    .or_insert_with(|| OutlierDetector::new(cfg.clone()));
                alerts.extend(detector.observe_finding(entity, v, start, end, id.clone()));
            }
        }
        if on_time {
            if !alerts.is_empty() {
                let held = state.pending.entry(start_secs).or_default();
                held.extend(alerts);
                if held.len() > MAX_PENDING_PER_WINDOW {
                    held.sort_by(|a, b| rank_order(&a.alert, &b.alert));
                    let dropped = (held.len() - MAX_PENDING_PER_WINDOW) as u64;
                    held.truncate(MAX_PENDING_PER_WINDOW);
                    let n = state.pending_dropped.entry(start_secs).or_default();
                    *n = n.saturating_add(dropped);
                }
            }
        } else {
            // Its window is closed: nothing else will join this finding.
            self.admit(state, significant(alerts, 1), 0, out);
        }
        on_time
    }

    /// Closes every window of `entity` that ends at or before `watermark`,
    /// scoring silent windows as zero counts, and emits their predictions
    /// and alerts. Terminates for any state and watermark: every step
    /// either removes an open window or advances `closed_until`, and a
    /// silence longer than `max_fill_windows` is skipped in one step.
    pub fn close(
        &self,
        state: &mut EntityState,
        entity: &str,
        watermark: DateTime<Utc>,
        out: &mut Emitted,
    ) {
        let w = self.width();
        let max_fill = i128::from(self.max_fill());
        // A window end is a whole second: `end ≤ watermark` ⇔ `end ≤ ⌊watermark⌋`.
        let wm = watermark.timestamp();
        loop {
            let first_open = state.open.keys().next().copied();
            let cursor = state.closed_until.map(|c| c.timestamp());
            let (start, silent) = match (cursor, first_open) {
                // The window at the cursor, or one left behind it (the
                // width changed since it opened): close it first.
                (Some(c), Some(o)) if o <= c => (o, false),
                (Some(c), _) => (c, true),
                (None, Some(o)) => (o, false),
                (None, None) => break,
            };
            let end = start.saturating_add(w);
            if end > wm {
                break;
            }
            if silent {
                // Silent windows from here to the next activity (or the
                // watermark): keep only the last `max_fill` of them.
                let until = first_open.map_or(wm, |o| o.min(wm));
                let silent_windows = (i128::from(until) - i128::from(start)) / i128::from(w);
                if silent_windows > max_fill {
                    let span = silent_windows * i128::from(w);
                    // ≤ until − start: fits, and lands on a representable second.
                    let to = i64::try_from(i128::from(start) + span).unwrap_or(until);
                    self.summarize_silence(state, entity, start, to, silent_windows, out);
                    state.closed_until = Some(time_of(to));
                    continue;
                }
            }
            let agg = if silent {
                WindowAgg::default()
            } else {
                state.open.remove(&start).unwrap_or_default()
            };
            let window = ClosedWindow {
                entity: entity.to_string(),
                window_start: time_of(start),
                window_end: time_of(end),
                agg,
            };
            let mut alerts = state.rate.observe_window(&window);
            let (prediction, mut volume_alert) = state.volume.observe(
                entity,
                window.window_start,
                window.window_end,
                window.agg.count,
            );
            if !window.agg.sample_record_ids.is_empty() {
                state.last_samples.clone_from(&window.agg.sample_record_ids);
            }
            // A volume finding is about the window's records (or, for a
            // silent window, the last records before the silence).
            if let Some(a) = volume_alert.as_mut() {
                a.sample_record_ids.clone_from(&state.last_samples);
            }
            out.predictions.push(prediction);
            alerts.extend(volume_alert);
            let held = state.pending.remove(&start).unwrap_or_default();
            alerts.extend(significant(held, window.agg.count));
            let unlisted = state.pending_dropped.remove(&start).unwrap_or(0);
            self.admit(state, alerts, unlisted, out);
            // end ≤ wm: representable. Never moves back (a window left
            // behind the cursor ends before it).
            let end = time_of(end);
            state.closed_until = Some(state.closed_until.map_or(end, |c| c.max(end)));
        }
        self.flush_stale_pending(state, out);
        state.cooldown.prune(watermark);
    }

    /// One prediction for a silence of `windows` windows from `start` to
    /// `end` (Unix seconds), scored as the zero count of its first window
    /// on a copy of the volume baseline (nothing is learned from it). An
    /// alert it raises spans the gap and carries the last records' ids.
    fn summarize_silence(
        &self,
        state: &mut EntityState,
        entity: &str,
        start: i64,
        end: i64,
        windows: i128,
        out: &mut Emitted,
    ) {
        let first_end = time_of(start.saturating_add(self.width()));
        let mut probe = state.volume.clone();
        let (mut prediction, alert) = probe.observe(entity, time_of(start), first_end, 0);
        prediction.window_end = time_of(end);
        out.predictions.push(prediction);
        if let Some(mut a) = alert {
            a.window_end = time_of(end);
            a.message
                .push_str(&format!(" (silent for {windows} windows)"));
            a.sample_record_ids.clone_from(&state.last_samples);
            self.admit(state, vec![a], 0, out);
        }
    }

    /// Per-record findings whose window is closed but was never scored
    /// (no open window for them, e.g. a state saved by an older version):
    /// admitted now rather than kept forever.
    fn flush_stale_pending(&self, state: &mut EntityState, out: &mut Emitted) {
        let Some(closed) = state.closed_until.map(|c| c.timestamp()) else {
            return;
        };
        let w = self.width();
        let stale: Vec<i64> = state
            .pending
            .keys()
            .copied()
            .filter(|k| k.saturating_add(w) <= closed && !state.open.contains_key(k))
            .collect();
        for k in stale {
            let alerts = significant(state.pending.remove(&k).unwrap_or_default(), 1);
            let unlisted = state.pending_dropped.remove(&k).unwrap_or(0);
            self.admit(state, alerts, unlisted, out);
        }
        // Counts whose findings are gone (cannot happen from `observe`).
        state
            .pending_dropped
            .retain(|k, _| state.pending.contains_key(k));
    }

    /// The watermark at which [`Engine::close`] will next have work for
    /// this state (its next window end), if any; `None` also when that
    /// end lies beyond chrono's range (no watermark can reach it).
    pub fn next_close(&self, state: &EntityState) -> Option<DateTime<Utc>> {
        let w = self.width();
        let after_closed = state.closed_until.map(|c| c.timestamp().saturating_add(w));
        let first_open = state.open.keys().next().map(|s| s.saturating_add(w));
        let next = match (after_closed, first_open) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        DateTime::from_timestamp(next, 0)
    }

    /// Watermark for a newest event time: `max − allowed lateness`,
    /// saturated at [`DateTime::MIN_UTC`].
    pub fn watermark(&self, max_event_time: DateTime<Utc>) -> DateTime<Utc> {
        saturating_sub_secs(max_event_time, self.config.window.allowed_lateness_secs)
    }
}

/// Most severe first; at equal severity by [`priority`] (a stable sort).
fn sort_by_rank(alerts: &mut [Alert]) {
    alerts.sort_by(rank_order);
}

fn rank_order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    (b.severity, priority(&b.detector)).cmp(&(a.severity, priority(&a.detector)))
}

/// `lead; also f1; f2 …` cut to `max_bytes` (at least
/// `MIN_ALERT_MESSAGE_BYTES`) on a char boundary. Whatever does not fit —
/// part of a finding, or findings beyond `MAX_ALSO_FINDINGS` — is replaced by
/// `… (truncated, N more findings)`, N counting the findings not shown in
/// full plus `unlisted` ones that were only counted.
pub fn bound_message(lead: &str, also: &[String], unlisted: u64, max_bytes: usize) -> String {
    let max = max_bytes.max(MIN_ALERT_MESSAGE_BYTES);
    let mut parts: Vec<&str> = vec![lead];
    parts.extend(also.iter().map(String::as_str));
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let sep = match i {
            0 => "",
            1 => "; also ",
            _ => "; ",
        };
        let within_count = i <= MAX_ALSO_FINDINGS;
        if within_count && out.len() + sep.len() + part.len() <= max {
            out.push_str(sep);
            out.push_str(part);
            continue;
        }
        // Findings `i..` are not shown in full (the lead counts as none).
        let marker = marker(((parts.len() - i.max(1)) as u64).saturating_add(unlisted));
        // The marker always fits (it is shorter than the floor); before
        // it, as much of this part as there is room for.
        let keep = max.saturating_sub(marker.len());
        if out.len() > keep {
            let cut = floor_str(&out, keep).len();
            out.truncate(cut);
        } else if within_count && keep - out.len() > sep.len() {
            let room = keep - out.len() - sep.len();
            out.push_str(sep);
            out.push_str(floor_str(part, room));
        }
        out.push_str(&marker);
        return out;
    }
    if unlisted > 0 {
        let marker = marker(unlisted);
        let keep = max.saturating_sub(marker.len());
        let cut = floor_str(&out, keep).len();
        out.truncate(cut);
        out.push_str(&marker);
    }
    out
}

fn marker(more: u64) -> String {
    match more {
        0 => "… (truncated)".to_string(),
        1 => "… (truncated, 1 more finding)".to_string(),
        n => format!("… (truncated, {n} more findings)"),
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a char boundary.
fn floor_str(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max.min(s.len()))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, http, record, t};
    use chrono::Duration;
    use logpipe_schema::Level;

    fn engine() -> Engine {
        Engine::new(EngineConfig {
            window: WindowConfig {
                width_secs: 60,
                allowed_lateness_secs: 30,
            },
            ..EngineConfig::default()
        })
    }

    /// `minutes` minutes of `per_minute` healthy requests (lognormal
    /// latency, median ≈ 55 ms) from `start`, observed and closed.
    fn healthy(
        e: &Engine,
        s: &mut EntityState,
        start: DateTime<Utc>,
        minutes: i64,
        per_minute: i64,
        rng: &mut Rng,
        out: &mut Emitted,
    ) {
        for m in 0..minutes {
            for i in 0..per_minute {
                let at = start + Duration::milliseconds(m * 60_000 + i * 60_000 / per_minute);
                let r = http(at, "api", 200, (4.0 + 0.5 * rng.normal()).exp());
                e.observe(s, "api", &r, out);
            }
            e.close(s, "api", start + Duration::minutes(m), out);
        }
    }

    /// A slow request that is rare for one record (its calibrated score
    /// passes `alert_score`) but expected about once in a window of a few
    /// thousand records is no alert in a busy window, and is one in a quiet
    /// window; a critical deviation is one in any window.
    #[test]
    fn per_record_outliers_are_judged_for_the_whole_window() {
        let e = engine();
        let t0 = t("2026-11-22T08:00:00Z");
        let mut rng = Rng::new(11);
        let mut s = e.new_state();
        let mut out = Emitted::default();
        healthy(&e, &mut s, t0, 20, 100, &mut rng, &mut out);
        assert!(out.alerts.is_empty(), "{:?}", out.alerts);
        // the smallest latency that alerts for one record
        let d = &s.outliers["latency_ms"];
        let cfg = d.config.clone();
        let borderline = (0..4000)
            .map(|i| 55.0 * 1.002f64.powi(i))
            .find(|&v| d.alerts(&d.assess("api", v), v))
            .expect("some latency alerts");
        let seen = d.assess("api", borderline);
        assert!(seen.z < cfg.critical_z, "{seen:?}");
        assert!(
            (1.0 - seen.score) * 1000.0 > 1.0 - cfg.alert_score,
            "borderline for a window of 1000 records: {seen:?}"
        );
        let busy = t0 + Duration::minutes(20);
        let run = |records: i64, slow: f64, seed: u64| {
            let mut s = s.clone();
            let mut out = Emitted::default();
            let mut rng = Rng::new(seed);
            for i in 0..records {
                let at = busy + Duration::milliseconds(i * 50_000 / records);
                let latency = if i == records / 2 {
                    slow
                } else {
                    (4.0 + 0.5 * rng.normal()).exp()
                };
                e.observe(&mut s, "api", &http(at, "api", 200, latency), &mut out);
            }
            e.close(&mut s, "api", busy + Duration::minutes(2), &mut out);
            out.alerts
        };
        assert!(run(1000, borderline, 1).is_empty(), "busy window: no alert");
        let quiet = run(1, borderline, 2);
        assert_eq!(quiet.len(), 1, "one record: it alerts as it did alone");
        assert_eq!(quiet[0].detector, "outlier");
        let critical = run(1000, 100_000.0, 3);
        assert_eq!(critical.len(), 1, "{critical:?}");
        assert_eq!(critical[0].severity, crate::model::Severity::Critical);
    }

    /// An incident opened by a latency outlier does not swallow the error
    /// burst that follows it: the error-rate alert outranks it and is
    /// emitted; the burst's later windows are part of the incident.
    #[test]
    fn a_higher_ranked_finding_is_reported_within_an_open_incident() {
        let e = engine();
        let t0 = t("2026-11-22T08:00:00Z");
        let mut rng = Rng::new(13);
        let mut s = e.new_state();
        let mut out = Emitted::default();
        healthy(&e, &mut s, t0, 20, 40, &mut rng, &mut out);
        let spike = t0 + Duration::minutes(20);
        e.observe(&mut s, "api", &http(spike, "api", 200, 100_000.0), &mut out);
        for m in 1..4i64 {
            for i in 0..40i64 {
                let at = spike + Duration::seconds(m * 60 + i);
                let status = if i % 2 == 0 { 503 } else { 200 };
                e.observe(&mut s, "api", &http(at, "api", status, 50.0), &mut out);
            }
        }
        e.close(&mut s, "api", spike + Duration::minutes(6), &mut out);
        let detectors: Vec<&str> = out.alerts.iter().map(|a| a.detector.as_str()).collect();
        assert_eq!(detectors.len(), 2, "{:?}", out.alerts);
        assert_eq!(detectors[0], "outlier");
        assert!(
            detectors[1] == "http_5xx_rate" || detectors[1] == "error_rate",
            "{detectors:?}"
        );
        assert_eq!(out.alerts[1].window_start, spike + Duration::minutes(1));
        assert!(
            out.suppressed >= 2,
            "the burst's later windows: {}",
            out.suppressed
        );
    }

    /// 30 minutes of a healthy service, then 3 minutes with 60 % errors,
    /// then healthy again, streamed in small batches with state saved and
    /// restored (JSON) between batches: exactly one error alert, one
    /// prediction per window, no other alert.
    #[test]
    fn one_incident_is_one_alert_across_batches() {
        let e = engine();
        let t0 = t("2026-11-22T08:00:00Z");
        let mut rng = Rng::new(7);
        let mut records = Vec::new();
        for minute in 0..45i64 {
            let burst = (30..33).contains(&minute);
            for i in 0..40i64 {
                let at = t0 + Duration::seconds(minute * 60 + i + (rng.below(20) as i64));
                let mut r = if i % 2 == 0 {
                    http(
                        at,
                        "checkout",
                        if burst && rng.uniform() < 0.6 {
                            503
                        } else {
                            200
                        },
                        40.0 + rng.uniform() * 10.0,
                    )
                } else {
                    record(at, "checkout")
                };
                if burst && i % 2 == 1 && rng.uniform() < 0.6 {
                    r.level = Some(Level::Error);
                }
                records.push(r);
            }
        }
        let mut saved = serde_json::to_string(&e.new_state()).unwrap();
        let mut out = Emitted::default();
        let mut max_t = t0;
        for chunk in records.chunks(37) {
            let mut state: EntityState = serde_json::from_str(&saved).unwrap();
            e.refresh(&mut state);
            for r in chunk {
                e.observe(&mut state, "checkout", r, &mut out);
                max_t = max_t.max(r.event_time);
            }
            e.close(&mut state, "checkout", e.watermark(max_t), &mut out);
            saved = serde_json::to_string(&state).unwrap();
        }
        let ids: Vec<&str> = out.alerts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(out.alerts.len(), 1, "{ids:?}");
        let a = &out.alerts[0];
        assert!(a.detector == "error_rate" || a.detector == "http_5xx_rate");
        assert_eq!(a.window_start, t0 + Duration::minutes(30));
        assert!(out.suppressed >= 2, "the rest of the burst was suppressed");
        // Every closed window has exactly one prediction, in order.
        let starts: Vec<_> = out.predictions.iter().map(|p| p.window_start).collect();
        assert_eq!(starts.len() as i64, (e.watermark(max_t) - t0).num_minutes());
        assert!(
            starts
                .windows(2)
                .all(|w| w[1] - w[0] == Duration::minutes(1))
        );
    }

    #[test]
    fn silence_is_scored_as_zero_and_long_gaps_are_bounded() {
        let e = Engine::new(EngineConfig {
            max_fill_windows: 5,
            ..EngineConfig::default()
        });
        let t0 = t("2026-11-22T08:00:00Z");
        let mut s = e.new_state();
        let mut out = Emitted::default();
        e.observe(&mut s, "a", &record(t0, "a"), &mut out);
        // three silent minutes follow
        e.close(&mut s, "a", t0 + Duration::minutes(4), &mut out);
        let counts: Vec<f64> = out.predictions.iter().map(|p| p.actual).collect();
        assert_eq!(counts, vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(e.next_close(&s), Some(t0 + Duration::minutes(5)));
        // a record late for a closed window is counted, not windowed
        assert!(!e.observe(
            &mut s,
            "a",
            &record(t0 + Duration::seconds(90), "a"),
            &mut out
        ));
        assert_eq!(s.records_late, 1);
        // a day of silence closed in one step: one summary prediction
        // spanning the gap, and the baseline learned nothing from it
        out.predictions.clear();
        let volume_before = s.volume.clone();
        e.close(&mut s, "a", t0 + Duration::days(1), &mut out);
        assert_eq!(out.predictions.len(), 1);
        let p = &out.predictions[0];
        assert_eq!(
            (p.window_start, p.window_end, p.actual),
            (t0 + Duration::minutes(4), t0 + Duration::days(1), 0.0)
        );
        assert_eq!(s.volume, volume_before);
        assert_eq!(
            e.next_close(&s),
            Some(t0 + Duration::days(1) + Duration::minutes(1))
        );
        // a silence within the bound is still scored window by window
        out.predictions.clear();
        e.close(
            &mut s,
            "a",
            t0 + Duration::days(1) + Duration::minutes(5),
            &mut out,
        );
        assert_eq!(out.predictions.len(), 5);
    }

    #[test]
    fn threshold_alerts_pass_the_cooldown() {
        let e = engine();
        let t0 = t("2026-11-22T08:00:00Z");
        let mut s = e.new_state();
        let mut out = Emitted::default();
        for i in 0..5 {
            let r = crate::testutil::sensor(
                t0 + Duration::seconds(i * 70),
                "st-001",
                &[("temperature", 45.0)],
            );
            e.observe(&mut s, "st-001", &r, &mut out);
        }
        assert!(out.alerts.is_empty(), "held until the window closes");
        e.close(&mut s, "st-001", t0 + Duration::minutes(10), &mut out);
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].rule.as_deref(), Some("temperature_high"));
        assert_eq!(out.suppressed, 4);
    }

    /// The review's case: a far-future event time (ingest accepts any
    /// RFC 3339 time) after normal traffic. The silent gap is ~4e9 windows,
    /// beyond `i32`: it is skipped in one step.
    #[test]
    fn far_future_event_time_terminates_with_bounded_predictions() {
        let e = engine();
        let mut s = e.new_state();
        let mut out = Emitted::default();
        let now = t("2026-11-22T08:00:00Z");
        let far = t("9999-12-31T23:59:59Z");
        e.observe(&mut s, "a", &record(now, "a"), &mut out);
        e.observe(&mut s, "a", &record(far, "a"), &mut out);
        let wm = e.watermark(far);
        e.close(&mut s, "a", wm, &mut out);
        // the 08:00 window, then one summary of the silence up to the
        // watermark; the far window itself is still open
        assert_eq!(out.predictions.len(), 2);
        assert_eq!(out.predictions[0].actual, 1.0);
        assert_eq!(out.predictions[1].actual, 0.0);
        assert_eq!(out.predictions[1].window_start, t("2026-11-22T08:01:00Z"));
        assert_eq!(
            out.predictions.last().map(|p| p.window_end),
            Some(t("9999-12-31T23:59:00Z"))
        );
        assert_eq!(s.open.len(), 1);
        // 10000-01-01T00:00:00Z (RFC 3339 has no five-digit years)
        assert_eq!(
            e.next_close(&s),
            DateTime::from_timestamp(253_402_300_800, 0)
        );
    }

    /// Records at the very ends of chrono's range, closes at MIN_UTC and
    /// MAX_UTC, and settings that overflow naive arithmetic.
    #[test]
    fn ends_of_time_and_extreme_settings() {
        let min = DateTime::<Utc>::MIN_UTC;
        let max = DateTime::<Utc>::MAX_UTC;
        for (width, lateness, fill) in [
            (60, 30, 60),
            (1, 0, 1),
            (0, -1, 0),
            (i64::MAX, i64::MAX, i64::MAX),
            (i64::MIN, i64::MIN, i64::MIN),
        ] {
            let e = Engine::new(EngineConfig {
                window: WindowConfig {
                    width_secs: width,
                    allowed_lateness_secs: lateness,
                },
                max_fill_windows: fill,
                cooldown_windows: i64::MAX,
                ..EngineConfig::default()
            });
            let mut s = e.new_state();
            let mut out = Emitted::default();
            for at in [max, min, max, min] {
                e.observe(&mut s, "a", &record(at, "a"), &mut out);
            }
            assert!(e.watermark(min) == min);
            e.close(&mut s, "a", min, &mut out);
            e.close(&mut s, "a", e.watermark(max), &mut out);
            e.close(&mut s, "a", max, &mut out);
            let fill = fill.clamp(1, MAX_FILL_WINDOWS) as usize;
            // two windows with records (MIN and MAX): the MIN one closed,
            // at most `fill` silent windows before each and before the watermark
            assert!(
                out.predictions.len() <= 1 + 2 * fill,
                "{}",
                out.predictions.len()
            );
            assert_eq!(out.predictions[0].window_start, min);
            // the window holding MAX_UTC can never close
            assert_eq!(s.open.len(), 1, "width {width}");
            assert_eq!(e.next_close(&s), None);
            e.close(&mut s, "a", max, &mut out);
        }
    }

    #[test]
    fn alert_message_is_bounded_with_a_visible_marker() {
        // 20 rules firing on one reading, each with a long name.
        let rules: Vec<ThresholdRule> = (0..20)
            .map(|i| ThresholdRule {
                name: format!("température_{i:02}_{}", "é".repeat(60)),
                field: "temperature".into(),
                op: crate::threshold::Op::Gt,
                value: f64::from(i),
                severity: crate::model::Severity::Warning,
                source_type: None,
            })
            .collect();
        let e = Engine::new(EngineConfig {
            rules,
            max_alert_message_bytes: 700,
            ..EngineConfig::default()
        });
        let t0 = t("2026-11-22T08:00:00Z");
        let mut s = e.new_state();
        let mut out = Emitted::default();
        let r = crate::testutil::sensor(t0, "st-1", &[("temperature", 45.0)]);
        e.observe(&mut s, "st-1", &r, &mut out);
        e.close(&mut s, "st-1", t0 + Duration::minutes(2), &mut out);
        assert_eq!(out.alerts.len(), 1);
        let m = &out.alerts[0].message;
        assert!(m.len() <= 700, "{} bytes", m.len());
        assert!(m.contains("; also "), "{m}");
        let tail = m.rsplit_once("… (truncated, ").map(|(_, t)| t);
        let more: usize = tail
            .and_then(|t| t.strip_suffix(" more findings)"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no marker in {m}"));
        // the findings shown in full plus those counted are all 19 others
        let shown = m.matches("; ").count();
        assert!(more >= 19 - MAX_ALSO_FINDINGS && shown + more >= 19, "{m}");
        assert_eq!(out.alerts[0].sample_record_ids.len(), 1);

        // a single huge finding (a new template of a 100 KB message) is cut too
        let e = Engine::new(EngineConfig {
            drain: DrainConfig {
                warmup_messages: 0,
                ..DrainConfig::default()
            },
            ..EngineConfig::default()
        });
        let mut s = e.new_state();
        let mut out = Emitted::default();
        let mut r = record(t0, "a");
        r.message = "ü".repeat(50_000);
        e.observe(&mut s, "a", &r, &mut out);
        r.message = "word ".repeat(20_000);
        e.observe(&mut s, "a", &r, &mut out);
        e.close(&mut s, "a", t0 + Duration::minutes(2), &mut out);
        assert_eq!(out.alerts.len(), 1);
        let m = &out.alerts[0].message;
        assert!(
            m.len() <= DEFAULT_MAX_ALERT_MESSAGE_BYTES,
            "{} bytes",
            m.len()
        );
        assert!(m.ends_with("… (truncated, 1 more finding)"), "{m}");
    }

    #[test]
    fn bound_message_cuts_on_char_boundaries() {
        assert_eq!(bound_message("short", &[], 0, 2048), "short");
        let also = vec!["b: two".to_string(), "c: three".to_string()];
        assert_eq!(
            bound_message("lead", &also, 0, 2048),
            "lead; also b: two; c: three"
        );
        // more than MAX_ALSO_FINDINGS: the rest are counted
        let many: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
        assert_eq!(
            bound_message("lead", &many, 0, 2048),
            "lead; also f0; f1; f2; f3; f4… (truncated, 3 more findings)"
        );
        for max in [0, 64, 65, 66, 67, 100, 333] {
            let m = bound_message(&"€".repeat(200), &also, 0, max);
            assert!(m.len() <= max.max(MIN_ALERT_MESSAGE_BYTES), "{max}: {m}");
            assert!(m.ends_with("… (truncated, 2 more findings)"), "{max}: {m}");
            assert!(m.starts_with('€'));
            let m = bound_message("lead", &["x".repeat(500)], 0, max);
            assert!(m.starts_with("lead; also xxx"), "{max}: {m}");
            assert!(m.ends_with("… (truncated, 1 more finding)"), "{max}: {m}");
            assert!(m.len() <= max.max(MIN_ALERT_MESSAGE_BYTES));
        }
        assert_eq!(
            bound_message(&"a".repeat(100), &[], 0, 64),
            format!("{}… (truncated)", "a".repeat(64 - "… (truncated)".len()))
        );
    }

    #[test]
    fn findings_held_per_window_are_bounded_and_counted() {
        let e = engine();
        let t0 = t("2026-11-22T08:00:00Z");
        let mut s = e.new_state();
        let mut out = Emitted::default();
        // every reading breaches temperature_high (critical) and humidity_low
        for i in 0..100 {
            let r = crate::testutil::sensor(
                t0 + Duration::milliseconds(i * 100),
                "st-1",
                &[("temperature", 45.0), ("humidity", 5.0)],
            );
            e.observe(&mut s, "st-1", &r, &mut out);
        }
        assert_eq!(s.pending[&t0.timestamp()].len(), MAX_PENDING_PER_WINDOW);
        assert_eq!(s.pending_dropped[&t0.timestamp()], 200 - 64);
        // the most severe are the ones kept
        assert!(
            s.pending[&t0.timestamp()]
                .iter()
                .all(|a| a.alert.rule.as_deref() == Some("temperature_high"))
        );
        e.close(&mut s, "st-1", t0 + Duration::minutes(2), &mut out);
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.suppressed, 199, "all 200 findings are counted");
        assert!(
            out.alerts[0].message.ends_with(&format!(
                "… (truncated, {} more findings)",
                199 - MAX_ALSO_FINDINGS
            )),
            "{}",
            out.alerts[0].message
        );
        assert!(s.pending.is_empty() && s.pending_dropped.is_empty());
        assert_eq!(
            bound_message("lead", &[], 3, 2048),
            "lead… (truncated, 3 more findings)"
        );
    }

    #[test]
    fn template_evictions_are_reported() {
        let e = Engine::new(EngineConfig {
            drain: DrainConfig {
                max_templates: 2,
                ..DrainConfig::default()
            },
            ..EngineConfig::default()
        });
        let t0 = t("2026-11-22T08:00:00Z");
        let mut s = e.new_state();
        let mut out = Emitted::default();
        for m in ["alpha", "beta gamma", "delta epsilon zeta", "alpha"] {
            let mut r = record(t0, "a");
            r.message = m.to_string();
            e.observe(&mut s, "a", &r, &mut out);
        }
        assert_eq!((out.template_evictions, s.templates.evictions), (2, 2));
        assert_eq!(s.templates.clusters.len(), 2);
    }

    #[test]
    fn an_entity_runs_on_its_own_clock_and_moves_on_when_silent() {
        let e = engine(); // lateness 30 s
        let mut s = e.new_state();
        let now = t("2026-12-03T12:00:00Z");
        let group = Some(t("2026-12-03T12:00:00Z"));
        // A state saved before entities had clocks follows the group's.
        assert_eq!(
            e.entity_watermark(&s, now, 300, group),
            Some(t("2026-12-03T11:59:30Z"))
        );
        // Its records are two hours behind the group: its own time counts.
        let at = t("2026-12-03T10:00:10Z");
        e.observe(&mut s, "api", &record(at, "api"), &mut Emitted::default());
        e.note_event_time(&mut s, at, now);
        assert_eq!(
            e.entity_watermark(&s, now, 300, group),
            Some(t("2026-12-03T09:59:40Z"))
        );
        // Within the idle allowance nothing moves; beyond it the clock
        // moves on by the wall time past the allowance.
        let later = now + Duration::seconds(300);
        assert_eq!(
            e.entity_watermark(&s, later, 300, group),
            Some(t("2026-12-03T09:59:40Z"))
        );
        let much_later = now + Duration::seconds(400);
        assert_eq!(
            e.entity_watermark(&s, much_later, 300, group),
            Some(t("2026-12-03T10:01:20Z"))
        );
        // Its window 10:00–10:01 is due when the watermark reaches 10:01,
        // i.e. 300 s allowance + (10:01 − 10:00:10 + 30 s) = 380 s later.
        assert_eq!(e.next_due_at(&s, 300), Some(now + Duration::seconds(380)));
        let mut out = Emitted::default();
        let wm = e
            .entity_watermark(&s, now + Duration::seconds(380), 300, group)
            .unwrap();
        e.close(&mut s, "api", wm, &mut out);
        assert_eq!(s.closed_until, Some(t("2026-12-03T10:01:00Z")));
        assert_eq!(out.predictions.len(), 1, "{out:?}");
        // A record in that window is now late; the clock never goes back.
        let old = t("2026-12-03T09:59:00Z");
        assert!(!e.observe(&mut s, "api", &record(old, "api"), &mut out));
        e.note_event_time(&mut s, old, now);
        assert_eq!(s.newest, Some(at));
    }
}

/// Property tests: arbitrary event times over chrono's whole range, in
/// arbitrary order, interleaved with closes at arbitrary watermarks.
#[cfg(test)]
mod props {
    use super::*;
    use crate::testutil::{http, record, sensor};
    use logpipe_schema::Level;
    use proptest::prelude::*;

    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        let (lo, hi) = (
            DateTime::<Utc>::MIN_UTC.timestamp(),
            DateTime::<Utc>::MAX_UTC.timestamp(),
        );
        let near = |base: i64| (-100_000i64..100_000).prop_map(move |d| base.saturating_add(d));
        let secs = prop_oneof![
            lo..=hi,
            near(lo),
            near(hi),
            near(1_795_000_000),   // 2026
            near(253_402_300_799), // 9999-12-31T23:59:59Z
        ];
        prop_oneof![
            Just(DateTime::<Utc>::MIN_UTC),
            Just(DateTime::<Utc>::MAX_UTC),
            (secs, 0u32..1_000_000_000).prop_map(move |(s, n)| {
                DateTime::from_timestamp(s.clamp(lo, hi), n).unwrap_or(DateTime::<Utc>::MAX_UTC)
            }),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A record of kind `0..4` (plain, error, 5xx, sensor breach).
        Observe(DateTime<Utc>, u8),
        /// Close at `watermark(t)`.
        CloseAfter(DateTime<Utc>),
        /// Close at exactly `t`.
        CloseAt(DateTime<Utc>),
        /// Close at `next_close()`, if any.
        CloseNext,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any_time(), 0u8..4).prop_map(|(t, k)| Op::Observe(t, k)),
            1 => any_time().prop_map(Op::CloseAfter),
            1 => any_time().prop_map(Op::CloseAt),
            1 => Just(Op::CloseNext),
        ]
    }

    fn config() -> impl Strategy<Value = EngineConfig> {
        let width = prop_oneof![
            Just(60i64),
            Just(1),
            Just(3600),
            Just(MAX_WINDOW_SECS),
            Just(0),
            Just(i64::MAX),
            Just(i64::MIN)
        ];
        let lateness = prop_oneof![Just(30i64), Just(0), Just(-1), Just(i64::MAX)];
        let fill = prop_oneof![Just(60i64), Just(1), Just(5), Just(0), Just(i64::MAX)];
        (width, lateness, fill).prop_map(|(width_secs, allowed_lateness_secs, max_fill_windows)| {
            EngineConfig {
                window: WindowConfig {
                    width_secs,
                    allowed_lateness_secs,
                },
                max_fill_windows,
                ..EngineConfig::default()
            }
        })
    }

    use crate::window::MAX_WINDOW_SECS;

    fn record_of(at: DateTime<Utc>, kind: u8) -> LogRecord {
        match kind {
            0 => record(at, "a"),
            1 => {
                let mut r = record(at, "a");
                r.level = Some(Level::Error);
                r.message = "failed to reach upstream".into();
                r
            }
            2 => http(at, "a", 503, 5000.0),
            _ => sensor(at, "a", &[("temperature", 99.0)]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn engine_terminates_and_bounds_predictions_per_close(
            config in config(),
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let e = Engine::new(config);
            let fill = e.max_fill() as usize;
            let mut s = e.new_state();
            let mut seen = 0u64;
            for op in ops {
                let mut out = Emitted::default();
                let wm = match op {
                    Op::Observe(at, kind) => {
                        e.observe(&mut s, "a", &record_of(at, kind), &mut out);
                        seen += 1;
                        prop_assert_eq!(s.records_seen, seen);
                        prop_assert!(out.predictions.is_empty());
                        continue;
                    }
                    Op::CloseAfter(at) => e.watermark(at),
                    Op::CloseAt(at) => at,
                    Op::CloseNext => match e.next_close(&s) {
                        Some(at) => at,
                        None => continue,
                    },
                };
                let due = e.next_close(&s).is_some_and(|n| n <= wm);
                let open_before = s.open.len();
                let closed_before = s.closed_until;
                e.close(&mut s, "a", wm, &mut out);
                let n = out.predictions.len();
                let silent = out.predictions.iter().filter(|p| p.actual == 0.0).count();
                // the documented bound: W windows with records, at most
                // `fill` silent windows before each of them and the watermark
                let with_records = n - silent;
                prop_assert!(with_records <= open_before);
                prop_assert!(silent <= fill * (with_records + 1), "{} silent, fill {}", silent, fill);
                prop_assert_eq!(s.open.len(), open_before - with_records);
                // due work is done, and everything due is done
                prop_assert_eq!(n > 0, due);
                prop_assert!(e.next_close(&s).is_none_or(|next| next > wm));
                prop_assert!(s.closed_until >= closed_before);
                prop_assert!(out.predictions.iter().all(|p| p.window_end <= wm));
                prop_assert!(out.predictions.windows(2).all(|p| p[0].window_start <= p[1].window_start));
                for a in &out.alerts {
                    prop_assert!(a.message.len() <= DEFAULT_MAX_ALERT_MESSAGE_BYTES);
                    prop_assert!(a.sample_record_ids.len() <= MAX_ALERT_SAMPLES);
                }
            }
            // state still round-trips through JSON
            let json = serde_json::to_string(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: EntityState = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // (floats may differ in the last bit: serde_json parses fast, not exactly)
            prop_assert_eq!(
                (&back.open, back.closed_until, &back.pending, &back.templates, &back.cooldown),
                (&s.open, s.closed_until, &s.pending, &s.templates, &s.cooldown)
            );
        }
    }
}

//! Scoring log records (JSON lines) with the detect function's engine.
//!
//! The detectors are composed once, in [`logpipe_detect::Engine`]; this
//! module only feeds it, exactly as the detect function does: per entity
//! (the same [`entity_of`]), one [`EntityState`], every record observed in
//! input order, windows closed by that entity's own watermark (the
//! engine's per-entity clock, [`Engine::note_event_time`] and
//! [`Engine::entity_watermark`]: its newest event time less the allowed
//! lateness), the same cooldown and the same per-window merge into one
//! alert per incident. Offline a record arrives at its own event time, so
//! the replay's wall clock never runs ahead of an entity's clock: the idle
//! advance that closes a silent entity's windows in the function never
//! applies (a file that ends mid-window leaves it open, see
//! [`RecordRun::finish`]), and no event time is too far in the future to
//! trust. The same defaults too:
//! [`EngineConfig::default`] is what the function runs with when no
//! setting is given.
//!
//! A line's verdict is known when its window closes, so lines are written
//! in input order as soon as the verdicts of all lines before them are
//! final (at the latest at end of input, which closes every window).
//! A line is flagged when it belongs to an incident: it is one of the
//! alert's sample records, or its window raised an error-rate (an error
//! line), 5xx-rate (a 5xx line) or volume alert (any line of the window),
//! including windows of an incident that was already open.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use logpipe_detect::drain::DrainConfig;
use logpipe_detect::outlier::OutlierConfig;
use logpipe_detect::threshold::parse_rules;
use logpipe_detect::window::{clamp_width, window_start_secs};
use logpipe_detect::{Alert, Emitted, Engine, EngineConfig, EntityState, entity_of, record_id_of};
use logpipe_schema::{KafkaCoordinates, Level, LogRecord};
use serde_json::Value;

use crate::BacktestError;
use crate::options::Options;

/// Topic named in the coordinates given to records that have none, so
/// every record has an id the engine's samples can name. (A record that
/// names no service or host is therefore the entity `backtest`, as in the
/// function it would be its Kafka key or topic.)
pub const BACKTEST_TOPIC: &str = "backtest";

/// Why a record was flagged: the lead finding of its incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub detector: String,
    pub rule: Option<String>,
    pub severity: &'static str,
    pub message: String,
}

/// The final verdict on one record.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredLine {
    pub line: usize,
    pub record: LogRecord,
    pub entity: String,
    /// The calibrated anomaly score of the record's window (its
    /// `Prediction.anomaly_score`), in `[0, 1]`; 0 when the window was
    /// closed before the record arrived.
    pub score: f64,
    pub flagged: bool,
    pub reasons: Vec<Reason>,
    /// The record's window had already closed: only per-record detectors ran.
    pub late: bool,
    /// The line had no time of its own (see [`UntimedClock`]).
    pub time_assumed: bool,
    /// Its window was still open at end of input: not judged as a window.
    pub open: bool,
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub late: u64,
    /// Alerts the function would publish (one per incident).
    pub incidents: u64,
    /// Windows of incidents that were already open.
    pub continuing: u64,
    /// Findings merged into another alert or suppressed by the cooldown.
    pub suppressed: u64,
    pub predictions: u64,
    pub untimed: u64,
    /// Records whose window was still open at end of input.
    pub open_at_end: u64,
}

/// Times for lines without one of their own: the previous record's time
/// (continuation lines, such as a stack trace, belong to it), or with
/// `--rate N` 1/N s after it. Before any line had a time they start at
/// `--start` (default the epoch) and advance at `--rate` (default 1 line/s),
/// so an untimed file is spread over time rather than one instant. Every
/// such line is marked in the output and counted in the summary.
#[derive(Debug, Clone)]
pub struct UntimedClock {
    rate: Option<f64>,
    start: DateTime<Utc>,
    /// The previous record's time, its own or assumed.
    last: Option<DateTime<Utc>>,
    seen_timed: bool,
    /// Untimed lines before the first timed one.
    before_first: u64,
}

impl UntimedClock {
    pub fn new(rate: Option<f64>, start: Option<DateTime<Utc>>) -> UntimedClock {
        UntimedClock {
            rate,
            start: start.unwrap_or(DateTime::UNIX_EPOCH),
            last: None,
            seen_timed: false,
            before_first: 0,
        }
    }

    /// The time a line without one of its own gets now.
    pub fn assumed(&self) -> DateTime<Utc> {
        let after = |t: DateTime<Utc>, lines: f64, rate: f64| {
            t.checked_add_signed(chrono::Duration::microseconds((lines * 1e6 / rate) as i64))
                .unwrap_or(t)
        };
        match (self.seen_timed, self.last, self.rate) {
            (true, Some(t), None) => t,
            (true, Some(t), Some(r)) => after(t, 1.0, r),
            _ => after(
                self.start,
                self.before_first as f64,
                self.rate.unwrap_or(1.0),
            ),
        }
    }

    /// Notes a record's time; `assumed` says it was [`Self::assumed`].
    pub fn saw(&mut self, at: DateTime<Utc>, assumed: bool) {
        if !assumed {
            self.seen_timed = true;
        } else if !self.seen_timed {
            self.before_first += 1;
        }
        self.last = Some(at);
    }
}

/// A line waiting for its window's verdict.
#[derive(Debug)]
struct Pending {
    line: usize,
    record: LogRecord,
    entity: String,
    id: Option<String>,
    window_start: i64,
    late: bool,
    time_assumed: bool,
}

type WindowKey = (String, i64);

/// One offline run of the engine over records.
pub struct RecordRun {
    engine: Engine,
    states: HashMap<String, EntityState>,
    pending: VecDeque<Pending>,
    /// Lines not yet written, per window (the verdict maps below are
    /// dropped once a closed window has none).
    waiting: HashMap<WindowKey, usize>,
    window_scores: HashMap<WindowKey, f64>,
    incidents: HashMap<WindowKey, Vec<Alert>>,
    flagged_ids: HashSet<String>,
    next_offset: i64,
    finished: bool,
    pub counts: RecordCounts,
}

impl RecordRun {
    pub fn from_options(options: &Options) -> Result<RecordRun, BacktestError> {
        let mut config = EngineConfig::default();
        if let Some(w) = options.window {
            config.window.width_secs = i64::try_from(w)
                .map_err(|_| BacktestError::Usage("--window is too large".into()))?;
        }
        if let Some(l) = options.lateness_secs {
            config.window.allowed_lateness_secs = l;
        }
        if let Some((path, text)) = &options.rules {
            config.rules = parse_rules(text).map_err(|e| BacktestError::Rules {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        if options.field.is_some() || options.threshold.is_some() {
            let mut outlier = config
                .outliers
                .first()
                .cloned()
                .unwrap_or_else(OutlierConfig::default);
            if let Some(f) = &options.field {
                outlier.field = f.clone();
            }
            if let Some(z) = options.threshold {
                outlier.z_threshold = z;
            }
            config.outliers = vec![outlier];
        }
        if let Some(n) = options.drain_warmup {
            config.drain = DrainConfig {
                warmup_messages: n,
                ..config.drain
            };
        }
        Ok(RecordRun {
            engine: Engine::new(config),
            states: HashMap::new(),
            pending: VecDeque::new(),
            waiting: HashMap::new(),
            window_scores: HashMap::new(),
            incidents: HashMap::new(),
            flagged_ids: HashSet::new(),
            next_offset: 0,
            finished: false,
            counts: RecordCounts::default(),
        })
    }

    fn width(&self) -> i64 {
        clamp_width(self.engine.config().window.width_secs)
    }

    /// Feeds one record (of input line `line`) and closes what its entity's
    /// watermark now passes.
    pub fn push(&mut self, line: usize, mut record: LogRecord, time_assumed: bool) {
        if record.kafka.is_none() {
            record.kafka = Some(KafkaCoordinates {
                topic: BACKTEST_TOPIC.into(),
                partition: 0,
                offset: self.next_offset,
                seq: 0,
                timestamp_ms: record.event_time.timestamp_millis(),
            });
        }
        self.next_offset = self.next_offset.saturating_add(1);
        self.counts.untimed += u64::from(time_assumed);
        let entity = entity_of(&record);
        let mut out = Emitted::default();
        let state = self
            .states
            .entry(entity.clone())
            .or_insert_with(|| self.engine.new_state());
        let on_time = self.engine.observe(state, &entity, &record, &mut out);
        // the replay's wall time is the record's own event time (see the
        // module docs): never past the entity's clock, so no idle advance
        let arrived = record.event_time;
        self.engine
            .note_event_time(state, record.event_time, arrived);
        if let Some(watermark) = self.engine.entity_watermark(state, arrived, 0, None) {
            self.engine.close(state, &entity, watermark, &mut out);
        }
        let window_start = window_start_secs(record.event_time.timestamp(), self.width());
        *self
            .waiting
            .entry((entity.clone(), window_start))
            .or_default() += 1;
        self.counts.late += u64::from(!on_time);
        self.pending.push_back(Pending {
            line,
            id: record_id_of(&record),
            record,
            entity,
            window_start,
            late: !on_time,
            time_assumed,
        });
        self.absorb(out);
    }

    /// End of input. Windows the watermark has not passed stay open, as
    /// they would in the function until more records (or the idle clock)
    /// come: a file that ends mid-window must not read as a volume drop.
    /// Their lines are written as `open`, flagged only by their own
    /// per-record findings (thresholds, outliers, new templates), which
    /// the function holds for the window's alert.
    pub fn finish(&mut self) {
        let mut held = Emitted::default();
        for state in self.states.values() {
            held.alerts
                .extend(state.pending.values().flatten().map(|f| f.alert.clone()));
        }
        self.counts.open_at_end = self.pending.len() as u64;
        for a in held.alerts {
            self.flagged_ids.extend(a.sample_record_ids.iter().cloned());
            self.incidents
                .entry((a.entity.clone(), a.window_start.timestamp()))
                .or_default()
                .push(a);
        }
        self.finished = true;
    }

    fn absorb(&mut self, out: Emitted) {
        self.counts.predictions += out.predictions.len() as u64;
        self.counts.incidents += out.alerts.len() as u64;
        self.counts.continuing += out.continuing.len() as u64;
        self.counts.suppressed += out.suppressed;
        for p in out.predictions {
            let score = self
                .window_scores
                .entry((p.entity, p.window_start.timestamp()))
                .or_default();
            *score = score.max(p.anomaly_score);
        }
        for a in out.alerts.into_iter().chain(out.continuing) {
            self.flagged_ids.extend(a.sample_record_ids.iter().cloned());
            self.incidents
                .entry((a.entity.clone(), a.window_start.timestamp()))
                .or_default()
                .push(a);
        }
    }

    fn window_closed(&self, entity: &str, window_start: i64) -> bool {
        self.states.get(entity).is_some_and(|s| {
            s.closed_until
                .is_some_and(|c| window_start.saturating_add(self.width()) <= c.timestamp())
        })
    }

    /// Whether the verdict on `p` can no longer change.
    fn is_final(&self, p: &Pending) -> bool {
        self.finished || p.late || self.window_closed(&p.entity, p.window_start)
    }

    /// The lines whose verdicts are final, in input order, up to the first
    /// that is not.
    pub fn ready(&mut self) -> Vec<ScoredLine> {
        let mut done = Vec::new();
        while let Some(front) = self.pending.front() {
            if !self.is_final(front) {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            done.push(self.verdict(p));
        }
        done
    }

    fn verdict(&mut self, p: Pending) -> ScoredLine {
        let key = (p.entity, p.window_start);
        let sampled = p.id.as_ref().is_some_and(|id| self.flagged_ids.remove(id));
        let record = p.record;
        let reasons: Vec<Reason> = self
            .incidents
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|a| sampled || belongs_to(a, &record))
            .map(|a| Reason {
                detector: a.detector.clone(),
                rule: a.rule.clone(),
                severity: a.severity.as_str(),
                message: a.message.clone(),
            })
            .collect();
        let score = self.window_scores.get(&key).copied().unwrap_or(0.0);
        let open = self.finished && !p.late && !self.window_closed(&key.0, key.1);
        let left = self.waiting.get_mut(&key).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            self.waiting.remove(&key);
            self.window_scores.remove(&key);
            self.incidents.remove(&key);
        }
        ScoredLine {
            line: p.line,
            record,
            entity: key.0,
            score: score.clamp(0.0, 1.0),
            flagged: sampled || !reasons.is_empty(),
            reasons,
            late: p.late,
            time_assumed: p.time_assumed,
            open,
        }
    }
}

/// Whether `record` is one of the lines a window-level finding is about.
fn belongs_to(alert: &Alert, record: &LogRecord) -> bool {
    match alert.detector.as_str() {
        "error_rate" => record.level.is_some_and(|l| l >= Level::Error),
        "http_5xx_rate" => record
            .http
            .as_ref()
            .and_then(|h| h.status)
            .is_some_and(|s| (500..600).contains(&s)),
        "volume" => true,
        // per-record findings name their record among the samples
        _ => false,
    }
}

/// Turns one input line into records: a normalized [`LogRecord`] (JSON with
/// `event_time` and `source_type`), else a raw log line for
/// [`logpipe_schema::parse`]. `fallback_time` is used by lines without a time.
pub fn parse_record_line(
    text: &str,
    log_format: Option<&str>,
    fallback_time: DateTime<Utc>,
) -> Result<Vec<LogRecord>, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed)
        && map.contains_key("event_time")
        && map.contains_key("source_type")
    {
        return serde_json::from_value::<LogRecord>(Value::Object(map))
            .map(|r| vec![r])
            .map_err(|e| format!("not a valid normalized LogRecord: {e}"));
    }
    logpipe_schema::parse(text, log_format, fallback_time).map_err(|e| e.to_string())
}

//! Realistic, deterministic log traffic for the scheduled `produce` function.
//!
//! Pure library: no IO, no clock, no network. [`generate`] turns a
//! [`GenerateRequest`] (count, kind mix, seed, services, anomalies) into
//! [`GeneratedRecord`]s — Kafka key, value and `log-format` header value —
//! whose values every `logpipe_schema` parser accepts. [`replay`] turns JSON
//! lines or CSV into records instead.
//!
//! The same request, `start` and `span` always give byte-identical output: the
//! PRNG is our own (see `rng.rs`) and no platform math library is used.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unreachable
    )
)]

mod app;
mod batch;
mod replay;
mod rng;
mod sap;
mod sensor;
mod syslog;
mod template;
mod textlog;
mod web;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use replay::{ReplayFormat, replay};

use rng::Rng;

/// Largest `count` a request may ask for.
pub const MAX_COUNT: usize = 100_000;
/// `count` when the request names none.
pub const DEFAULT_COUNT: usize = 100;
/// Services used when the request names none.
pub const DEFAULT_SERVICES: [&str; 6] = [
    "checkout",
    "payments",
    "search",
    "auth",
    "inventory",
    "shipping",
];
/// Longest `span` accepted by [`generate`].
pub const MAX_SPAN_DAYS: i64 = 366;
const MAX_SERVICES: usize = 100;
const MAX_ANOMALIES: usize = 100;

/// What kind of log a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    WebAccess,
    AppJson,
    SplunkHec,
    SplunkKv,
    Sap,
    Sensor,
    Batch,
    Syslog,
    /// Syslog as written to files (`Mmm dd hh:mm:ss host program[pid]: …`).
    SyslogFile,
    /// Spring Boot / log4j text lines.
    Log4j,
    Logfmt,
    NginxError,
    /// ArcSight CEF firewall events.
    Cef,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::WebAccess,
        Kind::AppJson,
        Kind::SplunkHec,
        Kind::SplunkKv,
        Kind::Sap,
        Kind::Sensor,
        Kind::Batch,
        Kind::Syslog,
        Kind::SyslogFile,
        Kind::Log4j,
        Kind::Logfmt,
        Kind::NginxError,
        Kind::Cef,
    ];

    /// The text-file formats: not in the default mix (seeded runs recorded
    /// before they existed still reproduce); `all_formats` adds them.
    pub const TEXT_FILES: [Kind; 5] = [
        Kind::SyslogFile,
        Kind::Log4j,
        Kind::Logfmt,
        Kind::NginxError,
        Kind::Cef,
    ];

    /// The snake_case name used in requests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WebAccess => "web_access",
            Kind::AppJson => "app_json",
            Kind::SplunkHec => "splunk_hec",
            Kind::SplunkKv => "splunk_kv",
            Kind::Sap => "sap",
            Kind::Sensor => "sensor",
            Kind::Batch => "batch",
            Kind::Syslog => "syslog",
            Kind::SyslogFile => "syslog_file",
            Kind::Log4j => "log4j",
            Kind::Logfmt => "logfmt",
            Kind::NginxError => "nginx_error",
            Kind::Cef => "cef",
        }
    }

    /// The schema format the records of this kind are written in.
    pub fn format(self) -> logpipe_schema::Format {
        use logpipe_schema::Format;
        match self {
            Kind::WebAccess => Format::WebAccess,
            Kind::AppJson => Format::AppJson,
            Kind::SplunkHec => Format::SplunkHec,
            Kind::SplunkKv => Format::SplunkKv,
            Kind::Sap => Format::Sap,
            Kind::Sensor => Format::Sensor,
            Kind::Batch => Format::Batch,
            Kind::Syslog => Format::Syslog5424,
            Kind::SyslogFile => Format::SyslogFile,
            Kind::Log4j => Format::Log4j,
            Kind::Logfmt => Format::Logfmt,
            Kind::NginxError => Format::NginxError,
            Kind::Cef => Format::Cef,
        }
    }

    /// The `log-format` header value for records of this kind.
    pub fn log_format(self) -> &'static str {
        self.format().as_str()
    }

    /// Weight in the default mix (percent); 0 for the text-file formats.
    pub fn default_weight(self) -> f64 {
        match self {
            Kind::WebAccess => 35.0,
            Kind::AppJson => 30.0,
            Kind::Sensor => 10.0,
            k if Kind::TEXT_FILES.contains(&k) => 0.0,
            _ => 5.0,
        }
    }
}

/// The mix used when a request names none.
pub fn default_mix() -> BTreeMap<Kind, f64> {
    Kind::ALL
        .iter()
        .map(|k| (*k, k.default_weight()))
        .filter(|(_, w)| *w > 0.0)
        .collect()
}

/// The mix of `all_formats`: the default mix scaled to 85 %, and 3 % for
/// each text-file format (web 29.75, app 25.5, sensor 8.5, the other
/// default kinds 4.25 each).
pub fn all_formats_mix() -> BTreeMap<Kind, f64> {
    let mut mix: BTreeMap<Kind, f64> = default_mix()
        .into_iter()
        .map(|(k, w)| (k, w * 0.85))
        .collect();
    for k in Kind::TEXT_FILES {
        mix.insert(k, 3.0);
    }
    mix
}

/// An injected incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// App JSON of the target: >= 50 % errors; web access: >= 40 % 5xx.
    ErrorBurst,
    /// Web request time and app `duration_ms` of the target ×10..×18.
    LatencySpike,
    /// 95 % of the target's web/app/Splunk records become other services'.
    VolumeDrop,
    /// Half of the target's app messages use a template seen nowhere else.
    NewTemplate,
    /// Every reading of the target station breaches a default sensor threshold.
    SensorBreach,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::ErrorBurst => "error_burst",
            AnomalyKind::LatencySpike => "latency_spike",
            AnomalyKind::VolumeDrop => "volume_drop",
            AnomalyKind::NewTemplate => "new_template",
            AnomalyKind::SensorBreach => "sensor_breach",
        }
    }
}

fn default_share() -> f64 {
    0.2
}

fn default_start() -> f64 {
    0.5
}

fn default_count() -> usize {
    DEFAULT_COUNT
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// Service (or sensor station — its id like `st-003` or its name — for
    /// `sensor_breach`) it applies to; None = the first service / station.
    #[serde(default)]
    pub target: Option<String>,
    /// Share of the run (by position) it covers, 0 < share <= 1; default 0.2.
    #[serde(default = "default_share")]
    pub share: f64,
    /// Where in the run it starts, 0 <= start < 1; default 0.5.
    #[serde(default = "default_start")]
    pub start: f64,
}

impl Anomaly {
    /// An anomaly on the default target with the default window.
    pub fn new(kind: AnomalyKind) -> Anomaly {
        Anomaly {
            kind,
            target: None,
            share: default_share(),
            start: default_start(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// Number of Kafka records, 1..=100_000; default 100.
    #[serde(default = "default_count")]
    pub count: usize,
    /// Kind weights (>= 0, at least one > 0); None = [`default_mix`]
    /// (web 35, app 30, splunk_hec 5, splunk_kv 5, sap 5, sensor 10, batch 5, syslog 5),
    /// or [`all_formats_mix`] with `all_formats`.
    #[serde(default)]
    pub mix: Option<BTreeMap<Kind, f64>>,
    /// Without a `mix`: also the text-file formats (syslog_file, log4j,
    /// logfmt, nginx_error, cef), 3 % each. Not allowed with `mix`.
    #[serde(default)]
    pub all_formats: bool,
    /// Same seed ⇒ identical output. None: derived from `start` (so each
    /// scheduled run differs, and a run can be reproduced from its start time).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Services of web/app/Splunk records; None = [`DEFAULT_SERVICES`].
    #[serde(default)]
    pub services: Option<Vec<String>>,
    #[serde(default)]
    pub anomalies: Vec<Anomaly>,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            count: DEFAULT_COUNT,
            mix: None,
            all_formats: false,
            seed: None,
            services: None,
            anomalies: Vec::new(),
        }
    }
}

/// One Kafka record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRecord {
    pub kind: Kind,
    /// Service name, host, SAP service (`sap/PRD`), sensor id or batch source —
    /// keeps an entity on one partition.
    pub key: String,
    /// The log line / JSON.
    pub value: String,
    /// The `log-format` header value the schema crate accepts for `value`.
    pub log_format: &'static str,
    pub trace_id: Option<String>,
    /// When the event happened; records come in this order. The log text
    /// carries it truncated to the format's precision (whole seconds for web
    /// access and SAP, milliseconds otherwise). Use it as the Kafka record
    /// timestamp.
    pub event_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    #[error("count must be between {min} and {max}, got {count}")]
    CountOutOfRange {
        count: usize,
        min: usize,
        max: usize,
    },
    #[error("invalid mix: {0}")]
    BadMix(String),
    #[error("invalid anomaly: {0}")]
    BadAnomaly(String),
    #[error("invalid services: {0}")]
    BadServices(String),
    #[error("invalid span: {0}")]
    BadSpan(String),
    /// A replay input line that cannot be turned into a record.
    #[error("line {line}: {reason}")]
    Replay { line: usize, reason: String },
}

impl GenerateRequest {
    pub fn validate(&self) -> Result<(), GenerateError> {
        if !(1..=MAX_COUNT).contains(&self.count) {
            return Err(GenerateError::CountOutOfRange {
                count: self.count,
                min: 1,
                max: MAX_COUNT,
            });
        }
        if let Some(mix) = &self.mix {
            if self.all_formats {
                return Err(GenerateError::BadMix(
                    "all_formats picks the mix: give either mix or all_formats".into(),
                ));
            }
            for (kind, w) in mix {
                if !w.is_finite() || *w < 0.0 {
                    return Err(GenerateError::BadMix(format!(
                        "weight of {} must be a finite number >= 0, got {w}",
                        kind.as_str()
                    )));
                }
            }
            if !mix.values().any(|w| *w > 0.0) {
                return Err(GenerateError::BadMix(
                    "at least one kind needs a weight > 0".into(),
                ));
            }
        }
        let services = self.services();
        validate_services(&services)?;
        if self.anomalies.len() > MAX_ANOMALIES {
            return Err(GenerateError::BadAnomaly(format!(
                "at most {MAX_ANOMALIES} anomalies, got {}",
                self.anomalies.len()
            )));
        }
        for (i, a) in self.anomalies.iter().enumerate() {
            let name = a.kind.as_str();
            if !a.share.is_finite() || a.share <= 0.0 || a.share > 1.0 {
                return Err(GenerateError::BadAnomaly(format!(
                    "anomaly {i} ({name}): share must be in (0, 1], got {}",
                    a.share
                )));
            }
            if !a.start.is_finite() || a.start < 0.0 || a.start >= 1.0 {
                return Err(GenerateError::BadAnomaly(format!(
                    "anomaly {i} ({name}): start must be in [0, 1), got {}",
                    a.start
                )));
            }
            if let Some(t) = &a.target {
                let known = match a.kind {
                    AnomalyKind::SensorBreach => sensor::station_index(t).is_some(),
                    _ => services.iter().any(|s| s == t),
                };
                if !known {
                    let what = match a.kind {
                        AnomalyKind::SensorBreach => {
                            "a sensor station (st-001..st-020 or a station name)"
                        }
                        _ => "one of the services",
                    };
                    return Err(GenerateError::BadAnomaly(format!(
                        "anomaly {i} ({name}): target {t:?} is not {what}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn services(&self) -> Vec<String> {
        match &self.services {
            Some(s) => s.clone(),
            None => DEFAULT_SERVICES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// Service names end up in JSON, in unquoted Splunk `source=` values and in
/// Kafka keys: keep them to a safe alphabet.
fn validate_services(services: &[String]) -> Result<(), GenerateError> {
    if services.is_empty() {
        return Err(GenerateError::BadServices("need at least one".into()));
    }
    if services.len() > MAX_SERVICES {
        return Err(GenerateError::BadServices(format!(
            "at most {MAX_SERVICES}, got {}",
            services.len()
        )));
    }
    for (i, s) in services.iter().enumerate() {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(GenerateError::BadServices(format!(
                "{s:?}: 1-64 characters [A-Za-z0-9._-], starting with a letter or digit"
            )));
        }
        if services[..i].contains(s) {
            return Err(GenerateError::BadServices(format!("{s:?} listed twice")));
        }
    }
    Ok(())
}

/// Generates `count` records with event times spread from `start` over `span`
/// (e.g. the 2-minute schedule interval), in time order.
pub fn generate(
    req: &GenerateRequest,
    start: DateTime<Utc>,
    span: Duration,
) -> Result<Vec<GeneratedRecord>, GenerateError> {
    req.validate()?;
    let span_us = span
        .num_microseconds()
        .filter(|us| *us >= 0 && *us <= MAX_SPAN_DAYS * 86_400_000_000)
        .ok_or_else(|| {
            GenerateError::BadSpan(format!("must be between 0 and {MAX_SPAN_DAYS} days"))
        })?;
    let seed = req
        .seed
        .unwrap_or_else(|| start.timestamp_micros() as u64 ^ 0x6c6f_6770_6970_6521);
    let mut rng = Rng::new(seed);
    let plan = Plan::new(req, &mut rng);
    let count = req.count;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // One time slot per record, jittered inside the slot: sorted by
        // construction.
        let frac = (i as f64 + rng.f64()) / count as f64;
        let offset = ((span_us as f64 * frac).floor() as i64).clamp(0, span_us);
        let time = start + Duration::microseconds(offset);
        let pos = i as f64 / count as f64;
        let kind = plan.kinds[rng.weighted(&plan.kind_weights)];
        out.push(plan.record(&mut rng, kind, time, pos));
    }
    Ok(out)
}

/// Effects of the active anomalies on one service at one position.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Effects {
    pub error_burst: bool,
    pub latency_spike: bool,
    /// Index into the never-otherwise-used templates.
    pub novel: Option<usize>,
}

/// An anomaly with its target and window resolved.
#[derive(Debug, Clone)]
struct Active {
    kind: AnomalyKind,
    /// Target service (unused for sensor breaches).
    service: String,
    /// Target station index (sensor breaches only).
    station: usize,
    from: f64,
    to: f64,
    /// Which novel template (`new_template`) or breach style (`sensor_breach`).
    variant: usize,
}

impl Active {
    fn covers(&self, pos: f64) -> bool {
        pos >= self.from && pos < self.to
    }
}

/// Everything derived once per run.
pub(crate) struct Plan {
    kinds: Vec<Kind>,
    kind_weights: Vec<f64>,
    pub(crate) services: Vec<String>,
    service_weights: Vec<f64>,
    anomalies: Vec<Active>,
    pub(crate) web: web::Clients,
    pub(crate) weather: sensor::Weather,
}

impl Plan {
    fn new(req: &GenerateRequest, rng: &mut Rng) -> Plan {
        let mix = match (&req.mix, req.all_formats) {
            (Some(mix), _) => mix.clone(),
            (None, true) => all_formats_mix(),
            (None, false) => default_mix(),
        };
        let (kinds, kind_weights) = Kind::ALL
            .iter()
            .map(|k| (*k, mix.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, w)| *w > 0.0)
            .unzip();
        let services = req.services();
        // Zipf-like traffic: the first service is the busiest.
        let service_weights = (0..services.len())
            .map(|i| 1.0 / (1.0 + 0.35 * i as f64))
            .collect();
        let anomalies = req
            .anomalies
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let station = match (&a.kind, &a.target) {
                    (AnomalyKind::SensorBreach, Some(t)) => sensor::station_index(t).unwrap_or(0),
                    _ => 0,
                };
                let service = a
                    .target
                    .clone()
                    .unwrap_or_else(|| services.first().cloned().unwrap_or_default());
                Active {
                    kind: a.kind,
                    service,
                    station,
                    from: a.start,
                    to: a.start + a.share,
                    variant: match a.kind {
                        AnomalyKind::SensorBreach => rng.index(2),
                        _ => i,
                    },
                }
            })
            .collect();
        let web = web::Clients::new(rng);
        let weather = sensor::Weather::new(rng);
        Plan {
            kinds,
            kind_weights,
            services,
            service_weights,
            anomalies,
            web,
            weather,
        }
    }

    fn active(&self, kind: AnomalyKind, pos: f64) -> impl Iterator<Item = &Active> {
        self.anomalies
            .iter()
            .filter(move |a| a.kind == kind && a.covers(pos))
    }

    pub(crate) fn effects(&self, service: &str, pos: f64) -> Effects {
        let mut e = Effects::default();
        for a in self.anomalies.iter().filter(|a| a.covers(pos)) {
            if a.kind == AnomalyKind::SensorBreach || a.service != service {
                continue;
            }
            match a.kind {
                AnomalyKind::ErrorBurst => e.error_burst = true,
                AnomalyKind::LatencySpike => e.latency_spike = true,
                AnomalyKind::NewTemplate => e.novel = e.novel.or(Some(a.variant)),
                AnomalyKind::VolumeDrop | AnomalyKind::SensorBreach => {}
            }
        }
        e
    }

    /// Breach style for a station's reading, if a breach covers it.
    pub(crate) fn breach(&self, station: usize, pos: f64) -> Option<usize> {
        self.active(AnomalyKind::SensorBreach, pos)
            .find(|a| a.station == station)
            .map(|a| a.variant)
    }

    /// A service for a web/app/Splunk record; `None` when a volume drop
    /// removed the record and no other service can take its place.
    pub(crate) fn pick_service(&self, rng: &mut Rng, pos: f64) -> Option<usize> {
        let i = rng.weighted(&self.service_weights);
        let dropped = self
            .active(AnomalyKind::VolumeDrop, pos)
            .any(|a| a.service == self.services[i]);
        if !dropped || !rng.chance(0.95) {
            return Some(i);
        }
        let weights: Vec<f64> = self
            .services
            .iter()
            .zip(&self.service_weights)
            .map(|(s, w)| {
                let gone = self
                    .active(AnomalyKind::VolumeDrop, pos)
                    .any(|a| &a.service == s);
                if gone { 0.0 } else { *w }
            })
            .collect();
        if weights.iter().any(|w| *w > 0.0) {
            Some(rng.weighted(&weights))
        } else {
            None
        }
    }

    fn record(&self, rng: &mut Rng, kind: Kind, time: DateTime<Utc>, pos: f64) -> GeneratedRecord {
        match kind {
            Kind::WebAccess
            | Kind::AppJson
            | Kind::SplunkHec
            | Kind::SplunkKv
            | Kind::Log4j
            | Kind::Logfmt => {
                match self.pick_service(rng, pos) {
                    Some(s) => {
                        let service = &self.services[s];
                        let effects = self.effects(service, pos);
                        match kind {
                            Kind::WebAccess => web::record(self, rng, service, s, effects, time),
                            Kind::Log4j => textlog::log4j(rng, service, effects, time),
                            Kind::Logfmt => textlog::logfmt(rng, service, effects, time),
                            _ => app::record(self, rng, kind, service, effects, time),
                        }
                    }
                    // Every service is silenced: the slot carries host noise.
                    None => syslog::record(rng, time),
                }
            }
            Kind::Sap => sap::record(rng, time),
            Kind::Sensor => {
                let station = rng.index(sensor::STATIONS.len());
                sensor::record(self, rng, station, time, pos)
            }
            Kind::Batch => batch::record(self, rng, time, pos),
            Kind::Syslog => syslog::record(rng, time),
            Kind::SyslogFile => textlog::syslog_file(rng, time),
            Kind::NginxError => textlog::nginx_error(rng, time),
            Kind::Cef => textlog::cef(rng, time),
        }
    }
}

/// Truncates to whole milliseconds.
#[cfg(test)]
pub(crate) fn trunc_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Truncates to whole seconds.
#[cfg(test)]
pub(crate) fn trunc_s(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// RFC 3339 with milliseconds and `Z`.
pub(crate) fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

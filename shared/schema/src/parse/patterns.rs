//! User-defined patterns: named regular expressions whose named captures map
//! onto `LogRecord` fields (`time` with a chrono format, `level`, `service`,
//! `host`, `message`; any other capture becomes an attribute).

use chrono::{DateTime, NaiveDateTime, Utc};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::{ParseError, level, new_record, time};
use crate::record::{LogRecord, SourceType};

/// Why a pattern configuration was refused (at init).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern configuration is not valid JSON: {0}")]
    Json(String),
    #[error("pattern {name:?}: invalid regular expression: {reason}")]
    Regex { name: String, reason: String },
    #[error("pattern {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    name: String,
    regex: String,
    /// chrono format of the `time` capture; RFC 3339 / ISO / epoch when absent.
    #[serde(default)]
    time_format: Option<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    key_prefixes: Vec<String>,
    /// `log-format` header values that select this pattern alone.
    #[serde(default)]
    headers: Vec<String>,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub name: String,
    regex: Regex,
    time_format: Option<String>,
    topics: Vec<String>,
    key_prefixes: Vec<String>,
    headers: Vec<String>,
}

/// Two patterns are equal when they were compiled from the same
/// configuration (a `Regex` has no equality of its own).
impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.regex.as_str() == other.regex.as_str()
            && self.time_format == other.time_format
            && self.topics == other.topics
            && self.key_prefixes == other.key_prefixes
            && self.headers == other.headers
    }
}

impl Eq for Pattern {}

impl Pattern {
    /// Parses one line; strict (a header selected the pattern).
    pub fn parse(
        &self,
        text: &str,
        raw: &str,
        fallback: DateTime<Utc>,
    ) -> Result<LogRecord, ParseError> {
        let bad = |reason: String| ParseError::InvalidLine {
            format: "pattern",
            reason: format!("{}: {reason}", self.name),
        };
        let caps = self
            .regex
            .captures(text)
            .ok_or_else(|| bad("line does not match".into()))?;
        let mut r = new_record(SourceType::Pattern, fallback, text.to_owned(), raw);
        r.attributes
            .insert("pattern".into(), Value::from(self.name.as_str()));
        for name in self.regex.capture_names().flatten() {
            let Some(m) = caps.name(name) else { continue };
            let v = m.as_str();
            match name {
                "time" => {
                    r.event_time = match &self.time_format {
                        Some(f) => DateTime::parse_from_str(v, f)
                            .map(|t| t.with_timezone(&Utc))
                            .or_else(|_| NaiveDateTime::parse_from_str(v, f).map(|t| t.and_utc()))
                            .ok(),
                        None => time::parse_str(v),
                    }
                    .ok_or_else(|| bad(format!("time {v:?} does not parse")))?;
                }
                "level" => r.level = level::from_name(v),
                "service" => r.service = Some(v.to_owned()),
                "host" => r.host = Some(v.to_owned()),
                "message" => r.message = v.to_owned(),
                other => {
                    r.attributes.insert(other.to_owned(), Value::from(v));
                }
            }
        }
        Ok(r)
    }

    fn applies(&self, topic: Option<&str>, key: Option<&str>) -> bool {
        let topic_ok =
            self.topics.is_empty() || topic.is_some_and(|t| self.topics.iter().any(|x| x == t));
        let key_ok = self.key_prefixes.is_empty()
            || key.is_some_and(|k| self.key_prefixes.iter().any(|p| k.starts_with(p.as_str())));
        topic_ok && key_ok
    }
}

/// A compiled set of patterns, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    list: Vec<Pattern>,
}

impl Patterns {
    /// Compiles a JSON array of `{name, regex, time_format?, topics?,
    /// key_prefixes?, headers?}`.
    pub fn from_json(json: &str) -> Result<Patterns, PatternError> {
        let specs: Vec<PatternSpec> =
            serde_json::from_str(json).map_err(|e| PatternError::Json(e.to_string()))?;
        let mut list = Vec::with_capacity(specs.len());
        for s in specs {
            let invalid = |reason: &str| PatternError::Invalid {
                name: s.name.clone(),
                reason: reason.to_owned(),
            };
            if s.name.trim().is_empty() {
                return Err(invalid("name must not be empty"));
            }
            if list.iter().any(|p: &Pattern| p.name == s.name) {
                return Err(invalid("duplicate name"));
            }
            let regex = Regex::new(&s.regex).map_err(|e| PatternError::Regex {
                name: s.name.clone(),
                reason: e.to_string(),
            })?;
            if regex.capture_names().flatten().next().is_none() {
                return Err(invalid("regex has no named captures"));
            }
            if s.time_format.is_some() && !regex.capture_names().flatten().any(|n| n == "time") {
                return Err(invalid("time_format given but no (?P<time>…) capture"));
            }
            if let Some(f) = &s.time_format
                && chrono::format::StrftimeItems::new(f)
                    .any(|i| matches!(i, chrono::format::Item::Error))
            {
                return Err(invalid("time_format is not a valid chrono format"));
            }
            list.push(Pattern {
                name: s.name,
                regex,
                time_format: s.time_format,
                topics: s.topics,
                key_prefixes: s.key_prefixes,
                headers: s
                    .headers
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect(),
            });
        }
        Ok(Patterns { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The patterns that apply to a record from `topic` with `key`.
    pub fn select<'a>(&'a self, topic: Option<&str>, key: Option<&str>) -> Selected<'a> {
        Selected {
            all: &self.list,
            topic_key: Some((topic.map(str::to_owned), key.map(str::to_owned))),
        }
    }
}

/// Patterns filtered for one record (see [`Patterns::select`]).
pub struct Selected<'a> {
    all: &'a [Pattern],
    topic_key: Option<(Option<String>, Option<String>)>,
}

impl Selected<'static> {
    /// No patterns.
    pub const NONE: Selected<'static> = Selected {
        all: &[],
        topic_key: None,
    };
}

impl Selected<'_> {
    fn iter(&self) -> impl Iterator<Item = &Pattern> {
        let (topic, key) = match &self.topic_key {
            Some((t, k)) => (t.as_deref(), k.as_deref()),
            None => (None, None),
        };
        self.all.iter().filter(move |p| p.applies(topic, key))
    }

    /// The pattern a `log-format` header names, if any.
    pub(crate) fn by_header(&self, header: &str) -> Option<&Pattern> {
        let h = header.trim().to_ascii_lowercase();
        self.all.iter().find(|p| p.headers.contains(&h))
    }

    /// First applicable pattern that matches.
    pub(crate) fn try_all(
        &self,
        text: &str,
        raw: &str,
        fallback: DateTime<Utc>,
    ) -> Option<LogRecord> {
        self.iter().find_map(|p| p.parse(text, raw, fallback).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_with;
    use crate::parse::tests::{fallback, utc};
    use crate::record::Level;
    use serde_json::json;

    /// Three formats logpipe has no parser for: HAProxy's HTTP log, Windows
    /// CBS.log, and PostgreSQL's default stderr log.
    const CONFIG: &str = r#"[
      {"name":"haproxy","topics":["edge"],"regex":"^(?P<host>\\S+) haproxy\\[(?P<pid>\\d+)\\]: (?P<client>[0-9.]+):\\d+ \\[(?P<time>[^\\]]+)\\] (?P<frontend>\\S+) (?P<backend>\\S+) \\S+ (?P<status>\\d{3}) (?P<message>.*)$","time_format":"%d/%b/%Y:%H:%M:%S%.3f"},
      {"name":"windows-cbs","regex":"^(?P<time>\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}), (?P<level>Info|Error|Warning)\\s+(?P<service>CBS|CSI)\\s+(?P<message>.*)$","time_format":"%Y-%m-%d %H:%M:%S","headers":["cbs"]},
      {"name":"postgres","key_prefixes":["pg-"],"regex":"^(?P<time>\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}\\.\\d{3} [A-Z]+) \\[(?P<pid>\\d+)\\] (?P<level>LOG|ERROR|WARNING|FATAL):  (?P<message>.*)$","time_format":"%Y-%m-%d %H:%M:%S%.3f UTC"}
    ]"#;

    #[test]
    fn three_real_formats() {
        let p = Patterns::from_json(CONFIG).unwrap();
        let sel = p.select(Some("edge"), None);
        let line = "lb1 haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} \"GET /index.html HTTP/1.1\"";
        let r = &parse_with(line, None, fallback(), &sel).unwrap().records[0];
        assert_eq!(r.source_type, SourceType::Pattern);
        assert_eq!(r.event_time, utc("2009-02-06T12:14:14.655Z"));
        assert_eq!(r.host.as_deref(), Some("lb1"));
        assert_eq!(r.attributes["backend"], json!("static/srv1"));
        // Not selected for another topic.
        let other = p.select(Some("other"), None);
        assert_eq!(
            parse_with(line, None, fallback(), &other).unwrap().records[0].source_type,
            SourceType::Generic
        );

        let cbs = "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505 with Core";
        let r = &parse_with(cbs, Some("cbs"), fallback(), &sel)
            .unwrap()
            .records[0];
        assert_eq!(r.service.as_deref(), Some("CBS"));
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.event_time, utc("2016-09-28T04:30:30Z"));
        assert!(parse_with("not cbs", Some("cbs"), fallback(), &sel).is_err());

        let pg = "2024-05-01 12:00:00.123 UTC [4242] ERROR:  relation \"x\" does not exist";
        let sel = p.select(Some("db"), Some("pg-main"));
        let r = &parse_with(pg, None, fallback(), &sel).unwrap().records[0];
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.attributes["pid"], json!("4242"));
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00.123Z"));
    }

    #[test]
    fn invalid_configuration_fails_clearly() {
        assert!(matches!(
            Patterns::from_json("{"),
            Err(PatternError::Json(_))
        ));
        let e = Patterns::from_json(r#"[{"name":"x","regex":"(?P<time>"}]"#).unwrap_err();
        assert!(matches!(e, PatternError::Regex { .. }), "{e}");
        assert!(Patterns::from_json(r#"[{"name":"x","regex":"abc"}]"#).is_err());
        assert!(
            Patterns::from_json(r#"[{"name":"x","regex":"(?P<a>b)","time_format":"%Y"}]"#).is_err()
        );
        assert!(Patterns::from_json(r#"[{"name":"x","regex":"(?P<a>b)","bogus":1}]"#).is_err());
        assert!(
            Patterns::from_json(
                r#"[{"name":"x","regex":"(?P<a>b)"},{"name":"x","regex":"(?P<a>b)"}]"#
            )
            .is_err()
        );
    }
}

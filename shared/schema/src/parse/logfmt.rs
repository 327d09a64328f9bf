//! logfmt (`key=value key2="quoted value"`, as written by Heroku, logrus,
//! go-kit, Grafana components) and Go `slog`'s TextHandler, which is logfmt
//! with `time`, `level` and `msg` first.

use chrono::{DateTime, Utc};

use super::fields::{self, Mode};
use super::{ParseError, new_record, splunk};
use crate::record::{LogRecord, SourceType};

pub(crate) const LOGFMT: &str = "logfmt";
pub(crate) const SLOG: &str = "slog";

/// Strict logfmt: every token is a `key=value` pair, at least two pairs.
pub(crate) fn parse_logfmt(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    build(line, raw, fallback, SourceType::Logfmt, LOGFMT)
}

/// slog TextHandler: `time=<RFC 3339> level=<LEVEL> msg=<text> [k=v …]`, in
/// that order.
pub(crate) fn parse_slog(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    if !is_slog(line) {
        return Err(ParseError::line(
            SLOG,
            "expected time=<RFC 3339> level=<LEVEL> msg=… in that order",
        ));
    }
    build(line, raw, fallback, SourceType::GoSlog, SLOG)
}

pub(crate) fn is_slog(line: &str) -> bool {
    let mut it = line.splitn(3, ' ');
    let (Some(t), Some(l), Some(m)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    let level_ok = l.strip_prefix("level=").is_some_and(|v| {
        let name = v.split(['+', '-']).next().unwrap_or("");
        matches!(name, "DEBUG" | "INFO" | "WARN" | "ERROR")
    });
    t.strip_prefix("time=")
        .is_some_and(|v| chrono::DateTime::parse_from_rfc3339(v).is_ok())
        && level_ok
        && m.starts_with("msg=")
}

/// Sniffing: an all-pairs line whose first key is a time key and which has a
/// level and a message key (logrus, go-kit). Other all-pairs lines keep
/// reading as Splunk key=value, as they always have.
pub(crate) fn sniff(line: &str) -> bool {
    let first_key = line.split_once('=').map_or("", |(k, _)| k);
    matches!(first_key, "time" | "ts" | "t" | "timestamp")
        && (line.contains(" level=") || line.contains(" lvl="))
        && (line.contains(" msg=") || line.contains(" message="))
}

fn build(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
    source_type: SourceType,
    format: &'static str,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(format, reason);
    let kv = splunk::scan(line).map_err(|e| bad(&e))?;
    if kv.time.is_some() || !kv.bare.is_empty() || kv.pair_count < 2 {
        return Err(bad("every token must be key=value (at least two pairs)"));
    }
    let m = fields::map_object(&kv.pairs, Mode::Lenient, &["component", "caller_service"])
        .map_err(|e| bad(&e.to_string()))?;
    // Grafana writes the time as `t=`.
    let t_key = match m.attributes.get("t") {
        Some(serde_json::Value::String(s)) => super::time::parse_str(s),
        _ => None,
    };
    let mut r = new_record(
        source_type,
        m.time.or(t_key).unwrap_or(fallback),
        m.message.unwrap_or_default(),
        raw,
    );
    r.level = m.level;
    r.service = m.service;
    r.host = m.host;
    r.http = m.http;
    r.metrics = m.metrics;
    r.attributes = m.attributes;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn slog_text_handler() {
        let r = parse1(
            r#"time=2023-08-04T16:09:59.123-04:00 level=INFO msg=hello count=3 user="ada l""#,
            None,
        );
        assert_eq!(r.source_type, SourceType::GoSlog);
        assert_eq!(r.event_time, utc("2023-08-04T20:09:59.123Z"));
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.message, "hello");
        assert_eq!(r.attributes["user"], json!("ada l"));
        assert_eq!(r.metrics["count"], 3.0);
        let r = parse1(
            "time=2023-08-04T16:09:59Z level=WARN+2 msg=\"disk low\"",
            Some("slog"),
        );
        assert_eq!(r.level, None, "WARN+2 is kept as an attribute");
        for line in [
            "time=2023-08-04T16:09:59Z msg=x level=INFO",
            "time=yesterday level=INFO msg=x",
            "time=2023-08-04T16:09:59Z level=INFO msg=\"unterminated",
        ] {
            assert_eq!(err_class(line, Some("slog")), "invalid_line", "{line}");
        }
    }

    #[test]
    fn logfmt() {
        let r = parse1(
            r#"time="2015-03-26T01:27:38-04:00" level=warning msg="The group's number increased tremendously!" number=122 omg=true"#,
            None,
        );
        assert_eq!(r.source_type, SourceType::Logfmt);
        assert_eq!(r.event_time, utc("2015-03-26T05:27:38Z"));
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.metrics["number"], 122.0);
        // Without a time key first, an all-pairs line is Splunk key=value as before.
        assert_eq!(
            parse1("level=info msg=hi user=bob", None).source_type,
            SourceType::SplunkKv
        );
        let r = parse1(
            "at=info method=GET path=/ host=myapp.herokuapp.com status=200",
            Some("logfmt"),
        );
        assert_eq!(r.source_type, SourceType::Logfmt);
        assert_eq!(r.host.as_deref(), Some("myapp.herokuapp.com"));
        for line in ["just words", "a=1", "a=1 bare b=2", "a=\"open b=2"] {
            assert_eq!(err_class(line, Some("logfmt")), "invalid_line", "{line}");
        }
    }
}

//! Application JSON logs: one JSON object per record, with the usual keys of
//! structured loggers (see `fields.rs` for the key lists).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::fields::{self, Mode};
use super::{ParseError, new_record};
use crate::record::{LogRecord, SourceType};

pub(crate) fn parse(
    obj: &Map<String, Value>,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let m = fields::map_object(obj, Mode::Strict, &[])?;
    let Some(message) = m.message else {
        return Err(ParseError::schema(
            None,
            "application JSON log without message (expected `message`, `msg` or `log`)",
        ));
    };
    let mut r = new_record(
        SourceType::AppJson,
        m.time.unwrap_or(fallback),
        message,
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
    use crate::parse::tests::{err_class, fallback, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn typical_line() {
        let line = r#"{"timestamp":"2024-05-01T12:00:00.250Z","level":"ERROR","message":"payment failed","service":"billing","host":"web-1","order_id":"A1","attempt":2}"#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::AppJson);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00.250Z"));
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.message, "payment failed");
        assert_eq!(r.service.as_deref(), Some("billing"));
        assert_eq!(r.host.as_deref(), Some("web-1"));
        assert_eq!(r.attributes["order_id"], json!("A1"));
        assert_eq!(r.metrics["attempt"], 2.0);
        assert!(r.http.is_none());
        assert_eq!(r.raw, line);
        assert!(r.kafka.is_none());
    }

    #[test]
    fn aliases_epoch_and_http() {
        let line = r#"{"ts":1714564800123,"severity":"warning","msg":"slow request","app":"api","hostname":"h2","method":"POST","path":"/v1/orders","status":503,"latency_ms":250.5,"client_ip":"2001:db8::7","user_agent":"k6/0.50"}"#;
        let r = parse1(line, Some("json"));
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00.123Z"));
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.message, "slow request");
        assert_eq!(r.service.as_deref(), Some("api"));
        assert_eq!(r.host.as_deref(), Some("h2"));
        let http = r.http.as_ref().unwrap();
        assert_eq!(http.method.as_deref(), Some("POST"));
        assert_eq!(http.path.as_deref(), Some("/v1/orders"));
        assert_eq!(http.status, Some(503));
        assert_eq!(http.latency_ms, Some(250.5));
        assert_eq!(http.client_ip, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(http.user_agent.as_deref(), Some("k6/0.50"));
        assert_eq!(r.metrics["latency_ms"], 250.5);
    }

    #[test]
    fn ecs_style_and_epoch_seconds() {
        let line = r#"{"@timestamp":1714564800,"log.level":"crit","log":"disk gone","service.name":"store","extra":{"a":[1,2]}}"#;
        let r = parse1(line, None);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.level, Some(Level::Critical));
        assert_eq!(r.message, "disk gone");
        assert_eq!(r.service.as_deref(), Some("store"));
        assert_eq!(r.attributes["extra"], json!({"a": [1, 2]}));
    }

    #[test]
    fn no_time_uses_fallback_and_unknown_level_is_kept() {
        let r = parse1(r#"{"message":"hi","level":"chatty"}"#, None);
        assert_eq!(r.event_time, fallback());
        assert_eq!(r.level, None);
        assert_eq!(r.attributes["level"], json!("chatty"));
    }

    #[test]
    fn unicode_and_null_fields() {
        let r = parse1(
            r#"{"message":"héllo 🌍 \u0000","level":null,"host":"ホスト"}"#,
            None,
        );
        assert_eq!(r.message, "héllo 🌍 \u{0}");
        assert_eq!(r.level, None);
        assert_eq!(r.host.as_deref(), Some("ホスト"));
    }

    #[test]
    fn wrong_field_types() {
        for line in [
            r#"{"message":"x","status":"abc"}"#,
            r#"{"message":"x","status":42}"#,
            r#"{"message":"x","timestamp":true}"#,
            r#"{"message":"x","timestamp":"last tuesday"}"#,
            r#"{"message":"x","level":5}"#,
            r#"{"message":{"nested":1}}"#,
            r#"{"message":"x","latency_ms":"fast"}"#,
            r#"{"message":"x","service":7}"#,
            r#"{"message":"x","client_ip":1}"#,
            r#"{"level":"info"}"#,
        ] {
            assert_eq!(
                err_class(line, Some("app-json")),
                "schema_violation",
                "{line}"
            );
            assert_eq!(err_class(line, None), "schema_violation", "{line}");
        }
        let e = crate::parse(r#"{"message":"x","status":"abc"}"#, None, fallback()).unwrap_err();
        assert!(e.to_string().contains("`status`"), "{e}");
    }

    #[test]
    fn bad_json() {
        assert_eq!(err_class(r#"{"message":"trunc"#, None), "invalid_json");
        assert_eq!(
            err_class(r#"{"message":"trunc"#, Some("json")),
            "invalid_json"
        );
        assert_eq!(err_class(r#"[1,2]"#, Some("json")), "schema_violation");
        assert_eq!(err_class("plain text", Some("json")), "invalid_json");
    }
}

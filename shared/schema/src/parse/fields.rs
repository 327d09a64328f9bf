//! Mapping of well-known field names onto [`LogRecord`](crate::LogRecord)
//! fields. Shared by application JSON, Splunk HEC event objects and Splunk
//! key=value pairs.
//!
//! Each role (time, level, message, …) has a list of keys in priority order;
//! the first key present with a non-null value fills the role. Every key not
//! consumed by a role lands in `metrics` (numbers) or `attributes` (anything
//! else).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{ParseError, json_kind, level, time};
use crate::record::{HttpFields, Level};

pub(crate) const TIME_KEYS: &[&str] = &["timestamp", "time", "@timestamp", "ts"];
const LEVEL_KEYS: &[&str] = &["level", "severity", "lvl", "log.level", "log_level"];
const MESSAGE_KEYS: &[&str] = &["message", "msg", "log"];
const SERVICE_KEYS: &[&str] = &["service", "service.name", "app", "application"];
const HOST_KEYS: &[&str] = &["host", "hostname"];
const METHOD_KEYS: &[&str] = &["method"];
const PATH_KEYS: &[&str] = &["path", "url"];
const PROTOCOL_KEYS: &[&str] = &["protocol"];
const STATUS_KEYS: &[&str] = &["status", "status_code"];
const LATENCY_KEYS: &[&str] = &["latency_ms", "duration_ms", "response_time_ms"];
const CLIENT_IP_KEYS: &[&str] = &["client_ip", "remote_addr"];
const USER_AGENT_KEYS: &[&str] = &["user_agent"];
const REFERRER_KEYS: &[&str] = &["referrer", "referer"];

/// How a value of the wrong type for its role is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Schema violation naming the field (JSON formats).
    Strict,
    /// The field is kept as an ordinary metric/attribute (key=value text,
    /// where types are only guessed).
    Lenient,
}

/// The result of mapping one object.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    pub time: Option<DateTime<Utc>>,
    pub level: Option<Level>,
    pub message: Option<String>,
    pub service: Option<String>,
    pub host: Option<String>,
    pub http: Option<HttpFields>,
    pub metrics: BTreeMap<String, f64>,
    pub attributes: Map<String, Value>,
}

/// Outcome of converting one role value.
enum Conv<T> {
    Ok(T),
    /// Acceptable type but nothing to map (e.g. unknown level name): keep the
    /// field as an attribute, no error.
    Keep,
    /// Wrong type: the reason.
    Bad(String),
}

struct Mapper<'a> {
    obj: &'a Map<String, Value>,
    mode: Mode,
    consumed: Vec<&'a str>,
}

impl<'a> Mapper<'a> {
    /// Fills one role from the first of `keys` present and non-null.
    /// `consume`: whether the key is then kept out of metrics/attributes.
    fn take<T>(
        &mut self,
        keys: &[&str],
        consume: bool,
        conv: impl Fn(&Value) -> Conv<T>,
    ) -> Result<Option<T>, ParseError> {
        let Some((key, value)) = keys
            .iter()
            .find_map(|k| self.obj.get_key_value(*k).filter(|(_, v)| !v.is_null()))
        else {
            return Ok(None);
        };
        match conv(value) {
            Conv::Ok(t) => {
                if consume {
                    self.consumed.push(key.as_str());
                }
                Ok(Some(t))
            }
            Conv::Keep => Ok(None),
            Conv::Bad(reason) => match self.mode {
                Mode::Strict => Err(ParseError::schema(Some(key), reason)),
                Mode::Lenient => Ok(None),
            },
        }
    }
}

fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, got {}", json_kind(got))
}

fn string(v: &Value) -> Conv<String> {
    match v {
        Value::String(s) => Conv::Ok(s.clone()),
        other => Conv::Bad(expected("a string", other)),
    }
}

/// A name: a non-empty string, or an object carrying it under `name` (ECS
/// style `{"service": {"name": "api"}}`).
fn name(v: &Value) -> Conv<String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Conv::Keep,
        Value::String(s) => Conv::Ok(s.clone()),
        Value::Object(o) => match o.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => Conv::Ok(s.clone()),
            _ => Conv::Bad("expected a string or an object with a string `name`".into()),
        },
        other => Conv::Bad(expected("a string", other)),
    }
}

fn level_value(v: &Value) -> Conv<Level> {
    match v {
        Value::String(s) => level::from_name(s).map_or(Conv::Keep, Conv::Ok),
        other => Conv::Bad(expected("a level name string", other)),
    }
}

fn status(v: &Value) -> Conv<u16> {
    let n = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) if s.len() == 3 => s.parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n @ 100..=599) => Conv::Ok(n as u16),
        _ => Conv::Bad(format!(
            "expected an HTTP status code 100..=599, got {}",
            super::text::truncate(&v.to_string(), 40)
        )),
    }
}

fn number(v: &Value) -> Conv<f64> {
    match v.as_f64() {
        Some(f) => Conv::Ok(f),
        None => Conv::Bad(expected("a number", v)),
    }
}

fn ip(v: &Value) -> Conv<IpAddr> {
    match v {
        Value::String(s) => parse_ip(s).map_or(Conv::Keep, Conv::Ok),
        other => Conv::Bad(expected("an IP address string", other)),
    }
}

/// An IP address, optionally with a port (`1.2.3.4:80`, `[::1]:80`) or in
/// brackets (`[::1]`).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Maps `obj`. `extra_service_keys` are tried after the standard service keys.
pub(crate) fn map_object(
    obj: &Map<String, Value>,
    mode: Mode,
    extra_service_keys: &[&str],
) -> Result<Mapped, ParseError> {
    let mut m = Mapper {
        obj,
        mode,
        consumed: Vec::new(),
    };
    let mut out = Mapped {
        time: m.take(TIME_KEYS, true, |v| match time::from_json(v) {
            Ok(t) => Conv::Ok(t),
            Err(reason) => Conv::Bad(reason),
        })?,
        level: m.take(LEVEL_KEYS, true, level_value)?,
        message: m.take(MESSAGE_KEYS, true, string)?,
        service: m.take(SERVICE_KEYS, true, name)?,
        host: m.take(HOST_KEYS, true, name)?,
        ..Mapped::default()
    };
    if out.service.is_none() && !extra_service_keys.is_empty() {
        out.service = m.take(extra_service_keys, true, name)?;
    }

    let http = HttpFields {
        method: m.take(METHOD_KEYS, true, string)?,
        path: m.take(PATH_KEYS, true, string)?,
        protocol: m.take(PROTOCOL_KEYS, true, string)?,
        status: m.take(STATUS_KEYS, true, status)?,
        bytes: None,
        referrer: m.take(REFERRER_KEYS, true, string)?,
        user_agent: m.take(USER_AGENT_KEYS, true, string)?,
        client_ip: m.take(CLIENT_IP_KEYS, true, ip)?,
        // Not consumed: durations also stay in `metrics`.
        latency_ms: m.take(LATENCY_KEYS, false, number)?,
    };
    let is_http = http.method.is_some()
        || http.path.is_some()
        || http.status.is_some()
        || http.client_ip.is_some()
        || http.user_agent.is_some()
        || http.referrer.is_some();
    if is_http {
        out.http = Some(http);
    }

    for (k, v) in obj {
        if m.consumed.contains(&k.as_str()) {
            continue;
        }
        match v {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    out.metrics.insert(k.clone(), f);
                }
            }
            other => {
                out.attributes.insert(k.clone(), other.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn roles_and_leftovers() {
        let o = obj(json!({
            "ts": 1_700_000_000, "lvl": "warning", "msg": "hi", "app": "api",
            "hostname": "h1", "method": "GET", "url": "/x", "status_code": "404",
            "duration_ms": 12.5, "remote_addr": "10.0.0.1:5555", "user_agent": "curl",
            "retries": 3, "user": {"id": 1}, "ok": true
        }));
        let m = map_object(&o, Mode::Strict, &[]).unwrap();
        assert!(m.time.is_some());
        assert_eq!(m.level, Some(Level::Warn));
        assert_eq!(m.message.as_deref(), Some("hi"));
        assert_eq!(m.service.as_deref(), Some("api"));
        assert_eq!(m.host.as_deref(), Some("h1"));
        let http = m.http.unwrap();
        assert_eq!(http.method.as_deref(), Some("GET"));
        assert_eq!(http.path.as_deref(), Some("/x"));
        assert_eq!(http.status, Some(404));
        assert_eq!(http.latency_ms, Some(12.5));
        assert_eq!(http.client_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(m.metrics.get("duration_ms"), Some(&12.5));
        assert_eq!(m.metrics.get("retries"), Some(&3.0));
        assert_eq!(m.metrics.len(), 2);
        assert_eq!(m.attributes.len(), 2);
        assert_eq!(m.attributes["user"], json!({"id": 1}));
    }

    #[test]
    fn priority_and_unknown_level() {
        let o = obj(json!({"message": "a", "msg": "b", "level": "chatty", "severity": "error"}));
        let m = map_object(&o, Mode::Strict, &[]).unwrap();
        assert_eq!(m.message.as_deref(), Some("a"));
        assert_eq!(m.attributes["msg"], json!("b"));
        // `level` is present but unknown: kept as attribute; lower-priority keys are not consulted.
        assert_eq!(m.level, None);
        assert_eq!(m.attributes["level"], json!("chatty"));
        assert!(m.http.is_none());
    }

    #[test]
    fn strict_vs_lenient() {
        let o = obj(json!({"status": "abc", "message": "x"}));
        let e = map_object(&o, Mode::Strict, &[]).unwrap_err();
        assert_eq!(e.class(), "schema_violation");
        assert!(e.to_string().contains("status"), "{e}");
        let m = map_object(&o, Mode::Lenient, &[]).unwrap();
        assert_eq!(m.attributes["status"], json!("abc"));
        assert!(m.http.is_none());
    }

    #[test]
    fn ips() {
        assert_eq!(parse_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("[::1]:8080"), Some("::1".parse().unwrap()));
        assert_eq!(
            parse_ip("[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_ip("example.com"), None);
    }
}

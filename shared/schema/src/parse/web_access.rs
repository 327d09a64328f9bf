//! Web server access logs: Common Log Format, Combined Log Format, and both
//! followed by nginx `$request_time` (seconds with a decimal point).
//!
//! `host ident authuser [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326 ["referer" "user-agent"] [0.123] [extra…]`

use serde_json::Value;

use super::{ParseError, fields, level, new_record, text, time};
use crate::record::{HttpFields, LogRecord, SourceType};

const FORMAT: &str = "web-access";

fn bad(reason: &str) -> ParseError {
    ParseError::line(FORMAT, reason)
}

pub(crate) fn parse(line: &str, raw: &str) -> Result<LogRecord, ParseError> {
    let (remote, rest) = text::token(line).ok_or_else(|| bad("missing remote host"))?;
    let (ident, rest) = text::token(rest).ok_or_else(|| bad("missing ident"))?;
    let (user, rest) = text::token(rest).ok_or_else(|| bad("missing authuser"))?;
    let rest = rest
        .strip_prefix('[')
        .ok_or_else(|| bad("expected [time] after authuser"))?;
    let (stamp, rest) = rest
        .split_once(']')
        .ok_or_else(|| bad("unterminated [time]"))?;
    let event_time =
        time::parse_clf(stamp).ok_or_else(|| bad("invalid [dd/Mon/yyyy:hh:mm:ss zone] time"))?;
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| bad("expected space after time"))?;
    let (request, rest) =
        text::quoted(rest, &['"', '\\']).ok_or_else(|| bad("expected quoted request line"))?;
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| bad("missing status"))?;
    let (status_text, rest) = text::token(rest).ok_or_else(|| bad("missing status"))?;
    let status =
        parse_status(status_text).ok_or_else(|| bad("status must be 3 digits 100..=599"))?;
    let (bytes_text, mut rest) = text::token(rest).ok_or_else(|| bad("missing bytes"))?;
    let bytes = match bytes_text {
        "-" => None,
        b if b.bytes().all(|c| c.is_ascii_digit()) => {
            Some(b.parse::<i64>().map_err(|_| bad("bytes out of range"))?)
        }
        _ => return Err(bad("bytes must be digits or -")),
    };

    let mut http = HttpFields {
        status: Some(status),
        bytes,
        ..HttpFields::default()
    };
    if rest.starts_with('"') {
        let (referrer, after) =
            text::quoted(rest, &['"', '\\']).ok_or_else(|| bad("unterminated referer"))?;
        let after = after
            .strip_prefix(' ')
            .ok_or_else(|| bad("combined format needs a quoted user agent after the referer"))?;
        let (agent, after) =
            text::quoted(after, &['"', '\\']).ok_or_else(|| bad("expected quoted user agent"))?;
        http.referrer = Some(referrer).filter(|s| s != "-");
        http.user_agent = Some(agent).filter(|s| s != "-");
        rest = after;
    }
    let rest = rest.trim();
    let (latency_ms, extra) = match text::word(rest) {
        Some((tok, after)) if tok.contains('.') => match tok.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => (Some(secs * 1000.0), after.trim()),
            _ => (None, rest),
        },
        _ => (None, rest),
    };
    http.latency_ms = latency_ms;

    let mut r = new_record(SourceType::WebAccess, event_time, request.clone(), raw);
    match fields::parse_ip(remote) {
        Some(ip) => http.client_ip = Some(ip),
        None if remote == "-" => {}
        None => {
            r.attributes
                .insert("remote_host".into(), Value::from(remote));
        }
    }
    if ident != "-" {
        r.attributes.insert("ident".into(), Value::from(ident));
    }
    if user != "-" {
        r.attributes.insert("remote_user".into(), Value::from(user));
    }
    match split_request(&request) {
        Some((method, path, protocol)) => {
            http.method = Some(method.to_owned());
            http.path = Some(path.to_owned());
            http.protocol = protocol.map(str::to_owned);
        }
        None if request.is_empty() || request == "-" => r.message = "-".to_owned(),
        None => {
            r.attributes.insert("request".into(), Value::from(request));
        }
    }
    if !extra.is_empty() {
        r.attributes.insert("extra".into(), Value::from(extra));
    }
    if let Some(b) = bytes {
        r.metrics.insert("bytes".into(), b as f64);
    }
    if let Some(l) = latency_ms {
        r.metrics.insert("latency_ms".into(), l);
    }
    r.level = Some(level::from_http_status(status));
    r.http = Some(http);
    Ok(r)
}

fn parse_status(s: &str) -> Option<u16> {
    if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| (100..=599).contains(n))
}

/// `METHOD target [HTTP/x]` → parts; `None` for anything else.
fn split_request(request: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = request.split(' ');
    let method = parts.next()?;
    let path = parts.next()?;
    let protocol = parts.next();
    if parts.next().is_some() || path.is_empty() {
        return None;
    }
    let method_ok = (1..=20).contains(&method.len())
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    if !method_ok {
        return None;
    }
    match protocol {
        Some(p) if !p.starts_with("HTTP/") => None,
        Some(p) => Some((method, path, Some(p))),
        // HTTP/0.9 style: only an origin-form path makes sense.
        None if path.starts_with('/') => Some((method, path, None)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn common_log_format() {
        let line = r#"127.0.0.1 user-identifier frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::WebAccess);
        assert_eq!(r.event_time, utc("2000-10-10T20:55:36Z"));
        assert_eq!(r.message, "GET /apache_pb.gif HTTP/1.0");
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.service, None);
        assert_eq!(r.host, None);
        let http = r.http.as_ref().unwrap();
        assert_eq!(http.method.as_deref(), Some("GET"));
        assert_eq!(http.path.as_deref(), Some("/apache_pb.gif"));
        assert_eq!(http.protocol.as_deref(), Some("HTTP/1.0"));
        assert_eq!(http.status, Some(200));
        assert_eq!(http.bytes, Some(2326));
        assert_eq!(http.client_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(http.latency_ms, None);
        assert_eq!(r.metrics["bytes"], 2326.0);
        assert_eq!(r.attributes["ident"], json!("user-identifier"));
        assert_eq!(r.attributes["remote_user"], json!("frank"));
    }

    #[test]
    fn combined_with_latency() {
        let line = r#"2001:db8::1 - - [01/May/2024:12:00:00 +0000] "POST /api/users?x=\"1\" HTTP/1.1" 503 - "https://ex.com/" "Mozilla/5.0 (X11; Linux) \"quoted\"" 0.123"#;
        let r = parse1(line, Some("nginx"));
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.level, Some(Level::Error));
        let http = r.http.as_ref().unwrap();
        assert_eq!(http.path.as_deref(), Some(r#"/api/users?x="1""#));
        assert_eq!(http.status, Some(503));
        assert_eq!(http.bytes, None);
        assert_eq!(http.referrer.as_deref(), Some("https://ex.com/"));
        assert_eq!(
            http.user_agent.as_deref(),
            Some(r#"Mozilla/5.0 (X11; Linux) "quoted""#)
        );
        assert_eq!(http.client_ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(http.latency_ms, Some(123.0));
        assert_eq!(r.metrics["latency_ms"], 123.0);
        assert!(!r.metrics.contains_key("bytes"));
    }

    #[test]
    fn hostname_dash_request_and_extras() {
        let line = r#"proxy.example.com - - [01/May/2024:12:00:00 +0000] "-" 408 0 "-" "-" 0.000 upstream=- 7"#;
        let r = parse1(line, Some("combined"));
        assert_eq!(r.message, "-");
        assert_eq!(r.level, Some(Level::Warn));
        let http = r.http.as_ref().unwrap();
        assert_eq!(http.method, None);
        assert_eq!(http.path, None);
        assert_eq!(http.client_ip, None);
        assert_eq!(http.referrer, None);
        assert_eq!(http.user_agent, None);
        assert_eq!(http.latency_ms, Some(0.0));
        assert_eq!(r.attributes["remote_host"], json!("proxy.example.com"));
        assert_eq!(r.attributes["extra"], json!("upstream=- 7"));
    }

    #[test]
    fn malformed_request_line_kept() {
        let line =
            r#"10.0.0.9 - - [01/May/2024:12:00:00 +0000] "\x16\x03\x01\x00\xa5" 400 157 "-" "-""#;
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::WebAccess);
        let http = r.http.as_ref().unwrap();
        assert_eq!(http.method, None);
        assert_eq!(http.path, None);
        assert_eq!(r.attributes["request"], json!(r"\x16\x03\x01\x00\xa5"));
        assert_eq!(r.message, r"\x16\x03\x01\x00\xa5");
    }

    #[test]
    fn malformed_lines() {
        for line in [
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 999 1"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 20 1"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" abc 1"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 12x"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.0" 200 1"#,
            r#"127.0.0.1 - - [99/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0 200 1"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] GET / HTTP/1.0 200 1"#,
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "ref-only""#,
            r#"127.0.0.1 - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1"#,
            "just some text",
        ] {
            assert_eq!(
                err_class(line, Some("web-access")),
                "invalid_line",
                "{line}"
            );
        }
    }
}

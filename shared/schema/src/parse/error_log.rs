//! nginx and Apache httpd error logs.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::stamp::{self, Layout};
use super::{ParseError, fields, level, new_record};
use crate::record::{Level, LogRecord, SourceType};

pub(crate) const NGINX: &str = "nginx-error";
pub(crate) const APACHE: &str = "apache-error";

/// nginx and Apache level names (`trace1`..`trace8` are Apache 2.4's).
fn level_name(name: &str) -> Option<Level> {
    if name.starts_with("trace") && name.len() == 6 {
        return Some(Level::Trace);
    }
    match name {
        "warn" => Some(Level::Warn),
        "debug" | "info" | "notice" | "error" | "crit" | "alert" | "emerg" => {
            level::from_name(name)
        }
        _ => None,
    }
}

/// `yyyy/MM/dd HH:mm:ss [level] pid#tid: [*cid ]message[, client: …, server: …]`
pub(crate) fn parse_nginx(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(NGINX, reason);
    let l = stamp::leading(line, fallback)
        .filter(|l| l.layout == Layout::SlashYear4)
        .ok_or_else(|| bad("expected yyyy/MM/dd HH:mm:ss"))?;
    let rest = l
        .rest
        .strip_prefix(" [")
        .ok_or_else(|| bad("expected [level]"))?;
    let (lvl, rest) = rest
        .split_once("] ")
        .ok_or_else(|| bad("expected [level]"))?;
    let level = level_name(lvl).ok_or_else(|| bad("unknown level"))?;
    let (ids, mut message) = rest
        .split_once(": ")
        .ok_or_else(|| bad("expected pid#tid:"))?;
    let (pid, tid) = ids
        .split_once('#')
        .ok_or_else(|| bad("expected pid#tid:"))?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(pid) || !digits(tid) {
        return Err(bad("pid and tid must be digits"));
    }
    let mut r = new_record(SourceType::NginxError, l.time, String::new(), raw);
    r.level = Some(level);
    r.service = Some("nginx".into());
    r.attributes.insert("pid".into(), Value::from(pid));
    r.attributes.insert("tid".into(), Value::from(tid));
    if let Some(after) = message.strip_prefix('*')
        && let Some((cid, m)) = after.split_once(' ')
        && digits(cid)
    {
        r.attributes.insert("connection".into(), Value::from(cid));
        message = m;
    }
    // The context nginx appends: `, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1", host: "x"`.
    let mut text = message;
    for key in [
        "host", "referrer", "upstream", "request", "server", "client",
    ] {
        let needle = format!(", {key}: ");
        if let Some(i) = text.rfind(&needle) {
            let value = text.get(i + needle.len()..).unwrap_or("");
            let value = value.trim_matches('"');
            r.attributes.insert(key.into(), Value::from(value));
            text = text.get(..i).unwrap_or(text);
        }
    }
    if let Some(Value::String(c)) = r.attributes.get("client")
        && let Some(ip) = fields::parse_ip(c)
    {
        r.http.get_or_insert_with(Default::default).client_ip = Some(ip);
    }
    if let Some(Value::String(req)) = r.attributes.get("request") {
        let mut parts = req.split(' ');
        let http = r.http.get_or_insert_with(Default::default);
        http.method = parts.next().map(str::to_owned);
        http.path = parts.next().map(str::to_owned);
        http.protocol = parts.next().map(str::to_owned);
    }
    if let Some(Value::String(h)) = r.attributes.get("server") {
        r.host = Some(h.clone());
    }
    r.message = text.to_owned();
    Ok(r)
}

/// Apache 2.2 `[Wed Oct 11 14:32:52 2000] [error] [client 1.2.3.4] msg` and
/// 2.4 `[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 1.2.3.4:5678] AH00128: msg`.
pub(crate) fn parse_apache(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(APACHE, reason);
    let l = stamp::leading(line, fallback)
        .filter(|l| {
            l.layout == Layout::BracketedCtime
                && line.as_bytes().get(1).is_some_and(u8::is_ascii_alphabetic)
        })
        .ok_or_else(|| bad("expected [Day Mon dd hh:mm:ss yyyy]"))?;
    let rest = l
        .rest
        .strip_prefix(" [")
        .ok_or_else(|| bad("expected [level] or [module:level]"))?;
    let (lvl, mut rest) = rest
        .split_once(']')
        .ok_or_else(|| bad("expected [level]"))?;
    let (module, lvl) = match lvl.split_once(':') {
        Some((m, l)) => (Some(m), l),
        None => (None, lvl),
    };
    let level = level_name(lvl).ok_or_else(|| bad("unknown level"))?;
    let mut r = new_record(SourceType::ApacheError, l.time, String::new(), raw);
    r.level = Some(level);
    r.service = Some("httpd".into());
    if let Some(m) = module {
        r.attributes.insert("module".into(), Value::from(m));
    }
    while let Some(body) = rest.strip_prefix(" [") {
        let Some((item, after)) = body.split_once(']') else {
            break;
        };
        if let Some(p) = item.strip_prefix("pid ") {
            let (pid, tid) = p.split_once(":tid ").unwrap_or((p, ""));
            r.attributes.insert("pid".into(), Value::from(pid));
            if !tid.is_empty() {
                r.attributes.insert("tid".into(), Value::from(tid));
            }
        } else if let Some(c) = item
            .strip_prefix("client ")
            .or_else(|| item.strip_prefix("remote "))
        {
            r.attributes.insert("client".into(), Value::from(c));
            if let Some(ip) = fields::parse_ip(c) {
                r.http.get_or_insert_with(Default::default).client_ip = Some(ip);
            }
        } else {
            break;
        }
        rest = after;
    }
    let message = rest.strip_prefix(' ').unwrap_or(rest);
    let message = match message.split_once(": ") {
        Some((code, m))
            if code.len() == 7
                && code.starts_with("AH")
                && code.bytes().skip(2).all(|c| c.is_ascii_digit()) =>
        {
            r.attributes.insert("error_code".into(), Value::from(code));
            m
        }
        _ => message,
    };
    r.message = message.to_owned();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn nginx() {
        let r = parse1(
            r#"2024/05/01 12:00:00 [error] 1234#1234: *5 open() "/usr/share/nginx/html/favicon.ico" failed (2: No such file or directory), client: 192.0.2.10, server: localhost, request: "GET /favicon.ico HTTP/1.1", host: "example.com""#,
            None,
        );
        assert_eq!(r.source_type, SourceType::NginxError);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.attributes["connection"], json!("5"));
        assert_eq!(r.attributes["host"], json!("example.com"));
        assert_eq!(r.host.as_deref(), Some("localhost"));
        let http = r.http.unwrap();
        assert_eq!(http.path.as_deref(), Some("/favicon.ico"));
        assert_eq!(http.client_ip.unwrap().to_string(), "192.0.2.10");
        assert!(r.message.ends_with("(2: No such file or directory)"));
        for line in [
            "2024/05/01 12:00:00 [error]",
            "2024/05/01 12:00:00 [loud] 1#1: x",
            "2024/05/01 12:00:00 [error] 1-1: x",
            "2024/05/01 12:00:00 error 1#1: x",
        ] {
            assert_eq!(
                err_class(line, Some("nginx-error")),
                "invalid_line",
                "{line}"
            );
        }
    }

    #[test]
    fn apache() {
        let r = parse1(
            "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home/live/ap/htdocs/test",
            None,
        );
        assert_eq!(r.source_type, SourceType::ApacheError);
        assert_eq!(r.event_time, utc("2000-10-11T14:32:52Z"));
        assert_eq!(r.attributes["client"], json!("127.0.0.1"));
        let r = parse1(
            "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico",
            None,
        );
        assert_eq!(r.event_time, utc("2011-09-09T10:42:29.902022Z"));
        assert_eq!(r.attributes["module"], json!("core"));
        assert_eq!(r.attributes["pid"], json!("35708"));
        assert_eq!(r.attributes["tid"], json!("4328636416"));
        let r = parse1(
            "[Thu May 12 08:28:57.652118 2011] [mpm_event:notice] [pid 1:tid 1] AH00489: Apache/2.4.58 (Unix) configured -- resuming normal operations",
            None,
        );
        assert_eq!(r.level, Some(Level::Notice));
        assert_eq!(r.attributes["error_code"], json!("AH00489"));
        for line in [
            "[Wed Oct 11 14:32:52 2000]",
            "[Wed Oct 11 14:32:52 2000] [shout] x",
            "[Wed Oct 11 14:32:52] [error] x",
            "[error] [client 1.2.3.4] x",
        ] {
            assert_eq!(
                err_class(line, Some("apache-error")),
                "invalid_line",
                "{line}"
            );
        }
    }
}

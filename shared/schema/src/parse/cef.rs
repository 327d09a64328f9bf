//! ArcSight Common Event Format:
//! `CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension`,
//! bare or after a syslog-file header (`Mmm dd hh:mm:ss host CEF:0|…`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::{ParseError, fields, new_record, syslog_file, time};
use crate::record::{Level, LogRecord, SourceType};

pub(crate) const FORMAT: &str = "cef";

/// The syslog header's time and host, when the CEF text follows one.
type SyslogHeader<'a> = Option<(DateTime<Utc>, &'a str)>;

/// Where `CEF:` starts: at 0, or after a syslog header and host.
pub(crate) fn start(line: &str, fallback: DateTime<Utc>) -> Option<(SyslogHeader<'_>, &str)> {
    if line.starts_with("CEF:") {
        return Some((None, line));
    }
    let (t, rest) = syslog_file::header_time(line, fallback)?;
    let (host, cef) = rest.split_once(' ')?;
    cef.starts_with("CEF:").then_some((Some((t, host)), cef))
}

pub(crate) fn parse(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(FORMAT, reason);
    let (header, cef) = start(line, fallback).ok_or_else(|| bad("expected CEF:"))?;
    let body = cef.get(4..).unwrap_or("");
    let (head, extension) =
        split_header(body).ok_or_else(|| bad("expected 7 |-separated header fields"))?;
    let [
        version,
        vendor,
        product,
        dev_version,
        signature,
        name,
        severity,
    ] = head;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad("version must be a number"));
    }
    let ext = extension_pairs(extension).map_err(bad)?;
    let ext_time = ext
        .get("rt")
        .or_else(|| ext.get("end"))
        .and_then(|v| v.as_str())
        .and_then(cef_time);
    let event_time = ext_time.or(header.map(|(t, _)| t)).unwrap_or(fallback);
    let mut r = new_record(SourceType::Cef, event_time, name.clone(), raw);
    r.level = severity_level(&severity);
    r.service = Some(product.clone()).filter(|p| !p.is_empty());
    r.host = ext
        .get("dvchost")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| header.map(|(_, h)| h.to_owned()));
    let mut a = Map::new();
    a.insert("cef_version".into(), Value::from(version));
    a.insert("vendor".into(), Value::from(vendor));
    a.insert("product_version".into(), Value::from(dev_version));
    a.insert("signature_id".into(), Value::from(signature));
    a.insert("severity".into(), Value::from(severity));
    if let Some(src) = ext
        .get("src")
        .and_then(|v| v.as_str())
        .and_then(fields::parse_ip)
    {
        r.http.get_or_insert_with(Default::default).client_ip = Some(src);
    }
    a.insert("extension".into(), Value::Object(ext));
    r.attributes = a;
    Ok(r)
}

/// The seven header fields (`\|` and `\\` unescaped) and the extension.
fn split_header(s: &str) -> Option<([String; 7], &str)> {
    let mut out: [String; 7] = Default::default();
    let mut field = 0usize;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, n) = chars.next()?;
                out.get_mut(field)?.push(n);
            }
            '|' => {
                field += 1;
                if field == 7 {
                    return Some((out, s.get(i + 1..)?));
                }
            }
            c => out.get_mut(field)?.push(c),
        }
    }
    // A line that ends right after the severity has no extension.
    (field == 6).then_some((out, ""))
}

/// `key=value` pairs; a value runs to the next ` key=`; `\=`, `\\`, `\n`, `\r` are escapes.
fn extension_pairs(s: &str) -> Result<Map<String, Value>, &'static str> {
    let mut out = Map::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(out);
    }
    // Positions of unescaped `=`: each key is the word before one.
    let b = s.as_bytes();
    let mut eqs = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            i += 2;
            continue;
        }
        if c == b'=' {
            eqs.push(i);
        }
        i += 1;
    }
    if eqs.is_empty() {
        return Err("extension must be key=value pairs");
    }
    let mut starts = Vec::new();
    for &e in &eqs {
        let before = s.get(..e).ok_or("bad extension")?;
        let k_start = before.rfind(' ').map_or(0, |p| p + 1);
        let key = before.get(k_start..).ok_or("bad extension")?;
        if !key.is_empty()
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
        {
            starts.push((k_start, e));
        }
    }
    if starts.first().map(|(k, _)| *k) != Some(0) {
        return Err("extension must start with key=");
    }
    for (n, &(k_start, e)) in starts.iter().enumerate() {
        let key = s.get(k_start..e).ok_or("bad extension")?;
        let end = starts
            .get(n + 1)
            .map_or(s.len(), |(next, _)| next.saturating_sub(1));
        let value = s.get(e + 1..end.max(e + 1)).ok_or("bad extension")?;
        out.insert(key.to_owned(), Value::from(unescape(value.trim_end())));
    }
    Ok(out)
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `rt`/`end`: epoch milliseconds or `MMM dd yyyy HH:mm:ss[.SSS]`.
fn cef_time(v: &str) -> Option<DateTime<Utc>> {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<i64>().ok().and_then(time::from_epoch_i64);
    }
    // `MMM dd yyyy HH:mm:ss[.SSS] [zone]`; a zone word (`GMT`, `UTC`) is dropped.
    let v = v
        .strip_suffix(" GMT")
        .or_else(|| v.strip_suffix(" UTC"))
        .unwrap_or(v);
    for fmt in ["%b %d %Y %H:%M:%S%.f", "%b %d %Y %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(t.and_utc());
        }
    }
    time::parse_str(v)
}

/// 0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High.
fn severity_level(s: &str) -> Option<Level> {
    let n: Option<u8> = s.parse().ok();
    Some(match (n, s.to_ascii_lowercase().as_str()) {
        (Some(0..=3), _) | (_, "low") => Level::Info,
        (Some(4..=6), _) | (_, "medium") => Level::Warn,
        (Some(7..=8), _) | (_, "high") => Level::Error,
        (Some(9..=10), _) | (_, "very-high") => Level::Critical,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn documented_examples() {
        let r = parse1(
            r"Sep 19 08:26:10 host CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232",
            None,
        );
        assert_eq!(r.source_type, SourceType::Cef);
        assert_eq!(r.event_time, utc("2023-09-19T08:26:10Z"));
        assert_eq!(r.host.as_deref(), Some("host"));
        assert_eq!(r.service.as_deref(), Some("threatmanager"));
        assert_eq!(r.level, Some(Level::Critical));
        assert_eq!(r.message, "worm successfully stopped");
        assert_eq!(r.attributes["extension"]["dst"], json!("2.1.2.2"));
        let r = parse1(
            r"CEF:0|security|threatmanager|1.0|100|detected a \| in message|10|src=10.0.0.1 act=blocked a \= dst=1.1.1.1 rt=1714564800000 msg=file C:\\x.txt found",
            Some("cef"),
        );
        assert_eq!(r.message, "detected a | in message");
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.attributes["extension"]["act"], json!("blocked a ="));
        assert_eq!(
            r.attributes["extension"]["msg"],
            json!(r"file C:\x.txt found")
        );
        let r = parse1("CEF:0|V|P|1|sig|name|High|", Some("cef"));
        assert_eq!(r.level, Some(Level::Error));
        for line in [
            "CEF:0|V|P|1|sig|name",
            "CEF:x|V|P|1|sig|name|3|a=b",
            "CEF:0|V|P|1|sig|name|3|no pairs",
            "CEF0|V|P|1|sig|name|3|",
        ] {
            assert_eq!(err_class(line, Some("cef")), "invalid_line", "{line}");
        }
    }
}

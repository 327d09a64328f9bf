//! Syslog: RFC 5424 and RFC 3164 (BSD) lines.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{ParseError, fields, level, new_record, text, time};
use crate::record::{LogRecord, SourceType};

const F5424: &str = "syslog5424";
const F3164: &str = "syslog3164";

/// `<PRI>` at the start of a line: (facility, severity, rest).
fn pri(line: &str) -> Result<(u8, u8, &str), &'static str> {
    let body = line.strip_prefix('<').ok_or("missing <PRI>")?;
    let (digits, rest) = body.split_once('>').ok_or("unterminated <PRI>")?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("PRI must be 1-3 digits");
    }
    let value: u8 = digits.parse().map_err(|_| "PRI out of range")?;
    if value > 191 {
        return Err("PRI out of range (max 191)");
    }
    Ok((value / 8, value % 8, rest))
}

/// Sniffing: `Some` only when the line parses as one of the two formats.
pub(crate) fn sniff(line: &str, raw: &str, fallback: DateTime<Utc>) -> Option<LogRecord> {
    let (_, _, rest) = pri(line).ok()?;
    if rest.starts_with("1 ") {
        parse_5424(line, raw, fallback).ok()
    } else {
        parse_3164(line, raw, fallback).ok()
    }
}

/// Header `syslog`: RFC 5424 when the PRI is followed by version `1 `, else
/// RFC 3164.
pub(crate) fn parse_any(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let (_, _, rest) = pri(line).map_err(|e| ParseError::line("syslog", e))?;
    if rest.starts_with("1 ") {
        parse_5424(line, raw, fallback)
    } else {
        parse_3164(line, raw, fallback)
    }
}

fn nil(s: &str) -> Option<&str> {
    if s == "-" { None } else { Some(s) }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`
pub(crate) fn parse_5424(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(F5424, reason);
    let (facility, severity, rest) = pri(line).map_err(bad)?;
    let rest = rest
        .strip_prefix("1 ")
        .ok_or_else(|| bad("expected version 1"))?;
    let (stamp, rest) = text::token(rest).ok_or_else(|| bad("missing timestamp"))?;
    let (host, rest) = text::token(rest).ok_or_else(|| bad("missing hostname"))?;
    let (app, rest) = text::token(rest).ok_or_else(|| bad("missing app-name"))?;
    let (procid, rest) = text::token(rest).ok_or_else(|| bad("missing procid"))?;
    let (msgid, rest) = rest
        .split_once(' ')
        .ok_or_else(|| bad("missing structured data"))?;
    if msgid.is_empty() {
        return Err(bad("missing msgid"));
    }
    let event_time = match stamp {
        "-" => fallback,
        s => DateTime::parse_from_rfc3339(s)
            .map_err(|_| bad("timestamp must be RFC 3339 or -"))?
            .with_timezone(&Utc),
    };
    let (sd, rest) = structured_data(rest).map_err(bad)?;
    let message = match rest {
        "" => "",
        r => r
            .strip_prefix(' ')
            .ok_or_else(|| bad("expected space after structured data"))?,
    };
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);

    let mut r = new_record(SourceType::Syslog5424, event_time, message.to_owned(), raw);
    r.level = Some(level::from_syslog(severity));
    r.host = nil(host).map(str::to_owned);
    r.service = nil(app).map(str::to_owned);
    r.attributes
        .insert("facility".into(), Value::from(facility));
    if let Some(p) = nil(procid) {
        r.attributes.insert("procid".into(), Value::from(p));
    }
    if let Some(m) = nil(msgid) {
        r.attributes.insert("msgid".into(), Value::from(m));
    }
    if let Some(sd) = sd {
        r.attributes.insert("sd".into(), Value::Object(sd));
    }
    Ok(r)
}

/// Structured data: SD-ID → {PARAM-NAME → value}.
type SdElements = Map<String, Value>;

/// `-` or one or more `[SD-ID param="value" …]`; returns the elements as an
/// object of objects and the text after them.
fn structured_data(s: &str) -> Result<(Option<SdElements>, &str), &'static str> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok((None, rest));
    }
    if !s.starts_with('[') {
        return Err("structured data must be - or [...]");
    }
    let mut out = Map::new();
    let mut rest = s;
    while let Some(body) = rest.strip_prefix('[') {
        let id_len = body
            .find([' ', ']', '=', '"'])
            .ok_or("unterminated structured data element")?;
        let (id, mut after) = body.split_at_checked(id_len).ok_or("bad SD-ID")?;
        if id.is_empty() {
            return Err("empty SD-ID");
        }
        let mut params = Map::new();
        loop {
            if let Some(r) = after.strip_prefix(']') {
                after = r;
                break;
            }
            let r = after
                .strip_prefix(' ')
                .ok_or("expected space or ] in structured data")?;
            let (name, r) = r.split_once('=').ok_or("expected PARAM-NAME=\"value\"")?;
            if name.is_empty() || name.contains([' ', ']', '"']) {
                return Err("invalid PARAM-NAME");
            }
            let (value, r) =
                text::quoted(r, &['"', '\\', ']']).ok_or("expected quoted PARAM-VALUE")?;
            params.insert(name.to_owned(), Value::from(value));
            after = r;
        }
        out.insert(id.to_owned(), Value::Object(params));
        rest = after;
    }
    Ok((Some(out), rest))
}

/// `<PRI>Mmm dd hh:mm:ss [HOSTNAME] [TAG[\[PID\]]:] MSG`. An RFC 3339
/// timestamp is accepted in place of the BSD one.
pub(crate) fn parse_3164(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(F3164, reason);
    let (facility, severity, rest) = pri(line).map_err(bad)?;
    let (event_time, rest) = match rest.get(..15).and_then(|s| time::parse_bsd(s, fallback)) {
        Some(t) => match rest.get(15..).unwrap_or("") {
            "" => (t, ""),
            r => (
                t,
                r.strip_prefix(' ')
                    .ok_or_else(|| bad("expected space after timestamp"))?,
            ),
        },
        None => {
            let (tok, r) = text::token(rest).ok_or_else(|| bad("missing timestamp"))?;
            let t = time::parse_str(tok)
                .filter(|_| tok.contains('T'))
                .ok_or_else(|| bad("expected Mmm dd hh:mm:ss timestamp"))?;
            (t, r)
        }
    };

    // HOSTNAME is absent when the first word already looks like a tag (an IP
    // address is always a hostname, even an IPv6 one full of colons).
    let (host, rest) = match text::token(rest) {
        Some((first, after)) if fields::parse_ip(first).is_some() || tag_prefix(rest).is_none() => {
            (Some(first), after)
        }
        _ => (None, rest),
    };
    let (tag, pid, message) = match tag_prefix(rest) {
        Some((tag, pid, msg)) => (Some(tag), pid, msg),
        None => (None, None, rest),
    };

    let mut r = new_record(SourceType::Syslog3164, event_time, message.to_owned(), raw);
    r.level = Some(level::from_syslog(severity));
    r.host = host.map(str::to_owned);
    r.service = tag.map(str::to_owned);
    r.attributes
        .insert("facility".into(), Value::from(facility));
    if let Some(p) = pid {
        r.attributes.insert("pid".into(), Value::from(p));
    }
    Ok(r)
}

/// `tag: msg` or `tag[pid]: msg` → (tag, pid, msg).
fn tag_prefix(s: &str) -> Option<(&str, Option<&str>, &str)> {
    let end = s.find([':', '[', ' '])?;
    let (tag, rest) = s.split_at_checked(end)?;
    let valid = (1..=48).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if !valid {
        return None;
    }
    let (pid, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (pid, r) = r.split_once(']')?;
            if pid.is_empty() || pid.len() > 32 || pid.contains(' ') {
                return None;
            }
            (Some(pid), r)
        }
        None => (None, rest),
    };
    let msg = rest.strip_prefix(':')?;
    Some((tag, pid, msg.strip_prefix(' ').unwrap_or(msg)))
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, fallback, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn rfc5424_example() {
        let line = "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \u{feff}'su root' failed for lonvick on /dev/pts/8";
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::Syslog5424);
        assert_eq!(r.event_time, utc("2003-10-11T22:14:15.003Z"));
        assert_eq!(r.level, Some(Level::Critical));
        assert_eq!(r.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(r.service.as_deref(), Some("su"));
        assert_eq!(r.message, "'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(r.attributes["facility"], json!(4));
        assert_eq!(r.attributes["msgid"], json!("ID47"));
        assert!(!r.attributes.contains_key("procid"));
        assert_eq!(
            r.attributes["sd"],
            json!({"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}})
        );
    }

    #[test]
    fn rfc5424_nil_values_multiple_sd_and_escapes() {
        let line = r#"<165>1 - - - 8710 - [a@1 x="q\"uo\]te\\"][b@2] msg"#;
        let r = parse1(line, Some("rfc5424"));
        assert_eq!(r.event_time, fallback());
        assert_eq!(r.level, Some(Level::Notice));
        assert_eq!(r.host, None);
        assert_eq!(r.service, None);
        assert_eq!(r.message, "msg");
        assert_eq!(r.attributes["procid"], json!("8710"));
        assert_eq!(
            r.attributes["sd"],
            json!({"a@1": {"x": "q\"uo]te\\"}, "b@2": {}})
        );

        let r = parse1("<0>1 2024-05-01T12:00:00+02:00 h a p m -", Some("syslog"));
        assert_eq!(r.event_time, utc("2024-05-01T10:00:00Z"));
        assert_eq!(r.level, Some(Level::Fatal));
        assert_eq!(r.message, "");
        assert!(!r.attributes.contains_key("sd"));
    }

    #[test]
    fn rfc5424_malformed() {
        for line in [
            "<192>1 - - - - - -",
            "<34>1 2003-10-11 mymachine su - ID47 - msg",
            "<34>1 - - - - -",
            "<34>1 - - - - - x",
            "<34>1 - - - - - [unterminated",
            "<34>1 - - - - - [id x=unquoted]",
            "<34>1 - - - - - [id x=\"v\"]junk",
            "<34>1 -  - - - - msg",
            "<3a>1 - - - - - -",
            "<>1 - - - - - -",
            "34>1 - - - - - -",
        ] {
            assert_eq!(
                err_class(line, Some("syslog5424")),
                "invalid_line",
                "{line}"
            );
            assert_eq!(err_class(line, Some("syslog")), "invalid_line", "{line}");
        }
    }

    #[test]
    fn rfc3164_example() {
        let line = "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8";
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::Syslog3164);
        // fallback is 2024-05-01, so October goes to the previous year.
        assert_eq!(r.event_time, utc("2023-10-11T22:14:15Z"));
        assert_eq!(r.level, Some(Level::Critical));
        assert_eq!(r.host.as_deref(), Some("mymachine"));
        assert_eq!(r.service.as_deref(), Some("su"));
        assert_eq!(r.message, "'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(r.attributes["facility"], json!(4));
    }

    #[test]
    fn rfc3164_variants() {
        let r = parse1(
            "<13>Apr  5 01:02:03 host1 sshd[4242]: Accepted publickey",
            None,
        );
        assert_eq!(r.event_time, utc("2024-04-05T01:02:03Z"));
        assert_eq!(r.level, Some(Level::Notice));
        assert_eq!(r.host.as_deref(), Some("host1"));
        assert_eq!(r.service.as_deref(), Some("sshd"));
        assert_eq!(r.attributes["pid"], json!("4242"));
        assert_eq!(r.message, "Accepted publickey");

        // IPv6 hostname.
        let r = parse1("<13>Apr  5 01:02:03 2001:db8::1 kernel: up", None);
        assert_eq!(r.host.as_deref(), Some("2001:db8::1"));
        assert_eq!(r.service.as_deref(), Some("kernel"));
        assert_eq!(r.message, "up");

        // No hostname.
        let r = parse1("<13>Apr  5 01:02:03 cron[1]: job done", Some("rfc3164"));
        assert_eq!(r.host, None);
        assert_eq!(r.service.as_deref(), Some("cron"));
        assert_eq!(r.message, "job done");

        // No tag.
        let r = parse1(
            "<14>Apr  5 01:02:03 host2 just a message",
            Some("syslog3164"),
        );
        assert_eq!(r.host.as_deref(), Some("host2"));
        assert_eq!(r.service, None);
        assert_eq!(r.message, "just a message");

        // RFC 3339 timestamp instead of BSD.
        let r = parse1("<14>2024-05-01T12:00:00Z host3 app: hi", Some("syslog"));
        assert_eq!(r.source_type, SourceType::Syslog3164);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.service.as_deref(), Some("app"));
    }

    #[test]
    fn rfc3164_malformed() {
        for line in [
            "<34>Octo 11 22:14:15 host su: x",
            "<34>Oct 11 22:14 host su: x",
            "<34>oops",
            "<999>Oct 11 22:14:15 host su: x",
            "<34>Oct 11 22:14:15host su: x",
            "Oct 11 22:14:15 host su: x",
        ] {
            assert_eq!(
                err_class(line, Some("syslog3164")),
                "invalid_line",
                "{line}"
            );
        }
        // Sniffed, a failed syslog parse falls through to the other formats.
        assert_eq!(parse1("<34>oops", None).source_type, SourceType::Generic);
    }
}

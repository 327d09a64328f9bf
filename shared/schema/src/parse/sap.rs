//! SAP system log / security audit log lines, in our own layout (there is no
//! public standard; modelled on the SM21 / SM20 columns, see `FORMATS.md`):
//!
//! `YYYY-MM-DD HH:MM:SS <SID> <instance> <client> <user> <tcode> <msgid> <severity> <text>`

use serde_json::Value;

use super::{ParseError, new_record, time};
use crate::record::{Level, LogRecord, SourceType};

const FORMAT: &str = "sap";

fn bad(reason: &str) -> ParseError {
    ParseError::line(FORMAT, reason)
}

pub(crate) fn parse(line: &str, raw: &str) -> Result<LogRecord, ParseError> {
    let mut parts = line.splitn(10, ' ');
    let mut next = |what: &str| parts.next().ok_or_else(|| bad(&format!("missing {what}")));
    let date = next("date")?;
    let tod = next("time")?;
    let sid = next("SID")?;
    let instance = next("instance")?;
    let client = next("client")?;
    let user = next("user")?;
    let tcode = next("transaction code")?;
    let msgid = next("message id")?;
    let severity = next("severity")?;
    let text = next("text")?;

    let event_time = time::parse_strict_date_time(date, tod)
        .ok_or_else(|| bad("expected YYYY-MM-DD HH:MM:SS"))?;
    if !valid_sid(sid) {
        return Err(bad(
            "SID must be 3 uppercase letters/digits starting with a letter",
        ));
    }
    if !(1..=40).contains(&instance.len())
        || !instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(bad("instance must be 1-40 of [A-Za-z0-9_.-]"));
    }
    if client.len() != 3 || !client.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("client must be 3 digits"));
    }
    if !dash_or(user, 12, |b| {
        b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
    }) {
        return Err(bad("user must be - or 1-12 of [A-Z0-9_.-]"));
    }
    if !dash_or(tcode, 20, |b| {
        b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'_' | b'/')
    }) {
        return Err(bad("transaction code must be - or 1-20 of [A-Z0-9_/]"));
    }
    if msgid.len() != 3
        || !msgid
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(bad("message id must be 3 uppercase letters/digits"));
    }
    let level = match severity {
        "I" => Level::Info,
        "W" => Level::Warn,
        "E" => Level::Error,
        "A" => Level::Critical,
        "S" => Level::Warn,
        _ => return Err(bad("severity must be one of I W E A S")),
    };
    if text.trim().is_empty() {
        return Err(bad("missing text"));
    }

    let mut r = new_record(SourceType::SapSyslog, event_time, text.to_owned(), raw);
    r.level = Some(level);
    r.service = Some(format!("sap/{sid}"));
    r.host = Some(instance.to_owned());
    let a = &mut r.attributes;
    a.insert("sid".into(), Value::from(sid));
    a.insert("client".into(), Value::from(client));
    if user != "-" {
        a.insert("user".into(), Value::from(user));
    }
    if tcode != "-" {
        a.insert("tcode".into(), Value::from(tcode));
    }
    a.insert("msgid".into(), Value::from(msgid));
    a.insert("severity_code".into(), Value::from(severity));
    Ok(r)
}

fn valid_sid(sid: &str) -> bool {
    let b = sid.as_bytes();
    b.len() == 3
        && b.first().is_some_and(u8::is_ascii_uppercase)
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `-`, or 1..=max bytes all satisfying `ok`.
fn dash_or(s: &str, max: usize, ok: impl Fn(u8) -> bool) -> bool {
    s == "-" || ((1..=max).contains(&s.len()) && s.bytes().all(ok))
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn audit_line() {
        let line = "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed (reason=1, type=A)";
        let r = parse1(line, None);
        assert_eq!(r.source_type, SourceType::SapSyslog);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.service.as_deref(), Some("sap/PRD"));
        assert_eq!(r.host.as_deref(), Some("app01_PRD_00"));
        assert_eq!(r.message, "Logon failed (reason=1, type=A)");
        assert_eq!(r.attributes["client"], json!("100"));
        assert_eq!(r.attributes["user"], json!("JSMITH"));
        assert_eq!(r.attributes["tcode"], json!("SU01"));
        assert_eq!(r.attributes["msgid"], json!("AU2"));
        assert_eq!(r.attributes["severity_code"], json!("E"));
        assert!(r.http.is_none());
    }

    #[test]
    fn severities_and_dashes() {
        for (sev, level) in [
            ("I", Level::Info),
            ("W", Level::Warn),
            ("E", Level::Error),
            ("A", Level::Critical),
            ("S", Level::Warn),
        ] {
            let line =
                format!("2024-05-01 23:59:59 QA1 sapqa_QA1_01 000 - - BU4 {sev} Ünïcode text 🚀");
            let r = parse1(&line, Some("sap-audit"));
            assert_eq!(r.level, Some(level), "{sev}");
            assert_eq!(r.message, "Ünïcode text 🚀");
            assert!(!r.attributes.contains_key("user"));
            assert!(!r.attributes.contains_key("tcode"));
        }
    }

    #[test]
    fn malformed_lines() {
        let good = "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed";
        assert!(crate::parse(good, Some("sap"), crate::parse::tests::fallback()).is_ok());
        for line in [
            "2024-05-01 12:00:00 prd app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed",
            "2024-05-01 12:00:00 1RD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed",
            "2024-05-01 12:00:00 PRD app01_PRD_00 10 JSMITH SU01 AU2 E Logon failed",
            "2024-05-01 12:00:00 PRD app01_PRD_00 100 jsmith SU01 AU2 E Logon failed",
            "2024-05-01 12:00:00 PRD app01_PRD_00 100 VERYLONGUSERNAME SU01 AU2 E Logon failed",
            "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH su01 AU2 E Logon failed",
            "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU22 E Logon failed",
            "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 X Logon failed",
            "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E",
            "2024-05-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E ",
            "2024-05-01  12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed",
            "2024-13-01 12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed",
            "2024-05-01T12:00:00 PRD app01_PRD_00 100 JSMITH SU01 AU2 E Logon failed",
            "2024-05-01 12:00:00 PRD app01 PRD 100 JSMITH SU01 AU2 E Logon failed",
        ] {
            assert_eq!(err_class(line, Some("sap")), "invalid_line", "{line}");
        }
    }

    #[test]
    fn failing_sap_check_falls_through_when_sniffing() {
        let r = parse1(
            "2024-05-01 12:00:00 prd app01 100 JSMITH SU01 AU2 E Logon failed",
            None,
        );
        assert_eq!(r.source_type, SourceType::Generic);
    }
}

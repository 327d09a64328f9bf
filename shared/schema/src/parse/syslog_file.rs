//! Syslog as written to files by rsyslog, syslog-ng and macOS syslogd: no
//! `<PRI>`. `Mmm dd hh:mm:ss host program[pid]: message` (the year comes
//! from the Kafka timestamp), or with the RFC 3339 timestamp rsyslog writes
//! with `RSYSLOG_FileFormat`. Linux `auth.log` / `secure` and macOS
//! `system.log` use the same layout.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ParseError, level, new_record, stamp, text};
use crate::record::{Level, LogRecord, SourceType};

pub(crate) const FORMAT: &str = "syslog-file";

/// Strict parse of one line.
pub(crate) fn parse(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(FORMAT, reason);
    let (event_time, rest) = header_time(line, fallback).ok_or_else(|| {
        bad("expected a Mmm dd hh:mm:ss or RFC 3339 timestamp followed by a space")
    })?;
    let (host, rest) = text::token(rest).ok_or_else(|| bad("missing hostname"))?;
    if !valid_host(host) {
        return Err(bad("invalid hostname"));
    }
    let tag = program(rest)
        .ok_or_else(|| bad("expected program[pid]: or program: after the hostname"))?;
    let mut r = new_record(
        SourceType::SyslogFile,
        event_time,
        tag.message.to_owned(),
        raw,
    );
    r.host = Some(host.to_owned());
    r.service = Some(tag.name.to_owned());
    r.level = tag
        .level
        .and_then(level::from_name)
        .or_else(|| level::sniff_text(tag.message));
    if let Some(pid) = tag.pid {
        r.attributes.insert("pid".into(), Value::from(pid));
    }
    if let Some(sender) = tag.sender {
        r.attributes.insert("sender".into(), Value::from(sender));
    }
    auth_fields(&mut r);
    Ok(r)
}

/// The line's timestamp and the text after the following space: BSD
/// (`Mmm dd hh:mm:ss`) or RFC 3339 with a `T` (RSYSLOG_FileFormat).
pub(crate) fn header_time(line: &str, fallback: DateTime<Utc>) -> Option<(DateTime<Utc>, &str)> {
    let l = stamp::leading(line, fallback)?;
    let iso_t = l.layout == stamp::Layout::Iso && line.as_bytes().get(10) == Some(&b'T');
    if l.layout != stamp::Layout::Bsd && !iso_t {
        return None;
    }
    // BSD days are space padded: "Apr  5" is 15 bytes like "Apr 15".
    Some((l.time, l.rest.strip_prefix(' ')?))
}

fn valid_host(host: &str) -> bool {
    host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'%'))
}

pub(crate) struct Tag<'a> {
    pub name: &'a str,
    pub pid: Option<&'a str>,
    /// macOS: `(com.apple.xpc[123])` sender after the pid.
    pub sender: Option<&'a str>,
    /// macOS: `<Notice>` before the colon.
    pub level: Option<&'a str>,
    pub message: &'a str,
}

/// `program[pid]: msg`, `program: msg`, `program[pid] (sender): msg`,
/// `program[pid] <Level>: msg`. The program name may hold `(`, `)`, `/`,
/// `.`, `-`, `_` (`sshd(pam_unix)`, `postfix/smtpd`).
pub(crate) fn program(s: &str) -> Option<Tag<'_>> {
    let end = s.find(['[', ':', ' '])?;
    let (name, mut rest) = s.split_at_checked(end)?;
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'(' | b')' | b'@')
        });
    if !ok {
        return None;
    }
    let mut tag = Tag {
        name,
        pid: None,
        sender: None,
        level: None,
        message: "",
    };
    if let Some(r) = rest.strip_prefix('[') {
        let (pid, r) = r.split_once(']')?;
        if pid.is_empty() || pid.len() > 20 || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        tag.pid = Some(pid);
        rest = r;
    }
    if let Some(r) = rest.strip_prefix(" (") {
        let (sender, r) = r.split_once("):")?;
        if sender.contains(' ') {
            return None;
        }
        tag.sender = Some(sender);
        rest = r;
    } else if let Some(r) = rest.strip_prefix(" <") {
        let (lvl, r) = r.split_once(">:")?;
        level::from_name(lvl)?;
        tag.level = Some(lvl);
        rest = r;
    } else {
        rest = rest.strip_prefix(':')?;
    }
    tag.message = rest.strip_prefix(' ').unwrap_or(rest);
    Some(tag)
}

/// OpenSSH / PAM lines in auth.log and secure: user and source address.
fn auth_fields(r: &mut LogRecord) {
    let m = r.message.as_str();
    let failure = m.starts_with("Failed ")
        || m.starts_with("Invalid user ")
        || m.contains("authentication failure");
    let mut found: Vec<(&str, String)> = Vec::new();
    if let Some(i) = m.find(" for ") {
        let after = m.get(i + 5..).unwrap_or("");
        let after = after.strip_prefix("invalid user ").unwrap_or(after);
        if let Some((user, _)) = after.split_once(" from ") {
            found.push(("user", user.to_owned()));
        }
    }
    if let Some(i) = m.find(" from ")
        && let Some((ip, _)) = text::word(m.get(i + 6..).unwrap_or(""))
        && super::fields::parse_ip(ip).is_some()
    {
        found.push(("source_ip", ip.to_owned()));
    }
    for (k, v) in found {
        r.attributes.insert(k.into(), Value::from(v));
    }
    if failure && r.level.is_none() {
        r.level = Some(Level::Warn);
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, fallback, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn linux_messages_and_auth() {
        let r = parse1(
            "Mar 11 10:00:01 web-1 sshd[4242]: Failed password for invalid user admin from 203.0.113.7 port 52211 ssh2",
            None,
        );
        assert_eq!(r.source_type, SourceType::SyslogFile);
        assert_eq!(r.event_time, utc("2024-03-11T10:00:01Z"));
        assert_eq!(r.host.as_deref(), Some("web-1"));
        assert_eq!(r.service.as_deref(), Some("sshd"));
        assert_eq!(r.attributes["pid"], json!("4242"));
        assert_eq!(r.attributes["user"], json!("admin"));
        assert_eq!(r.attributes["source_ip"], json!("203.0.113.7"));
        assert_eq!(r.level, Some(Level::Warn));
        assert!(r.message.starts_with("Failed password"));

        let r = parse1(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0",
            Some("syslog-file"),
        );
        assert_eq!(r.service.as_deref(), Some("sshd(pam_unix)"));
        let r = parse1(
            "Apr  5 01:02:03 host1 kernel: [ 0.000000] Linux version 6.1",
            None,
        );
        assert_eq!(r.service.as_deref(), Some("kernel"));
        assert_eq!(r.message, "[ 0.000000] Linux version 6.1");
    }

    #[test]
    fn rsyslog_file_format_and_macos() {
        let r = parse1(
            "2024-05-01T12:00:00.123456+02:00 db-2 postgres[77]: checkpoint complete",
            None,
        );
        assert_eq!(r.source_type, SourceType::SyslogFile);
        assert_eq!(r.event_time, utc("2024-05-01T10:00:00.123456Z"));
        assert_eq!(r.service.as_deref(), Some("postgres"));

        let r = parse1(
            "Oct 30 10:26:11 MacBook-Pro com.apple.xpc.launchd[1] (com.apple.quicklook[1234]): Service exited with abnormal code: 1",
            None,
        );
        assert_eq!(r.service.as_deref(), Some("com.apple.xpc.launchd"));
        assert_eq!(r.attributes["sender"], json!("com.apple.quicklook[1234]"));
        assert_eq!(r.message, "Service exited with abnormal code: 1");
        let r = parse1("Oct 30 10:26:11 mac kernel[0] <Notice>: wake", None);
        assert_eq!(r.level, Some(Level::Notice));
    }

    #[test]
    fn december_line_read_in_january() {
        let jan = utc("2025-01-01T00:00:03Z");
        let r = crate::parse("Dec 31 23:59:59 h cron[1]: x", None, jan).unwrap();
        assert_eq!(r[0].event_time, utc("2024-12-31T23:59:59Z"));
        let _ = fallback();
    }

    #[test]
    fn truncated_and_malformed() {
        for line in [
            "Mar 11 10:00:01",
            "Mar 11 10:00:01 web-1",
            "Mar 11 10:00:01 web-1 sshd[4242",
            "Mar 11 10:00:01 web-1 sshd[x]: m",
            "Mar 11 10:00:01 web-1 no colon here",
            "Mar 41 10:00:01 web-1 sshd: m",
            "2024-05-01 12:00:00 web-1 sshd: m",
            "Mar 11 10:00:01 we|b sshd: m",
        ] {
            assert_eq!(
                err_class(line, Some("syslog-file")),
                "invalid_line",
                "{line}"
            );
        }
    }
}

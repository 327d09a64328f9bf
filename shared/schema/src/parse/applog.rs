//! The default text layouts of logging libraries: log4j/logback (and the
//! Spark/Hadoop/ZooKeeper variants), Python `logging`, Go `log`, klog/glog
//! and Android logcat (`threadtime`).

use chrono::{DateTime, NaiveTime, Utc};
use serde_json::Value;

use super::stamp::{self, Layout};
use super::{ParseError, level, new_record, text};
use crate::record::{Level, LogRecord, SourceType};

pub(crate) const LOG4J: &str = "log4j";
pub(crate) const PYTHON: &str = "python";
pub(crate) const GO_LOG: &str = "go-log";
pub(crate) const KLOG: &str = "klog";
pub(crate) const LOGCAT: &str = "logcat";

/// The level words Java layouts print (`%p` / `%level`), upper case.
fn java_level(word: &str) -> Option<Level> {
    Some(match word {
        "TRACE" | "FINEST" | "FINER" => Level::Trace,
        "DEBUG" | "FINE" | "CONFIG" => Level::Debug,
        "INFO" => Level::Info,
        "WARN" | "WARNING" => Level::Warn,
        "ERROR" | "SEVERE" => Level::Error,
        "FATAL" => Level::Fatal,
        _ => return None,
    })
}

/// `[thread]` with nested brackets (`[QuorumPeer[myid=1]/0.0.0.0:2181]`).
fn bracketed(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('[')?;
    let mut depth = 1usize;
    for (i, c) in body.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some((body.get(..i)?, body.get(i + 1..)?));
                }
            }
            _ => {}
        }
    }
    None
}

fn is_logger(s: &str) -> bool {
    (1..=200).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'$' | b'-' | b'@' | b':')
        })
}

/// log4j / logback: a leading timestamp (`yyyy-MM-dd HH:mm:ss,SSS`, ISO 8601,
/// `yy/MM/dd HH:mm:ss`, `HH:mm:ss.SSS`), then in the header the level word
/// and optionally `[thread]` in either order, a pid and `---` (Spring Boot),
/// then the logger ending in `:` or followed by ` - ` / ` : `, then the
/// message.
pub(crate) fn parse_log4j(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(LOG4J, reason);
    let l = stamp::leading(line, fallback).ok_or_else(|| bad("missing leading timestamp"))?;
    if !matches!(
        l.layout,
        Layout::Iso | Layout::SlashYear2 | Layout::TimeOnly | Layout::Compact
    ) {
        return Err(bad("unsupported timestamp layout"));
    }
    let mut rest = l.rest.trim_start();
    // ZooKeeper: `%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m`
    if let Some(r) = rest.strip_prefix("- ") {
        rest = r.trim_start();
    }
    let mut lvl = None;
    let mut thread = None;
    let mut pid = None;
    let mut app = None;
    // Up to six header items before the logger.
    for _ in 0..6 {
        rest = rest.trim_start();
        if let Some((t, r)) = bracketed(rest) {
            if thread.is_some() {
                // Spring Boot 3: `[app] [thread]`: the first one was the app.
                app = thread;
            }
            thread = Some(t.trim());
            rest = r.trim_start();
            continue;
        }
        let Some((word, r)) = text::word(rest) else {
            break;
        };
        if lvl.is_none()
            && let Some(found) = java_level(word)
        {
            lvl = Some(found);
            rest = r;
            continue;
        }
        if lvl.is_some() && pid.is_none() && word.bytes().all(|b| b.is_ascii_digit()) {
            pid = Some(word);
            rest = r;
            continue;
        }
        if word == "---" {
            rest = r.trim_start();
            continue;
        }
        break;
    }
    let level = lvl.ok_or_else(|| bad("missing level word (TRACE..FATAL)"))?;
    // Hadoop `%c: %m`, log4j `%c - %m`, Spring Boot `%c : %m`, ZooKeeper
    // (no logger, thread then ` - `).
    let rest = rest.trim_start();
    let (logger, message) = if let Some(m) = rest.strip_prefix("- ") {
        (None, m)
    } else {
        let (word, r) = text::word(rest).ok_or_else(|| bad("missing logger"))?;
        if let Some(name) = word.strip_suffix(':').filter(|w| is_logger(w)) {
            (Some(name), r)
        } else if is_logger(word) {
            let r = r.trim_start();
            let m = r
                .strip_prefix("- ")
                .or_else(|| r.strip_prefix(": "))
                .or_else(|| (r == "-" || r == ":").then_some(""))
                .ok_or_else(|| bad("expected ` - ` or `:` after the logger"))?;
            (Some(word), m)
        } else {
            return Err(bad("invalid logger name"));
        }
    };
    if thread.is_none() && logger.is_none() {
        return Err(bad("neither thread nor logger"));
    }
    let mut r = new_record(SourceType::Log4j, l.time, message.to_owned(), raw);
    r.level = Some(level);
    if let Some(t) = thread {
        r.attributes.insert("thread".into(), Value::from(t));
    }
    if let Some(lg) = logger {
        r.attributes.insert("logger".into(), Value::from(lg));
    }
    if let Some(p) = pid {
        r.attributes.insert("pid".into(), Value::from(p));
    }
    if let Some(a) = app.filter(|a| !a.is_empty()) {
        r.service = Some(a.to_owned());
    }
    Ok(r)
}

fn python_level(word: &str) -> Option<Level> {
    Some(match word {
        "DEBUG" => Level::Debug,
        "INFO" => Level::Info,
        "WARNING" | "WARN" => Level::Warn,
        "ERROR" => Level::Error,
        "CRITICAL" | "FATAL" => Level::Critical,
        _ => return None,
    })
}

/// Python `logging`: the default `LEVEL:logger:message` (`basicConfig()`),
/// or `%(asctime)s - %(name)s - %(levelname)s - %(message)s` (the cookbook
/// layout), or `%(asctime)s %(levelname)s %(name)s: %(message)s`... only the
/// first two are accepted (the third reads as log4j).
pub(crate) fn parse_python(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(PYTHON, reason);
    let (time, logger, lvl, message) =
        if let Some(l) = stamp::leading(line, fallback).filter(|l| l.layout == Layout::Iso) {
            let rest = l
                .rest
                .strip_prefix(" - ")
                .ok_or_else(|| bad("expected ` - ` after asctime"))?;
            let (name, rest) = rest
                .split_once(" - ")
                .ok_or_else(|| bad("expected `name - LEVEL - message`"))?;
            let (lvl, message) = rest
                .split_once(" - ")
                .or_else(|| rest.strip_suffix(" -").map(|l| (l, "")))
                .ok_or_else(|| bad("expected `LEVEL - message`"))?;
            (Some(l.time), name, lvl, message)
        } else {
            let (lvl, rest) = line
                .split_once(':')
                .ok_or_else(|| bad("expected LEVEL:logger:message"))?;
            let (name, message) = rest
                .split_once(':')
                .ok_or_else(|| bad("expected LEVEL:logger:message"))?;
            (None, name, lvl, message)
        };
    let level = python_level(lvl).ok_or_else(|| bad("unknown level name"))?;
    if name_invalid(logger) {
        return Err(bad("invalid logger name"));
    }
    let mut r = new_record(
        SourceType::PythonLogging,
        time.unwrap_or(fallback),
        message.to_owned(),
        raw,
    );
    r.level = Some(level);
    r.attributes.insert("logger".into(), Value::from(logger));
    Ok(r)
}

fn name_invalid(name: &str) -> bool {
    name.is_empty()
        || name.len() > 200
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'<' | b'>'))
}

/// Go `log` with the standard flags: `yyyy/MM/dd HH:mm:ss[.micros] [file:line: ]message`.
/// (nginx's error log shares the timestamp; it is tried first.)
pub(crate) fn parse_go_log(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(GO_LOG, reason);
    let l = stamp::leading(line, fallback)
        .filter(|l| l.layout == Layout::SlashYear4)
        .ok_or_else(|| bad("expected yyyy/MM/dd HH:mm:ss"))?;
    let message = l
        .rest
        .strip_prefix(' ')
        .ok_or_else(|| bad("expected a space after the time"))?;
    if message.trim().is_empty() {
        return Err(bad("empty message"));
    }
    let mut r = new_record(SourceType::GoLog, l.time, message.to_owned(), raw);
    // Lshortfile / Llongfile: `file.go:23: message`.
    if let Some((file, msg)) = message.split_once(": ")
        && let Some((name, lineno)) = file.rsplit_once(':')
        && name.ends_with(".go")
        && lineno.bytes().all(|b| b.is_ascii_digit())
        && !lineno.is_empty()
    {
        r.attributes.insert("source".into(), Value::from(file));
        r.message = msg.to_owned();
    }
    r.level = level::sniff_text(&r.message);
    Ok(r)
}

fn letter_level(c: u8) -> Option<Level> {
    Some(match c {
        b'V' => Level::Trace,
        b'D' => Level::Debug,
        b'I' => Level::Info,
        b'W' => Level::Warn,
        b'E' => Level::Error,
        b'F' | b'A' => Level::Fatal,
        _ => return None,
    })
}

/// klog/glog: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`, L one of
/// `IWEF`; the year comes from the Kafka timestamp.
pub(crate) fn parse_klog(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(KLOG, reason);
    let b = line.as_bytes();
    let lvl = b
        .first()
        .filter(|c| matches!(c, b'I' | b'W' | b'E' | b'F'))
        .and_then(|c| letter_level(*c))
        .ok_or_else(|| bad("expected I, W, E or F"))?;
    let md = line.get(1..5).ok_or_else(|| bad("truncated"))?;
    if !md.bytes().all(|c| c.is_ascii_digit()) || b.get(5) != Some(&b' ') {
        return Err(bad("expected mmdd"));
    }
    let month: u32 = md.get(..2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let day: u32 = md.get(2..).and_then(|s| s.parse().ok()).unwrap_or(0);
    let tod = line.get(6..14).ok_or_else(|| bad("truncated"))?;
    let t = NaiveTime::parse_from_str(tod, "%H:%M:%S").map_err(|_| bad("expected hh:mm:ss"))?;
    let after = line.get(14..).unwrap_or("");
    let l = stamp::with_inferred_year(month, day, t, after, fallback, Layout::MonthDay)
        .ok_or_else(|| bad("invalid date"))?;
    let (thread, rest) = text::word(l.rest).ok_or_else(|| bad("missing thread id"))?;
    if !thread.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("thread id must be digits"));
    }
    let (source, message) = rest
        .trim_start()
        .split_once("] ")
        .or_else(|| rest.trim_start().strip_suffix(']').map(|s| (s, "")))
        .ok_or_else(|| bad("expected file:line]"))?;
    if !source.contains(':') || source.contains(' ') {
        return Err(bad("expected file:line]"));
    }
    let mut r = new_record(SourceType::Klog, l.time, message.to_owned(), raw);
    r.level = Some(lvl);
    r.attributes.insert("thread".into(), Value::from(thread));
    r.attributes.insert("source".into(), Value::from(source));
    Ok(r)
}

/// Android `logcat -v threadtime`: `MM-dd HH:mm:ss.SSS pid tid L tag: msg`.
pub(crate) fn parse_logcat(
    line: &str,
    raw: &str,
    fallback: DateTime<Utc>,
) -> Result<LogRecord, ParseError> {
    let bad = |reason: &str| ParseError::line(LOGCAT, reason);
    let l = stamp::leading(line, fallback)
        .filter(|l| l.layout == Layout::MonthDay)
        .ok_or_else(|| bad("expected MM-dd HH:mm:ss.SSS"))?;
    let (pid, rest) = text::word(l.rest).ok_or_else(|| bad("missing pid"))?;
    let (tid, rest) = text::word(rest).ok_or_else(|| bad("missing tid"))?;
    let (prio, rest) = text::word(rest).ok_or_else(|| bad("missing priority"))?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(pid) || !digits(tid) {
        return Err(bad("pid and tid must be digits"));
    }
    let lvl = match prio.as_bytes() {
        [c] => letter_level(*c),
        _ => None,
    }
    .ok_or_else(|| bad("priority must be one of VDIWEFA"))?;
    let rest = rest.trim_start();
    // The tag may contain spaces; it ends at the first `: `.
    let (tag, message) = rest
        .split_once(": ")
        .or_else(|| rest.strip_suffix(':').map(|t| (t, "")))
        .ok_or_else(|| bad("expected `tag: message`"))?;
    let tag = tag.trim_end();
    if tag.is_empty() {
        return Err(bad("empty tag"));
    }
    let mut r = new_record(SourceType::Logcat, l.time, message.to_owned(), raw);
    r.level = Some(lvl);
    r.service = Some(tag.to_owned());
    r.attributes.insert("pid".into(), Value::from(pid));
    r.attributes.insert("tid".into(), Value::from(tid));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, parse1, utc};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn log4j_layouts() {
        let r = parse1(
            "2024-05-01 12:00:00,123 ERROR [main] com.example.PaymentService - charge failed",
            None,
        );
        assert_eq!(r.source_type, SourceType::Log4j);
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00.123Z"));
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.attributes["thread"], json!("main"));
        assert_eq!(r.attributes["logger"], json!("com.example.PaymentService"));
        assert_eq!(r.message, "charge failed");

        let r = parse1(
            "2024-05-01 12:00:00,123 [pool-1-thread-3] WARN  org.x.Y - slow",
            None,
        );
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.attributes["thread"], json!("pool-1-thread-3"));

        let r = parse1(
            "24/05/01 12:00:00 INFO SparkContext: Running Spark version 3.5.1",
            None,
        );
        assert_eq!(r.event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(r.attributes["logger"], json!("SparkContext"));
        assert_eq!(r.message, "Running Spark version 3.5.1");

        let r = parse1(
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
            Some("log4j"),
        );
        assert_eq!(
            r.attributes["thread"],
            json!("QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774")
        );
        assert_eq!(r.message, "Notification time out: 3200");

        let r = parse1(
            "2024-05-01T12:00:00.123+02:00  INFO 4242 --- [demo] [           main] c.e.demo.DemoApplication                 : Started DemoApplication in 1.2 seconds",
            Some("log4j"),
        );
        assert_eq!(r.source_type, SourceType::Log4j);
        assert_eq!(r.service.as_deref(), Some("demo"));
        assert_eq!(r.attributes["pid"], json!("4242"));
        assert_eq!(r.attributes["logger"], json!("c.e.demo.DemoApplication"));
    }

    #[test]
    fn log4j_malformed() {
        for line in [
            "2024-05-01 12:00:00,123",
            "2024-05-01 12:00:00,123 ERROR",
            "2024-05-01 12:00:00,123 LOUD [main] a.B - x",
            "2024-05-01 12:00:00,123 ERROR [main",
            "yesterday ERROR [main] a.B - x",
        ] {
            assert_eq!(err_class(line, Some("log4j")), "invalid_line", "{line}");
        }
    }

    #[test]
    fn python() {
        let r = parse1("WARNING:root:Watch out!", None);
        assert_eq!(r.source_type, SourceType::PythonLogging);
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.attributes["logger"], json!("root"));
        assert_eq!(r.message, "Watch out!");
        let r = parse1(
            "2005-03-19 15:10:26,618 - simple_example - CRITICAL - critical message",
            None,
        );
        assert_eq!(r.source_type, SourceType::PythonLogging);
        assert_eq!(r.event_time, utc("2005-03-19T15:10:26.618Z"));
        assert_eq!(r.level, Some(Level::Critical));
        for line in [
            "WARNING:root",
            "LOUD:root:x",
            "2005-03-19 15:10:26,618 - a - NOPE - m",
            "WARNING:bad name:x",
        ] {
            assert_eq!(err_class(line, Some("python")), "invalid_line", "{line}");
        }
    }

    #[test]
    fn go_log() {
        let r = parse1("2009/11/10 23:00:00 Hello, log", None);
        assert_eq!(r.source_type, SourceType::GoLog);
        assert_eq!(r.event_time, utc("2009-11-10T23:00:00Z"));
        let r = parse1("2009/11/10 23:00:00.123456 main.go:23: ERROR boom", None);
        assert_eq!(r.attributes["source"], json!("main.go:23"));
        assert_eq!(r.message, "ERROR boom");
        assert_eq!(r.level, Some(Level::Error));
        for line in [
            "2009/11/10 23:00:00",
            "2009/11/10 23:00",
            "2009/13/10 23:00:00 x",
        ] {
            assert_eq!(err_class(line, Some("go-log")), "invalid_line", "{line}");
        }
    }

    #[test]
    fn klog() {
        let r = parse1(
            "I0102 15:04:05.123456    1234 controller.go:42] \"Pod status updated\" pod=\"kube-system/dns\"",
            None,
        );
        assert_eq!(r.source_type, SourceType::Klog);
        assert_eq!(r.event_time, utc("2024-01-02T15:04:05.123456Z"));
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.attributes["source"], json!("controller.go:42"));
        assert_eq!(r.attributes["thread"], json!("1234"));
        for line in [
            "I0102 15:04:05.123456",
            "X0102 15:04:05.1 1 a.go:1] m",
            "I0102 15:04:05.1 x a.go:1] m",
            "I1302 15:04:05.1 1 a.go:1] m",
        ] {
            assert_eq!(err_class(line, Some("klog")), "invalid_line", "{line}");
        }
    }

    #[test]
    fn logcat() {
        let r = parse1(
            "04-30 12:00:00.123  1234  5678 E AndroidRuntime: FATAL EXCEPTION: main",
            None,
        );
        assert_eq!(r.source_type, SourceType::Logcat);
        assert_eq!(r.event_time, utc("2024-04-30T12:00:00.123Z"));
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.service.as_deref(), Some("AndroidRuntime"));
        assert_eq!(r.message, "FATAL EXCEPTION: main");
        for line in [
            "04-30 12:00:00.123  1234",
            "04-30 12:00:00.123 1 2 Q t: m",
            "04-30 12:00:00.123 a 2 I t: m",
            "04-30 12:00:00.123 1 2 I no tag",
        ] {
            assert_eq!(err_class(line, Some("logcat")), "invalid_line", "{line}");
        }
    }
}

//! Mapping of the many spellings of a severity onto [`Level`].

use crate::record::Level;

/// A level name as written by logging libraries, case-insensitive.
/// Unknown names give `None`.
pub(crate) fn from_name(name: &str) -> Option<Level> {
    let name = name.trim();
    if name.is_empty() || name.len() > 16 {
        return None;
    }
    let level = match name.to_ascii_lowercase().as_str() {
        "trace" | "trc" | "finest" | "finer" | "verbose" => Level::Trace,
        "debug" | "dbg" | "fine" => Level::Debug,
        "info" | "inf" | "information" | "informational" => Level::Info,
        "notice" => Level::Notice,
        "warn" | "warning" | "wrn" => Level::Warn,
        "error" | "err" | "severe" => Level::Error,
        "crit" | "critical" => Level::Critical,
        "fatal" | "ftl" | "panic" | "emerg" | "emergency" | "alert" => Level::Fatal,
        _ => return None,
    };
    Some(level)
}

/// Syslog severity (PRI % 8).
pub(crate) fn from_syslog(severity: u8) -> Level {
    match severity {
        0 | 1 => Level::Fatal,
        2 => Level::Critical,
        3 => Level::Error,
        4 => Level::Warn,
        5 => Level::Notice,
        6 => Level::Info,
        _ => Level::Debug,
    }
}

/// 5xx → Error, 4xx → Warn, anything else → Info.
pub(crate) fn from_http_status(status: u16) -> Level {
    match status {
        500.. => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    }
}

/// Looks for a level word in free text: an all-uppercase level name
/// (`ERROR`, `WARN`, `INFO`, …) anywhere, a level name of any case in
/// brackets (`[error]`), or `level=<name>`. The leftmost hit wins.
pub(crate) fn sniff_text(text: &str) -> Option<Level> {
    for token in text.split_whitespace() {
        if let Some(inner) = token.strip_prefix('[')
            && let Some(l) = from_name(inner.trim_end_matches([']', ':', ',']))
        {
            return Some(l);
        }
        if let Some((key, value)) = token.split_once('=')
            && key.eq_ignore_ascii_case("level")
            && let Some(l) = from_name(value.trim_matches('"'))
        {
            return Some(l);
        }
        let word = token.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_uppercase())
            && let Some(l) = from_name(word)
        {
            return Some(l);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(from_name("WARNING"), Some(Level::Warn));
        assert_eq!(from_name("err"), Some(Level::Error));
        assert_eq!(from_name("Critical"), Some(Level::Critical));
        assert_eq!(from_name("crit"), Some(Level::Critical));
        assert_eq!(from_name("panic"), Some(Level::Fatal));
        assert_eq!(from_name(" info "), Some(Level::Info));
        assert_eq!(from_name("notice"), Some(Level::Notice));
        assert_eq!(from_name("trace"), Some(Level::Trace));
        assert_eq!(from_name("chatty"), None);
        assert_eq!(from_name(""), None);
    }

    #[test]
    fn syslog_and_http() {
        assert_eq!(from_syslog(0), Level::Fatal);
        assert_eq!(from_syslog(2), Level::Critical);
        assert_eq!(from_syslog(3), Level::Error);
        assert_eq!(from_syslog(4), Level::Warn);
        assert_eq!(from_syslog(5), Level::Notice);
        assert_eq!(from_syslog(6), Level::Info);
        assert_eq!(from_syslog(7), Level::Debug);
        assert_eq!(from_http_status(503), Level::Error);
        assert_eq!(from_http_status(404), Level::Warn);
        assert_eq!(from_http_status(302), Level::Info);
    }

    #[test]
    fn text() {
        assert_eq!(sniff_text("2024 ERROR something broke"), Some(Level::Error));
        assert_eq!(sniff_text("[warn] disk almost full"), Some(Level::Warn));
        assert_eq!(
            sniff_text("2024/01/01 [error] 12#0: boom"),
            Some(Level::Error)
        );
        assert_eq!(sniff_text("x level=debug y"), Some(Level::Debug));
        assert_eq!(sniff_text("WARN: then ERROR"), Some(Level::Warn));
        assert_eq!(sniff_text("no error here, just info"), None);
        assert_eq!(sniff_text(""), None);
    }
}

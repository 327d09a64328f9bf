//! Anything else: the text itself is the message.

use chrono::{DateTime, Utc};

use super::{level, new_record};
use crate::record::{LogRecord, SourceType};

/// `text` is already trimmed and non-empty. Never fails.
/// A leading timestamp in any common layout (see `stamp`) is the event time.
pub(crate) fn parse(text: &str, raw: &str, fallback: DateTime<Utc>) -> LogRecord {
    let at = super::stamp::leading(text, fallback).map_or(fallback, |l| l.time);
    let mut r = new_record(SourceType::Generic, at, text.to_owned(), raw);
    r.level = level::sniff_text(text);
    r
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, fallback, parse1};
    use crate::record::{Level, SourceType};

    #[test]
    fn plain_text() {
        let r = parse1("  2024-05-01 ERROR something exploded\n", None);
        assert_eq!(r.source_type, SourceType::Generic);
        assert_eq!(r.message, "2024-05-01 ERROR something exploded");
        assert_eq!(r.raw, "  2024-05-01 ERROR something exploded\n");
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.event_time, fallback());
        assert_eq!(r.service, None);
        assert_eq!(r.host, None);
        assert!(r.metrics.is_empty() && r.attributes.is_empty() && r.http.is_none());

        let r = parse1("hello wörld", None);
        assert_eq!(r.level, None);
        let r = parse1(
            "Exception in thread \"main\"\n\tat Foo.bar(Foo.java:1)",
            None,
        );
        assert_eq!(r.source_type, SourceType::Generic);
        assert!(r.message.contains("\n\tat Foo"));
    }

    #[test]
    fn text_header_forces_generic() {
        let r = parse1(r#"{"message":"json but declared text"}"#, Some("plain"));
        assert_eq!(r.source_type, SourceType::Generic);
        assert_eq!(r.message, r#"{"message":"json but declared text"}"#);
    }

    #[test]
    fn empty_values() {
        for v in ["", "   ", "\n\t", "\u{feff}"] {
            assert_eq!(err_class(v, None), "empty_value", "{v:?}");
            assert_eq!(err_class(v, Some("text")), "empty_value", "{v:?}");
        }
    }
}

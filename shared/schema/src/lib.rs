//! Normalized log record types and the parsers for every supported log
//! format. No IO: the ingest path hands in Kafka record values and gets
//! [`LogRecord`]s back. See `FORMATS.md` in this crate for the accepted
//! layouts.

pub mod alert;
pub mod catalog;
pub mod parse;
pub mod record;

pub use alert::{Alert, Prediction, Severity};
pub use parse::patterns::{Pattern, PatternError, Patterns};
pub use parse::{Format, ParseError, Parsed, json_kind, parse, parse_counted, parse_with};
pub use record::*;

//! CloudWatch Logs subscription messages: `{messageType, owner, logGroup,
//! logStream, subscriptionFilters, logEvents: [{id, timestamp, message}]}`,
//! as delivered (gzip, then base64) or already decoded. One record per log
//! event, each event's message parsed by the inner format; control messages
//! carry no log data and yield no records.

use std::io::Read;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{ParseError, sniff};
use crate::record::LogRecord;

pub(crate) const FORMAT: &str = "cloudwatch";

/// Decoded envelopes larger than this are refused (a gzip bomb must not
/// exhaust the function's memory); CloudWatch's own limit is 1 MiB per
/// delivery before compression.
const MAX_DECODED: u64 = 16 * 1024 * 1024;

/// The outcome of one envelope.
pub(crate) struct Expanded {
    pub records: Vec<LogRecord>,
    pub control_messages: usize,
}

/// Whether an object is a subscription message.
pub(crate) fn is_envelope(obj: &Map<String, Value>) -> bool {
    obj.contains_key("messageType") && obj.contains_key("logEvents")
}

/// Whether text is base64 of gzip (`H4sI` encodes the gzip magic `1f 8b 08`).
pub(crate) fn looks_encoded(text: &str) -> bool {
    text.starts_with("H4sI")
}

/// base64 → gunzip → JSON object.
pub(crate) fn decode(text: &str) -> Result<Map<String, Value>, ParseError> {
    let bad = |reason: String| ParseError::line(FORMAT, reason);
    let compact: String = text.split_ascii_whitespace().collect();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| bad(format!("invalid base64: {e}")))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(MAX_DECODED + 1)
        .read_to_end(&mut json)
        .map_err(|e| bad(format!("invalid gzip: {e}")))?;
    if json.len() as u64 > MAX_DECODED {
        return Err(bad(format!("decoded envelope over {MAX_DECODED} bytes")));
    }
    match serde_json::from_slice::<Value>(&json) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ParseError::schema(
            None,
            "CloudWatch envelope is not a JSON object",
        )),
        Err(e) => Err(ParseError::InvalidJson(e.to_string())),
    }
}

/// Expands a decoded envelope.
pub(crate) fn expand(
    obj: &Map<String, Value>,
    fallback: DateTime<Utc>,
) -> Result<Expanded, ParseError> {
    let string = |key: &str| -> Result<Option<&str>, ParseError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ParseError::schema(Some(key), "expected a string")),
        }
    };
    let kind = string("messageType")?.unwrap_or("");
    let events = match obj.get("logEvents") {
        Some(Value::Array(a)) => a,
        _ => return Err(ParseError::schema(Some("logEvents"), "expected an array")),
    };
    match kind {
        "CONTROL_MESSAGE" => {
            return Ok(Expanded {
                records: Vec::new(),
                control_messages: 1,
            });
        }
        "DATA_MESSAGE" => {}
        other => {
            return Err(ParseError::schema(
                Some("messageType"),
                format!(
                    "expected DATA_MESSAGE or CONTROL_MESSAGE, got {:?}",
                    super::text::truncate(other, 32)
                ),
            ));
        }
    }
    if events.is_empty() {
        return Err(ParseError::EmptyBatch);
    }
    let group = string("logGroup")?;
    let stream = string("logStream")?;
    let owner = string("owner")?;
    let mut records = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let element = |error: ParseError| ParseError::BatchElement {
            index,
            error: Box::new(error),
        };
        let Value::Object(e) = event else {
            return Err(element(ParseError::schema(
                None,
                "log event must be an object",
            )));
        };
        let message = match e.get("message") {
            Some(Value::String(s)) => s.as_str(),
            _ => {
                return Err(element(ParseError::schema(
                    Some("message"),
                    "expected a string",
                )));
            }
        };
        let at = e
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(fallback);
        let text = super::clean(message);
        if text.is_empty() {
            return Err(element(ParseError::EmptyValue));
        }
        let inner = sniff(text, message, at, true).map_err(element)?;
        for mut r in inner {
            if let Some(g) = group {
                r.attributes.insert("log_group".into(), Value::from(g));
                if r.service.is_none() {
                    r.service = Some(g.to_owned());
                }
            }
            if let Some(s) = stream {
                r.attributes.insert("log_stream".into(), Value::from(s));
            }
            if let Some(o) = owner {
                r.attributes.insert("aws_account".into(), Value::from(o));
            }
            if let Some(id) = e.get("id").and_then(Value::as_str) {
                r.attributes.insert("log_event_id".into(), Value::from(id));
            }
            records.push(r);
        }
    }
    Ok(Expanded {
        records,
        control_messages: 0,
    })
}

#[cfg(test)]
pub(crate) fn encode(json: &str) -> String {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

#[cfg(test)]
mod tests {
    use super::encode;
    use crate::parse::tests::{fallback, utc};
    use crate::parse::{parse, parse_counted};
    use crate::record::SourceType;
    use serde_json::json;

    const DATA: &str = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/checkout","logStream":"2024/05/01/[$LATEST]abc","subscriptionFilters":["all"],"logEvents":[{"id":"3195310660696698337880902507980421114328961542429EXAMPLE","timestamp":1714564800000,"message":"2024-05-01 12:00:00,123 ERROR [main] com.shop.Pay - declined"},{"id":"2","timestamp":1714564801000,"message":"START RequestId: 6e3b Version: $LATEST"}]}"#;

    #[test]
    fn decoded_and_encoded_envelopes_expand() {
        for value in [DATA.to_owned(), encode(DATA)] {
            let rows = parse(&value, None, fallback()).unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].source_type, SourceType::Log4j);
            assert_eq!(rows[0].event_time, utc("2024-05-01T12:00:00.123Z"));
            assert_eq!(
                rows[0].attributes["log_group"],
                json!("/aws/lambda/checkout")
            );
            assert_eq!(rows[1].source_type, SourceType::Generic);
            assert_eq!(rows[1].event_time, utc("2024-05-01T12:00:01Z"));
            assert_eq!(rows[1].service.as_deref(), Some("/aws/lambda/checkout"));
            let rows = parse(&value, Some("cloudwatch"), fallback()).unwrap();
            assert_eq!(rows.len(), 2);
        }
    }

    #[test]
    fn control_message_is_counted_not_stored() {
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1714564800000,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        for value in [control.to_owned(), encode(control)] {
            let parsed = parse_counted(&value, None, fallback()).unwrap();
            assert_eq!(parsed.records.len(), 0);
            assert_eq!(parsed.control_messages, 1);
        }
    }

    #[test]
    fn truncated_and_malformed() {
        let enc = encode(DATA);
        let cut = &enc[..enc.len() / 2];
        // Sniffed, an undecodable value is just text; named by header, an error.
        assert_eq!(
            parse(cut, None, fallback()).unwrap()[0].source_type,
            SourceType::Generic
        );
        assert_eq!(
            parse(cut, Some("cloudwatch"), fallback())
                .unwrap_err()
                .class(),
            "invalid_line"
        );
        assert_eq!(
            parse("H4sI!!!", Some("cloudwatch"), fallback())
                .unwrap_err()
                .class(),
            "invalid_line"
        );
        for bad in [
            r#"{"messageType":"DATA_MESSAGE","logEvents":[]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":{}}"#,
            r#"{"messageType":"OTHER","logEvents":[]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"timestamp":1}]}"#,
        ] {
            assert!(parse(bad, None, fallback()).is_err(), "{bad}");
            assert!(parse(bad, Some("cloudwatch"), fallback()).is_err(), "{bad}");
        }
    }
}

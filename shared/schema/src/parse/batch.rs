//! Batch envelopes: `{"source": …, "timestamp": …, "batch_size": n, "data": [ … ]}`,
//! one record per element of `data`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::fields::TIME_KEYS;
use super::{ParseError, clean, json_kind, sniff, sniff_object, time};
use crate::record::LogRecord;

pub(crate) fn parse(
    obj: &Map<String, Value>,
    fallback: DateTime<Utc>,
) -> Result<Vec<LogRecord>, ParseError> {
    let data = match obj.get("data") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(ParseError::schema(
                Some("data"),
                format!("expected an array, got {}", json_kind(other)),
            ));
        }
        None => {
            return Err(ParseError::schema(
                Some("data"),
                "batch envelope without `data`",
            ));
        }
    };
    let source = match obj.get("source") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()).filter(|s| !s.is_empty()),
        Some(other) => {
            return Err(ParseError::schema(
                Some("source"),
                format!("expected a string, got {}", json_kind(other)),
            ));
        }
    };
    if data.is_empty() {
        return Err(ParseError::EmptyBatch);
    }
    match obj.get("batch_size") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some() => {
            if n.as_u64() != Some(data.len() as u64) {
                return Err(ParseError::schema(
                    Some("batch_size"),
                    format!(
                        "declares {n} elements but `data` has {} (truncated batch?)",
                        data.len()
                    ),
                ));
            }
        }
        Some(other) => {
            return Err(ParseError::schema(
                Some("batch_size"),
                format!(
                    "expected a non-negative integer, got {}",
                    super::text::truncate(&other.to_string(), 40)
                ),
            ));
        }
    }
    // An unusable envelope time is ignored: the elements may carry their own.
    let batch_time = TIME_KEYS
        .iter()
        .find_map(|k| obj.get(*k).and_then(|v| time::from_json(v).ok()))
        .unwrap_or(fallback);

    let mut out = Vec::with_capacity(data.len());
    for (index, element) in data.iter().enumerate() {
        let records = match element {
            Value::Object(o) => {
                let raw = serde_json::to_string(element).unwrap_or_default();
                sniff_object(o, &raw, batch_time, true)
            }
            Value::String(s) => match clean(s) {
                "" => Err(ParseError::EmptyValue),
                text => sniff(text, s, batch_time, true),
            },
            other => Err(ParseError::schema(
                None,
                format!(
                    "batch element must be an object or a string, got {}",
                    json_kind(other)
                ),
            )),
        }
        .map_err(|error| ParseError::BatchElement {
            index,
            error: Box::new(error),
        })?;
        for mut r in records {
            if let Some(src) = source {
                if r.service.is_none() {
                    r.service = Some(src.to_owned());
                }
                r.attributes.insert("batch_source".into(), Value::from(src));
            }
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::{err_class, fallback, utc};
    use crate::parse::{ParseError, parse};
    use crate::record::{Level, SourceType};
    use serde_json::json;

    #[test]
    fn expands_mixed_elements() {
        let v = r#"{"source":"edge-agent","timestamp":"2024-05-01T12:00:00Z","batch_size":4,"data":[
            {"message":"app says hi","level":"info"},
            {"sensor_id":"st-1","temperature":20},
            "<13>Apr  5 01:02:03 host1 sshd[1]: hello",
            {"message":"own service","service":"api","time":"2024-05-02T00:00:00Z"}
        ]}"#;
        let recs = parse(v, None, fallback()).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].source_type, SourceType::AppJson);
        assert_eq!(recs[0].service.as_deref(), Some("edge-agent"));
        assert_eq!(recs[0].event_time, utc("2024-05-01T12:00:00Z"));
        assert_eq!(recs[0].level, Some(Level::Info));
        assert_eq!(recs[0].raw, r#"{"level":"info","message":"app says hi"}"#);
        assert_eq!(recs[0].attributes["batch_source"], json!("edge-agent"));
        assert_eq!(recs[1].source_type, SourceType::Sensor);
        assert_eq!(recs[1].service.as_deref(), Some("sensors"));
        assert_eq!(recs[2].source_type, SourceType::Syslog3164);
        assert_eq!(recs[2].raw, "<13>Apr  5 01:02:03 host1 sshd[1]: hello");
        assert_eq!(recs[2].service.as_deref(), Some("sshd"));
        assert_eq!(recs[2].event_time, utc("2024-04-05T01:02:03Z"));
        assert_eq!(recs[3].service.as_deref(), Some("api"));
        assert_eq!(recs[3].event_time, utc("2024-05-02T00:00:00Z"));
        assert!(recs.iter().all(|r| r.kafka.is_none()));
    }

    #[test]
    fn header_and_bad_envelope_time() {
        let v = r#"{"timestamp":"garbage","data":["plain text"]}"#;
        let recs = parse(v, Some("batch"), fallback()).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].source_type, SourceType::Generic);
        assert_eq!(recs[0].event_time, fallback());
        assert_eq!(recs[0].service, None);
        assert!(!recs[0].attributes.contains_key("batch_source"));
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(
            err_class(r#"{"source":"s","data":[]}"#, None),
            "empty_batch"
        );
        assert_eq!(
            err_class(r#"{"source":"s","data":[],"batch_size":0}"#, None),
            "empty_batch"
        );
        assert_eq!(
            err_class(r#"{"source":"s","batch_size":3,"data":["a","b"]}"#, None),
            "schema_violation"
        );
        assert_eq!(
            err_class(r#"{"source":"s","batch_size":"2","data":["a","b"]}"#, None),
            "schema_violation"
        );
        assert_eq!(
            err_class(r#"{"source":"s","data":"a"}"#, Some("batch")),
            "schema_violation"
        );
        assert_eq!(
            err_class(r#"{"source":"s"}"#, Some("batch")),
            "schema_violation"
        );
        assert_eq!(
            err_class(r#"{"source":5,"data":["a"]}"#, None),
            "schema_violation"
        );
        assert_eq!(
            err_class(r#"{"source":"s","data":["a""#, None),
            "invalid_json"
        );
    }

    #[test]
    fn element_errors_name_the_index() {
        let e = parse(
            r#"{"source":"s","data":[{"message":"ok"},{"message":"x","status":"abc"}]}"#,
            None,
            fallback(),
        )
        .unwrap_err();
        assert_eq!(e.class(), "schema_violation");
        assert_eq!(e.batch_index(), Some(1));
        assert!(e.to_string().starts_with("batch element 1:"), "{e}");

        for (v, class) in [
            (r#"{"data":[{"data":[{"message":"x"}]}]}"#, "too_deep"),
            (r#"{"data":["{\"data\":[\"x\"]}"]}"#, "too_deep"),
            (r#"{"data":[42]}"#, "schema_violation"),
            (r#"{"data":[[1]]}"#, "schema_violation"),
            (r#"{"data":["  "]}"#, "empty_value"),
            (r#"{"data":["{\"broken"]}"#, "invalid_json"),
        ] {
            let e = parse(v, None, fallback()).unwrap_err();
            assert_eq!(e.class(), class, "{v}");
            assert!(
                matches!(e, ParseError::BatchElement { index: 0, .. }),
                "{v}"
            );
        }
    }
}

//! What a schedule delivers, in either shape:
//! - EventBridge Scheduler (`ScheduleV2`): the target input JSON as is;
//! - a classic EventBridge rule (`Schedule`): the `Scheduled Event` envelope,
//!   whose `detail` may carry the same fields.
//!
//! An empty input (`null`, `{}`, or an envelope with an empty detail) means
//! the defaults.

use logpipe_generator::{GenerateRequest, ReplayFormat};
use logpipe_schema::json_kind;
use serde::Deserialize;

/// A produce run: generated traffic, or a replay of a file.
#[derive(Debug, Clone, PartialEq)]
pub enum RunInput {
    Generate(GenerateRequest),
    Replay(ReplaySource),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySource {
    /// A local path (in Lambda: a file packaged with the function or on EFS).
    pub path: String,
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
    /// Field used as the Kafka key.
    #[serde(default)]
    pub key_field: Option<String>,
}

impl ReplaySource {
    pub fn replay_format(&self) -> Result<ReplayFormat, InputError> {
        match self
            .format
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("jsonl") | Some("json-lines") | Some("ndjson") => {
                Ok(ReplayFormat::JsonLines)
            }
            Some("csv") => Ok(ReplayFormat::Csv),
            Some(other) => Err(InputError(format!(
                "replay.format {other:?}: expected jsonl or csv"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid produce input: {0}")]
pub struct InputError(pub String);

/// Reads the invocation payload.
pub fn parse_input(payload: &serde_json::Value) -> Result<RunInput, InputError> {
    let body = match payload {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        serde_json::Value::Object(map)
            if map.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event") =>
        {
            match map.get("detail") {
                None | Some(serde_json::Value::Null) => {
                    serde_json::Value::Object(Default::default())
                }
                Some(detail) => detail.clone(),
            }
        }
        serde_json::Value::Object(_) => payload.clone(),
        other => {
            return Err(InputError(format!(
                "expected a JSON object (or nothing), got {}",
                json_kind(other)
            )));
        }
    };
    let mut object = match body {
        serde_json::Value::Object(m) => m,
        other => {
            return Err(InputError(format!(
                "detail must be an object, got {}",
                json_kind(&other)
            )));
        }
    };
    if let Some(replay) = object.remove("replay") {
        if !object.is_empty() {
            let extra: Vec<&String> = object.keys().collect();
            return Err(InputError(format!(
                "replay cannot be combined with {extra:?}"
            )));
        }
        let source: ReplaySource =
            serde_json::from_value(replay).map_err(|e| InputError(format!("replay: {e}")))?;
        source.replay_format()?;
        return Ok(RunInput::Replay(source));
    }
    let request: GenerateRequest = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| InputError(e.to_string()))?;
    request.validate().map_err(|e| InputError(e.to_string()))?;
    Ok(RunInput::Generate(request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn generate(v: serde_json::Value) -> GenerateRequest {
        match parse_input(&v).unwrap() {
            RunInput::Generate(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_inputs_mean_defaults() {
        let d = generate(json!({}));
        assert_eq!(d.count, 100);
        assert_eq!(generate(serde_json::Value::Null), d);
        let classic = json!({"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","account":"1","time":"2026-11-22T10:00:00Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:1:rule/r"],"detail":{}});
        assert_eq!(generate(classic), d);
    }

    #[test]
    fn scheduler_input_and_classic_detail_carry_the_same_fields() {
        let input = json!({"count": 500, "seed": 7, "anomalies": [{"kind": "error_burst", "target": "checkout"}]});
        let a = generate(input.clone());
        assert_eq!((a.count, a.seed), (500, Some(7)));
        let b = generate(
            json!({"detail-type":"Scheduled Event","source":"aws.events","detail": input}),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn bad_inputs_are_named() {
        for bad in [
            json!({"count": 0}),
            json!({"count": 100001}),
            json!({"anomalies": [{"kind": "meteor_strike"}]}),
            json!({"colour": "blue"}),
            json!([1, 2]),
            json!({"replay": {"path": "x", "format": "xml"}}),
            json!({"replay": {"path": "x"}, "count": 3}),
        ] {
            let err = parse_input(&bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid produce input"),
                "{err}"
            );
        }
    }

    #[test]
    fn replay_inputs() {
        let RunInput::Replay(r) = parse_input(
            &json!({"replay": {"path": "/data/a.csv", "format": "csv", "key_field": "host"}}),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.replay_format().unwrap(), ReplayFormat::Csv);
        assert_eq!(r.key_field.as_deref(), Some("host"));
    }
}

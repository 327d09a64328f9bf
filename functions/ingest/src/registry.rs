//! Values in a schema registry's wire format (Confluent `0x00` + id, Glue
//! `0x03` + schema version UUID) become the record as JSON text before
//! classification, so the usual parsers and normalization apply.
//!
//! So do binary values the event source mapping validated and delivered with
//! `EventRecordFormat: SOURCE`: the mapping strips the framing (schema id,
//! and for Protobuf the message indexes) and names the schema in the
//! record's `valueSchemaMetadata` instead (`{"dataFormat": "AVRO",
//! "schemaId": "…"}`). A value with such metadata that is already JSON text
//! (`EventRecordFormat: JSON`, or a JSON Schema record) is left as it is.
//! Everything else is untouched.
//!
//! Each schema is fetched once per sandbox (the registry's cache) and, when
//! the registry fails, once per batch: the failure is remembered for the
//! other records of the same schema, so an outage costs one timeout, not
//! one per record.

use std::collections::HashMap;

use logpipe_delivery::Ledger;
use logpipe_kafka::{InputRecord, RecordError};
use std::borrow::Cow;

use logpipe_registry::{
    Decoded, Framed, Registry, RegistryError, Schema, SchemaKey, SchemaType, decode_with,
    format_uuid, is_framed, parse_uuid, unframe,
};
use serde_json::Value;

/// How the framed values of one batch went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decoding {
    /// Replaced by their JSON.
    pub decoded: usize,
    /// Marked with a permanent registry error (dead-lettered by classify).
    pub refused: usize,
    /// Handed back because the registry did not answer.
    pub retried: usize,
}

/// Decodes every open record's framed value in place. A permanent error
/// (`schema_unknown`, `schema_invalid`, `schema_decode_failed`) becomes the
/// record's error, so it is dead-lettered with its original bytes; a
/// transient one (`schema_registry_unavailable`) hands the record back.
pub async fn decode_framed(
    registry: &Registry,
    records: &mut [InputRecord],
    ledger: &mut Ledger,
) -> Decoding {
    let mut out = Decoding::default();
    // Per batch: schemas whose lookup failed (class, message, transient).
    let mut failed: HashMap<SchemaKey, (&'static str, String, bool)> = HashMap::new();
    for (i, record) in records.iter_mut().enumerate() {
        if !ledger.is_open(i) || record.error.is_some() {
            continue;
        }
        let Some(value) = record.value.as_deref() else {
            continue;
        };
        // The mapping's metadata first: an Avro value it delivered in its
        // source format may well start with a byte that looks like framing.
        let payload = match source_format(record.value_schema.as_ref(), value) {
            Some(source) => source.map(|(key, format)| Payload::Source {
                framed: Framed {
                    key,
                    payload: Cow::Borrowed(value),
                },
                format,
            }),
            None if is_framed(value) => unframe(value).map(Payload::Framed),
            None => continue,
        };
        let result = match payload {
            Err(e) => Err(failure(&e)),
            Ok(payload) => {
                let key = payload.key();
                match failed.get(key) {
                    Some(known) => Err(known.clone()),
                    None => match registry.schema(key).await {
                        Err(e) => {
                            let f = failure(&e);
                            failed.insert(key.clone(), f.clone());
                            Err(f)
                        }
                        Ok(schema) => payload.decode(&schema).map_err(|e| failure(&e)),
                    },
                }
            }
        };
        match result {
            Ok(decoded) => {
                record.value = Some(decoded.value);
                // The ESM's own metadata (if it sent any) wins; else ours.
                record.value_schema.get_or_insert_with(|| {
                    let mut m = serde_json::Map::new();
                    m.insert("dataFormat".into(), Value::from(decoded.schema_type.name()));
                    m.insert("schemaId".into(), Value::from(decoded.schema_id));
                    m.insert("decodedBy".into(), Value::from("logpipe"));
                    m
                });
                out.decoded += 1;
            }
            Err((_, message, true)) => {
                ledger.retry(i, format!("schema registry: {message}"), true);
                out.retried += 1;
            }
            Err((class, message, false)) => {
                record.error = Some(RecordError { class, message });
                out.refused += 1;
            }
        }
    }
    out
}

/// A value the registry step decodes.
enum Payload<'a> {
    /// In a registry's wire format.
    Framed(Framed<'a>),
    /// Delivered by the mapping in its source format, framing stripped.
    Source {
        framed: Framed<'a>,
        format: SchemaType,
    },
}

impl Payload<'_> {
    fn key(&self) -> &SchemaKey {
        match self {
            Payload::Framed(f) | Payload::Source { framed: f, .. } => &f.key,
        }
    }

    fn decode(&self, schema: &Schema) -> Result<Decoded, RegistryError> {
        match self {
            Payload::Framed(framed) => decode_with(schema, framed),
            Payload::Source { framed, format } => {
                if schema.schema_type() != *format {
                    return Err(RegistryError::Decode(format!(
                        "valueSchemaMetadata says {} but schema {} is {}",
                        format.name(),
                        framed.key.id(),
                        schema.schema_type().name()
                    )));
                }
                // No message indexes: a Protobuf value is the schema's
                // first message.
                Ok(Decoded {
                    value: schema.decode(&framed.payload, false)?,
                    schema_type: *format,
                    schema_id: framed.key.id(),
                })
            }
        }
    }
}

/// For a value the mapping delivered in `EventRecordFormat: SOURCE`: the
/// schema its metadata names and the format it declares. `None` when the
/// record has no such metadata, when the format is JSON (JSON text needs no
/// decoding), or when the value already is JSON (the mapping's JSON mode).
fn source_format(
    meta: Option<&serde_json::Map<String, Value>>,
    value: &[u8],
) -> Option<Result<(SchemaKey, SchemaType), RegistryError>> {
    let meta = meta?;
    let format = match meta.get("dataFormat").and_then(Value::as_str) {
        Some(f) if f.eq_ignore_ascii_case("AVRO") => SchemaType::Avro,
        Some(f) if f.eq_ignore_ascii_case("PROTOBUF") => SchemaType::Protobuf,
        _ => return None,
    };
    if is_json_document(value) {
        return None;
    }
    let key = match meta.get("schemaId") {
        Some(Value::String(id)) => schema_key(id),
        Some(Value::Number(n)) => schema_key(&n.to_string()),
        _ => None,
    };
    Some(key.map(|k| (k, format)).ok_or_else(|| {
        RegistryError::Decode(format!(
            "valueSchemaMetadata names no usable schemaId: {}",
            Value::Object(meta.clone())
        ))
    }))
}

/// A Confluent id is a number; a Glue schema version id is a UUID.
fn schema_key(id: &str) -> Option<SchemaKey> {
    let id = id.trim();
    if let Ok(n) = id.parse::<u32>() {
        return Some(SchemaKey::Confluent(n));
    }
    parse_uuid(id).map(|bytes| SchemaKey::Glue(format_uuid(&bytes)))
}

/// Whether the value is a JSON object or array as text. Avro or Protobuf
/// binary that happens to start with `{` or `[` does not parse as JSON.
fn is_json_document(value: &[u8]) -> bool {
    let start = value.iter().position(|b| !b.is_ascii_whitespace());
    matches!(start.map(|i| value[i]), Some(b'{' | b'['))
        && serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok()
}

fn failure(e: &RegistryError) -> (&'static str, String, bool) {
    (e.class(), e.to_string(), e.is_transient())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(format: &str, id: Value) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("dataFormat".into(), Value::from(format));
        m.insert("schemaId".into(), id);
        m
    }

    #[test]
    fn source_values_name_their_schema_by_metadata() {
        let avro = [0x00, 0x14, b'h'];
        let m = meta("AVRO", Value::from("17"));
        let (key, format) = source_format(Some(&m), &avro).unwrap().unwrap();
        assert_eq!((key, format), (SchemaKey::Confluent(17), SchemaType::Avro));
        let m = meta("protobuf", Value::from(9));
        let (key, format) = source_format(Some(&m), b"\x0a\x02hi").unwrap().unwrap();
        assert_eq!(
            (key, format),
            (SchemaKey::Confluent(9), SchemaType::Protobuf)
        );
        let uuid = "A1B2C3D4-0000-4000-8000-00000000000B";
        let m = meta("AVRO", Value::from(uuid));
        let (key, _) = source_format(Some(&m), b"\x02x").unwrap().unwrap();
        assert_eq!(key, SchemaKey::Glue(uuid.to_ascii_lowercase()));
    }

    #[test]
    fn json_values_and_json_formats_are_left_to_the_parsers() {
        // EventRecordFormat JSON: the mapping already turned Avro into JSON.
        let m = meta("AVRO", Value::from("17"));
        assert!(source_format(Some(&m), br#" {"message":"hi"}"#).is_none());
        assert!(source_format(Some(&meta("JSON", Value::from("8"))), b"\x00\x01").is_none());
        assert!(source_format(None, b"\x00\x01").is_none());
        // Avro binary starting with `{` is not JSON.
        assert!(source_format(Some(&m), b"{\x02x").is_some());
    }

    #[test]
    fn an_unusable_schema_id_is_a_decode_error() {
        for id in [Value::from("not-an-id"), Value::Null, Value::from(-1)] {
            let m = meta("AVRO", id.clone());
            let e = source_format(Some(&m), b"\x02x").unwrap().unwrap_err();
            assert_eq!(e.class(), "schema_decode_failed", "{id}: {e}");
            assert!(!e.is_transient());
        }
    }
}

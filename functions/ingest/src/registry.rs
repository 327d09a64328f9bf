//! Values in a schema registry's wire format (Confluent `0x00` + id, Glue
//! `0x03` + schema version UUID) become the record as JSON text before
//! classification, so the usual parsers and normalization apply. Runs only
//! on framed values; everything else is untouched.
//!
//! Each schema is fetched once per sandbox (the registry's cache) and, when
//! the registry fails, once per batch: the failure is remembered for the
//! other records of the same schema, so an outage costs one timeout, not
//! one per record.

use std::collections::HashMap;

use logpipe_delivery::Ledger;
use logpipe_kafka::{InputRecord, RecordError};
use logpipe_registry::{Registry, RegistryError, SchemaKey, decode_with, is_framed, unframe};
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
        let Some(value) = record.value.as_deref().filter(|v| is_framed(v)) else {
            continue;
        };
        let result = match unframe(value) {
            Err(e) => Err(failure(&e)),
            Ok(framed) => match failed.get(&framed.key) {
                Some(known) => Err(known.clone()),
                None => match registry.schema(&framed.key).await {
                    Err(e) => {
                        let f = failure(&e);
                        failed.insert(framed.key.clone(), f.clone());
                        Err(f)
                    }
                    Ok(schema) => decode_with(&schema, &framed).map_err(|e| failure(&e)),
                },
            },
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

fn failure(e: &RegistryError) -> (&'static str, String, bool) {
    (e.class(), e.to_string(), e.is_transient())
}

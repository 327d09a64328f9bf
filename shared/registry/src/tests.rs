//! Each wire format end to end through [`Registry`] with schemas from a
//! directory: valid, truncated, wrong magic, unknown id.

use super::*;
use apache_avro::types::Value as Avro;
use serde_json::{Value, json};

pub(crate) const AVRO_LOG: &str = r#"{"type":"record","name":"Log","namespace":"logpipe.test","fields":[
  {"name":"timestamp","type":"string"},
  {"name":"level","type":{"type":"enum","name":"Level","symbols":["DEBUG","INFO","WARN","ERROR"]}},
  {"name":"service","type":"string"},
  {"name":"message","type":"string"},
  {"name":"attempt","type":["null","int"],"default":null}]}"#;

const PROTO_LOG: &str = r#"syntax = "proto3";
package logpipe.test;
message Envelope { string ignored = 1; }
message Log {
  string level = 1;
  string message = 2;
  string service = 3;
  message Inner { string message = 1; string service_name = 2; }
}
"#;

fn avro_payload() -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(AVRO_LOG).unwrap();
    let record = Avro::Record(vec![
        (
            "timestamp".into(),
            Avro::String("2024-05-01T12:00:00Z".into()),
        ),
        ("level".into(), Avro::Enum(3, "ERROR".into())),
        ("service".into(), Avro::String("billing".into())),
        ("message".into(), Avro::String("payment failed".into())),
        ("attempt".into(), Avro::Union(1, Box::new(Avro::Int(2)))),
    ]);
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(record)
        .unwrap()
}

/// Protobuf fields by hand: tag (field << 3 | 2), length, bytes.
fn proto_strings(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, text) in fields {
        out.push(field << 3 | 2);
        out.push(text.len() as u8);
        out.extend(text.as_bytes());
    }
    out
}

fn confluent(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend(id.to_be_bytes());
    v.extend(payload);
    v
}

const GLUE_ID: &str = "b7b4a7f0-9c5b-4d1a-8f3e-0123456789ab";

fn glue(payload: &[u8], zlib: bool) -> Vec<u8> {
    use std::io::Write;
    let mut v = vec![3, if zlib { 5 } else { 0 }];
    v.extend(wire::parse_uuid(GLUE_ID).unwrap());
    if zlib {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(payload).unwrap();
        v.extend(z.finish().unwrap());
    } else {
        v.extend(payload);
    }
    v
}

fn registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1.avsc"), AVRO_LOG).unwrap();
    std::fs::write(dir.path().join("2.proto"), PROTO_LOG).unwrap();
    std::fs::write(dir.path().join("3.json"), r#"{"type":"object"}"#).unwrap();
    std::fs::write(dir.path().join(format!("{GLUE_ID}.avsc")), AVRO_LOG).unwrap();
    std::fs::write(dir.path().join("9.avsc"), "{not a schema").unwrap();
    let registry = Registry::files(SchemaDir::new(dir.path()).unwrap(), 10);
    (dir, registry)
}

fn json_of(d: &Decoded) -> Value {
    serde_json::from_slice(&d.value).unwrap()
}

#[tokio::test]
async fn confluent_avro_decodes_to_the_record_as_json() {
    let (_dir, r) = registry();
    let d = r.decode(&confluent(1, &avro_payload())).await.unwrap();
    assert_eq!(
        (d.schema_type, d.schema_id.as_str()),
        (SchemaType::Avro, "1")
    );
    assert_eq!(
        json_of(&d),
        json!({"timestamp":"2024-05-01T12:00:00Z","level":"ERROR","service":"billing",
               "message":"payment failed","attempt":2})
    );
    // truncated: the record stops inside a string
    let full = confluent(1, &avro_payload());
    let e = r.decode(&full[..full.len() - 3]).await.unwrap_err();
    assert_eq!(e.class(), "schema_decode_failed", "{e}");
    // trailing garbage
    let mut long = full.clone();
    long.push(7);
    assert_eq!(
        r.decode(&long).await.unwrap_err().class(),
        "schema_decode_failed"
    );
}

#[tokio::test]
async fn confluent_protobuf_follows_the_message_indexes() {
    let (_dir, r) = registry();
    let log = proto_strings(&[(1, "WARN"), (2, "disk almost full"), (3, "storage")]);
    // Log is the second top-level message: indexes [1]
    let mut payload = wire::encode_message_indexes(&[1]);
    payload.extend(&log);
    let d = r.decode(&confluent(2, &payload)).await.unwrap();
    assert_eq!(d.schema_type, SchemaType::Protobuf);
    assert_eq!(
        json_of(&d),
        json!({"level":"WARN","message":"disk almost full","service":"storage"})
    );
    // nested: Log.Inner is [1, 0]; proto field names are kept
    let mut payload = wire::encode_message_indexes(&[1, 0]);
    payload.extend(proto_strings(&[(1, "m"), (2, "svc")]));
    let d = r.decode(&confluent(2, &payload)).await.unwrap();
    assert_eq!(json_of(&d), json!({"message":"m","service_name":"svc"}));
    // the 0 shortcut: the first message
    let mut payload = vec![0];
    payload.extend(proto_strings(&[(1, "x")]));
    let d = r.decode(&confluent(2, &payload)).await.unwrap();
    assert_eq!(json_of(&d), json!({"ignored":"x"}));
    // an index past the schema's messages, and a truncated message
    let mut payload = wire::encode_message_indexes(&[5]);
    payload.extend(&log);
    assert_eq!(
        r.decode(&confluent(2, &payload)).await.unwrap_err().class(),
        "schema_decode_failed"
    );
    let mut payload = wire::encode_message_indexes(&[1]);
    payload.extend(&log[..log.len() - 2]);
    assert_eq!(
        r.decode(&confluent(2, &payload)).await.unwrap_err().class(),
        "schema_decode_failed"
    );
}

#[tokio::test]
async fn confluent_json_schema_payloads_are_json() {
    let (_dir, r) = registry();
    let d = r
        .decode(&confluent(3, br#"{"message":"hello","level":"info"}"#))
        .await
        .unwrap();
    assert_eq!(d.schema_type, SchemaType::Json);
    assert_eq!(json_of(&d), json!({"message":"hello","level":"info"}));
    let e = r
        .decode(&confluent(3, br#"{"message":"hel"#))
        .await
        .unwrap_err();
    assert_eq!(e.class(), "schema_decode_failed");
}

#[tokio::test]
async fn glue_avro_plain_and_zlib() {
    let (_dir, r) = registry();
    for zlib in [false, true] {
        let d = r.decode(&glue(&avro_payload(), zlib)).await.unwrap();
        assert_eq!(d.schema_id, GLUE_ID);
        assert_eq!(json_of(&d)["message"], "payment failed");
    }
    let framed = glue(&avro_payload(), false);
    assert_eq!(
        r.decode(&framed[..10]).await.unwrap_err().class(),
        "schema_decode_failed"
    );
}

#[tokio::test]
async fn unknown_ids_wrong_magic_and_bad_schemas_have_their_classes() {
    let (_dir, r) = registry();
    let e = r.decode(&confluent(77, &avro_payload())).await.unwrap_err();
    assert_eq!(e.class(), "schema_unknown");
    assert!(!e.is_transient());
    let e = r.decode(&confluent(9, &avro_payload())).await.unwrap_err();
    assert_eq!(e.class(), "schema_invalid", "{e}");
    let e = r.decode(&[0x05, 0, 0, 0, 1, 2]).await.unwrap_err();
    assert_eq!(e.class(), "schema_decode_failed");
    let e = Registry::none()
        .decode(&confluent(1, &avro_payload()))
        .await
        .unwrap_err();
    assert_eq!(e.class(), "schema_unknown");
}

#[tokio::test]
async fn a_text_log_in_a_string_schema_stays_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("5.avsc"), r#""string""#).unwrap();
    let r = Registry::files(SchemaDir::new(dir.path()).unwrap(), 2);
    let payload =
        apache_avro::writer::datum::GenericDatumWriter::builder(&apache_avro::Schema::String)
            .build()
            .unwrap()
            .write_value_to_vec(Avro::String("plain line".into()))
            .unwrap();
    let d = r.decode(&confluent(5, &payload)).await.unwrap();
    assert_eq!(d.value, b"plain line");
}

#[test]
fn the_cache_keeps_the_newest_schemas() {
    let mut cache = SchemaCache::new(2);
    for id in 0..3 {
        cache.insert(SchemaKey::Confluent(id), Arc::new(Schema::Json));
    }
    assert!(cache.get(&SchemaKey::Confluent(0)).is_none());
    assert!(cache.get(&SchemaKey::Confluent(2)).is_some());
    assert_eq!(cache.map.len(), 2);
}

#[test]
fn settings_from_the_environment() {
    let s = RegistrySettings::from_lookup(|_| None).unwrap();
    assert_eq!(s, RegistrySettings::default());
    let s = RegistrySettings::from_lookup(|k| match k {
        "SCHEMA_REGISTRY" => Some("Confluent".into()),
        "SCHEMA_REGISTRY_URL" => Some("https://registry.example:8081".into()),
        "SCHEMA_REGISTRY_SECRET_ARN" => Some("arn:aws:secretsmanager:us-east-1:1:secret:sr".into()),
        "SCHEMA_CACHE_SIZE" => Some("5".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(s.cache_size, 5);
    assert!(matches!(
        s.source,
        SourceSettings::Confluent {
            secret_arn: Some(_),
            ..
        }
    ));
    for bad in [
        vec![("SCHEMA_REGISTRY", "confluent")],
        vec![("SCHEMA_REGISTRY", "files")],
        vec![("SCHEMA_REGISTRY", "karapace")],
        vec![("SCHEMA_CACHE_SIZE", "many")],
    ] {
        let get = |k: &str| {
            bad.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        assert!(RegistrySettings::from_lookup(get).is_err(), "{bad:?}");
    }
}

//! Schema-registry framed values through a real broker (Tansu) and the ingest
//! function into PostgreSQL: Confluent-framed Avro, JSON Schema and Protobuf
//! records are decoded with schemas shipped as files and stored as the JSON
//! they hold; an unknown schema id and a corrupt payload are dead-lettered
//! with their own classes; with the registry unreachable the framed records
//! are handed back for retry while their plain neighbours are stored.

use std::sync::Arc;
use std::time::Duration;

use ingest::IngestConfig;
use logpipe_kafka::event::EventSource;
use logpipe_registry::Registry;
use logpipe_registry::confluent::{ConfluentClient, Credentials};
use logpipe_registry::files::SchemaDir;
use logpipe_tests::*;

const TOPIC: &str = "log-ingestion";

const AVRO: &str = r#"{"type":"record","name":"Log","fields":[
  {"name":"message","type":"string"},{"name":"level","type":"string"},{"name":"service","type":"string"}]}"#;
const JSON_SCHEMA: &str = r#"{"type":"object","properties":{"message":{"type":"string"}}}"#;
const PROTO: &str = r#"syntax = "proto3";
message Log { string message = 1; string level = 2; string service = 3; }"#;

/// Confluent framing: magic byte 0, the schema id big-endian, the payload.
fn confluent(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend(id.to_be_bytes());
    out.extend(payload);
    out
}

/// Avro binary of a record of strings: zigzag length, then the bytes.
fn avro_strings(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        assert!(f.len() < 64, "one-byte zigzag lengths only");
        out.push((f.len() * 2) as u8);
        out.extend(f.as_bytes());
    }
    out
}

/// Protobuf binary of string fields 1, 2, 3 (wire type 2).
fn proto_strings(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, f) in fields.iter().enumerate() {
        out.push((((n + 1) << 3) | 2) as u8);
        out.push(f.len() as u8);
        out.extend(f.as_bytes());
    }
    out
}

fn framed(key: &str, value: Vec<u8>) -> Produce {
    Produce {
        key: Some(key.into()),
        value: Some(value),
        headers: vec![],
    }
}

fn schema_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("logpipe-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("7.avsc"), AVRO).unwrap();
    std::fs::write(dir.join("8.json"), JSON_SCHEMA).unwrap();
    std::fs::write(dir.join("9.proto"), PROTO).unwrap();
    dir
}

fn input() -> Vec<Produce> {
    let mut proto = vec![0u8]; // message index: the first message
    proto.extend(proto_strings(&["proto hello", "warn", "orders"]));
    let mut corrupt = avro_strings(&["avro hello", "error", "billing"]);
    corrupt.truncate(5);
    vec![
        framed(
            "a",
            confluent(7, &avro_strings(&["avro hello", "error", "billing"])),
        ),
        framed(
            "j",
            confluent(
                8,
                br#"{"message":"json hello","level":"info","service":"search"}"#,
            ),
        ),
        framed("p", confluent(9, &proto)),
        framed("u", confluent(99, b"whatever")),
        framed("c", confluent(7, &corrupt)),
        Produce::text("t", "a plain line between them"),
    ]
}

fn config() -> IngestConfig {
    IngestConfig {
        report_batch_item_failures: true,
        message_timeout: Duration::from_secs(5),
        ..IngestConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_values_are_decoded_refused_by_class_or_retried() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let input = input();
    produce(&bootstrap, TOPIC, &input).await.unwrap();
    let records = consume(&bootstrap, TOPIC, "registry-consumer", input.len())
        .await
        .unwrap();
    let event = event(&records, EventSource::Msk, &bootstrap);

    // The registry unreachable (nothing listens on the port): the five
    // framed records are handed back, the plain line is stored.
    let down = ConfluentClient::new("http://127.0.0.1:1", Credentials::None).unwrap();
    let handler = ingestor(&stack, config())
        .await
        .unwrap()
        .with_registry(Arc::new(Registry::confluent(down, 10)));
    let out = invoke(&handler, &event)
        .await
        .expect("a partial retry is a response");
    let s = &out.summary;
    // (Retries are per partition, from the first retried record on: the
    // plain line is stored unless it sits behind a framed one.)
    assert_eq!(
        s.records_dead_lettered, 0,
        "an outage is no reason to dead-letter: {s:?}"
    );
    assert!(s.records_retry >= 5, "{s:?}");
    assert_eq!(s.records_stored + s.records_retry, s.records_in, "{s:?}");
    assert!(!out.batch.batch_item_failures.is_empty(), "{out:?}");
    let db = sql(&stack.database_url()).await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM logs").await,
        s.records_stored as i64
    );

    // Schemas from files: decoded, or dead-lettered with their class.
    let files = SchemaDir::new(schema_dir()).unwrap();
    let handler = ingestor(&stack, config())
        .await
        .unwrap()
        .with_registry(Arc::new(Registry::files(files, 10)));
    let out = invoke(&handler, &event).await.expect("the batch succeeds");
    let s = &out.summary;
    assert!(out.batch.batch_item_failures.is_empty(), "{out:?}");
    assert_eq!(s.records_schema_decoded, 3, "{s:?}");
    assert_eq!(s.records_dead_lettered, 2, "{s:?}");
    assert_eq!(
        s.records_stored + s.records_duplicate + s.records_dead_lettered,
        s.records_in,
        "{s:?}"
    );
    assert_eq!(
        s.dead_letter_classes.get("schema_unknown"),
        Some(&1),
        "{s:?}"
    );
    assert_eq!(
        s.dead_letter_classes.get("schema_decode_failed"),
        Some(&1),
        "{s:?}"
    );

    let rows = db
        .query(
            "SELECT concat_ws('|', service, level, message, \
                    attributes->'value_schema'->>'dataFormat', source_type) \
             FROM logs WHERE attributes ? 'value_schema' ORDER BY service",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        got,
        [
            "billing|error|avro hello|AVRO|app_json",
            "orders|warn|proto hello|PROTOBUF|app_json",
            "search|info|json hello|JSON|app_json",
        ],
        "decoded and parsed as JSON logs"
    );
    // The dead letters carry the original framed bytes.
    let dead = consume(&bootstrap, "log-ingestion.dlq", "registry-dlq", 2)
        .await
        .unwrap();
    let mut values: Vec<Vec<u8>> = dead.iter().filter_map(|d| d.value.clone()).collect();
    values.sort();
    let mut want = vec![
        input[3].value.clone().unwrap(),
        input[4].value.clone().unwrap(),
    ];
    want.sort();
    assert_eq!(values, want);
}

fn glue_client(endpoint: &str) -> aws_sdk_glue::Client {
    use aws_sdk_glue::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_glue::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    aws_sdk_glue::Client::from_conf(conf)
}

/// Glue framing: 3, compression 0 (none), the schema version UUID, payload.
fn glue(version_id: &str, payload: &[u8]) -> Vec<u8> {
    let hex: String = version_id.chars().filter(|c| *c != '-').collect();
    assert_eq!(hex.len(), 32, "{version_id}");
    let mut out = vec![3u8, 0u8];
    for i in 0..16 {
        out.push(u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
    }
    out.extend(payload);
    out
}

/// The Glue Schema Registry as moto serves it (CreateRegistry, CreateSchema,
/// GetSchemaVersion by version id): an Avro schema registered there decodes
/// the records framed with its version id; an id Glue does not know is
/// dead-lettered as `schema_unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_schemas_from_moto_decode_glue_framed_values() {
    let stack = LocalStack::start(StackOptions { moto: true })
        .await
        .unwrap();
    let moto = stack.moto_url().expect("moto runs");
    let client = glue_client(&moto);
    client
        .create_registry()
        .registry_name("logs")
        .send()
        .await
        .expect("moto: CreateRegistry");
    let created = client
        .create_schema()
        .registry_id(
            aws_sdk_glue::types::RegistryId::builder()
                .registry_name("logs")
                .build(),
        )
        .schema_name("log")
        .data_format(aws_sdk_glue::types::DataFormat::Avro)
        .compatibility(aws_sdk_glue::types::Compatibility::Backward)
        .schema_definition(AVRO)
        .send()
        .await
        .expect("moto: CreateSchema");
    let version = created
        .schema_version_id()
        .expect("CreateSchema returns the first version's id")
        .to_string();

    let bootstrap = stack.bootstrap_servers();
    let input = vec![
        framed(
            "g",
            glue(&version, &avro_strings(&["glue hello", "error", "ledger"])),
        ),
        framed(
            "x",
            glue("0b5e9c1a-0000-4000-8000-00000000dead", b"whatever"),
        ),
    ];
    produce(&bootstrap, TOPIC, &input).await.unwrap();
    let records = consume(&bootstrap, TOPIC, "glue-consumer", input.len())
        .await
        .unwrap();
    let event = event(&records, EventSource::Msk, &bootstrap);
    let registry = Registry::glue(logpipe_registry::glue::GlueClient::new(client), 10);
    let handler = ingestor(&stack, config())
        .await
        .unwrap()
        .with_registry(Arc::new(registry));
    let out = invoke(&handler, &event).await.expect("the batch succeeds");
    let s = &out.summary;
    assert_eq!(s.records_schema_decoded, 1, "{s:?}");
    assert_eq!(s.records_stored, 1, "{s:?}");
    assert_eq!(
        s.dead_letter_classes.get("schema_unknown"),
        Some(&1),
        "{s:?}"
    );
    let db = sql(&stack.database_url()).await.unwrap();
    let row = db
        .query_one(
            "SELECT concat_ws('|', service, level, message, attributes->'value_schema'->>'schemaId') FROM logs",
            &[],
        )
        .await
        .unwrap();
    let got: String = row.get(0);
    assert_eq!(got, format!("ledger|error|glue hello|{version}"));
}

/// Sets the `valueSchemaMetadata` the event source mapping adds when it has
/// validated a record against a registry, on the event's record with `key`.
fn with_value_schema(event: &mut serde_json::Value, key: &str, format: &str, id: &str) {
    use base64::Engine;
    let want = base64::engine::general_purpose::STANDARD.encode(key);
    let records = event["records"]
        .as_object_mut()
        .expect("records by partition");
    let record = records
        .values_mut()
        .flat_map(|list| list.as_array_mut().expect("a list").iter_mut())
        .find(|r| r["key"] == want.as_str())
        .unwrap_or_else(|| panic!("no record with key {key}"));
    record["valueSchemaMetadata"] = serde_json::json!({"dataFormat": format, "schemaId": id});
}

/// `EventRecordFormat: SOURCE`: the mapping delivers the value without its
/// framing and names the schema in `valueSchemaMetadata`. Raw Avro (one
/// value starting with a zero byte, as Confluent framing would) and raw
/// Protobuf are decoded with the schema that metadata names; a JSON value
/// with metadata (the JSON mode) is parsed as it is; a schema id nobody
/// knows is dead-lettered as `schema_unknown`; an unmarked plain line is
/// stored as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_format_values_are_decoded_with_the_schema_their_metadata_names() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let bootstrap = stack.bootstrap_servers();
    let input = vec![
        framed("a", avro_strings(&["source avro", "error", "billing"])),
        // First field empty: the value starts 0x00 like a Confluent frame.
        framed("z", avro_strings(&["", "warn", "zero"])),
        framed("p", proto_strings(&["source proto", "warn", "orders"])),
        framed(
            "j",
            br#"{"message":"json mode","level":"info","service":"search"}"#.to_vec(),
        ),
        framed("u", avro_strings(&["nobody knows", "info", "x"])),
        Produce::text("t", "a plain line between them"),
    ];
    produce(&bootstrap, TOPIC, &input).await.unwrap();
    let records = consume(&bootstrap, TOPIC, "source-consumer", input.len())
        .await
        .unwrap();
    let mut event = event(&records, EventSource::Msk, &bootstrap);
    with_value_schema(&mut event, "a", "AVRO", "7");
    with_value_schema(&mut event, "z", "AVRO", "7");
    with_value_schema(&mut event, "p", "PROTOBUF", "9");
    with_value_schema(&mut event, "j", "AVRO", "7");
    with_value_schema(&mut event, "u", "AVRO", "99");

    let files = SchemaDir::new(schema_dir()).unwrap();
    let handler = ingestor(&stack, config())
        .await
        .unwrap()
        .with_registry(Arc::new(Registry::files(files, 10)));
    let out = invoke(&handler, &event).await.expect("the batch succeeds");
    let s = &out.summary;
    assert!(out.batch.batch_item_failures.is_empty(), "{out:?}");
    assert_eq!(s.records_in, 6, "{s:?}");
    assert_eq!(s.records_schema_decoded, 3, "{s:?}");
    assert_eq!(s.records_stored, 5, "{s:?}");
    assert_eq!(s.records_dead_lettered, 1, "{s:?}");
    assert_eq!(
        s.dead_letter_classes.get("schema_unknown"),
        Some(&1),
        "{s:?}"
    );

    let db = sql(&stack.database_url()).await.unwrap();
    let rows = db
        .query(
            "SELECT concat_ws('|', service, level, message, \
                    attributes->'value_schema'->>'dataFormat', \
                    attributes->'value_schema'->>'schemaId', source_type) \
             FROM logs WHERE attributes ? 'value_schema' ORDER BY service",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        got,
        [
            "billing|error|source avro|AVRO|7|app_json",
            "orders|warn|source proto|PROTOBUF|9|app_json",
            "search|info|json mode|AVRO|7|app_json",
            "zero|warn||AVRO|7|app_json",
        ],
        "decoded with the schema the metadata names, metadata kept"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM logs WHERE source_type = 'generic'"
        )
        .await,
        1,
        "the plain line"
    );
}

//! detect's outbox on the real stack: a message the broker will never take
//! is parked and blocks nothing, published rows go after their retention,
//! one invocation drains more than one claim's worth within its budget, and
//! the scheduled tick (an event without records) closes the windows of an
//! idle group so their predictions go out.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use detect::{DetectConfig, DetectResponse, Detector};
use lambda_runtime::{Context as LambdaContext, LambdaEvent};
use logpipe_detect::window::WindowConfig;
use logpipe_kafka::event::{EventRecord, EventSource, KafkaEventPayload};
use logpipe_kafka::{KafkaSettings, Publisher};
use logpipe_postgres::{Database, DbSettings};
use logpipe_schema::{KafkaCoordinates, LogRecord, SourceType};
use logpipe_tests::*;

fn config() -> DetectConfig {
    let mut c = DetectConfig {
        report_batch_item_failures: true,
        message_timeout: Duration::from_secs(5),
        outbox_batch: 100,
        idle_advance: Duration::from_secs(60),
        ..DetectConfig::default()
    };
    c.engine.window = WindowConfig {
        width_secs: 60,
        allowed_lateness_secs: 30,
    };
    c
}

async fn detector(stack: &LocalStack, config: DetectConfig) -> Detector {
    let db = Database::new(
        DbSettings::from_url(&stack.database_url(), "outbox-test"),
        None,
    )
    .unwrap();
    let publisher = Publisher::new(
        KafkaSettings::plaintext(&stack.bootstrap_servers(), "outbox-test"),
        None,
        config.message_timeout,
    )
    .await
    .unwrap();
    let d = Detector::new(config, db, publisher);
    d.ensure_schema().await.unwrap();
    d
}

async fn invoke(d: &Detector, event: serde_json::Value) -> DetectResponse {
    let payload: KafkaEventPayload = serde_json::from_value(event).unwrap();
    detect::handle(d, LambdaEvent::new(payload, LambdaContext::default()))
        .await
        .expect("detect answers without an error")
}

/// The scheduled tick, as EventBridge Scheduler delivers its `Input`.
fn tick() -> serde_json::Value {
    serde_json::json!({"tick": true})
}

fn reading(offset: i64, at: DateTime<Utc>, station: &str) -> EventRecord {
    let r = LogRecord {
        event_time: at,
        source_type: SourceType::Sensor,
        service: Some("weather".into()),
        host: Some(station.into()),
        level: None,
        message: String::new(),
        http: None,
        metrics: [("temperature".to_string(), 21.0)].into_iter().collect(),
        attributes: serde_json::Map::new(),
        raw: String::new(),
        kafka: Some(KafkaCoordinates {
            topic: "log-ingestion".into(),
            partition: 0,
            offset,
            seq: 0,
            timestamp_ms: at.timestamp_millis(),
        }),
    };
    EventRecord {
        topic: "log-processing".into(),
        partition: 0,
        offset,
        timestamp_ms: at.timestamp_millis(),
        timestamp_type: "CREATE_TIME",
        key: None,
        value: Some(serde_json::to_vec(&r).unwrap()),
        headers: vec![],
    }
}

async fn insert_pending(db: &logpipe_postgres::tokio_postgres::Client, id: &str, payload: &str) {
    db.execute(
        "INSERT INTO detect_outbox (topic, id, msg_key, kind, payload)
         VALUES ('alerts', $1, 'k', 'alert', $2::text::jsonb)",
        &[&id, &payload],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_is_parked_and_blocks_nothing() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let d = detector(&stack, config()).await;
    let db = sql(&stack.database_url()).await.unwrap();
    // Larger than the producer's message.max.bytes: refused for good.
    let huge = serde_json::json!({"blob": "x".repeat(2_000_000)}).to_string();
    insert_pending(&db, "huge", &huge).await;
    for i in 0..250 {
        insert_pending(&db, &format!("small-{i}"), r#"{"ok":true}"#).await;
    }
    // An old published row, past its retention.
    db.execute(
        "INSERT INTO detect_outbox (topic, id, msg_key, kind, payload, published_at)
         VALUES ('alerts', 'old', 'k', 'alert', '{}', now() - interval '30 days')",
        &[],
    )
    .await
    .unwrap();

    let alerts = Tap::new(&stack.bootstrap_servers(), "alerts", "outbox-parking");
    let r = invoke(&d, tick()).await;
    let s = &r.summary;
    assert_eq!(s.records_in, 0);
    // 251 pending in rounds of 100: all handled in one invocation.
    assert_eq!(s.outbox_published, 250, "{s:?}");
    assert_eq!(s.outbox_parked, 1, "{s:?}");
    assert_eq!(s.outbox_pending, 0, "{s:?}");
    assert_eq!(s.outbox_pruned, 1, "{s:?}");
    assert_eq!(alerts.take(250).await.len(), 250);
    let parked = count(
        &db,
        "SELECT count(*) FROM detect_outbox
          WHERE id = 'huge' AND parked_at IS NOT NULL AND last_error IS NOT NULL",
    )
    .await;
    assert_eq!(parked, 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM detect_outbox WHERE id = 'old'").await,
        0
    );

    // The parked row is never claimed again.
    let again = invoke(&d, tick()).await;
    assert_eq!(again.summary.outbox_published, 0);
    assert_eq!(again.summary.outbox_parked, 1);
    assert!(alerts.rest(Duration::from_secs(3)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tick_closes_the_windows_of_an_idle_group() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let d = detector(&stack, config()).await;
    let db = sql(&stack.database_url()).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let records: Vec<EventRecord> = (0..20)
        .map(|i| reading(i, t0 + chrono::Duration::seconds(i * 10), "st-idle"))
        .collect();
    let bootstrap = stack.bootstrap_servers();
    let r = invoke(&d, event(&records, EventSource::SelfManaged, &bootstrap)).await;
    assert_eq!(r.summary.records_processed, 20);
    let predictions = "SELECT count(*) FROM detect_outbox WHERE kind = 'prediction'";
    let before = count(&db, predictions).await;

    // Input has stopped: a tick right away changes nothing...
    invoke(&d, tick()).await;
    assert_eq!(count(&db, predictions).await, before);
    // ...but once the entity has been silent longer than
    // IDLE_ADVANCE_SECONDS (as if its last records came ten minutes ago),
    // its clock moves on by the idle time and its last windows close.
    silent_for_ten_minutes(&db, "st-idle").await;
    let ticked = invoke(&d, tick()).await;
    let after = count(&db, predictions).await;
    assert!(
        after > before,
        "the idle windows closed: {before} → {after}"
    );
    assert_eq!(ticked.summary.outbox_pending, 0, "{:?}", ticked.summary);
    let unclosed = count(
        &db,
        "SELECT count(*) FROM detect_entity_state
          WHERE next_close_at IS NOT NULL AND next_close_at <= now()",
    )
    .await;
    assert_eq!(unclosed, 0, "nothing due by now is left open");
}

/// Moves an entity's last records ten minutes into the past (wall time),
/// as the stored state and its due time would be after ten silent minutes.
async fn silent_for_ten_minutes(db: &logpipe_postgres::tokio_postgres::Client, entity: &str) {
    let moved = db
        .execute(
            "UPDATE detect_entity_state
                SET state = jsonb_set(state, '{seen_at}',
                        to_jsonb((state->>'seen_at')::timestamptz - interval '10 minutes')),
                    next_close_at = next_close_at - interval '10 minutes'
              WHERE entity = $1",
            &[&entity],
        )
        .await
        .unwrap();
    assert_eq!(moved, 1, "{entity} has a state");
}

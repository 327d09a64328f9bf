//! Storage of the detect function: per-entity state rows (locked while a
//! batch updates them), the group's event-time clock, and the outbox of
//! alerts and predictions. State is opaque JSON here; the detection crate
//! owns its shape.

use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Transaction};

use crate::DbError;

/// One entity's stored state (`None` for a row created by this batch).
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRow {
    pub entity: String,
    pub state: Option<serde_json::Value>,
    pub version: i64,
}

/// An entity's new state, written back under the lock taken by
/// [`lock_entities`] or [`lock_due_entities`].
#[derive(Debug, Clone, PartialEq)]
pub struct EntityUpdate {
    pub entity: String,
    /// The state as JSON text (serialized straight from the caller's type:
    /// no intermediate JSON tree).
    pub state: String,
    pub records_seen: i64,
    pub next_close_at: Option<DateTime<Utc>>,
}

/// A message to publish later (see [`insert_outbox`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub topic: String,
    pub id: String,
    pub key: String,
    /// `alert` or `prediction`.
    pub kind: &'static str,
    /// The message as JSON text.
    pub payload: String,
}

/// An unpublished outbox row, claimed by this transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMessage {
    pub topic: String,
    pub id: String,
    pub key: String,
    pub payload: String,
}

/// Serializes batches of the same partitions (a redelivery racing the
/// original invocation must wait, then see the progress it wrote). Locks
/// are taken in sorted order and released at commit/rollback.
pub async fn lock_partitions(
    txn: &Transaction<'_>,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<(), DbError> {
    let mut keys: Vec<String> = partitions
        .iter()
        .map(|(t, p)| format!("detect|{group}|{t}|{p}"))
        .collect();
    keys.sort();
    keys.dedup();
    // One round trip; the locks are taken in the array's (sorted) order.
    txn.execute_typed(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
           FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n)
          ORDER BY n",
        &[(&keys, Type::TEXT_ARRAY)],
    )
    .await
    .map_err(DbError::from_query)?;
    Ok(())
}

/// Creates missing rows and locks every named entity's row (in entity
/// order, so concurrent batches cannot deadlock), returning each row's
/// version. The states themselves are read by [`load_states`], only for the
/// entities whose state the caller does not hold at that version already.
pub async fn lock_entities(
    txn: &Transaction<'_>,
    group: &str,
    entities: &[String],
) -> Result<Vec<(String, i64)>, DbError> {
    let mut sorted: Vec<&str> = entities.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let params: [(&(dyn ToSql + Sync), Type); 2] =
        [(&group, Type::TEXT), (&sorted, Type::TEXT_ARRAY)];
    // Pipelined: the server runs them in order, the SELECT after the INSERT.
    let (_, rows) = futures::try_join!(
        txn.execute_typed(
            "INSERT INTO detect_entity_state (consumer_group, entity)
             SELECT $1, e FROM unnest($2::text[]) WITH ORDINALITY AS u(e, n) ORDER BY n
             ON CONFLICT DO NOTHING",
            &params,
        ),
        txn.query_typed(
            "SELECT entity, version FROM detect_entity_state
              WHERE consumer_group = $1 AND entity = ANY($2)
              ORDER BY entity
              FOR UPDATE",
            &params,
        ),
    )
    .map_err(DbError::from_query)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The stored states of `entities` (rows this transaction has locked).
pub async fn load_states(
    txn: &Transaction<'_>,
    group: &str,
    entities: &[String],
) -> Result<Vec<EntityRow>, DbError> {
    if entities.is_empty() {
        return Ok(Vec::new());
    }
    let rows = txn
        .query_typed(
            "SELECT entity, state, version FROM detect_entity_state
              WHERE consumer_group = $1 AND entity = ANY($2)",
            &[(&group, Type::TEXT), (&entities, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(rows.iter().map(entity_row).collect())
}

/// Locks up to `limit` other entities that have a window to close by
/// `due` (their `next_close_at`, the wall time at which their silence makes
/// a window due: silent entities still get their windows scored). Rows
/// another batch holds are skipped: that batch closes them.
pub async fn lock_due_entities(
    txn: &Transaction<'_>,
    group: &str,
    due: DateTime<Utc>,
    exclude: &[String],
    limit: i64,
) -> Result<Vec<EntityRow>, DbError> {
    let rows = txn
        .query_typed(
            "SELECT entity, state, version FROM detect_entity_state
              WHERE consumer_group = $1 AND next_close_at <= $2 AND NOT (entity = ANY($3))
              ORDER BY next_close_at
              LIMIT $4
              FOR UPDATE SKIP LOCKED",
            &[
                (&group, Type::TEXT),
                (&due, Type::TIMESTAMPTZ),
                (&exclude, Type::TEXT_ARRAY),
                (&limit, Type::INT8),
            ],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(rows.iter().map(entity_row).collect())
}

fn entity_row(r: &tokio_postgres::Row) -> EntityRow {
    EntityRow {
        entity: r.get(0),
        state: r.get(1),
        version: r.get(2),
    }
}

/// Moves the group's clock forward to `seen` (never back) and returns it.
/// Takes the clock row's lock until commit: callers do this after locking
/// entities, so the lock order stays partitions → entities → clock.
pub async fn advance_clock(
    txn: &Transaction<'_>,
    group: &str,
    seen: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, DbError> {
    if let Some(seen) = seen {
        let row = txn
            .query_typed_one(
                "INSERT INTO detect_clock AS c (consumer_group, max_event_time) VALUES ($1, $2)
                 ON CONFLICT (consumer_group) DO UPDATE
                    SET max_event_time = GREATEST(c.max_event_time, EXCLUDED.max_event_time),
                        updated_at = now()
                 RETURNING max_event_time",
                &[(&group, Type::TEXT), (&seen, Type::TIMESTAMPTZ)],
            )
            .await
            .map_err(DbError::from_query)?;
        return Ok(Some(row.get(0)));
    }
    let row = txn
        .query_typed_opt(
            "SELECT max_event_time FROM detect_clock WHERE consumer_group = $1",
            &[(&group, Type::TEXT)],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(row.map(|r| r.get(0)))
}

/// Writes back the states of locked entities.
pub async fn save_entities(
    txn: &Transaction<'_>,
    group: &str,
    updates: &[EntityUpdate],
) -> Result<(), DbError> {
    if updates.is_empty() {
        return Ok(());
    }
    let entities: Vec<&str> = updates.iter().map(|u| u.entity.as_str()).collect();
    let states: Vec<&str> = updates.iter().map(|u| u.state.as_str()).collect();
    let seen: Vec<i64> = updates.iter().map(|u| u.records_seen).collect();
    let next: Vec<Option<DateTime<Utc>>> = updates.iter().map(|u| u.next_close_at).collect();
    txn.execute_typed(
        "UPDATE detect_entity_state s
            SET state = u.state::jsonb, version = s.version + 1, records_seen = u.seen,
                next_close_at = u.next, updated_at = now()
           FROM unnest($2::text[], $3::text[], $4::int8[], $5::timestamptz[]) AS u(entity, state, seen, next)
          WHERE s.consumer_group = $1 AND s.entity = u.entity",
        &[
            (&group, Type::TEXT),
            (&entities, Type::TEXT_ARRAY),
            (&states, Type::TEXT_ARRAY),
            (&seen, Type::INT8_ARRAY),
            (&next, Type::TIMESTAMPTZ_ARRAY),
        ],
    )
    .await
    .map_err(DbError::from_query)?;
    Ok(())
}

/// How many of the messages given to [`insert_outbox`] were new, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxInserted {
    pub alerts: u64,
    pub predictions: u64,
}

impl OutboxInserted {
    pub fn total(self) -> u64 {
        self.alerts + self.predictions
    }
}

/// Adds messages to the outbox in one statement; ids already present are
/// left alone. Returns how many were new.
pub async fn insert_outbox(
    txn: &Transaction<'_>,
    messages: &[OutboxMessage],
) -> Result<OutboxInserted, DbError> {
    if messages.is_empty() {
        return Ok(OutboxInserted::default());
    }
    let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind).collect();
    let payloads: Vec<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
    let row = txn
        .query_typed_one(
            "WITH new AS (
                INSERT INTO detect_outbox (topic, id, msg_key, kind, payload)
                SELECT t, i, k, kd, p::jsonb
                  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(t, i, k, kd, p)
                ON CONFLICT (topic, id) DO NOTHING
                RETURNING kind)
             SELECT count(*) FILTER (WHERE kind = 'alert'), count(*) FILTER (WHERE kind <> 'alert')
               FROM new",
            &[
                (&topics, Type::TEXT_ARRAY),
                (&ids, Type::TEXT_ARRAY),
                (&keys, Type::TEXT_ARRAY),
                (&kinds, Type::TEXT_ARRAY),
                (&payloads, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(DbError::from_query)?;
    let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    Ok(OutboxInserted {
        alerts: count(0),
        predictions: count(1),
    })
}

/// Claims up to `limit` unpublished messages, oldest first. Rows another
/// transaction is publishing are skipped, so two invocations never publish
/// the same row at once.
pub async fn claim_outbox(
    txn: &Transaction<'_>,
    limit: i64,
) -> Result<Vec<PendingMessage>, DbError> {
    let rows = txn
        .query_typed(
            "SELECT topic, id, msg_key, payload::text FROM detect_outbox
              WHERE published_at IS NULL AND parked_at IS NULL
              ORDER BY seq
              LIMIT $1
              FOR UPDATE SKIP LOCKED",
            &[(&limit, Type::INT8)],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(rows
        .iter()
        .map(|r| PendingMessage {
            topic: r.get(0),
            id: r.get(1),
            key: r.get(2),
            payload: r.get(3),
        })
        .collect())
}

/// How the publication of claimed outbox messages went.
#[derive(Debug, Default)]
pub struct OutboxResult<'a> {
    pub delivered: Vec<(&'a str, &'a str)>,
    /// Failed for now: claimed again by a later invocation.
    pub failed: Vec<(&'a str, &'a str, String)>,
    /// Failed for good: parked with the error, never claimed again.
    pub parked: Vec<(&'a str, &'a str, String)>,
}

/// Marks delivered messages published, and counts an attempt with its
/// error on the others (parking those that can never go).
pub async fn finish_outbox(
    txn: &Transaction<'_>,
    result: &OutboxResult<'_>,
) -> Result<(), DbError> {
    if !result.delivered.is_empty() {
        let (dt, di): (Vec<&str>, Vec<&str>) = result.delivered.iter().copied().unzip();
        txn.execute_typed(
            "UPDATE detect_outbox o SET published_at = now(), attempts = attempts + 1, last_error = NULL
               FROM unnest($1::text[], $2::text[]) AS u(topic, id)
              WHERE o.topic = u.topic AND o.id = u.id",
            &[(&dt, Type::TEXT_ARRAY), (&di, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(DbError::from_query)?;
    }
    for (list, park) in [(&result.failed, false), (&result.parked, true)] {
        if list.is_empty() {
            continue;
        }
        let topics: Vec<&str> = list.iter().map(|(t, _, _)| *t).collect();
        let ids: Vec<&str> = list.iter().map(|(_, i, _)| *i).collect();
        let errors: Vec<&str> = list.iter().map(|(_, _, e)| e.as_str()).collect();
        txn.execute_typed(
            "UPDATE detect_outbox o SET attempts = attempts + 1, last_error = u.error,
                    parked_at = CASE WHEN $4 THEN now() ELSE o.parked_at END
               FROM unnest($1::text[], $2::text[], $3::text[]) AS u(topic, id, error)
              WHERE o.topic = u.topic AND o.id = u.id",
            &[
                (&topics, Type::TEXT_ARRAY),
                (&ids, Type::TEXT_ARRAY),
                (&errors, Type::TEXT_ARRAY),
                (&park, Type::BOOL),
            ],
        )
        .await
        .map_err(DbError::from_query)?;
    }
    Ok(())
}

/// Deletes published rows older than `retention`, at most `limit` at a
/// time (a bounded cost per invocation). Returns how many went.
pub async fn prune_outbox(
    client: &impl GenericClient,
    retention: std::time::Duration,
    limit: i64,
) -> Result<u64, DbError> {
    client
        .execute_typed(
            "DELETE FROM detect_outbox WHERE ctid IN (
                SELECT ctid FROM detect_outbox
                 WHERE published_at < now() - $1::float8 * interval '1 second'
                 LIMIT $2)",
            &[
                (&retention.as_secs_f64(), Type::FLOAT8),
                (&limit, Type::INT8),
            ],
        )
        .await
        .map_err(DbError::from_query)
}

/// Moves the group's event-time clock on by the wall time it has been idle,
/// when no record advanced it for `idle`. Returns the new clock, if moved.
/// Clocks implausibly far ahead are left alone (timestamp overflow).
pub async fn advance_idle_clock(
    txn: &Transaction<'_>,
    group: &str,
    idle: std::time::Duration,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let row = txn
        .query_typed_opt(
            "UPDATE detect_clock
                SET max_event_time = max_event_time + (now() - updated_at), updated_at = now()
              WHERE consumer_group = $1
                AND updated_at < now() - $2::float8 * interval '1 second'
                AND max_event_time < now() + interval '100 years'
              RETURNING max_event_time",
            &[(&group, Type::TEXT), (&idle.as_secs_f64(), Type::FLOAT8)],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok(row.map(|r| r.get(0)))
}

/// Messages still waiting to be published, and those parked.
pub async fn count_unpublished(client: &impl GenericClient) -> Result<(i64, i64), DbError> {
    let row = client
        .query_typed_one(
            "SELECT count(*) FILTER (WHERE parked_at IS NULL),
                    count(*) FILTER (WHERE parked_at IS NOT NULL)
               FROM detect_outbox WHERE published_at IS NULL",
            &[],
        )
        .await
        .map_err(DbError::from_query)?;
    Ok((row.get(0), row.get(1)))
}

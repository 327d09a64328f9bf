-- State of the detect function, safe under concurrent invocations.
-- Progress per (group, topic, partition) stays in ingest_progress (same
-- semantics: written in the same transaction as the state it covers).

-- One row per entity (service, sensor, host): windows, baselines,
-- templates, cooldowns as JSON. Batches lock the rows they update
-- (SELECT … FOR UPDATE, in entity order); `version` counts updates.
CREATE TABLE detect_entity_state (
    consumer_group  text        NOT NULL,
    entity          text        NOT NULL,
    state           jsonb,
    version         bigint      NOT NULL DEFAULT 0,
    records_seen    bigint      NOT NULL DEFAULT 0,
    -- the watermark at which this entity next has a window to close
    next_close_at   timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, entity)
);
CREATE INDEX detect_entity_state_next_close
    ON detect_entity_state (consumer_group, next_close_at);

-- Newest event time seen by the group (the watermark is this minus the
-- allowed lateness). Only ever moves forward.
CREATE TABLE detect_clock (
    consumer_group  text        PRIMARY KEY,
    max_event_time  timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Alerts and predictions: inserted with the state change that produced
-- them, published afterwards, marked when Kafka confirmed delivery. A retry
-- publishes whatever is still unpublished; ids are deterministic, so a
-- re-detection can never add a second row.
CREATE TABLE detect_outbox (
    seq           bigserial,
    topic         text        NOT NULL,
    id            text        NOT NULL,
    msg_key       text        NOT NULL,
    kind          text        NOT NULL,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text,
    PRIMARY KEY (topic, id)
);
CREATE INDEX detect_outbox_unpublished ON detect_outbox (seq) WHERE published_at IS NULL;

-- Alerts, newest first, for people.
CREATE VIEW recent_alerts AS
SELECT payload->>'id'          AS id,
       payload->>'detector'    AS detector,
       payload->>'severity'    AS severity,
       payload->>'entity'      AS entity,
       (payload->>'window_start')::timestamptz AS window_start,
       payload->>'message'     AS message,
       published_at IS NOT NULL AS published
  FROM detect_outbox
 WHERE kind = 'alert'
 ORDER BY created_at DESC, seq DESC;

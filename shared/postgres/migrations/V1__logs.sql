-- Normalized log records. One Kafka record may expand into several rows
-- (batch envelopes), told apart by seq. The primary key on the Kafka
-- coordinates makes every write idempotent: a replayed batch adds nothing.
CREATE TABLE logs (
    topic            text             NOT NULL,
    kafka_partition  integer          NOT NULL,
    kafka_offset     bigint           NOT NULL,
    seq              integer          NOT NULL,
    kafka_timestamp  timestamptz      NOT NULL,
    event_time       timestamptz      NOT NULL,
    source_type      text             NOT NULL,
    service          text,
    host             text,
    level            text,
    message          text             NOT NULL,
    http_method      text,
    http_path        text,
    http_protocol    text,
    http_status      integer,
    http_bytes       bigint,
    http_referrer    text,
    user_agent       text,
    client_ip        inet,
    latency_ms       double precision,
    metrics          jsonb            NOT NULL DEFAULT '{}',
    attributes       jsonb            NOT NULL DEFAULT '{}',
    raw              text             NOT NULL,
    ingested_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset, seq)
);

-- Full-text search over messages. 'simple' keeps identifiers, codes and
-- non-English words intact (no stemming, no stop words), which is what log
-- search wants; query with to_tsvector('simple', message) @@ ....
CREATE INDEX logs_message_fts ON logs USING gin (to_tsvector('simple', message));
CREATE INDEX logs_event_time ON logs (event_time);
CREATE INDEX logs_service_time ON logs (service, event_time);

-- Last offset fully handled (stored or dead-lettered) per consumer group and
-- partition, written in the same transaction as the rows it covers.
CREATE TABLE ingest_progress (
    consumer_group   text        NOT NULL,
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    last_offset      bigint      NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

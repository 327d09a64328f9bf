-- `logs` partitioned by day of the Kafka timestamp (UTC), so retention is
-- dropping whole partitions and a time-bounded query reads only the days it
-- covers. The Kafka timestamp comes from the record (never the clock): a
-- replayed record has the same timestamp, lands in the same partition and
-- meets its earlier copy in that partition's primary key, which now holds
-- the partition column as PostgreSQL requires. Days without a partition
-- (far future, or older than anything kept) go to logs_default: every row
-- is stored; maintenance moves them into their day's partition when it
-- creates one, and deletes them there when they expire.
--
-- Existing rows are copied over in this migration (one INSERT … SELECT,
-- checked by count). On a large table run it from `make migrate`-style
-- tooling or the maintenance function (long timeout) before deploying the
-- Kafka-triggered functions.

DROP VIEW status_code_distribution, top_endpoints, error_rate_per_minute, traffic_by_client_ip;

ALTER TABLE logs RENAME TO logs_unpartitioned;
ALTER TABLE logs_unpartitioned RENAME CONSTRAINT logs_pkey TO logs_unpartitioned_pkey;
DROP INDEX logs_message_fts, logs_event_time, logs_service_time;

CREATE TABLE logs (LIKE logs_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (kafka_timestamp);
ALTER TABLE logs ADD PRIMARY KEY (topic, kafka_partition, kafka_offset, seq, source_cluster, kafka_timestamp);
CREATE INDEX logs_message_fts ON logs USING gin (to_tsvector('simple', message));
CREATE INDEX logs_event_time ON logs (event_time);
CREATE INDEX logs_service_time ON logs (service, event_time);
CREATE TABLE logs_default PARTITION OF logs DEFAULT;

-- Name of the partition holding one UTC day.
CREATE FUNCTION logpipe_logs_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'logs_p' || to_char(day, 'YYYYMMDD') $$;

-- Creates the partition of one UTC day unless it exists, moving the rows
-- logs_default holds for that day into it. Returns how many rows moved, or
-- NULL when the partition already existed.
CREATE FUNCTION logpipe_ensure_logs_partition(day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    name  text := logpipe_logs_partition_name(day);
    lo    timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi    timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    moved bigint;
BEGIN
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- Parent first, then the default partition: the order ATTACH takes
    -- them in. Writers wait for the default partition only while its rows
    -- of this day move (usually none).
    LOCK TABLE logs IN SHARE UPDATE EXCLUSIVE MODE;
    LOCK TABLE logs_default IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE %I (LIKE logs INCLUDING DEFAULTS)', name);
    EXECUTE format(
        'WITH m AS (DELETE FROM logs_default WHERE kafka_timestamp >= $1 AND kafka_timestamp < $2 RETURNING *)
         INSERT INTO %I SELECT * FROM m', name)
        USING lo, hi;
    GET DIAGNOSTICS moved = ROW_COUNT;
    -- The check lets ATTACH skip its validation scan.
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (kafka_timestamp >= %L AND kafka_timestamp < %L)',
                   name, name || '_range', lo, hi);
    EXECUTE format('ALTER TABLE logs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_range');
    RETURN moved;
END $$;

-- Retention and look-ahead, run on a schedule (and by `make up`):
--   * keeps the days from `at`'s UTC day minus retention_days on (a row
--     stays at least retention_days full days); retention_days <= 0 keeps
--     everything;
--   * creates the partitions of yesterday through premake_days ahead, and
--     of any kept day that so far only logs_default holds;
--   * drops every partition that ends at or before the first kept day, and
--     deletes expired rows from logs_default.
-- One row per change. Concurrent runs wait for each other.
CREATE FUNCTION logpipe_maintain_partitions(
    retention_days integer DEFAULT 30,
    premake_days   integer DEFAULT 3,
    at             timestamptz DEFAULT now())
RETURNS TABLE (action text, partition_name text, row_count bigint)
LANGUAGE plpgsql AS $$
DECLARE
    today     date := (at AT TIME ZONE 'UTC')::date;
    keep_day  date := CASE WHEN retention_days > 0 THEN today - retention_days END;
    keep_from timestamptz := coalesce(keep_day::timestamp AT TIME ZONE 'UTC', '-infinity');
    last_day  date := today + greatest(premake_days, 0);
    d         date;
    n         bigint;
    p         record;
BEGIN
    PERFORM pg_advisory_xact_lock(7813572101);
    FOR d IN
        SELECT g::date FROM generate_series(greatest(today - 1, coalesce(keep_day, today - 1)),
                                            last_day, interval '1 day') g
        UNION
        SELECT DISTINCT (kafka_timestamp AT TIME ZONE 'UTC')::date FROM logs_default
         WHERE kafka_timestamp >= keep_from
           AND kafka_timestamp < (last_day + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY 1
    LOOP
        n := logpipe_ensure_logs_partition(d);
        IF n IS NOT NULL THEN
            action := 'created'; partition_name := logpipe_logs_partition_name(d); row_count := n;
            RETURN NEXT;
        END IF;
    END LOOP;
    IF keep_day IS NULL THEN
        RETURN;
    END IF;
    FOR p IN
        SELECT c.relname,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'logs'::regclass AND c.relname <> 'logs_default'
         ORDER BY 1
    LOOP
        IF p.upper <= keep_from THEN
            EXECUTE format('DROP TABLE %I', p.relname);
            action := 'dropped'; partition_name := p.relname; row_count := NULL;
            RETURN NEXT;
        END IF;
    END LOOP;
    DELETE FROM logs_default WHERE kafka_timestamp < keep_from;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        action := 'expired'; partition_name := 'logs_default'; row_count := n;
        RETURN NEXT;
    END IF;
END $$;

-- Copy the existing rows: one partition per day they cover, then the rows.
SELECT logpipe_ensure_logs_partition(day)
  FROM (SELECT DISTINCT (kafka_timestamp AT TIME ZONE 'UTC')::date AS day FROM logs_unpartitioned) days
 ORDER BY day;
SELECT logpipe_ensure_logs_partition(d::date)
  FROM generate_series(current_date - 1, current_date + 3, interval '1 day') d;
INSERT INTO logs SELECT * FROM logs_unpartitioned;
DO $$
DECLARE
    before bigint;
    after  bigint;
BEGIN
    SELECT count(*) INTO before FROM logs_unpartitioned;
    SELECT count(*) INTO after FROM logs;
    IF before <> after THEN
        RAISE EXCEPTION 'logs conversion copied % of % rows', after, before;
    END IF;
END $$;
DROP TABLE logs_unpartitioned;

-- The dashboard views, unchanged for SQL users (they read every day kept).
CREATE VIEW status_code_distribution AS
SELECT (http_status / 100) || 'xx' AS status_class,
       http_status,
       count(*)                    AS requests
FROM logs
WHERE http_status IS NOT NULL
GROUP BY http_status
ORDER BY requests DESC;

CREATE VIEW top_endpoints AS
SELECT http_method,
       http_path,
       count(*)                                                   AS requests,
       count(*) FILTER (WHERE http_status >= 500)                 AS server_errors,
       round(avg(latency_ms)::numeric, 2)                         AS avg_latency_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)   AS p95_latency_ms
FROM logs
WHERE http_path IS NOT NULL
GROUP BY http_method, http_path
ORDER BY requests DESC;

CREATE VIEW error_rate_per_minute AS
SELECT date_trunc('minute', event_time)                            AS minute,
       coalesce(service, '(none)')                                 AS service,
       count(*)                                                    AS records,
       count(*) FILTER (WHERE level IN ('error', 'critical', 'fatal')
                           OR http_status >= 500)                  AS errors,
       round(count(*) FILTER (WHERE level IN ('error', 'critical', 'fatal')
                                 OR http_status >= 500)::numeric
             / count(*), 4)                                        AS error_rate
FROM logs
GROUP BY 1, 2
ORDER BY 1 DESC, 2;

CREATE VIEW traffic_by_client_ip AS
SELECT client_ip,
       count(*)                                    AS requests,
       coalesce(sum(http_bytes), 0)                AS bytes,
       count(*) FILTER (WHERE http_status >= 400)  AS client_and_server_errors,
       min(event_time)                             AS first_seen,
       max(event_time)                             AS last_seen
FROM logs
WHERE client_ip IS NOT NULL
GROUP BY client_ip
ORDER BY requests DESC;

-- The dashboard queries for a time range: the views of the same names read
-- every kept day; these read [range_start, range_end) of event time and,
-- for partition pruning, only the Kafka-timestamp days within max_skew of
-- it (a record's Kafka timestamp is when it was produced, normally within
-- seconds of its event time; a backfill further apart needs a larger
-- max_skew). Plain SQL, STABLE: PostgreSQL inlines them into the calling
-- query, so the bounds prune partitions and reach the event_time indexes.
--   SELECT * FROM status_code_distribution(now() - interval '1 hour', now());

CREATE FUNCTION status_code_distribution(
    range_start timestamptz, range_end timestamptz, max_skew interval DEFAULT interval '1 day')
RETURNS TABLE (status_class text, http_status integer, requests bigint)
LANGUAGE sql STABLE AS $$
SELECT (l.http_status / 100) || 'xx', l.http_status, count(*)
  FROM logs l
 WHERE l.http_status IS NOT NULL
   AND l.event_time >= range_start AND l.event_time < range_end
   AND l.kafka_timestamp >= range_start - max_skew AND l.kafka_timestamp < range_end + max_skew
 GROUP BY l.http_status
 ORDER BY 3 DESC
$$;

CREATE FUNCTION top_endpoints(
    range_start timestamptz, range_end timestamptz, max_skew interval DEFAULT interval '1 day')
RETURNS TABLE (http_method text, http_path text, requests bigint, server_errors bigint,
               avg_latency_ms numeric, p95_latency_ms double precision)
LANGUAGE sql STABLE AS $$
SELECT l.http_method, l.http_path, count(*),
       count(*) FILTER (WHERE l.http_status >= 500),
       round(avg(l.latency_ms)::numeric, 2),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms)
  FROM logs l
 WHERE l.http_path IS NOT NULL
   AND l.event_time >= range_start AND l.event_time < range_end
   AND l.kafka_timestamp >= range_start - max_skew AND l.kafka_timestamp < range_end + max_skew
 GROUP BY l.http_method, l.http_path
 ORDER BY 3 DESC
$$;

CREATE FUNCTION error_rate_per_minute(
    range_start timestamptz, range_end timestamptz, max_skew interval DEFAULT interval '1 day')
RETURNS TABLE (minute timestamptz, service text, records bigint, errors bigint, error_rate numeric)
LANGUAGE sql STABLE AS $$
SELECT date_trunc('minute', l.event_time), coalesce(l.service, '(none)'), count(*),
       count(*) FILTER (WHERE l.level IN ('error', 'critical', 'fatal') OR l.http_status >= 500),
       round(count(*) FILTER (WHERE l.level IN ('error', 'critical', 'fatal')
                                 OR l.http_status >= 500)::numeric / count(*), 4)
  FROM logs l
 WHERE l.event_time >= range_start AND l.event_time < range_end
   AND l.kafka_timestamp >= range_start - max_skew AND l.kafka_timestamp < range_end + max_skew
 GROUP BY 1, 2
 ORDER BY 1 DESC, 2
$$;

CREATE FUNCTION traffic_by_client_ip(
    range_start timestamptz, range_end timestamptz, max_skew interval DEFAULT interval '1 day')
RETURNS TABLE (client_ip inet, requests bigint, bytes numeric, client_and_server_errors bigint,
               first_seen timestamptz, last_seen timestamptz)
LANGUAGE sql STABLE AS $$
SELECT l.client_ip, count(*), coalesce(sum(l.http_bytes), 0),
       count(*) FILTER (WHERE l.http_status >= 400),
       min(l.event_time), max(l.event_time)
  FROM logs l
 WHERE l.client_ip IS NOT NULL
   AND l.event_time >= range_start AND l.event_time < range_end
   AND l.kafka_timestamp >= range_start - max_skew AND l.kafka_timestamp < range_end + max_skew
 GROUP BY l.client_ip
 ORDER BY 2 DESC
$$;

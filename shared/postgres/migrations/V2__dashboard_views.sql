-- The dashboards people know from Kibana, as plain views.

-- HTTP status codes, by class and code.
CREATE VIEW status_code_distribution AS
SELECT (http_status / 100) || 'xx' AS status_class,
       http_status,
       count(*)                    AS requests
FROM logs
WHERE http_status IS NOT NULL
GROUP BY http_status
ORDER BY requests DESC;

-- Endpoints by traffic, with error share and latency.
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

-- Error rate per minute and service: records at level error or worse, or
-- HTTP 5xx, over all records of that service in that minute.
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

-- Traffic by client IP.
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

-- Partition drops wait a bounded time for their lock (drop_lock_timeout_ms,
-- default 5 s) and are skipped, reported as 'skipped', when a long query
-- holds logs: a DROP waiting for ACCESS EXCLUSIVE on logs would otherwise
-- queue every insert behind it. Otherwise as in V6.

DROP FUNCTION logpipe_maintain_partitions(integer, integer, timestamptz);

CREATE FUNCTION logpipe_maintain_partitions(
    retention_days integer DEFAULT 30,
    premake_days   integer DEFAULT 3,
    at             timestamptz DEFAULT now(),
    drop_lock_timeout_ms integer DEFAULT 5000)
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
    saved_lock_timeout text := current_setting('lock_timeout');
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
            -- DROP takes ACCESS EXCLUSIVE on logs itself: waiting for it
            -- behind a long query would queue every write to logs behind
            -- the drop. Wait a bounded time, else skip the drop (reported
            -- as 'skipped'; the next run drops it).
            BEGIN
                PERFORM set_config('lock_timeout', greatest(drop_lock_timeout_ms, 1) || 'ms', true);
                EXECUTE format('DROP TABLE %I', p.relname);
                action := 'dropped';
            EXCEPTION WHEN lock_not_available THEN
                action := 'skipped';
            END;
            PERFORM set_config('lock_timeout', saved_lock_timeout, true);
            partition_name := p.relname; row_count := NULL;
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

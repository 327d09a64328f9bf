-- Narrower than V9: the runtime role gets only the DML the functions use.
-- `logs` (and every partition, which can be named directly) is appended to
-- (COPY, INSERT … ON CONFLICT DO NOTHING) and read, never updated or
-- deleted by ingest or detect: only maintenance, as the owner, moves and
-- drops rows. The migration history is only read (the schema check).
REVOKE UPDATE, DELETE ON logs FROM logpipe_runtime;
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'logs'::regclass LOOP
        EXECUTE format('REVOKE UPDATE, DELETE ON %s FROM logpipe_runtime', part);
    END LOOP;
END $$;
REVOKE INSERT, UPDATE, DELETE ON refinery_schema_history FROM logpipe_runtime;
-- Tables the owner creates from now on (the daily partitions of logs above
-- all) get SELECT and INSERT; a later migration whose table the functions
-- update or delete from grants that itself.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE UPDATE, DELETE ON TABLES FROM logpipe_runtime;

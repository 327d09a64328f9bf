-- Least privilege: the functions' runtime role (ingest, detect, the
-- dashboard's readers) gets DML and sequence use, nothing else. Migrations
-- and partition maintenance (DDL) run as the schema owner: the user that
-- applies this migration (the maintain function's DbOwnerSecretArn user in
-- AWS, `logpipe_owner` in the local stack).
--
-- logpipe_runtime is a NOLOGIN group role; the login users of the functions
-- are its members (`GRANT logpipe_runtime TO <user>`, see the README's
-- "Database roles"). An administrator normally creates it beforehand; an
-- owner with CREATEROLE may create it here.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'logpipe_runtime') THEN
        BEGIN
            CREATE ROLE logpipe_runtime NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role logpipe_runtime does not exist and % may not create it: '
                            'run CREATE ROLE logpipe_runtime NOLOGIN as an administrator (README, "Database roles")',
                            current_user;
        END;
    END IF;
END $$;

-- USAGE on the schema: PUBLIC has it on `public`; the administrator grants
-- it otherwise (only the schema's owner may).
-- Every table and view now (logs and its partitions, progress, detect
-- state, outbox, refinery_schema_history for the schema check) ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO logpipe_runtime;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO logpipe_runtime;
-- ... and every one the owner creates later: the daily logs partitions
-- maintenance creates, and the tables of later migrations.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO logpipe_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO logpipe_runtime;
-- No TRUNCATE, REFERENCES, TRIGGER, no CREATE on the schema: the runtime
-- role cannot change the schema or empty a table wholesale. Maintenance's
-- functions (they create and drop partitions) are the owner's.
REVOKE EXECUTE ON FUNCTION logpipe_maintain_partitions(integer, integer, timestamptz, integer),
                           logpipe_ensure_logs_partition(date) FROM PUBLIC;

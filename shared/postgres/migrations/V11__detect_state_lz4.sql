-- Detector states are a few kB of JSON each, rewritten by every batch for
-- every entity it touches; values that size are compressed when stored.
-- lz4 does that several times faster than the default pglz. A server built
-- without lz4 (or older than PostgreSQL 14) keeps pglz: this is a speed-up,
-- never a reason for the migration to fail. Existing values keep their
-- compression until they are next written.
DO $$
BEGIN
    ALTER TABLE detect_entity_state ALTER COLUMN state SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'detect_entity_state.state keeps the default compression: %', SQLERRM;
END $$;

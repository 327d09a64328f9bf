-- The same topic, partition and offset from two clusters (an MSK and a
-- Confluent mapping on one function during a migration) are different
-- records: rows and progress name their source cluster. Rows and progress
-- from before this migration keep the empty name; a group's legacy progress
-- row is adopted by the first cluster that reads it (see load_progress), so
-- a single-cluster deployment carries on where it was.
ALTER TABLE logs ADD COLUMN source_cluster text NOT NULL DEFAULT '';
ALTER TABLE logs DROP CONSTRAINT logs_pkey;
ALTER TABLE logs ADD PRIMARY KEY (topic, kafka_partition, kafka_offset, seq, source_cluster);

ALTER TABLE ingest_progress ADD COLUMN source_cluster text NOT NULL DEFAULT '';
ALTER TABLE ingest_progress DROP CONSTRAINT ingest_progress_pkey;
ALTER TABLE ingest_progress
    ADD PRIMARY KEY (consumer_group, topic, kafka_partition, source_cluster);

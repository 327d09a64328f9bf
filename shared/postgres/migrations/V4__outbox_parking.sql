-- Outbox rows that can never be published (the broker refuses them for
-- good) are parked: kept with their error for an operator, never claimed
-- again, so they cannot hold back the rows behind them.
ALTER TABLE detect_outbox ADD COLUMN parked_at timestamptz;
DROP INDEX detect_outbox_unpublished;
CREATE INDEX detect_outbox_unpublished ON detect_outbox (seq)
    WHERE published_at IS NULL AND parked_at IS NULL;
-- Retention of published rows scans by publication time.
CREATE INDEX detect_outbox_published_at ON detect_outbox (published_at)
    WHERE published_at IS NOT NULL;

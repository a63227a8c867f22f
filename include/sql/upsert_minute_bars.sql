-- Upserts a whole batch of minute bars in one statement and returns one row of counts:
--   received    bars in the batch
--   duplicates  bars superseded by another bar of the same code, venue and minute in the batch
--   inserted    new bars
--   updated     bars whose OHLCV changed (a forming bar overwritten, a correction)
--   unchanged   bars already stored with the same values: no write, no dead tuple
--
-- Parameter bars: a JSON array of the fetch tasks' values, each with its venue (default krx),
-- optionally a source (default KIS), and its bars as positional rows under their codes
-- (kis.bar.bars_by_code; read by minute_bars_received(), migration 014). One parameter, so that
-- Airflow's SQLExecuteQueryOperator, which binds parameters to a single cursor.execute, can send a
-- batch. Run ensure_minute_partitions.sql with the same parameter first, in the same transaction.
--
-- A bad bar (NULL, high < low, a code outside ^[0-9A-Z]{6}$ ...) fails a constraint of the
-- table, whose name says which rule: the statement, and so the whole batch, is rolled back.
WITH received AS (
    SELECT * FROM minute_bars_received(%(bars)s::jsonb)
),
-- ON CONFLICT cannot touch a row twice in one statement, so one record per code, venue and minute is
-- kept: the highest volume (a bar's volume only grows while its minute forms, so it is the latest
-- state whatever order the mapped fetches were concatenated in), then the last one received.
latest AS (
    SELECT DISTINCT ON (stock_code, venue, datetime) *
    FROM received
    ORDER BY stock_code, venue, datetime, volume DESC, ordinal DESC
),
written AS (
    INSERT INTO stock_prices_minute AS stored
        (stock_code, venue, datetime, open, high, low, close, volume, source)
    SELECT stock_code, venue, datetime, open, high, low, close, volume, coalesce(source, 'KIS')
    FROM latest
    -- A fixed order of row locks: two overlapping batches upserted concurrently wait for each
    -- other instead of deadlocking.
    ORDER BY stock_code, venue, datetime
    ON CONFLICT (stock_code, venue, datetime) DO UPDATE
    SET open = excluded.open,
        high = excluded.high,
        low = excluded.low,
        close = excluded.close,
        volume = excluded.volume,
        source = excluded.source,
        updated_at = now(),
        revision = stored.revision + 1
    WHERE (stored.open, stored.high, stored.low, stored.close, stored.volume)
          IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)
    RETURNING stored.revision = 0 AS is_new
)
SELECT (SELECT count(*) FROM received)::integer AS received,
       ((SELECT count(*) FROM received) - (SELECT count(*) FROM latest))::integer AS duplicates,
       (count(*) FILTER (WHERE is_new))::integer AS inserted,
       (count(*) FILTER (WHERE NOT is_new))::integer AS updated,
       ((SELECT count(*) FROM latest) - count(*))::integer AS unchanged
FROM written;

-- Creates the monthly partitions a batch needs, and the month after its last bar, so that the
-- upsert never meets a missing month and the next month exists before its first minute.
-- Parameter bars: the same JSON array as upsert_minute_bars.sql (run it first, same transaction).
-- Returns the names of the partitions created (usually none: then it takes no lock at all).
SELECT ensure_minute_partitions(min(datetime)::date, (max(datetime) + interval '1 month')::date) AS created
FROM minute_bars_received(%(bars)s::jsonb);

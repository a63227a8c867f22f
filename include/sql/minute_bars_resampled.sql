-- 5-, 10-, 30- or 60-minute bars of some codes on one venue over a time range (minute_bars_resampled,
-- migrations 004 and 011, says how buckets are aligned and where the closing-auction bar goes).
-- Parameters: bucket (interval, e.g. '5 minutes'), from_ts and to_ts (timestamp, naive KST,
-- half-open), codes (text[]), venue (text).
-- Returns stock_code, venue, bucket_start, open, high, low, close, volume, bar_count, ordered.
SELECT *
FROM minute_bars_resampled(%(bucket)s::interval, %(from_ts)s::timestamp, %(to_ts)s::timestamp,
                           %(codes)s::text[], %(venue)s::text);

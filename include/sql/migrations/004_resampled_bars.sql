-- N-minute bars derived from the minute bars: first open, max high, min low, last close, sum volume.
--
-- Buckets are clock-aligned on 09:00 KST (date_bin origin), labelled by their start, closed on the
-- left, and a bar goes to the bucket its label falls in. The closing-auction bar (15:30, or a late
-- print up to 15:35) therefore forms its own 15:30 bucket at 5, 10 and 30 minutes (nothing trades
-- 15:20-15:29), and closes the 15:00 bucket at 60 minutes: the last bucket's close is always the
-- official close, and an hourly day has 7 bars, as Korean HTS charts show. The 10:00 openings (first
-- day of the year, CSAT day) stay aligned, since 60 minutes divides the hour between 09:00 and 10:00.
CREATE FUNCTION minute_bars_resampled(bucket interval, from_ts timestamp, to_ts timestamp, codes text[])
RETURNS TABLE (
    stock_code text,
    bucket_start timestamp,
    open integer,
    high integer,
    low integer,
    close integer,
    volume bigint,
    bar_count integer
)
LANGUAGE sql STABLE
AS $$
    SELECT m.stock_code,
           date_bin(bucket, m.datetime, timestamp '2000-01-03 09:00') AS bucket_start,
           (array_agg(m.open ORDER BY m.datetime))[1],
           max(m.high),
           min(m.low),
           (array_agg(m.close ORDER BY m.datetime DESC))[1],
           sum(m.volume)::bigint,
           count(*)::integer
    FROM stock_prices_minute m
    WHERE m.stock_code = ANY (codes)
      AND m.datetime >= from_ts
      AND m.datetime < to_ts
    GROUP BY 1, 2
    ORDER BY 1, 2
$$;

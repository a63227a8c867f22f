-- Venues (issue 12): a stock's minute bars can come from KRX, from Nextrade (NXT, 08:00-20:00), or
-- from KIS's unified view of both (kis.venues.Venue). The same code and minute may be stored once per
-- venue, and each venue's day is verified, gap-checked and shown on its own.
--
-- In place, losing nothing: every existing row was collected from KRX, so each new venue column is
-- NOT NULL DEFAULT 'krx' (a constant default: no table rewrite). collection_alerts.venue stays NULL
-- on old rows and on alerts about no venue in particular (a missed deadline).

ALTER TABLE stock_prices_minute
    ADD COLUMN venue text NOT NULL DEFAULT 'krx',
    ADD CONSTRAINT ck_minute_venue CHECK (venue IN ('krx', 'nxt', 'unified'));

-- The key becomes (stock_code, venue, datetime). Both indexes are on the partitioned parent, so every
-- partition, existing or created later by ensure_minute_partitions, gets its own copy. Venue comes
-- second: every statement names its codes and one venue, then a time range. The covering index of
-- migration 002 is rebuilt on the same key (one on the old key would serve no query any more).
ALTER TABLE stock_prices_minute DROP CONSTRAINT uk_stock_datetime;
ALTER TABLE stock_prices_minute
    ADD CONSTRAINT uk_minute_stock_venue_datetime UNIQUE (stock_code, venue, datetime);
DROP INDEX idx_minute_stock_datetime;
CREATE INDEX idx_minute_stock_venue_datetime ON stock_prices_minute (stock_code, venue, datetime)
    INCLUDE (open, high, low, close, volume);
COMMENT ON TABLE stock_prices_minute IS
    'KRX, Nextrade and unified 1-minute OHLCV bars from the KIS Open API, monthly partitions';
COMMENT ON COLUMN stock_prices_minute.venue IS 'krx, nxt or unified (KRX + Nextrade), as kis.venues.Venue';

-- The verification: one row per date, code and venue. unexpected_minutes lists the bars stored at
-- minutes outside the venue's grid (reported and counted as stored, never an error). Both tables
-- get the columns in the same order, so their rows stay alike.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['minute_verification', 'minute_verification_history'] LOOP
        EXECUTE format(
            'ALTER TABLE %I ADD COLUMN venue text NOT NULL DEFAULT ''krx'', '
            'ADD COLUMN unexpected_minutes timestamp[] NOT NULL DEFAULT ''{}'', '
            'ADD CONSTRAINT %I CHECK (venue IN (''krx'', ''nxt'', ''unified''))',
            t, t || '_venue_check');
    END LOOP;
END
$$;
ALTER TABLE minute_verification DROP CONSTRAINT minute_verification_pkey;
ALTER TABLE minute_verification ADD PRIMARY KEY (trading_date, stock_code, venue);
DROP INDEX idx_minute_verification_history_day;
CREATE INDEX idx_minute_verification_history_day
    ON minute_verification_history (trading_date, stock_code, venue, checked_at);

-- A live gap is alerted once per venue.
ALTER TABLE alerted_gaps
    ADD COLUMN venue text NOT NULL DEFAULT 'krx' CHECK (venue IN ('krx', 'nxt', 'unified'));
ALTER TABLE alerted_gaps DROP CONSTRAINT alerted_gaps_pkey;
ALTER TABLE alerted_gaps ADD PRIMARY KEY (stock_code, venue, datetime);

ALTER TABLE collection_alerts
    ADD COLUMN venue text CHECK (venue IN ('krx', 'nxt', 'unified'));

-- Resampling per venue (buckets as in migration 004). A call without venue still means KRX; the
-- old four-argument function goes, or such a call would be ambiguous between the two.
DROP FUNCTION minute_bars_resampled(interval, timestamp, timestamp, text[]);
CREATE FUNCTION minute_bars_resampled(
    bucket interval, from_ts timestamp, to_ts timestamp, codes text[], venue text DEFAULT 'krx'
)
RETURNS TABLE (
    stock_code text,
    venue text,
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
           m.venue,
           date_bin(bucket, m.datetime, timestamp '2000-01-03 09:00') AS bucket_start,
           (array_agg(m.open ORDER BY m.datetime))[1],
           max(m.high),
           min(m.low),
           (array_agg(m.close ORDER BY m.datetime DESC))[1],
           sum(m.volume)::bigint,
           count(*)::integer
    FROM stock_prices_minute m
    WHERE m.stock_code = ANY (codes)
      AND m.venue = minute_bars_resampled.venue
      AND m.datetime >= from_ts
      AND m.datetime < to_ts
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
$$;

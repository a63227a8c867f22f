-- v1 of the minute-bar table, as the seed story specified it, with its mistakes fixed:
-- integer prices (KRW has no fraction), CHECK constraints so a bad bar can never be stored,
-- timestamptz for created_at (an instant, whatever the session TimeZone), no surrogate id.
--
-- datetime is timestamp WITHOUT time zone holding the KST wall-clock start of the minute, the way
-- KIS labels bars. KRX has no daylight saving, so it is unambiguous, and datetime::date is the
-- business date whatever the client's TimeZone (a timestamptz would change date under UTC).
--
-- Range-partitioned by month: a month of 50 codes is about 400k rows (20 MB), twelve partitions a
-- year keep planning cheap, and a one-day read is pruned to one partition and one index range.
-- There is deliberately no DEFAULT partition: rows that landed there would make the later CREATE of
-- their month fail and every CREATE would scan it. The pipeline creates months ahead instead
-- (ensure_minute_partitions), so an insert never meets a missing month.
CREATE TABLE stock_prices_minute (
    stock_code  text        NOT NULL,
    datetime    timestamp   NOT NULL,
    open        integer     NOT NULL,
    high        integer     NOT NULL,
    low         integer     NOT NULL,
    close       integer     NOT NULL,
    volume      bigint      NOT NULL,
    source      text        NOT NULL DEFAULT 'KIS',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uk_stock_datetime UNIQUE (stock_code, datetime),
    CONSTRAINT ck_minute_stock_code_format CHECK (stock_code ~ '^[0-9A-Z]{6}$'),
    CONSTRAINT ck_minute_prices_positive CHECK (open > 0 AND high > 0 AND low > 0 AND close > 0),
    CONSTRAINT ck_minute_low_le_open_close_le_high
        CHECK (low <= open AND low <= close AND open <= high AND close <= high),
    CONSTRAINT ck_minute_volume_not_negative CHECK (volume >= 0),
    CONSTRAINT ck_minute_whole_minute CHECK (date_trunc('minute', datetime) = datetime),
    CONSTRAINT ck_minute_source_not_empty CHECK (source <> '')
) PARTITION BY RANGE (datetime);

-- The seed's index, which duplicates the unique constraint's own index (migration 002 replaces it).
CREATE INDEX idx_minute_stock_datetime ON stock_prices_minute (stock_code, datetime);

COMMENT ON TABLE stock_prices_minute IS 'KRX 1-minute OHLCV bars from the KIS Open API, monthly partitions';
COMMENT ON COLUMN stock_prices_minute.datetime IS 'KST wall-clock start of the minute (timestamp without time zone)';

-- Creates the missing monthly partitions covering first_day..last_day (inclusive) and returns
-- their names. Cheap when they exist: a catalog lookup per month, no lock. Creating one takes an
-- ACCESS EXCLUSIVE lock on the parent until commit, so creators are serialised by an advisory
-- lock and re-check after waiting (a concurrent caller may just have created the month).
CREATE FUNCTION ensure_minute_partitions(first_day date, last_day date)
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
DECLARE
    parent_schema name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE c.oid = 'stock_prices_minute'::regclass);
    month_start date;
    partition_name text;
BEGIN
    IF first_day IS NULL OR last_day IS NULL THEN
        RETURN;
    END IF;
    FOR month_start IN
        SELECT generate_series(date_trunc('month', first_day), date_trunc('month', last_day), interval '1 month')::date
    LOOP
        partition_name := 'stock_prices_minute_p' || to_char(month_start, 'YYYY_MM');
        CONTINUE WHEN to_regclass(format('%I.%I', parent_schema, partition_name)) IS NOT NULL;
        PERFORM pg_advisory_xact_lock(hashtext('kis:stock_prices_minute:partitions'));
        CONTINUE WHEN to_regclass(format('%I.%I', parent_schema, partition_name)) IS NOT NULL;
        EXECUTE format(
            'CREATE TABLE %I.%I PARTITION OF stock_prices_minute FOR VALUES FROM (%L) TO (%L)',
            parent_schema, partition_name,
            month_start::timestamp, (month_start + interval '1 month')::timestamp);
        RETURN NEXT partition_name;
    END LOOP;
END;
$$;

-- The 5-, 10-, 30- and 60-minute bars of each verified day, materialized by the DAG
-- kis_resampled_bars when the backfill announces the day (kis.assets): what a chart or a model
-- reads without resampling the minute bars again. The bars are those of minute_bars_resampled
-- (migrations 004 and 011: buckets from 09:00, labelled by their start, the closing-auction bar in
-- its own 15:30 bucket up to 30 minutes and closing the 15:00 bucket at 60).
CREATE TABLE stock_prices_resampled (
    stock_code      text        NOT NULL,
    venue           text        NOT NULL CHECK (venue IN ('krx', 'nxt', 'unified')),
    minutes         smallint    NOT NULL CHECK (minutes IN (5, 10, 30, 60)),
    bucket_start    timestamp   NOT NULL,  -- KST wall-clock, as stock_prices_minute.datetime
    open            integer     NOT NULL,
    high            integer     NOT NULL,
    low             integer     NOT NULL,
    close           integer     NOT NULL,
    volume          bigint      NOT NULL,
    bar_count       integer     NOT NULL,  -- the minute bars in the bucket
    run_id          text        NOT NULL,  -- the kis_resampled_bars run that wrote it
    materialized_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stock_code, venue, minutes, bucket_start)
);
-- A day of a venue is replaced as a whole.
CREATE INDEX idx_resampled_venue_bucket ON stock_prices_resampled (venue, bucket_start);
COMMENT ON TABLE stock_prices_resampled IS
    '5/10/30/60-minute bars of the verified days, one (day, venue) replaced at a time by kis_resampled_bars';

-- Replaces the day's resampled bars of one venue by those of the minute bars stored now, in the
-- caller's transaction: a re-run replaces, never adds. codes NULL: every code stored that day.
-- Returns the rows written.
CREATE FUNCTION materialize_resampled_bars(day date, venue text, codes text[], run_id text)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    written integer;
BEGIN
    DELETE FROM stock_prices_resampled r
    WHERE r.venue = materialize_resampled_bars.venue
      AND r.bucket_start >= day
      AND r.bucket_start < day + 1;
    INSERT INTO stock_prices_resampled
        (stock_code, venue, minutes, bucket_start, open, high, low, close, volume, bar_count, run_id)
    SELECT b.stock_code, b.venue, m.minutes, b.bucket_start, b.open, b.high, b.low, b.close, b.volume,
           b.bar_count, materialize_resampled_bars.run_id
    FROM unnest(ARRAY[5, 10, 30, 60]::smallint[]) AS m(minutes)
    CROSS JOIN LATERAL minute_bars_resampled(
        make_interval(mins => m.minutes), day::timestamp, (day + 1)::timestamp,
        coalesce(codes, ARRAY(
            SELECT DISTINCT s.stock_code FROM stock_prices_minute s
            WHERE s.venue = materialize_resampled_bars.venue AND s.datetime >= day AND s.datetime < day + 1
        )),
        materialize_resampled_bars.venue
    ) AS b;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

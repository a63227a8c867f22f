-- The live gap check of one venue: the expected (code, minute) pairs that are not stored on that
-- venue and were never alerted for it,
-- marked as alerted in the same statement, so each gap is reported once however often it runs
-- (and by one caller only when two run at once).
--
-- Parameters:
--   codes    text[]       the watch-list
--   venue    text         krx, nxt or unified
--   minutes  timestamp[]  the expected minutes so far, naive KST: the venue's grid up to the last
--                         closed minute minus two (a bar may arrive a minute late). Leave the
--                         closing bar out: it may print up to five minutes late and is checked by
--                         the day's verification.
--   run_id   text         the run that alerts
-- Returns stock_code, datetime of every new gap, ordered.
WITH expected AS (
    SELECT c.stock_code, m.minute
    FROM unnest(%(codes)s::text[]) AS c (stock_code)
    CROSS JOIN unnest(%(minutes)s::timestamp[]) AS m (minute)
),
missing AS (
    SELECT e.stock_code, e.minute
    FROM expected e
    WHERE NOT EXISTS (
        SELECT 1 FROM stock_prices_minute s
        WHERE s.stock_code = e.stock_code AND s.venue = %(venue)s::text AND s.datetime = e.minute
    )
),
alerted AS (
    INSERT INTO alerted_gaps (stock_code, venue, datetime, run_id)
    SELECT stock_code, %(venue)s::text, minute, %(run_id)s::text FROM missing
    ORDER BY stock_code, minute
    ON CONFLICT (stock_code, venue, datetime) DO NOTHING
    RETURNING stock_code, datetime
)
SELECT stock_code, datetime FROM alerted ORDER BY stock_code, datetime;

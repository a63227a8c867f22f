-- The dashboard's heatmap of one date and venue: for every code, one character per minute of the
-- venue's expected bar grid of the date, in grid order:
--   c  collected         a bar of the venue is stored for the minute (the closing bar anywhere from
--                        the close to five minutes after: in_closing_print, as verify_day.sql counts it)
--   a  expected absence  no bar, and the day's verification found the code's absences explained
--                        (closing bar present if any and the minute volumes add up to the reported day
--                        volume: a VI, a halt, a minute without trades)
--   m  missing           no bar although the minute is due
--   b  before collection no bar, the minute lies before what the day's first minute run could fetch
--                        (its minute minus its reach: minute_collection_start, migration 015), and
--                        no verification of the day yet: never alerted live, left to the backfill
--                        (a start in the middle of the session; the whole day when no minute run
--                        of the day fetched)
--   f  not yet           the minute is not due yet (today's future, or a run may still be busy)
-- A continuous minute m is due from m + 2 minutes (its bar closes at m + 1 minute and the run of
-- that tick gets its minute to store it, see LIVE_GAP_AFTER in kis.minute_run); the closing bar
-- from close + 6 minutes (the closing print may come five minutes late).
--
-- Parameters:
--   day      date         the trading date
--   venue    text         krx, nxt or unified
--   grid     timestamp[]  the venue's expected bar minutes, naive KST (kis.calendar); empty on a
--                         day without a session
--   closing  timestamp    the closing bar (Session.closing_bar: KRX's 15:30), NULL when the venue's
--                         day ends without one (nxt, unified)
--   codes    text[]       the codes to show (a code without any bar shows too)
--   now      timestamp    the current KST wall-clock time, naive
--   reach    interval     how far back a minute run fetches (kis.calendar.RUN_REACH: 30 minutes)
-- Returns one row per code, ordered by code: stock_code, verification (the status of the day's
-- verification, NULL before one ran) and cells.
WITH grid AS (
    SELECT minute, position FROM unnest(%(grid)s::timestamp[]) WITH ORDINALITY AS g (minute, position)
),
closing AS (
    SELECT %(closing)s::timestamp AS minute
),
codes AS (
    SELECT DISTINCT stock_code FROM unnest(%(codes)s::text[]) AS c (stock_code)
),
collection AS (
    SELECT coalesce(
        (SELECT first_run_at - %(reach)s::interval FROM minute_collection_start
         WHERE trading_date = %(day)s::date AND venue = %(venue)s::text),
        'infinity'::timestamp) AS reach
),
-- The day's bars and its closing print as the day's verification reads them (migration 018).
day_bars AS (
    SELECT stock_code, datetime FROM stored_day_bars(%(day)s::date, %(venue)s::text, %(codes)s::text[])
),
closing_bars AS (
    SELECT DISTINCT b.stock_code
    FROM day_bars b, closing
    WHERE in_closing_print(b.datetime, closing.minute)
)
SELECT c.stock_code,
       v.status AS verification,
       coalesce(string_agg(
           CASE
               WHEN b.stock_code IS NOT NULL OR (g.minute = closing.minute AND cb.stock_code IS NOT NULL) THEN 'c'
               WHEN g.minute = closing.minute AND g.minute + interval '6 minutes' > %(now)s::timestamp THEN 'f'
               WHEN g.minute + interval '2 minutes' > %(now)s::timestamp THEN 'f'
               WHEN v.status = 'complete_with_explained_absences' AND g.minute = ANY (v.missing_minutes) THEN 'a'
               WHEN v.status IS NULL AND g.minute < collection.reach THEN 'b'
               ELSE 'm'
           END, '' ORDER BY g.position) FILTER (WHERE g.minute IS NOT NULL), '') AS cells
FROM codes c
LEFT JOIN grid g ON true
CROSS JOIN closing
CROSS JOIN collection
LEFT JOIN day_bars b ON b.stock_code = c.stock_code AND b.datetime = g.minute
LEFT JOIN closing_bars cb ON cb.stock_code = c.stock_code
LEFT JOIN minute_verification v
       ON v.trading_date = %(day)s::date AND v.stock_code = c.stock_code AND v.venue = %(venue)s::text
GROUP BY c.stock_code, v.status
ORDER BY c.stock_code;

-- Verifies one trading date of one venue per code against the venue's expected bar grid, writes the
-- result to minute_verification (replacing an earlier verification of the same date, code and venue)
-- and to minute_verification_history, and returns the rows written (the columns of
-- minute_verification), ordered by code.
--
-- Parameters:
--   day      date         the trading date
--   venue    text         krx, nxt or unified: only that venue's bars are read
--   grid     timestamp[]  the expected bar minutes of that date and venue, naive KST (kis.calendar
--                        Session.bar_minutes: 09:00..15:19 and 15:30 on a regular KRX day)
--   closing  timestamp    the closing-auction bar that ends the day (Session.closing_bar: 15:30 on a
--                        regular KRX day), or NULL when the venue's day ends without one (nxt, unified)
--   codes    text[]       the codes to verify (a code without any bar is reported too)
--   volumes  jsonb        the day's cumulative volume per code as reported by the API,
--                        e.g. an object from code to volume, or NULL when the run does not have it
--   run_id   text         the run that verifies
--   untraded text[]       codes known to have traded nothing that day (the archive's: KIS's day volume
--                        0, or halted all day per the universe and no volume reported), or NULL
--
-- The closing bar counts as present anywhere from `closing` to five minutes after (the closing
-- print has come as late as 15:32). KIS's day volume counts off-session trades too
-- (docs/krx-sessions.md), so it can only prove that missing minutes had no trades when it equals
-- the stored bars' sum. The status of a code:
--   no_data                          bars were expected and none is stored
--   gap                              some bars are stored but not the closing bar: data was lost
--                                    (only with a `closing`: without one no single bar proves the
--                                    day was collected to its end)
--   complete                         every expected minute present, whatever the volumes say
--   complete_with_explained_absences minutes missing, the closing bar there (or none to expect), and
--                                    the minute volumes add up to the reported day volume: the
--                                    absences are minutes without trades (VI, illiquid code, halt)
--   unverifiable                     minutes missing, the closing bar there (or none to expect), and
--                                    the volumes cannot tell (the day volume exceeds the bars' sum, as
--                                    off-session trades make it, or is below it, or unknown)
-- volume_status: match, exceeds (day volume > bars' sum), below (< the sum), unknown.
-- stored and volume_sum count every bar of the venue's day; unexpected_minutes lists the bars at
-- minutes outside the grid and outside the closing print's window (reported, never an error).
WITH grid AS (
    SELECT minute FROM unnest(%(grid)s::timestamp[]) AS g (minute)
),
closing AS (
    SELECT %(closing)s::timestamp AS minute
),
codes AS (
    SELECT DISTINCT stock_code FROM unnest(%(codes)s::text[]) AS c (stock_code)
),
-- The day's bars and its closing print as the dashboard's heatmap reads them (migration 018).
day_bars AS (
    SELECT stock_code, datetime, volume FROM stored_day_bars(%(day)s::date, %(venue)s::text, %(codes)s::text[])
),
closing_bars AS (
    SELECT b.stock_code, min(b.datetime) AS closing_bar_at
    FROM day_bars b, closing
    WHERE in_closing_print(b.datetime, closing.minute)
    GROUP BY b.stock_code
),
missing AS (
    SELECT c.stock_code, array_agg(g.minute ORDER BY g.minute) AS missing_minutes
    FROM codes c
    CROSS JOIN grid g
    CROSS JOIN closing
    LEFT JOIN day_bars b ON b.stock_code = c.stock_code AND b.datetime = g.minute
    LEFT JOIN closing_bars cb ON cb.stock_code = c.stock_code
    WHERE b.stock_code IS NULL
      AND NOT (g.minute IS NOT DISTINCT FROM closing.minute AND cb.closing_bar_at IS NOT NULL)
    GROUP BY c.stock_code
),
unexpected AS (
    SELECT b.stock_code, array_agg(b.datetime ORDER BY b.datetime) AS unexpected_minutes
    FROM day_bars b
    CROSS JOIN closing
    WHERE b.datetime <> ALL (%(grid)s::timestamp[])
      AND NOT coalesce(in_closing_print(b.datetime, closing.minute), false)
    GROUP BY b.stock_code
),
totals AS (
    SELECT stock_code, count(*)::integer AS stored, sum(volume)::bigint AS volume_sum
    FROM day_bars
    GROUP BY stock_code
),
checked AS (
    SELECT c.stock_code,
           (SELECT count(*) FROM grid)::integer AS expected,
           coalesce(t.stored, 0) AS stored,
           coalesce(mi.missing_minutes, '{}') AS missing_minutes,
           coalesce(u.unexpected_minutes, '{}') AS unexpected_minutes,
           cb.closing_bar_at,
           coalesce(t.volume_sum, 0) AS volume_sum,
           v.reported_volume,
           CASE
               WHEN v.reported_volume IS NULL THEN 'unknown'
               WHEN v.reported_volume = coalesce(t.volume_sum, 0) THEN 'match'
               WHEN v.reported_volume > coalesce(t.volume_sum, 0) THEN 'exceeds'
               ELSE 'below'
           END AS volume_status
    FROM codes c
    LEFT JOIN totals t USING (stock_code)
    LEFT JOIN missing mi USING (stock_code)
    LEFT JOIN unexpected u USING (stock_code)
    LEFT JOIN closing_bars cb USING (stock_code)
    CROSS JOIN LATERAL (SELECT (%(volumes)s::jsonb ->> c.stock_code)::bigint AS reported_volume) v
),
report AS (
    SELECT %(day)s::date AS trading_date,
           c.stock_code,
           %(venue)s::text AS venue,
           c.expected,
           c.stored,
           c.expected - cardinality(c.missing_minutes) AS present,
           c.missing_minutes,
           c.unexpected_minutes,
           c.closing_bar_at,
           c.volume_sum,
           c.reported_volume,
           c.volume_status,
           CASE
               WHEN c.stored = 0 AND c.stock_code = ANY (coalesce(%(untraded)s::text[], '{}'))
                   THEN 'complete_with_explained_absences'
               WHEN c.expected > 0 AND c.stored = 0 THEN 'no_data'
               WHEN cardinality(c.missing_minutes) = 0 THEN 'complete'
               WHEN %(closing)s::timestamp IS NOT NULL AND c.closing_bar_at IS NULL THEN 'gap'
               WHEN c.volume_status = 'match' THEN 'complete_with_explained_absences'
               ELSE 'unverifiable'
           END AS status,
           %(run_id)s::text AS run_id,
           now() AS checked_at
    FROM checked c
),
-- Columns named, not taken in table order: that order is the migrations' history (011 added venue
-- and unexpected_minutes last).
history AS (
    INSERT INTO minute_verification_history
        (trading_date, stock_code, venue, expected, stored, present, missing_minutes, unexpected_minutes,
         closing_bar_at, volume_sum, reported_volume, volume_status, status, run_id, checked_at)
    SELECT * FROM report
),
written AS (
    INSERT INTO minute_verification AS v
        (trading_date, stock_code, venue, expected, stored, present, missing_minutes, unexpected_minutes,
         closing_bar_at, volume_sum, reported_volume, volume_status, status, run_id, checked_at)
    SELECT * FROM report
    ON CONFLICT (trading_date, stock_code, venue) DO UPDATE
    SET expected = excluded.expected,
        stored = excluded.stored,
        present = excluded.present,
        missing_minutes = excluded.missing_minutes,
        unexpected_minutes = excluded.unexpected_minutes,
        closing_bar_at = excluded.closing_bar_at,
        volume_sum = excluded.volume_sum,
        reported_volume = excluded.reported_volume,
        volume_status = excluded.volume_status,
        status = excluded.status,
        run_id = excluded.run_id,
        checked_at = excluded.checked_at
    RETURNING v.*
)
SELECT * FROM written ORDER BY stock_code;

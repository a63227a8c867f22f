-- How far the market archive is on each of the given trading dates of one venue (kis.archive_scope,
-- the dashboard's progress): the code-days a run of that date covers (archive_members of the date's
-- universe, without the codes earlier runs found unknown to KIS or not traded on the venue, as its
-- gate leaves them out) and how many of them are settled (is_settled). Migration 020 defines both.
-- Parameters: days (date[]), venue (text), markets, groups (text[] or NULL, as archive_codes.sql),
-- left_out_kinds (text[]: the alert kinds that leave a code out on any venue), venue_kind (text:
-- the kind that leaves it out on its own venue).
-- Returns day, has_universe (false: no universe is loaded on or after it, so nothing is known yet),
-- expected, settled; ordered by day.
--
-- A year of the whole market is ~650,000 code-days, each joined once by hash: about 0.9 s on 2 cores
-- (days is MATERIALIZED so that universe_day_of runs once a day, not once a code-day: 4.5 s).
WITH days AS MATERIALIZED (
    SELECT d.day, universe_day_of(d.day) AS universe_day
    FROM unnest(%(days)s::date[]) AS d (day)
),
left_out AS (
    SELECT DISTINCT trading_date, stock_code
    FROM collection_alerts
    WHERE trading_date = ANY (%(days)s::date[]) AND stock_code IS NOT NULL
      AND (kind = ANY (%(left_out_kinds)s::text[]) OR (kind = %(venue_kind)s AND venue = %(venue)s::text))
),
settled AS (
    SELECT trading_date, stock_code
    FROM minute_verification
    WHERE trading_date = ANY (%(days)s::date[]) AND venue = %(venue)s::text AND is_settled(status)
)
SELECT d.day, d.universe_day IS NOT NULL AS has_universe,
       count(m.stock_code) AS expected, count(s.stock_code) AS settled
FROM days d
LEFT JOIN archive_members(d.day, d.universe_day, %(markets)s::text[], %(groups)s::text[]) m
       ON NOT EXISTS (SELECT FROM left_out l WHERE l.trading_date = d.day AND l.stock_code = m.stock_code)
LEFT JOIN settled s ON s.trading_date = d.day AND s.stock_code = m.stock_code
GROUP BY d.day, d.universe_day
ORDER BY d.day;

-- The collection status of a date on one venue (the seed's /minute-status query), measured against
-- the calendar's grid of that venue, never 50 x 390.
--
-- Parameters:
--   day                date    the trading date
--   venue              text    krx, nxt or unified: only that venue's bars count
--   codes              text[]  the watch-list (a code without any bar still shows, with 0)
--   expected_per_code  integer the length of the venue's bar grid of the date from kis.calendar
--                              (KRX: 381 on a regular day, 321 on the first day of the year, 0 when
--                              closed)
-- Returns one row: today_total, expected_total (sum over codes of the grid length),
-- collection_rate (percent, NULL when nothing is expected), stock_count (codes with bars),
-- first_time, last_time, and per_code: a JSON array of
-- stock_code, bars, expected, completeness (percent), first_time, last_time, least complete first
-- (every code expects the same grid: fewest bars first), then by code.
-- Percentages are truncated to three decimals, never rounded: 97.9996 is 97.999, not 98.00, which
-- would look like a pass against a threshold of 98.
WITH codes AS (
    SELECT DISTINCT stock_code FROM unnest(%(codes)s::text[]) AS c (stock_code)
),
per_code AS (
    SELECT c.stock_code, count(m.datetime)::integer AS bars, min(m.datetime) AS first_time,
           max(m.datetime) AS last_time
    FROM codes c
    LEFT JOIN stock_prices_minute m
           ON m.stock_code = c.stock_code
          AND m.venue = %(venue)s::text
          AND m.datetime >= %(day)s::date
          AND m.datetime < %(day)s::date + 1
    GROUP BY c.stock_code
),
expected AS (
    SELECT %(expected_per_code)s::integer AS per_code
)
SELECT sum(p.bars)::integer AS today_total,
       (e.per_code * count(*))::integer AS expected_total,
       trunc(100.0 * sum(p.bars) / nullif(e.per_code * count(*), 0), 3)::float8 AS collection_rate,
       (count(*) FILTER (WHERE p.bars > 0))::integer AS stock_count,
       min(p.first_time) AS first_time,
       max(p.last_time) AS last_time,
       coalesce(
           jsonb_agg(jsonb_build_object(
               'stock_code', p.stock_code,
               'bars', p.bars,
               'expected', e.per_code,
               'completeness', trunc(100.0 * p.bars / nullif(e.per_code, 0), 3)::float8,
               'first_time', p.first_time,
               'last_time', p.last_time) ORDER BY p.bars, p.stock_code),
           '[]') AS per_code
FROM per_code p, expected e
GROUP BY e.per_code;

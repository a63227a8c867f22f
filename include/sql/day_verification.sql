-- The latest verification of one trading date and venue, per code (what verify_day.sql last wrote).
--
-- Parameters:
--   day    date  the trading date
--   venue  text  krx, nxt or unified
-- Returns stock_code, status, volume_status, missing (how many grid minutes lack a bar), unexpected
-- (how many bars are stored outside the grid) and checked_at, ordered by code; no rows before the
-- date was verified.
SELECT stock_code, status, volume_status, cardinality(missing_minutes) AS missing,
       cardinality(unexpected_minutes) AS unexpected, checked_at
FROM minute_verification
WHERE trading_date = %(day)s::date AND venue = %(venue)s::text
ORDER BY stock_code;

-- The latest verification of one trading date, per code (what verify_day.sql last wrote).
--
-- Parameters:
--   day  date  the trading date
-- Returns stock_code, status, volume_status, missing (how many grid minutes lack a bar) and
-- checked_at, ordered by code; no rows before the date was verified.
SELECT stock_code, status, volume_status, cardinality(missing_minutes) AS missing, checked_at
FROM minute_verification
WHERE trading_date = %(day)s::date
ORDER BY stock_code;

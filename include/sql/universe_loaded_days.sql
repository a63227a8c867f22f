-- The loaded days around a day the universe is being loaded for (kis.universe), one row:
--   previous        the latest loaded day before %(day)s (date), NULL when there is none
--   latest          the latest loaded day of all
--   previous_files  the previous day's files, {market: sha256} (NULL without a previous day)
-- Parameter day (date).
WITH days AS (
    SELECT max(trading_date) FILTER (WHERE trading_date < %(day)s) AS previous, max(trading_date) AS latest
    FROM stock_universe_loads
)
SELECT previous, latest,
       (SELECT jsonb_object_agg(market, sha256) FROM stock_universe_loads WHERE trading_date = days.previous)
           AS previous_files
FROM days;

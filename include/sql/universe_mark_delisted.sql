-- Marks delisted as of %(day)s the codes the previous loaded day listed and this day does not
-- (kis.universe, after universe_store_day.sql in the same transaction; their last_seen is the
-- previous day, universe_clear_day.sql having undone an earlier load of this day). Idempotent: a
-- re-run of the day finds and marks the same codes. Returns them.
-- Parameters: day (date), previous (date: the loaded day before it).
UPDATE stock_universe AS stored
SET delisted_on = %(day)s, updated_at = now()
FROM stock_universe_daily AS before
WHERE before.trading_date = %(previous)s AND before.stock_code = stored.stock_code
  AND NOT EXISTS (
      SELECT FROM stock_universe_daily AS today WHERE today.trading_date = %(day)s AND today.stock_code = stored.stock_code
  )
RETURNING stored.stock_code, stored.name, stored.market, stored.security_group;

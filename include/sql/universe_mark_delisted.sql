-- Marks delisted as of %(day)s the codes the previous loaded day listed and this day does not
-- (kis.universe, after universe_store_day.sql in the same transaction, which moved every code
-- still listed to last_seen = %(day)s). Idempotent: a re-run of the day finds and marks the same
-- codes. Returns them.
-- Parameters: day (date), previous (date: the loaded day before it).
UPDATE stock_universe
SET delisted_on = %(day)s, updated_at = now()
WHERE last_seen = %(previous)s AND last_seen < %(day)s
RETURNING stock_code, name, market, security_group;

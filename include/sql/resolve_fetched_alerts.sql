-- Resolves the open fetch_failed alerts of codes a later fetch task fetched (kis.alerts.resolve_fetched):
-- one statement per mapped fetch task, for every code of its batch that succeeded.
--
-- Parameters:
--   day     date    the trading date fetched
--   venue   text    the venue fetched; an alert stored without one (every fetch_failed alert
--                   raised before they named their venue) is taken to be about KRX
--   codes   text[]  the codes fetched
--   run_id  text    the fetching run, recorded in resolved_by
-- Returns the id and code of each alert resolved.
UPDATE collection_alerts
SET resolved_at = now(), resolved_by = %(run_id)s
WHERE kind = 'fetch_failed'
  AND resolved_at IS NULL
  AND trading_date = %(day)s::date
  AND coalesce(venue, 'krx') = %(venue)s::text
  AND stock_code = ANY (%(codes)s::text[])
RETURNING id, stock_code;

-- The newest alerts about one trading date and venue, for the minute-status API and the dashboard.
--
-- Parameters:
--   day    date     the trading date the alerts are about
--   venue  text     krx, nxt or unified: its alerts and those about no venue in particular
--   limit  integer  how many to return at most
-- Returns id, raised_at, kind, dag_id, run_id, stock_code, venue (NULL: no venue in particular),
-- minute_count (how many minutes the alert names), message, and resolved_at, resolved_by (the run
-- that settled it; both NULL while open), newest first.
SELECT id, raised_at, kind, dag_id, run_id, stock_code, venue,
       coalesce(cardinality(minutes), 0) AS minute_count,
       message, resolved_at, resolved_by
FROM collection_alerts
WHERE trading_date = %(day)s::date
  AND (venue IS NULL OR venue = %(venue)s::text)
ORDER BY raised_at DESC, id DESC
LIMIT %(limit)s;

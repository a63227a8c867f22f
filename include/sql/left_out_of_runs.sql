-- What the alerts of earlier runs leave out of a run, read once by its gate (kis.batches.LeftOut):
-- the codes KIS does not know on the trading date (code_kinds: unknown_code) and those a venue does
-- not trade (not_on_venue, with its venue); the connections whose app key KIS refused today, whatever
-- day the run collects (key_kind: key_refused, kis.app_keys.refusal_day), until the alert is resolved.
-- Parameters: day, today (date), code_kinds (text[]), key_kind (text).
SELECT kind, venue, stock_code, details->>'conn_id'
FROM collection_alerts
WHERE (trading_date = %(day)s AND kind = ANY(%(code_kinds)s) AND stock_code IS NOT NULL)
   OR (trading_date = %(today)s AND kind = %(key_kind)s AND resolved_at IS NULL);

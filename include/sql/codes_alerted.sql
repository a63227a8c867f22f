-- The codes that have an alert of one kind on one trading date (kis.alerts.codes_alerted).
-- Parameters: kind (text), day (date), venue (text: only alerts about that venue; NULL: any).
SELECT DISTINCT stock_code
FROM collection_alerts
WHERE kind = %(kind)s AND trading_date = %(day)s AND stock_code IS NOT NULL
  AND (%(venue)s::text IS NULL OR venue = %(venue)s::text);

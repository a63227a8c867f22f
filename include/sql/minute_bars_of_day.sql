-- One code's bars of one trading date on one venue, in order: pruned to one monthly partition, read
-- by an index-only scan of idx_minute_stock_venue_datetime.
-- Parameters: stock_code (text), venue (text), day (date).
SELECT datetime, open, high, low, close, volume
FROM stock_prices_minute
WHERE stock_code = %(stock_code)s
  AND venue = %(venue)s::text
  AND datetime >= %(day)s::date
  AND datetime < %(day)s::date + 1
ORDER BY datetime;

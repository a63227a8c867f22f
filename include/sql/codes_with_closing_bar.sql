-- The codes whose closing bar of a day is stored on a venue, labelled anywhere from the close to
-- five minutes after it (the closing print can be late: in_closing_print, migration 018, the window
-- verify_day.sql accepts).
-- Parameters: codes (text[]), venue (text), close (timestamp, naive KST: the session's closing bar).
SELECT DISTINCT stock_code
FROM stock_prices_minute
WHERE stock_code = ANY (%(codes)s::text[])
  AND venue = %(venue)s::text
  AND in_closing_print(datetime, %(close)s::timestamp);

-- A day's stored bars and its closing print, defined once: the day's verification (verify_day.sql)
-- and the dashboard's heatmap (minute_heatmap.sql) both read them through these functions, so a bar
-- the dashboard shows collected is a bar the verification counts present, and the other way round.
--
-- stored_day_bars(trading_date, bar_venue, stock_codes): every stored bar of those codes on that
--   date and venue (its minute as stored: naive KST wall-clock time).
-- in_closing_print(minute, closing): whether a bar at `minute` is the closing print of a day whose
--   closing-auction match is at `closing` (the closing bar of kis.calendar's grid): anywhere from the
--   close to five minutes after, since the print has come as late as 15:32
--   (kis.calendar.CLOSING_PRINT_GRACE); NULL when the day has no closing auction.
-- Both are single SQL statements, not STRICT, that the planner inlines into the statement calling
-- them: the plan is the one the statements had with the text written out.
CREATE OR REPLACE FUNCTION stored_day_bars(trading_date date, bar_venue text, stock_codes text[])
RETURNS TABLE (stock_code text, datetime timestamp, volume bigint)
LANGUAGE sql STABLE
AS $$
    SELECT m.stock_code, m.datetime, m.volume
    FROM stock_prices_minute m
    WHERE m.stock_code = ANY (stock_codes)
      AND m.venue = bar_venue
      AND m.datetime >= trading_date
      AND m.datetime < trading_date + 1
$$;

CREATE OR REPLACE FUNCTION in_closing_print(minute timestamp, closing timestamp)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT minute BETWEEN closing AND closing + interval '5 minutes'
$$;

-- Deletes a day's membership before it is stored again (kis.universe: a re-run of the day).
-- Parameter day (date).
DELETE FROM stock_universe_daily WHERE trading_date = %(day)s;

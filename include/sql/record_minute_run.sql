-- Records a minute run of one trading day and venue that fetches, and returns the day's earliest
-- such run: the earliest minute that ever ran wins (a retried, cleared or rerun later minute leaves
-- it; a rerun of an earlier minute of a past day lowers it).
--
-- Parameters:
--   day      date       the trading day
--   venue    text       krx, nxt or unified
--   run_at   timestamp  the run's minute (its logical date), naive KST
-- Returns first_run_at: the day's earliest run minute, this one included.
INSERT INTO minute_collection_start AS s (trading_date, venue, first_run_at)
VALUES (%(day)s::date, %(venue)s::text, %(run_at)s::timestamp)
ON CONFLICT (trading_date, venue) DO UPDATE SET first_run_at = LEAST(s.first_run_at, EXCLUDED.first_run_at)
RETURNING first_run_at;

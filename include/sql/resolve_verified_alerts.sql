-- Resolves the open gap and incomplete_day alerts a later verification of their day and venue settled
-- (kis.alerts.resolve_verified), called after verify_day.sql wrote its report and before the
-- verification raises its own alert: an alert about a code, once that code is complete (every
-- grid minute stored, or its absences explained by the volumes); an alert about the whole day (no
-- code), once the day passed with every code complete.
--
-- Parameters:
--   day       date     the trading date verified
--   venue     text     the venue verified (an alert stored without one is taken to be about KRX)
--   complete  text[]   the codes the verification found complete
--   day_done  boolean  the day passed with every code complete (nothing to alert any more)
--   run_id    text     the verifying run, recorded in resolved_by
-- Returns the id, kind and code of each alert resolved.
UPDATE collection_alerts
SET resolved_at = now(), resolved_by = %(run_id)s
WHERE kind IN ('gap', 'incomplete_day')
  AND resolved_at IS NULL
  AND trading_date = %(day)s::date
  AND coalesce(venue, 'krx') = %(venue)s::text
  AND CASE WHEN stock_code IS NULL THEN %(day_done)s::boolean
           ELSE stock_code = ANY (%(complete)s::text[]) END
RETURNING id, kind, stock_code;

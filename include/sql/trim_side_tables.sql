-- Deletes the market database's side tables past their retention (kis_maintenance), in one
-- statement, and returns one row of counts:
--   alerts                collection_alerts of the trading dates before %(alerts_before)s
--   alerted_gaps          the memory of live gaps alerted, for the minutes before that date
--   collection_starts     minute_collection_start (when each day's collection began) before that date
--   verification_history  minute_verification_history of the trading dates before %(verifications_before)s
-- The bars and the current verification of each day (minute_verification) are not touched.
WITH alerts AS (
    DELETE FROM collection_alerts WHERE trading_date < %(alerts_before)s RETURNING 1
),
alerted_gaps AS (
    DELETE FROM alerted_gaps WHERE datetime < %(alerts_before)s::date RETURNING 1
),
collection_starts AS (
    DELETE FROM minute_collection_start WHERE trading_date < %(alerts_before)s RETURNING 1
),
verification_history AS (
    DELETE FROM minute_verification_history WHERE trading_date < %(verifications_before)s RETURNING 1
)
SELECT (SELECT count(*) FROM alerts)::integer AS alerts,
       (SELECT count(*) FROM alerted_gaps)::integer AS alerted_gaps,
       (SELECT count(*) FROM collection_starts)::integer AS collection_starts,
       (SELECT count(*) FROM verification_history)::integer AS verification_history;

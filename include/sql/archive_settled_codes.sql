-- Which of a fetch task's codes have their day on the venue settled already (is_settled, migration
-- 020): an earlier try or run stored and verified them, and the task does not ask KIS for them again.
-- Parameters: day (date), venue (text), codes (text[]).
SELECT stock_code
FROM minute_verification
WHERE trading_date = %(day)s::date AND venue = %(venue)s::text AND stock_code = ANY (%(codes)s::text[])
  AND is_settled(status);

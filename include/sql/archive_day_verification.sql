-- The stored verification of a trading date and venue for the given codes (the market archive's
-- day, judged whole after its fetch tasks verified it batch by batch): the columns of
-- minute_verification (kis.storage.DayVerification), ordered by code; a code not verified yet has
-- no row. Parameters: day (date), venue (text), codes (text[]).
SELECT trading_date, stock_code, venue, expected, stored, present, missing_minutes, unexpected_minutes,
       closing_bar_at, volume_sum, reported_volume, volume_status, status, run_id, checked_at
FROM minute_verification
WHERE trading_date = %(day)s::date AND venue = %(venue)s::text AND stock_code = ANY (%(codes)s::text[])
ORDER BY stock_code;

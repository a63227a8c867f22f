-- Replaces one venue's 5/10/30/60-minute bars of a day in stock_prices_resampled by those of the
-- minute bars stored now (the function of migration 013, over minute_bars_resampled).
-- Parameters: day (date), venue (text), codes (text[] or NULL: every code stored that day), run_id.
-- Returns written (the rows of the day now in the table).
SELECT materialize_resampled_bars(%(day)s::date, %(venue)s::text, %(codes)s::text[], %(run_id)s::text) AS written;

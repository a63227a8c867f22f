-- What changed between two loaded days (kis.universe), one row per code and change, in code order:
--   listed    on %(day)s, not on %(previous)s
--   delisted  on %(previous)s, not on %(day)s
--   moved     on both, in another market (e.g. from KONEX to KOSDAQ)
--   halted    on both, halted on %(day)s only
--   resumed   on both, halted on %(previous)s only
-- Parameters: day (date), previous (date).
WITH today AS (
    SELECT * FROM stock_universe_daily WHERE trading_date = %(day)s
),
before AS (
    SELECT * FROM stock_universe_daily WHERE trading_date = %(previous)s
)
SELECT coalesce(today.stock_code, before.stock_code) AS stock_code, change
FROM today
FULL JOIN before USING (stock_code)
CROSS JOIN LATERAL (
    VALUES
        (CASE WHEN before.stock_code IS NULL THEN 'listed' END),
        (CASE WHEN today.stock_code IS NULL THEN 'delisted' END),
        (CASE WHEN today.market <> before.market THEN 'moved' END),
        (CASE WHEN today.halted AND NOT before.halted THEN 'halted' END),
        (CASE WHEN before.halted AND NOT today.halted THEN 'resumed' END)
) AS changes (change)
WHERE change IS NOT NULL
ORDER BY stock_code, change;

-- Undoes a stored day before it is stored again (kis.universe: a re-run of the day, which is always
-- the latest loaded day), so that the day's new files leave what they alone would have left: the
-- day's membership deleted; a code the day listed back to the last earlier day that listed it
-- (last_seen, and that day's market, group and flags; name, standard code and listing date are
-- kept per code only, and stay as the day described them), or deleted when no earlier day did. A
-- code the day delisted is left so: storing the day lists it again, or universe_mark_delisted.sql
-- marks it anew.
-- Parameter day (date).
WITH cleared AS (
    DELETE FROM stock_universe_daily WHERE trading_date = %(day)s
),
earlier AS (
    SELECT before.*
    FROM stock_universe AS stored
    CROSS JOIN LATERAL (
        SELECT *
        FROM stock_universe_daily AS daily
        WHERE daily.stock_code = stored.stock_code AND daily.trading_date < %(day)s
        ORDER BY daily.trading_date DESC
        LIMIT 1
    ) AS before
    WHERE stored.last_seen = %(day)s
),
restored AS (
    UPDATE stock_universe AS stored
    SET last_seen = earlier.trading_date, market = earlier.market, security_group = earlier.security_group,
        halted = earlier.halted, liquidation = earlier.liquidation, administrative = earlier.administrative,
        spac = earlier.spac, preferred = earlier.preferred, market_cap = earlier.market_cap, updated_at = now()
    FROM earlier
    WHERE stored.stock_code = earlier.stock_code
)
DELETE FROM stock_universe AS stored
WHERE stored.last_seen = %(day)s AND NOT EXISTS (SELECT FROM earlier WHERE earlier.stock_code = stored.stock_code);

-- Stores the day's listed codes (kis.universe), after universe_clear_day.sql in the same
-- transaction: one row each in stock_universe_daily, and each code's description in
-- stock_universe as of this day, the latest loaded (first_seen kept, last_seen this day, listed
-- again if it had left). Returns one row: the codes stored.
-- Parameters: day (date), records (JSON array of kis.masters.MasterRecord.as_row()).
WITH listed AS (
    SELECT *
    FROM jsonb_to_recordset(%(records)s::jsonb) AS r (
        stock_code text, standard_code text, name text, market text, security_group text, listed_on date,
        halted boolean, liquidation boolean, administrative boolean, spac boolean, preferred boolean,
        market_cap bigint
    )
),
daily AS (
    INSERT INTO stock_universe_daily (trading_date, stock_code, market, security_group, halted, liquidation,
                                      administrative, spac, preferred, market_cap)
    SELECT %(day)s, stock_code, market, security_group, halted, liquidation, administrative, spac, preferred,
           market_cap
    FROM listed
    RETURNING 1
),
described AS (
    INSERT INTO stock_universe AS stored (stock_code, standard_code, name, market, security_group, listed_on,
                                          halted, liquidation, administrative, spac, preferred, market_cap,
                                          first_seen, last_seen)
    SELECT stock_code, standard_code, name, market, security_group, listed_on, halted, liquidation,
           administrative, spac, preferred, market_cap, %(day)s, %(day)s
    FROM listed
    ON CONFLICT (stock_code) DO UPDATE
    SET standard_code = EXCLUDED.standard_code, name = EXCLUDED.name, market = EXCLUDED.market,
        security_group = EXCLUDED.security_group, listed_on = EXCLUDED.listed_on, halted = EXCLUDED.halted,
        liquidation = EXCLUDED.liquidation, administrative = EXCLUDED.administrative, spac = EXCLUDED.spac,
        preferred = EXCLUDED.preferred, market_cap = EXCLUDED.market_cap,
        first_seen = least(stored.first_seen, EXCLUDED.first_seen), last_seen = EXCLUDED.last_seen,
        delisted_on = NULL, updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM daily)::integer AS stored;

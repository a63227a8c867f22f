-- What the market archive covers, defined once (kis.archive_scope): its gate (archive_codes.sql), its
-- fetch tasks (archive_settled_codes.sql) and the dashboard's progress (archive_progress.sql) read
-- the same code-days through these functions, so the progress counts what a run would fetch.
--
-- universe_day_of(day): the loaded universe a trading date takes: its own, or (before kis_universe
--   first ran: KIS's masters describe only the current day) the first one loaded after it; NULL
--   when none is loaded on or after the date.
-- archive_members(day, universe_day, markets, groups): the codes of that universe selected by
--   market and security group (NULL: every one), without those listed after `day`, each with its
--   halt flag of `day` itself (a later universe's flag says nothing of `day`).
-- is_settled(status): a verification status that settles a code-day: complete, complete with
--   explained absences, or unverifiable (stored as KIS serves it, which a new fetch would not change).
-- Single SQL statements, not STRICT, that the planner inlines into the statements calling them.
CREATE OR REPLACE FUNCTION universe_day_of(day date)
RETURNS date
LANGUAGE sql STABLE
AS $$
    SELECT min(trading_date) FROM stock_universe_loads WHERE trading_date >= day
$$;

CREATE OR REPLACE FUNCTION archive_members(day date, universe_day date, markets text[], groups text[])
RETURNS TABLE (stock_code text, halted boolean)
LANGUAGE sql STABLE
AS $$
    SELECT u.stock_code, u.halted AND u.trading_date = day
    FROM stock_universe_daily u
    LEFT JOIN stock_universe s ON s.stock_code = u.stock_code
    WHERE u.trading_date = universe_day
      AND (markets IS NULL OR u.market = ANY (markets))
      AND (groups IS NULL OR u.security_group = ANY (groups))
      AND (s.listed_on IS NULL OR s.listed_on <= day)
$$;

CREATE OR REPLACE FUNCTION is_settled(status text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT status IN ('complete', 'complete_with_explained_absences', 'unverifiable')
$$;

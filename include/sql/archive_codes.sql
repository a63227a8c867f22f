-- The codes the market archive of a trading date covers on each venue, and how far each one is
-- (kis.market_archive): the universe of that date selected like universe_members.sql, with each
-- code's halt flag of that date and whether its day on the venue is settled already (verified
-- complete, complete with explained absences, or unverifiable: stored as KIS serves it, which a
-- new fetch would not change), so that a re-run fetches only the rest.
--
-- A date without a universe of its own (before kis_universe first ran: KIS's masters describe only
-- the current day) takes the first loaded universe after it, without the codes listed after the
-- date; the codes delisted before that universe are not in it (docs/operations.md, "The market
-- archive"). halted is the date's own flag only.
-- Parameters: day (date); markets (text[]: kospi, kosdaq, konex; NULL: every market); groups
-- (text[]: security groups such as ST, EF, EN; NULL: every group); venues (text[]).
-- Returns universe_day (the loaded day used; NULL when none is loaded on or after the date: no
-- rows then), venue, stock_code, halted, settled; ordered by venue and code.
WITH universe_day AS (
    SELECT min(trading_date) AS day FROM stock_universe_loads WHERE trading_date >= %(day)s::date
),
members AS (
    SELECT u.stock_code, u.halted AND u.trading_date = %(day)s::date AS halted
    FROM stock_universe_daily u
    JOIN universe_day d ON u.trading_date = d.day
    LEFT JOIN stock_universe s ON s.stock_code = u.stock_code
    WHERE (%(markets)s::text[] IS NULL OR u.market = ANY (%(markets)s::text[]))
      AND (%(groups)s::text[] IS NULL OR u.security_group = ANY (%(groups)s::text[]))
      AND (s.listed_on IS NULL OR s.listed_on <= %(day)s::date)
)
SELECT d.day AS universe_day, v.venue, m.stock_code, m.halted, mv.stock_code IS NOT NULL AS settled
FROM universe_day d
LEFT JOIN members m ON true
CROSS JOIN unnest(%(venues)s::text[]) AS v (venue)
LEFT JOIN minute_verification mv
       ON mv.trading_date = %(day)s::date AND mv.venue = v.venue AND mv.stock_code = m.stock_code
      AND mv.status IN ('complete', 'complete_with_explained_absences', 'unverifiable')
ORDER BY v.venue, m.stock_code;

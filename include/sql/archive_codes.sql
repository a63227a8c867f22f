-- The codes the market archive of a trading date covers on each venue, and how far each one is
-- (kis.market_archive): the date's universe selected by market and group (archive_members, migration
-- 020), each code with its halt flag of that date and whether its day on the venue is settled
-- already (is_settled), so that a re-run fetches only the rest.
--
-- A date without a universe of its own takes the first loaded universe after it (universe_day_of);
-- the codes delisted before that universe are not in it (docs/operations.md, "The market archive").
-- Parameters: day (date); markets (text[]: kospi, kosdaq, konex; NULL: every market); groups
-- (text[]: security groups such as ST, EF, EN; NULL: every group); venues (text[]).
-- Returns universe_day (the loaded day used; NULL when none is loaded on or after the date: no
-- rows then), venue, stock_code, halted, settled; ordered by venue and code.
WITH universe AS (
    SELECT universe_day_of(%(day)s::date) AS day
)
SELECT u.day AS universe_day, v.venue, m.stock_code, m.halted, mv.stock_code IS NOT NULL AS settled
FROM universe u
LEFT JOIN archive_members(%(day)s::date, u.day, %(markets)s::text[], %(groups)s::text[]) m ON true
CROSS JOIN unnest(%(venues)s::text[]) AS v (venue)
LEFT JOIN minute_verification mv
       ON mv.trading_date = %(day)s::date AND mv.venue = v.venue AND mv.stock_code = m.stock_code
      AND is_settled(mv.status)
ORDER BY v.venue, m.stock_code;

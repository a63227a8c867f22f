-- The codes listed on a loaded day, with their market, in code order (kis.universe.members).
-- Parameters: day (date); markets (text[]: kospi, kosdaq, konex; NULL: every market); groups
-- (text[]: security groups such as ST, EF, EN; NULL: every group).
-- E.g. the archive's default, every KOSPI and KOSDAQ stock: markets {kospi,kosdaq}, groups {ST}.
SELECT stock_code, market
FROM stock_universe_daily
WHERE trading_date = %(day)s
  AND (%(markets)s::text[] IS NULL OR market = ANY (%(markets)s::text[]))
  AND (%(groups)s::text[] IS NULL OR security_group = ANY (%(groups)s::text[]))
ORDER BY stock_code;

-- The monthly partitions of stock_prices_minute that end on or before %(older_than)s (the
-- retention cutoff), for kis.storage.apply_retention: schema, name, and whether an earlier
-- DETACH ... CONCURRENTLY was interrupted (detach pending: it must be finished with FINALIZE
-- before any other partition can be detached). Pending ones first, then oldest first.
-- A partition's range is read from the catalog, not guessed from its name.
SELECT n.nspname AS schema_name, c.relname AS name, i.inhdetachpending AS detach_pending
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamp AS upper_bound
) AS bound
WHERE i.inhparent = 'stock_prices_minute'::regclass
  AND bound.upper_bound <= %(older_than)s
ORDER BY i.inhdetachpending DESC, bound.upper_bound;

-- Retention: monthly partitions that end on or before older_than are dropped, or only detached
-- (kept as plain tables for an archive dump, then dropped by hand) when detach_only. Returns the
-- names of the partitions handled. Gap-alert memory older than the cutoff goes with them.
-- A partition's range is read from the catalog, not guessed from its name.
CREATE FUNCTION drop_minute_partitions(older_than date, detach_only boolean DEFAULT false)
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.oid::regclass AS relation, c.relname AS name,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamp AS upper_bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'stock_prices_minute'::regclass
        ORDER BY upper_bound
    LOOP
        CONTINUE WHEN part.upper_bound IS NULL OR part.upper_bound > older_than;
        IF detach_only THEN
            EXECUTE format('ALTER TABLE stock_prices_minute DETACH PARTITION %s', part.relation);
        ELSE
            EXECUTE format('DROP TABLE %s', part.relation);
        END IF;
        RETURN NEXT part.name;
    END LOOP;
    DELETE FROM alerted_gaps WHERE datetime < older_than;
END;
$$;

-- The bars of a batch as the upsert receives them (include/sql/upsert_minute_bars.sql and
-- ensure_minute_partitions.sql): a JSON array of the fetch tasks' values, each
--   {"venue": "krx", "source": "KIS", "bars": {"005930": [[minute, open, high, low, close, volume], ...]}}
-- (kis.bars.bars_by_code; "venue" left out means krx, "source" left out means KIS; other keys are
-- ignored). One row per bar, numbered in the order received: the upsert keeps the last of equal bars.
-- A plain SQL function, inlined into the statements that call it.
CREATE FUNCTION minute_bars_received(batches jsonb)
RETURNS TABLE (
    stock_code text,
    venue text,
    datetime timestamp,
    open integer,
    high integer,
    low integer,
    close integer,
    volume bigint,
    source text,
    ordinal bigint
)
LANGUAGE sql STABLE
AS $$
    SELECT code.stock_code,
           coalesce(batch.value ->> 'venue', 'krx'),
           (bar.value ->> 0)::timestamp,
           (bar.value ->> 1)::integer,
           (bar.value ->> 2)::integer,
           (bar.value ->> 3)::integer,
           (bar.value ->> 4)::integer,
           (bar.value ->> 5)::bigint,
           batch.value ->> 'source',
           row_number() OVER (ORDER BY batch.ordinality, code.stock_code, bar.ordinality)
    FROM jsonb_array_elements(batches) WITH ORDINALITY AS batch
    CROSS JOIN LATERAL jsonb_each(batch.value -> 'bars') AS code (stock_code, bars)
    CROSS JOIN LATERAL jsonb_array_elements(code.bars) WITH ORDINALITY AS bar
$$;

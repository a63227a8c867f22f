-- minute_bars_received() (migration 014) in time linear in the batch.
--
-- 014 numbered the bars with row_number() OVER (ORDER BY ...). The planner feeds a window's sort
-- the columns its output is computed from, not the computed values, and those were the whole
-- batch element (for its venue and source) and the code's whole list of bars: each bar dragged
-- its batch's jsonb through the sort, so the sort grew with bars x batch size (a day of 50 codes
-- in one statement: 19,050 rows x ~1 MB, 346 s). The ordinal now comes from the ordinalities
-- alone, with no sort: the batch's place in the array in the high 32 bits, the bar's place in its
-- code's list in the low ones. Equal bars of one code and venue are ordered as received, which is
-- all the upsert's DISTINCT ON needs (a code appears once in a batch's "bars" object). The numbers
-- increase in the order received; they are no longer dense.
CREATE OR REPLACE FUNCTION minute_bars_received(batches jsonb)
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
           (batch.ordinality << 32) + bar.ordinality
    FROM jsonb_array_elements(batches) WITH ORDINALITY AS batch
    CROSS JOIN LATERAL jsonb_each(batch.value -> 'bars') AS code (stock_code, bars)
    CROSS JOIN LATERAL jsonb_array_elements(code.bars) WITH ORDINALITY AS bar
$$;

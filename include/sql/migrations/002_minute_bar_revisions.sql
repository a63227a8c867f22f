-- v2: see revisions, and make idx_minute_stock_datetime useful.
--
-- updated_at stays NULL while a bar is as first stored; revision counts how many times its values
-- changed (a forming bar overwritten when its minute closes, a correction). Both are cheap to add
-- in place: a NULL column and a constant default need no table rewrite.
ALTER TABLE stock_prices_minute
    ADD COLUMN updated_at timestamptz,
    ADD COLUMN revision integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT ck_minute_revision_not_negative CHECK (revision >= 0);

-- v1's idx_minute_stock_datetime duplicated uk_stock_datetime's index exactly. It becomes a
-- covering index: same key, plus the OHLCV columns, so reading a code's bars (a day for the
-- dashboard, the resampled bars, volume sums of the verification) is an index-only scan touching a
-- few leaf pages instead of one heap page per minute (a code's rows are spread over the heap
-- because every minute run writes all codes). uk_stock_datetime stays narrow: it is the upsert's
-- conflict arbiter and its lookups are cheapest on a small index.
DROP INDEX idx_minute_stock_datetime;
CREATE INDEX idx_minute_stock_datetime ON stock_prices_minute (stock_code, datetime)
    INCLUDE (open, high, low, close, volume);

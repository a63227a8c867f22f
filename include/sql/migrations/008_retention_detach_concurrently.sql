-- Retention no longer runs in a function: drop_minute_partitions (005) dropped or detached
-- partitions inside one transaction, holding an ACCESS EXCLUSIVE lock on stock_prices_minute
-- that queued every reader behind it. kis.storage.apply_retention now detaches each partition
-- with ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY, which cannot run in a transaction block
-- (so not in a function), under a lock_timeout, then drops the detached table
-- (include/sql/retention_partitions.sql lists the partitions).
DROP FUNCTION IF EXISTS drop_minute_partitions(date, boolean);

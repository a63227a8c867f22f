-- When collection began (issue 14): the earliest minute run of each trading day and venue that
-- handed out codes to fetch. The live gap check covers only the minutes some run of the day could
-- fetch (from this minute minus the 30 bars a run re-reads); the minutes before it, never within
-- a run's reach (a start in the middle of a session), are left to the backfill's verification.
CREATE TABLE minute_collection_start (
    trading_date    date      NOT NULL,
    venue           text      NOT NULL CHECK (venue IN ('krx', 'nxt', 'unified')),
    first_run_at    timestamp NOT NULL,
    PRIMARY KEY (trading_date, venue)
);
COMMENT ON COLUMN minute_collection_start.first_run_at IS
    'The earliest minute run of the day and venue (its logical minute, naive KST); any rerun of an earlier minute lowers it';

-- The day's verification report, the alerts the DAGs raise, and the memory of gaps already alerted.

-- One row per code and trading date: the latest verification (include/sql/verify_day.sql writes it;
-- re-verifying a date replaces its rows, so the dashboard reads the current truth).
CREATE TABLE minute_verification (
    trading_date     date        NOT NULL,
    stock_code       text        NOT NULL CHECK (stock_code ~ '^[0-9A-Z]{6}$'),
    expected         integer     NOT NULL,
    stored           integer     NOT NULL,
    present          integer     NOT NULL,
    missing_minutes  timestamp[] NOT NULL,
    closing_bar_at   timestamp,
    volume_sum       bigint      NOT NULL,
    reported_volume  bigint,
    volume_status    text        NOT NULL CHECK (volume_status IN ('match', 'mismatch', 'unknown')),
    status           text        NOT NULL
        CHECK (status IN ('complete', 'complete_with_explained_absences', 'gap', 'no_data')),
    run_id           text        NOT NULL,
    checked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trading_date, stock_code)
);

-- Every verification ever made, appended by the same statement: shows how a day converged (a gap
-- at the first check, complete after the backfill) and which run found or fixed it.
CREATE TABLE minute_verification_history (LIKE minute_verification INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE INDEX idx_minute_verification_history_day ON minute_verification_history (trading_date, stock_code, checked_at);

CREATE TABLE collection_alerts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raised_at     timestamptz NOT NULL DEFAULT now(),
    kind          text        NOT NULL,
    dag_id        text        NOT NULL,
    run_id        text        NOT NULL,
    stock_code    text        CHECK (stock_code ~ '^[0-9A-Z]{6}$'),
    trading_date  date        NOT NULL,
    minutes       timestamp[],
    message       text        NOT NULL,
    details       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_collection_alerts_date ON collection_alerts (trading_date, kind);

-- A live gap is alerted once: include/sql/live_gap_check.sql inserts the pairs it reports here in
-- the same statement, and never reports a pair that is already here.
CREATE TABLE alerted_gaps (
    stock_code  text        NOT NULL CHECK (stock_code ~ '^[0-9A-Z]{6}$'),
    datetime    timestamp   NOT NULL,
    alerted_at  timestamptz NOT NULL DEFAULT now(),
    run_id      text,
    PRIMARY KEY (stock_code, datetime)
);

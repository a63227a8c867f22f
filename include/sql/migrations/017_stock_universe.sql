-- The stock universe (issue 23): every code of KIS's stock masters (kospi_code.mst, kosdaq_code.mst,
-- konex_code.mst), day by day. kis_universe loads the day's three files in one transaction
-- (kis.universe, docs/stock-masters.md); a day whose files were bad leaves no trace here.

-- Which trading days have a universe at all, one row per day and market file: a day without rows
-- is unknown, not empty. file_written is the zip member's timestamp as written (its time zone is
-- not documented); sha256 is the .mst's, to tell a file KIS did not regenerate.
CREATE TABLE stock_universe_loads (
    trading_date  date        NOT NULL,
    market        text        NOT NULL CHECK (market IN ('kospi', 'kosdaq', 'konex')),
    records       integer     NOT NULL CHECK (records > 0),
    file_written  timestamp,
    sha256        text        NOT NULL,
    run_id        text        NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trading_date, market)
);

-- Who was listed on each trading day, and as what: the day's codes for an archive of that day
-- ("every KOSPI and KOSDAQ stock": market IN (...) AND security_group = 'ST'), and the day's
-- halts, which explain a day without bars. Listings and delistings are the differences between
-- two loaded days.
CREATE TABLE stock_universe_daily (
    trading_date    date    NOT NULL,
    stock_code      text    NOT NULL CHECK (stock_code ~ '^[0-9A-Z]{1,9}$'),
    market          text    NOT NULL CHECK (market IN ('kospi', 'kosdaq', 'konex')),
    security_group  text    NOT NULL CHECK (security_group ~ '^[A-Z]{2}$'),
    halted          boolean NOT NULL,
    liquidation     boolean NOT NULL,
    administrative  boolean NOT NULL,
    spac            boolean NOT NULL,
    preferred       boolean NOT NULL,
    market_cap      bigint,
    PRIMARY KEY (trading_date, stock_code)
);
CREATE INDEX idx_stock_universe_daily_code ON stock_universe_daily (stock_code, trading_date);
COMMENT ON COLUMN stock_universe_daily.security_group IS '증권그룹구분코드: ST stock (common, preferred, SPAC), EF ETF, EN ETN, ...';
COMMENT ON COLUMN stock_universe_daily.liquidation IS '정리매매: the last days of trading before a delisting';
COMMENT ON COLUMN stock_universe_daily.administrative IS '관리종목 (administrative issue)';
COMMENT ON COLUMN stock_universe_daily.market_cap IS '전일기준 시가총액: the previous day''s market cap, in 100 million won (억)';

-- Every code ever seen, described as of the last day it was listed. first_seen and last_seen are
-- the first and last loaded days that listed it; delisted_on is the first loaded day after
-- last_seen that did not (NULL while it is listed). The universe of today: delisted_on IS NULL.
CREATE TABLE stock_universe (
    stock_code      text        PRIMARY KEY CHECK (stock_code ~ '^[0-9A-Z]{1,9}$'),
    standard_code   text        NOT NULL,
    name            text        NOT NULL,
    market          text        NOT NULL CHECK (market IN ('kospi', 'kosdaq', 'konex')),
    security_group  text        NOT NULL CHECK (security_group ~ '^[A-Z]{2}$'),
    listed_on       date,
    halted          boolean     NOT NULL,
    liquidation     boolean     NOT NULL,
    administrative  boolean     NOT NULL,
    spac            boolean     NOT NULL,
    preferred       boolean     NOT NULL,
    market_cap      bigint,
    first_seen      date        NOT NULL,
    last_seen       date        NOT NULL,
    delisted_on     date,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (first_seen <= last_seen),
    CHECK (delisted_on IS NULL OR delisted_on > last_seen)
);
COMMENT ON COLUMN stock_universe.listed_on IS '주식 상장 일자 as the master file gives it';
COMMENT ON COLUMN stock_universe.delisted_on IS 'The first loaded day the masters no longer listed it; NULL while listed';

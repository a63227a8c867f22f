"""The storage layer on a real PostgreSQL: migrations, the upsert, partitions, verification, views."""

from __future__ import annotations

import json
import random
import re
import threading
import time as time_module
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta

import jinja2
import pandas as pd
import psycopg
import pytest

from kis import schema, storage
from kis.bar import BAR_ROW, KST, Bar, bars_by_code
from kis.resources import SQL_DIR, load_sql

CODES = ["005930", "000660", "0126Z0"]
DAY = date(2025, 11, 3)  # a regular Monday
PRICES = ["open", "high", "low", "close"]


def regular_grid(day: date) -> list[datetime]:
    """A regular day's 381 bar minutes, naive KST: 09:00..15:19 and the 15:30 closing bar."""
    start = datetime.combine(day, time(9, 0))
    return [start + timedelta(minutes=i) for i in range(380)] + [datetime.combine(day, time(15, 30))]


def simulated_day(day: date, codes: list[str], seed: int = 7) -> list[Bar]:
    """A plausible day of bars for ``codes``: a random walk in 50-won ticks, a heavy closing auction."""
    rng = random.Random(seed)
    bars = []
    for code in codes:
        price = rng.randrange(20_000, 200_000, 50)
        for minute in regular_grid(day):
            open_ = price
            close = max(50, open_ + 50 * rng.randint(-4, 4))
            high = max(open_, close) + 50 * rng.randint(0, 3)
            low = max(50, min(open_, close) - 50 * rng.randint(0, 3))
            volume = rng.randint(0, 40_000) * (20 if minute.time() == time(15, 30) else 1)
            bars.append(Bar(code, minute.replace(tzinfo=KST), open_, high, low, close, volume))
            price = close
    return bars


@pytest.fixture
def conn(market_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database at the current schema."""
    with psycopg.connect(market_dsn, autocommit=True) as connection:
        schema.migrate(connection, today=DAY)
        yield connection


def stored_rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT stock_code, datetime, open, high, low, close, volume, source, revision, xmin::text "
        "FROM stock_prices_minute ORDER BY stock_code, datetime"
    ).fetchall()


def schema_snapshot(conn: psycopg.Connection) -> list[tuple]:
    """Tables, columns, constraints, indexes and functions of the public schema."""
    return conn.execute(
        """
        SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
               || ' ' || coalesce(column_default, '')
        FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT 'constraint', conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'function', p.oid::regprocedure::text || md5(p.prosrc)
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
        ORDER BY 1, 2
        """
    ).fetchall()


# --- migrations ---------------------------------------------------------------------------------


def test_migrations_reach_the_current_schema_once(market_dsn: str) -> None:
    with psycopg.connect(market_dsn, autocommit=True) as conn:
        applied = schema.migrate(conn, today=DAY)
        assert applied == [m.name for m in schema.migrations()]
        before = schema_snapshot(conn)
        assert schema.migrate(conn, today=DAY) == []
        assert schema_snapshot(conn) == before
        # Partitions for the current and the next month came with the first migration.
        assert {"stock_prices_minute_p2025_11", "stock_prices_minute_p2025_12"} <= partitions(conn)


def test_concurrent_migrations_apply_each_file_once(new_database: Callable[[], str]) -> None:
    dsn = new_database()

    def run(_: int) -> list[str]:
        with psycopg.connect(dsn) as conn:
            return schema.migrate(conn, today=DAY)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    assert sorted(map(len, results)) == [0] * 7 + [len(schema.migrations())]
    with psycopg.connect(dsn) as conn:
        (recorded,) = conn.execute("SELECT count(*) FROM kis_schema_migrations").fetchone()
    assert recorded == len(schema.migrations())


def test_a_v1_table_with_data_is_upgraded_in_place(market_dsn: str) -> None:
    with psycopg.connect(market_dsn, autocommit=True) as conn:
        assert schema.migrate(conn, target="001", today=DAY) == ["001_stock_prices_minute"]
        conn.execute(
            "INSERT INTO stock_prices_minute (stock_code, datetime, open, high, low, close, volume) "
            "VALUES ('005930', '2025-11-03 09:00', 100, 110, 90, 105, 7), "
            "       ('005930', '2025-11-03 09:01', 105, 106, 101, 102, 3)"
        )
        applied = schema.migrate(conn, today=DAY)
        assert applied[0] == "002_minute_bar_revisions" and "001_stock_prices_minute" not in applied

        rows = conn.execute(
            "SELECT datetime, close, volume, updated_at, revision FROM stock_prices_minute ORDER BY datetime"
        ).fetchall()
        assert rows == [
            (datetime(2025, 11, 3, 9, 0), 105, 7, None, 0),
            (datetime(2025, 11, 3, 9, 1), 102, 3, None, 0),
        ]
        (indexdef,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_minute_stock_venue_datetime'"
        ).fetchone()
        assert "INCLUDE (open, high, low, close, volume)" in indexdef
        # The upgraded table takes the upsert: the v1 row is revised.
        revised = Bar("005930", datetime(2025, 11, 3, 9, 1, tzinfo=KST), 105, 106, 101, 103, 4)
        assert storage.upsert_bars(conn, [revised]).updated == 1
        assert conn.execute(
            "SELECT revision, updated_at IS NOT NULL FROM stock_prices_minute "
            "WHERE datetime = '2025-11-03 09:01'"
        ).fetchone() == (1, True)


# --- the upsert ---------------------------------------------------------------------------------


def test_the_same_batch_twice_writes_nothing_the_second_time(conn: psycopg.Connection) -> None:
    bars = simulated_day(DAY, CODES)
    first = storage.upsert_bars(conn, bars)
    assert first == storage.UpsertCounts(received=1143, duplicates=0, inserted=1143, updated=0, unchanged=0)
    before = stored_rows(conn)
    second = storage.upsert_bars(conn, bars)
    assert second == storage.UpsertCounts(received=1143, duplicates=0, inserted=0, updated=0, unchanged=1143)
    assert stored_rows(conn) == before  # same xmin: not one row version was written


def test_a_forming_bar_is_overwritten_when_its_minute_closes(conn: psycopg.Connection) -> None:
    minute = datetime(2025, 11, 3, 10, 15, tzinfo=KST)
    forming = Bar("005930", minute, 70_000, 70_100, 69_900, 70_000, 1_000)
    closed = Bar("005930", minute, 70_000, 70_300, 69_800, 70_200, 5_500)
    storage.upsert_bars(conn, [forming])
    assert storage.upsert_bars(conn, [closed], source="KIS-daily") == storage.UpsertCounts(1, 0, 0, 1, 0)
    assert conn.execute(
        "SELECT high, low, close, volume, source, revision, updated_at >= created_at FROM stock_prices_minute"
    ).fetchone() == (70_300, 69_800, 70_200, 5_500, "KIS-daily", 1, True)


def test_duplicates_in_a_batch_keep_the_highest_volume(conn: psycopg.Connection) -> None:
    minute = datetime(2025, 11, 3, 9, 30, tzinfo=KST)
    later = Bar("000660", minute, 500, 520, 490, 515, 900)
    earlier = Bar("000660", minute, 500, 510, 495, 505, 400)
    assert storage.upsert_bars(conn, [later, earlier]) == storage.UpsertCounts(2, 1, 1, 0, 0)
    assert conn.execute("SELECT close, volume FROM stock_prices_minute").fetchone() == (515, 900)


def test_concurrent_overlapping_upserts_leave_one_row_each(market_dsn: str, conn: psycopg.Connection) -> None:
    bars = simulated_day(DAY, CODES)
    batches = [bars[:800], list(reversed(bars[300:]))]  # overlapping, locked in opposite orders
    start = threading.Barrier(len(batches))

    def upsert(batch: list[Bar]) -> storage.UpsertCounts:
        with psycopg.connect(market_dsn, autocommit=True) as own:
            start.wait()
            return storage.upsert_bars(own, batch)

    with ThreadPoolExecutor(len(batches)) as pool:
        counts = list(pool.map(upsert, batches))
    assert sum(c.inserted for c in counts) == len(bars)
    assert sum(c.updated for c in counts) == 0
    assert conn.execute(
        "SELECT count(*), count(DISTINCT (stock_code, datetime)) FROM stock_prices_minute"
    ).fetchone() == (len(bars), len(bars))


def test_inserts_across_month_and_year_boundaries_need_no_manual_step(conn: psycopg.Connection) -> None:
    days = [date(2025, 12, 30), date(2026, 1, 2), date(2026, 1, 30), date(2026, 2, 2), date(2027, 3, 2)]
    bars = [Bar("005930", datetime.combine(d, time(10, 0), KST), 100, 100, 100, 100, 1) for d in days]
    assert storage.upsert_bars(conn, bars).inserted == len(days)
    for month in ["2025_12", "2026_01", "2026_02", "2026_03", "2027_03", "2027_04"]:
        assert f"stock_prices_minute_p{month}" in partitions(conn)


@pytest.mark.parametrize(
    ("change", "error", "constraint"),
    [
        ({"high": 95, "low": 99}, psycopg.errors.CheckViolation, "ck_minute_low_le_open_close_le_high"),
        ({"stock_code": "5930"}, psycopg.errors.CheckViolation, "ck_minute_stock_code_format"),
        ({"stock_code": "005930.KS"}, psycopg.errors.CheckViolation, "ck_minute_stock_code_format"),
        ({"volume": None}, psycopg.errors.NotNullViolation, "volume"),
        (dict.fromkeys(PRICES, -5), psycopg.errors.CheckViolation, "ck_minute_prices_positive"),
        ({"volume": -1}, psycopg.errors.CheckViolation, "ck_minute_volume_not_negative"),
        ({"minute": "2025-11-03T09:05:30"}, psycopg.errors.CheckViolation, "ck_minute_whole_minute"),
    ],
)
def test_a_bad_batch_is_rejected_whole_and_nothing_stored_is_lost(
    conn: psycopg.Connection, change: dict, error: type[Exception], constraint: str
) -> None:
    stored = simulated_day(DAY, ["005930"])[:10]
    storage.upsert_bars(conn, stored)
    before = stored_rows(conn)

    revised = [Bar("005930", b.minute, b.open, b.high + 50, b.low, b.close, b.volume + 1) for b in stored]
    bars = bars_by_code(revised + simulated_day(DAY, ["000660"])[:3])
    bad = dict(zip(BAR_ROW, stored[0].as_row(), strict=True)) | {"minute": "2025-11-03T10:05:00"} | change
    code = bad.pop("stock_code", "005930")
    bars.setdefault(code, []).append([bad[column] for column in BAR_ROW])
    with pytest.raises(error, match=constraint):
        with conn.transaction():
            conn.execute(load_sql("upsert_minute_bars"), {"bars": json.dumps([{"bars": bars}])})
    assert stored_rows(conn) == before


def test_a_bad_bar_through_the_python_api_names_the_rule(conn: psycopg.Connection) -> None:
    storage.upsert_bars(conn, simulated_day(DAY, ["005930"])[:5])
    before = stored_rows(conn)
    bad = Bar("005930", datetime(2025, 11, 3, 11, 0, tzinfo=KST), 100, 90, 110, 100, 1)  # high < low
    with pytest.raises(psycopg.errors.CheckViolation, match="ck_minute_low_le_open_close_le_high"):
        storage.upsert_bars(conn, simulated_day(DAY, ["000660"])[:5] + [bad])
    assert stored_rows(conn) == before


# --- partitions and retention -------------------------------------------------------------------


def partitions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'stock_prices_minute'::regclass"
    )
    return {name for (name,) in rows}


def test_retention_drops_or_detaches_whole_old_months(conn: psycopg.Connection) -> None:
    assert storage.ensure_partitions(conn, date(2025, 6, 1), date(2025, 10, 31)) == [
        f"stock_prices_minute_p2025_{m:02d}" for m in range(6, 11)
    ]
    assert storage.ensure_partitions(conn, date(2025, 6, 1), date(2025, 12, 31)) == []
    old = Bar("005930", datetime(2025, 7, 1, 9, 0, tzinfo=KST), 100, 100, 100, 100, 1)
    kept = Bar("005930", datetime(2025, 8, 1, 9, 0, tzinfo=KST), 100, 100, 100, 100, 1)
    storage.upsert_bars(conn, [old, kept])
    for bar in (old, kept):
        conn.execute("SELECT materialize_resampled_bars(%s, 'krx', NULL, 'r')", (bar.minute.date(),))
    resampled_months = "SELECT DISTINCT date_trunc('month', bucket_start)::date FROM stock_prices_resampled ORDER BY 1"

    # November 2025, keep 3 months: August, September, October and November stay.
    assert storage.apply_retention(conn, 3, today=date(2025, 11, 20), detach_only=True) == [
        "stock_prices_minute_p2025_06",
        "stock_prices_minute_p2025_07",
    ]
    # Detached, its rows kept:
    assert conn.execute("SELECT count(*) FROM stock_prices_minute_p2025_07").fetchone() == (1,)
    assert "stock_prices_minute_p2025_07" not in partitions(conn)
    assert conn.execute(resampled_months).fetchall() == [(date(2025, 8, 1),)]
    assert storage.apply_retention(conn, 2, today=date(2025, 11, 20)) == ["stock_prices_minute_p2025_08"]
    assert conn.execute("SELECT to_regclass('stock_prices_minute_p2025_08')").fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM stock_prices_minute").fetchone() == (0,)
    assert conn.execute(resampled_months).fetchall() == []


def test_retention_waits_for_a_reader_at_most_its_lock_timeout_and_never_blocks_it(
    conn: psycopg.Connection, market_dsn: str
) -> None:
    storage.ensure_partitions(conn, date(2025, 6, 1), date(2025, 10, 31))
    old = Bar("005930", datetime(2025, 7, 1, 9, 0, tzinfo=KST), 100, 100, 100, 100, 1)
    kept = Bar("005930", datetime(2025, 10, 1, 9, 0, tzinfo=KST), 100, 100, 100, 100, 1)
    storage.upsert_bars(conn, [old, kept])
    old_month = "SELECT count(*) FROM stock_prices_minute WHERE datetime < '2025-08-01'"
    with psycopg.connect(market_dsn) as reader, psycopg.connect(market_dsn, autocommit=True) as other:
        # A long read of the old months: its transaction holds locks on the table and the partitions.
        assert reader.execute(old_month).fetchone() == (1,)
        result: dict[str, object] = {}

        def retention() -> None:
            with psycopg.connect(market_dsn, autocommit=True) as own:
                started = time_module.monotonic()
                try:
                    storage.apply_retention(own, 2, today=date(2025, 11, 20), lock_timeout=timedelta(seconds=1))
                except storage.RetentionBlocked as err:
                    result["error"] = err
                result["waited"] = time_module.monotonic() - started

        worker = threading.Thread(target=retention)
        worker.start()
        # While retention waits, the reader and any other session keep reading, without waiting.
        reads = 0
        for connection in (reader, other):
            connection.execute("SET statement_timeout = '300ms'")
        deadline = time_module.monotonic() + 10
        while worker.is_alive() and time_module.monotonic() < deadline:
            reader.execute(old_month).fetchone()
            other.execute("SELECT count(*) FROM stock_prices_minute").fetchone()
            other.execute("SELECT count(*) FROM stock_prices_minute_p2025_10").fetchone()
            reads += 1
        reader.rollback()
        worker.join()
        assert isinstance(result.get("error"), storage.RetentionBlocked)
        assert 1.0 <= result["waited"] < 3.0  # type: ignore[operator]
        assert reads > 3
    # The reader gone, the next try finishes the pending detach and drops both old months.
    assert storage.apply_retention(conn, 2, today=date(2025, 11, 20)) == [
        "stock_prices_minute_p2025_06",
        "stock_prices_minute_p2025_07",
        "stock_prices_minute_p2025_08",
    ]
    assert partitions(conn) == {f"stock_prices_minute_p2025_{m:02d}" for m in range(9, 13)}
    assert conn.execute("SELECT to_regclass('stock_prices_minute_p2025_07')").fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM stock_prices_minute").fetchone() == (1,)


def test_the_retention_setting_is_read_from_the_environment() -> None:
    assert storage.retention_months({}) is None
    assert storage.retention_months({storage.RETENTION_MONTHS_ENV: "24"}) == 24
    with pytest.raises(ValueError, match=storage.RETENTION_MONTHS_ENV):
        storage.retention_months({storage.RETENTION_MONTHS_ENV: "0"})


# --- verification, status, gaps -----------------------------------------------------------------


def test_verification_reports_a_complete_day_as_complete(conn: psycopg.Connection) -> None:
    bars = simulated_day(DAY, CODES)
    storage.upsert_bars(conn, bars)
    volumes = {code: sum(b.volume for b in bars if b.stock_code == code) for code in CODES}
    report = storage.verify_day(conn, DAY, regular_grid(DAY), CODES, volumes, run_id="r1")
    assert [(r.stock_code, r.present, r.expected, r.stored, r.status, r.volume_status) for r in report] == [
        (code, 381, 381, 381, "complete", "match") for code in sorted(CODES)
    ]
    assert all(r.missing_minutes == [] and r.closing_bar_at == datetime(2025, 11, 3, 15, 30) for r in report)

    # Read after the close, KIS's day volume also counts the off-session trades: every expected
    # minute is stored, so the day is still complete, and the volumes say by which way they differ.
    later = {code: volume + 12_345 for code, volume in volumes.items()}
    report = storage.verify_day(conn, DAY, regular_grid(DAY), CODES, later, run_id="r2")
    assert {(r.status, r.volume_status) for r in report} == {("complete", "exceeds")}


def test_verification_finds_every_deleted_minute(conn: psycopg.Connection) -> None:
    bars = simulated_day(DAY, CODES)
    storage.upsert_bars(conn, bars)
    rng = random.Random(3)
    grid = regular_grid(DAY)
    deleted = sorted(rng.sample(grid[:-1], 25))
    conn.execute(
        "DELETE FROM stock_prices_minute WHERE stock_code = '005930' AND datetime = ANY(%s)", (deleted,)
    )
    conn.execute("DELETE FROM stock_prices_minute WHERE stock_code = '000660' AND datetime = %s", (grid[-1],))
    kept = [b for b in bars if not (b.stock_code == "005930" and b.minute.replace(tzinfo=None) in deleted)]
    remaining = {code: sum(b.volume for b in kept if b.stock_code == code) for code in CODES}
    rows = storage.verify_day(conn, DAY, grid, CODES + ["000270"], None, run_id="r1")
    report = {r.stock_code: r for r in rows}

    assert report["005930"].missing_minutes == deleted
    # Without a day volume nothing tells the 25 missing minutes from minutes without trades.
    assert (report["005930"].present, report["005930"].stored, report["005930"].status) == (356, 356, "unverifiable")
    assert report["000660"].missing_minutes == [grid[-1]] and report["000660"].closing_bar_at is None
    assert report["000660"].status == "gap"
    assert (report["0126Z0"].status, report["0126Z0"].volume_status) == ("complete", "unknown")
    assert (report["000270"].status, report["000270"].stored, len(report["000270"].missing_minutes)) == (
        "no_data",
        0,
        381,
    )

    # The minute volumes add up to the day's reported volume: the absences are explained (VI, no
    # trades); a code without its closing bar stays a gap whatever its volumes.
    reported = {"005930": remaining["005930"], "000660": remaining["000660"]}
    again = {r.stock_code: r for r in storage.verify_day(conn, DAY, grid, CODES, reported, run_id="r2")}
    assert again["005930"].status == "complete_with_explained_absences"
    assert again["000660"].status == "gap"
    # A day volume above the bars' sum (off-session trades, or lost minutes) cannot tell either.
    exceeds = {"005930": remaining["005930"] + 1}
    third = {r.stock_code: r for r in storage.verify_day(conn, DAY, grid, ["005930"], exceeds, run_id="r3")}
    assert (third["005930"].status, third["005930"].volume_status) == ("unverifiable", "exceeds")
    # Re-verification replaced the rows and kept the history.
    assert conn.execute(
        "SELECT status, run_id FROM minute_verification WHERE stock_code = '005930'"
    ).fetchall() == [("unverifiable", "r3")]
    assert conn.execute(
        "SELECT status FROM minute_verification_history WHERE stock_code = '005930' ORDER BY run_id"
    ).fetchall() == [("unverifiable",), ("complete_with_explained_absences",), ("unverifiable",)]


def test_a_late_closing_print_counts_as_the_closing_bar(conn: psycopg.Connection) -> None:
    bars = [b for b in simulated_day(DAY, ["005930"]) if b.minute.time() != time(15, 30)]
    late = Bar("005930", datetime(2025, 11, 3, 15, 32, tzinfo=KST), 100, 100, 100, 100, 10)
    too_late = Bar("000660", datetime(2025, 11, 3, 15, 36, tzinfo=KST), 100, 100, 100, 100, 10)
    storage.upsert_bars(conn, bars + [late, too_late])
    rows = storage.verify_day(conn, DAY, regular_grid(DAY), ["005930", "000660"], run_id="r")
    report = {r.stock_code: r for r in rows}
    assert report["005930"].closing_bar_at == datetime(2025, 11, 3, 15, 32)
    assert report["005930"].status == "complete"
    assert report["000660"].closing_bar_at is None


def test_minute_status_measures_against_the_grid(conn: psycopg.Connection) -> None:
    storage.upsert_bars(conn, simulated_day(DAY, ["005930", "000660"]))
    status = storage.minute_status(conn, DAY, ["005930", "000660", "000270"], 381)
    assert (status.today_total, status.expected_total, status.stock_count) == (762, 1143, 2)
    assert status.collection_rate == 66.666  # truncated, never rounded up (66.6666...)
    assert status.first_time == datetime(2025, 11, 3, 9, 0)
    assert status.last_time == datetime(2025, 11, 3, 15, 30)
    assert [(c["stock_code"], c["bars"], c["completeness"]) for c in status.per_code] == [
        ("000270", 0, 0),
        ("000660", 381, 100),
        ("005930", 381, 100),
    ]


def test_the_live_gap_check_alerts_each_gap_once(conn: psycopg.Connection) -> None:
    storage.upsert_bars(conn, [b for b in simulated_day(DAY, ["005930"]) if b.minute.minute not in (12, 13)])
    minutes = regular_grid(DAY)[:20]  # 09:00..09:19
    gaps = [("005930", datetime(2025, 11, 3, 9, 12)), ("005930", datetime(2025, 11, 3, 9, 13))]
    assert storage.live_gaps(conn, ["005930"], minutes, run_id="r1") == gaps
    assert storage.live_gaps(conn, ["005930"], regular_grid(DAY)[:21], run_id="r2") == []
    assert conn.execute("SELECT run_id FROM alerted_gaps ORDER BY datetime").fetchall() == [("r1",), ("r1",)]


def test_the_day_s_first_minute_run_is_the_earliest_that_ever_ran(conn: psycopg.Connection) -> None:
    ten, nine = datetime(2025, 11, 3, 10, 1, tzinfo=KST), datetime(2025, 11, 3, 9, 1, tzinfo=KST)
    assert storage.record_minute_run(conn, DAY, ten) == datetime(2025, 11, 3, 10, 1)
    assert storage.record_minute_run(conn, DAY, ten + timedelta(minutes=1)) == datetime(2025, 11, 3, 10, 1)
    # A rerun of an earlier minute (the day's 09:01 run cleared afterwards) lowers it; nothing raises it again.
    assert storage.record_minute_run(conn, DAY, nine) == datetime(2025, 11, 3, 9, 1)
    assert storage.record_minute_run(conn, DAY, ten) == datetime(2025, 11, 3, 9, 1)
    # Each venue and day on its own.
    assert storage.record_minute_run(conn, DAY, ten, venue="nxt") == datetime(2025, 11, 3, 10, 1)
    assert storage.record_minute_run(conn, DAY + timedelta(days=1), ten + timedelta(days=1)) == datetime(2025, 11, 4, 10, 1)
    rows = conn.execute("SELECT trading_date, venue, first_run_at FROM minute_collection_start ORDER BY 1, 2").fetchall()
    assert rows == [
        (DAY, "krx", datetime(2025, 11, 3, 9, 1)),
        (DAY, "nxt", datetime(2025, 11, 3, 10, 1)),
        (date(2025, 11, 4), "krx", datetime(2025, 11, 4, 10, 1)),
    ]


# --- resampled bars -----------------------------------------------------------------------------


@pytest.mark.parametrize("minutes", [1, 5, 10, 30, 60])
def test_resampled_bars_equal_pandas_resample(conn: psycopg.Connection, minutes: int) -> None:
    codes = ["005930", "0126Z0"]
    bars = simulated_day(DAY, codes, seed=11)
    storage.upsert_bars(conn, bars)
    start = datetime.combine(DAY, time())
    got = storage.bars_frame(conn, codes, start, start + timedelta(days=1), minutes=minutes)

    # The same rule in pandas: buckets anchored at 09:00, closed and labelled on the left, and the
    # closing bar binned by its label like every other bar.
    frame = pd.DataFrame([b.as_record() for b in bars])
    frame["datetime"] = pd.to_datetime(frame["datetime"]).dt.tz_localize(KST)
    expected = (
        frame.set_index("datetime")
        .groupby("stock_code")
        .resample(f"{minutes}min", origin=(start + timedelta(hours=9)).replace(tzinfo=KST), closed="left", label="left")
        .agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
            bar_count=("open", "count"),
        )
    )
    expected = expected[expected["bar_count"] > 0].astype("int64")
    expected.index.names = ["stock_code", "minute"]
    pd.testing.assert_frame_equal(got, expected, check_index_type=False)
    # One code's day, indexed by its minutes alone: the same bars.
    day_frame = storage.bars_frame(conn, "0126Z0", DAY, minutes=minutes)
    assert day_frame.index.name == "minute" and str(day_frame.index.tz) == "Asia/Seoul"
    pd.testing.assert_frame_equal(day_frame, expected.loc["0126Z0"], check_index_type=False, check_freq=False)

    # The closing-auction bar: its own 15:30 bucket up to 30 minutes, the end of the 15:00 bucket at 60.
    (_, last_start), last = got.index[-1], got.iloc[-1]
    closing_bar = bars[-1]
    assert last.close == closing_bar.close
    if minutes == 60:
        assert (last_start.time(), last.bar_count) == (time(15, 0), 21)
    else:
        assert (last_start.time(), last.bar_count) == (time(15, 30), 1)
        assert last.volume == closing_bar.volume


def test_a_frame_needs_a_whole_day_or_a_range(conn: psycopg.Connection) -> None:
    with pytest.raises(ValueError, match="a start minute needs an end"):
        storage.bars_frame(conn, "005930", datetime(2025, 11, 3, 9, 0))
    with pytest.raises(ValueError, match="a start date means that whole day"):
        storage.bars_frame(conn, "005930", DAY, datetime(2025, 11, 3, 12, 0))
    with pytest.raises(ValueError, match="minutes must be"):
        storage.bars_frame(conn, "005930", DAY, minutes=0)


def test_materializing_a_day_replaces_it_with_the_resampled_bars(conn: psycopg.Connection) -> None:
    codes = ["005930", "0126Z0"]
    storage.upsert_bars(conn, simulated_day(DAY, codes, seed=5))
    storage.upsert_bars(conn, simulated_day(DAY + timedelta(days=1), codes, seed=6))  # another day, kept
    storage.materialize_resampled(conn, DAY + timedelta(days=1), None, run_id="other-day")
    stored = "SELECT stock_code, minutes, bucket_start, open, high, low, close, volume, bar_count FROM stock_prices_resampled"
    day_rows = f"{stored} WHERE bucket_start::date = %s ORDER BY 1, 2, 3"
    written = storage.materialize_resampled(conn, DAY, codes, run_id="r1")
    start = datetime.combine(DAY, time())
    expected = [
        (bar.stock_code, minutes, bar.bucket_start, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.bar_count)
        for minutes in (5, 10, 30, 60)
        for bar in storage.resampled_bars(conn, codes, start, start + timedelta(days=1), minutes=minutes)
    ]
    assert written == len(expected) == 2 * (77 + 39 + 14 + 7)  # 09:00-15:19 and the 15:30 closing bar
    assert conn.execute(day_rows, (DAY,)).fetchall() == sorted(expected)
    # A bar corrected since, and a code left out of the re-run: the day is replaced, not added to.
    conn.execute("UPDATE stock_prices_minute SET close = low WHERE stock_code = '005930' AND datetime = %s", (start + timedelta(hours=15, minutes=30),))
    assert storage.materialize_resampled(conn, DAY, ["005930"], run_id="r2") == written // 2
    rows = conn.execute(day_rows, (DAY,)).fetchall()
    assert {row[0] for row in rows} == {"005930"}
    corrected = storage.resampled_bars(conn, ["005930"], start, start + timedelta(days=1), minutes=60)[-1]
    assert ("005930", 60, corrected.bucket_start, corrected.close) in {(r[0], r[1], r[2], r[6]) for r in rows}
    assert conn.execute("SELECT DISTINCT run_id FROM stock_prices_resampled WHERE bucket_start::date = %s", (DAY,)).fetchall() == [("r2",)]
    # The other day and the other venues were not touched.
    assert conn.execute(f"{stored} WHERE bucket_start::date > %s", (DAY,)).rowcount == written


# --- the statements as Airflow runs them ---------------------------------------------------------

STATEMENTS = sorted(p.name for p in SQL_DIR.glob("*.sql") if not p.name.startswith("kis_api_"))


@pytest.mark.parametrize("name", STATEMENTS)
def test_statement_files_render_unchanged_as_airflow_templates(name: str) -> None:
    """SQLExecuteQueryOperator renders .sql files with Jinja: ours must come out as they are."""
    text = load_sql(name)
    assert jinja2.Environment(keep_trailing_newline=True).from_string(text).render() == text
    # psycopg reads every % as a placeholder once parameters are bound: only %(name)s may appear.
    assert re.findall(r"%(?!\(\w+\)s)", text) == []


def test_the_upsert_runs_through_the_airflow_postgres_hook(conn: psycopg.Connection, market_dsn: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG's way: one hook.run of [ensure, upsert] with the batch as the one parameter."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_KIS_MARKET_DB", market_dsn.replace("postgresql://", "postgres://"))
    bars = [Bar("005930", datetime(2026, 5, 4, 9, 0, tzinfo=KST), 100, 100, 100, 100, 1)]
    result = PostgresHook(postgres_conn_id="kis_market_db").run(
        sql=[load_sql("ensure_minute_partitions"), load_sql("upsert_minute_bars")],
        parameters={"bars": storage.bars_json(bars)},
        handler=lambda cursor: cursor.fetchall(),
    )
    assert result[-1] == [(1, 0, 1, 0, 0)]
    assert "stock_prices_minute_p2026_05" in partitions(conn)

"""The market database per venue (issue 12): migration 011 on a populated KRX-only database, and the
same code and minute stored, verified, gap-checked and read for krx and nxt apart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, time, timedelta

import psycopg
import pytest

from kis import schema, storage
from kis.bar import KST, Bar, bars_by_code
from kis.calendar import default_calendar
from kis.resources import load_sql
from kis.venues import Venue
from test_storage import DAY, regular_grid, simulated_day

NXT = Venue.NEXTRADE


@pytest.fixture
def conn(market_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(market_dsn, autocommit=True) as connection:
        schema.migrate(connection, today=DAY)
        yield connection


def nxt_grid(day: date = DAY) -> list[datetime]:
    """Nextrade's 690 bar minutes of a regular day, naive KST: 08:00-08:49, 09:00-15:19, 15:40-19:59."""
    session = default_calendar().session(day, NXT)
    assert session is not None and session.closing_bar is None
    return [minute.replace(tzinfo=None) for minute in session.bar_minutes]


def bars_at(code: str, minutes: list[datetime], price: int = 1000) -> list[Bar]:
    return [
        Bar(code, m.replace(tzinfo=KST), price, price + 10, price - 10, price, 100 + i)
        for i, m in enumerate(minutes)
    ]


# --- migration 011 on a populated database ---------------------------------------------------------

OLD_TABLES = {
    "stock_prices_minute": "stock_code, datetime, open, high, low, close, volume, source, created_at,"
    " updated_at, revision",
    "minute_verification": "trading_date, stock_code, expected, stored, present, missing_minutes,"
    " closing_bar_at, volume_sum, reported_volume, volume_status, status, run_id, checked_at",
    "minute_verification_history": "trading_date, stock_code, expected, stored, present, missing_minutes,"
    " closing_bar_at, volume_sum, reported_volume, volume_status, status, run_id, checked_at",
    "alerted_gaps": "stock_code, datetime, alerted_at, run_id",
    "collection_alerts": "id, raised_at, kind, dag_id, run_id, stock_code, trading_date, minutes, message,"
    " details",
}


def table_rows(conn: psycopg.Connection, table: str, columns: str) -> list[tuple]:
    return conn.execute(f"SELECT {columns} FROM {table} ORDER BY {columns.split(', ')[0]}, 2, 3").fetchall()


def test_a_populated_krx_database_is_upgraded_in_place(market_dsn: str) -> None:
    codes = ["005930", "000660"]
    bars = [b for b in simulated_day(DAY, codes) if b.minute.minute != 7]  # 09:07, 10:07 ... missing
    with psycopg.connect(market_dsn, autocommit=True) as conn:
        schema.migrate(conn, target="010", today=DAY)
        # Written as the statements of schema 010 wrote them.
        conn.cursor().executemany(
            "INSERT INTO stock_prices_minute (stock_code, datetime, open, high, low, close, volume, source)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'KIS')",
            [
                (b.stock_code, b.minute.replace(tzinfo=None), b.open, b.high, b.low, b.close, b.volume)
                for b in bars
            ],
        )
        conn.execute(
            "UPDATE stock_prices_minute SET close = high, updated_at = now(), revision = 1"
            " WHERE stock_code = '005930' AND datetime = '2025-11-03 09:30'"
        )
        for table in ("minute_verification", "minute_verification_history"):
            conn.execute(
                f"INSERT INTO {table} (trading_date, stock_code, expected, stored, present, missing_minutes,"
                " closing_bar_at, volume_sum, reported_volume, volume_status, status, run_id)"
                " SELECT %s, code, 381, 375, 375, ARRAY['2025-11-03 09:07'::timestamp], '2025-11-03 15:30',"
                " 1234, 1300, 'exceeds', 'unverifiable', 'r0' FROM unnest(%s::text[]) AS code",
                (DAY, codes),
            )
        conn.execute(
            "INSERT INTO alerted_gaps (stock_code, datetime, run_id)"
            " SELECT code, '2025-11-03 09:07', 'r0' FROM unnest(%s::text[]) AS code",
            (codes,),
        )
        conn.execute(
            "INSERT INTO collection_alerts"
            " (kind, dag_id, run_id, stock_code, trading_date, minutes, message, details) VALUES"
            " ('gap', 'kis_minute_bars', 'r0', '005930', %s, ARRAY['2025-11-03 09:07'::timestamp], 'gap',"
            " '{\"codes\": 1}'), ('deadline_missed', 'kis_minute_bars', 'r1', NULL, %s, NULL, 'late', '{}')",
            (DAY, DAY),
        )
        before = {table: table_rows(conn, table, columns) for table, columns in OLD_TABLES.items()}
        assert len(before["stock_prices_minute"]) == len(bars)

        assert schema.migrate(conn, target="011", today=DAY) == ["011_venues"]

        # Every row kept with its values; the venue of each is krx (alerts: unknown, NULL).
        for table, columns in OLD_TABLES.items():
            assert table_rows(conn, table, columns) == before[table], table
        for table in (
            "stock_prices_minute",
            "minute_verification",
            "minute_verification_history",
            "alerted_gaps",
        ):
            assert conn.execute(f"SELECT array_agg(DISTINCT venue) FROM {table}").fetchone() == (["krx"],), (
                table
            )
        assert conn.execute("SELECT array_agg(DISTINCT venue) FROM collection_alerts").fetchone() == ([None],)
        assert conn.execute(
            "SELECT DISTINCT cardinality(unexpected_minutes) FROM minute_verification"
        ).fetchall() == [(0,)]

        # The new key is the parent's, so each monthly partition has it too, the old one is gone.
        keys = conn.execute(
            "SELECT parent.relname, count(*) FROM pg_inherits i"
            " JOIN pg_class parent ON parent.oid = i.inhparent"
            " WHERE parent.relname LIKE '%%minute_stock%%' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        months = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'stock_prices_minute'::regclass"
        ).fetchone()[0]
        assert keys == [
            ("idx_minute_stock_venue_datetime", months),
            ("uk_minute_stock_venue_datetime", months),
        ]

        # The statements of the current schema meet the old rows: re-reading the day changes nothing
        # on krx (the same key), the same bars on nxt are new rows, and the day re-verifies.
        schema.migrate(conn, today=DAY)
        counts = storage.upsert_bars(conn, bars)
        assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, len(bars) - 1)  # the revised one
        assert storage.upsert_bars(conn, bars, venue=NXT).inserted == len(bars)
        report = storage.verify_day(conn, DAY, regular_grid(DAY), codes, run_id="r2")
        assert {(r.venue, r.stored, r.status) for r in report} == {("krx", 374, "unverifiable")}
        assert storage.live_gaps(conn, ["005930"], [datetime(2025, 11, 3, 9, 7)], run_id="r2") == []


# --- the same code and minute on two venues --------------------------------------------------------


def test_the_same_minute_on_two_venues_is_two_rows_upserted_apart(conn: psycopg.Connection) -> None:
    minute = datetime(2025, 11, 3, 10, 15, tzinfo=KST)
    krx = Bar("005930", minute, 70_000, 70_100, 69_900, 70_000, 1_000)
    nxt = Bar("005930", minute, 70_100, 70_200, 70_000, 70_100, 300)
    assert storage.upsert_bars(conn, [krx]) == storage.UpsertCounts(1, 0, 1, 0, 0)
    assert storage.upsert_bars(conn, [nxt], venue=NXT) == storage.UpsertCounts(1, 0, 1, 0, 0)
    # A revised nxt bar revises the nxt row only.
    revised = Bar("005930", minute, 70_100, 70_300, 70_000, 70_300, 450)
    assert storage.upsert_bars(conn, [revised], venue="nxt") == storage.UpsertCounts(1, 0, 0, 1, 0)
    assert conn.execute(
        "SELECT venue, close, volume, revision FROM stock_prices_minute ORDER BY venue"
    ).fetchall() == [("krx", 70_000, 1_000, 0), ("nxt", 70_300, 450, 1)]

    # One parameter may carry several venues' batches (a batch without one is krx): duplicates are per venue.
    batches = [
        {"bars": bars_by_code([replace(krx, volume=1_300, high=70_150)])},
        {"venue": "krx", "bars": bars_by_code([replace(krx, volume=1_200)])},
        {"venue": "nxt", "bars": bars_by_code([revised])},
        {"venue": "unified", "bars": bars_by_code([replace(revised, volume=1_450)])},
    ]
    row = conn.execute(load_sql("upsert_minute_bars"), {"bars": json.dumps(batches)}).fetchone()
    assert row == (4, 1, 1, 1, 1)  # received, duplicates, inserted (unified), updated (krx), unchanged (nxt)
    assert conn.execute("SELECT venue, volume FROM stock_prices_minute ORDER BY venue").fetchall() == [
        ("krx", 1_300),
        ("nxt", 450),
        ("unified", 1_450),
    ]


def test_an_unknown_venue_is_refused(conn: psycopg.Connection) -> None:
    bar = Bar("005930", datetime(2025, 11, 3, 10, 15, tzinfo=KST), 100, 100, 100, 100, 1)
    with pytest.raises(ValueError, match="unknown venue 'NXT'; choose from krx, nxt, unified"):
        storage.upsert_bars(conn, [bar], venue="NXT")
    with pytest.raises(psycopg.errors.CheckViolation, match="ck_minute_venue"):
        conn.execute(
            load_sql("upsert_minute_bars"), {"bars": json.dumps([{"venue": "kosdaq", "bars": bars_by_code([bar])}])}
        )
    assert conn.execute("SELECT count(*) FROM stock_prices_minute").fetchone() == (0,)


def test_a_nextrade_day_is_verified_on_its_own_grid_without_a_closing_bar(conn: psycopg.Connection) -> None:
    grid = nxt_grid()
    assert len(grid) == 690
    lost = [grid[10], grid[400], grid[-1]]  # 08:10, 14:50 and the day's last bar, 19:59
    extra = datetime(2025, 11, 3, 8, 55)  # between the pre-market and the main market: off the grid
    explained = bars_at("000660", [m for m in grid if m not in lost])
    storage.upsert_bars(conn, bars_at("005930", grid + [extra]) + explained, venue=NXT)
    # KRX's day of the same codes: complete, stored apart.
    storage.upsert_bars(conn, simulated_day(DAY, ["005930", "000660"]))

    volumes = {"000660": sum(b.volume for b in explained)}
    nxt = {
        r.stock_code: r
        for r in storage.verify_day(
            conn, DAY, grid, ["005930", "000660"], volumes, run_id="r", venue=NXT, closing=None
        )
    }
    # The bar off the grid is reported and counted as stored, and the day is still complete.
    assert (nxt["005930"].status, nxt["005930"].present, nxt["005930"].stored) == ("complete", 690, 691)
    assert nxt["005930"].unexpected_minutes == [extra] and nxt["005930"].missing_minutes == []
    # Without a closing bar to expect, a missing last bar is no gap: the volumes explain the absences.
    assert (nxt["000660"].status, nxt["000660"].missing_minutes) == ("complete_with_explained_absences", lost)
    assert (nxt["000660"].closing_bar_at, nxt["000660"].unexpected_minutes) == (None, [])
    unknown = storage.verify_day(conn, DAY, grid, ["000660"], None, run_id="r2", venue=NXT, closing=None)
    assert [(r.venue, r.status) for r in unknown] == [("nxt", "unverifiable")]

    krx = storage.verify_day(conn, DAY, regular_grid(DAY), ["005930", "000660"], run_id="r")
    assert {(r.venue, r.stored, r.status, tuple(r.unexpected_minutes)) for r in krx} == {
        ("krx", 381, "complete", ())
    }
    assert conn.execute(
        "SELECT venue, stock_code, status FROM minute_verification ORDER BY 1, 2"
    ).fetchall() == [
        ("krx", "000660", "complete"),
        ("krx", "005930", "complete"),
        ("nxt", "000660", "unverifiable"),
        ("nxt", "005930", "complete"),
    ]


def test_a_krx_closing_bar_is_required_unless_closing_is_none(conn: psycopg.Connection) -> None:
    """The KRX rules stay: the closing bar may print five minutes late, a missing one is a gap; a
    bar after that window is unexpected. Only ``closing=None`` lifts the gap."""
    day = [b for b in simulated_day(DAY, ["005930", "000660"]) if b.minute.time() != time(15, 30)]
    late = Bar("005930", datetime(2025, 11, 3, 15, 32, tzinfo=KST), 100, 100, 100, 100, 10)
    too_late = Bar("000660", datetime(2025, 11, 3, 15, 36, tzinfo=KST), 100, 100, 100, 100, 10)
    storage.upsert_bars(conn, day + [late, too_late])
    report = {
        r.stock_code: r
        for r in storage.verify_day(conn, DAY, regular_grid(DAY), ["005930", "000660"], run_id="r")
    }
    assert (report["005930"].status, report["005930"].unexpected_minutes) == ("complete", [])
    assert (report["000660"].status, report["000660"].unexpected_minutes) == (
        "gap",
        [datetime(2025, 11, 3, 15, 36)],
    )
    assert report["000660"].stored == 381
    lifted = storage.verify_day(conn, DAY, regular_grid(DAY), ["000660"], run_id="r", closing=None)
    assert [r.status for r in lifted] == ["unverifiable"]


def test_gaps_status_and_reads_are_per_venue(conn: psycopg.Connection) -> None:
    grid = regular_grid(DAY)
    storage.upsert_bars(conn, bars_at("005930", grid[:15] + grid[16:20]))
    storage.upsert_bars(conn, bars_at("005930", grid[:10] + [grid[-1]], price=2000), venue=NXT)

    # KRX's bars fill no Nextrade gap, and each venue's gap is alerted once, even at the same minute.
    assert storage.live_gaps(conn, ["005930"], grid[:20], run_id="r1") == [("005930", grid[15])]
    assert storage.live_gaps(conn, ["005930"], grid[:20], run_id="r1", venue=NXT) == [
        ("005930", m) for m in grid[10:20]
    ]
    assert storage.live_gaps(conn, ["005930"], grid[:20], run_id="r2", venue=NXT) == []
    assert storage.live_gaps(conn, ["005930"], grid[:21], run_id="r2") == [("005930", grid[20])]

    assert storage.codes_with_closing_bar(conn, ["005930"], grid[-1]) == set()
    assert storage.codes_with_closing_bar(conn, ["005930"], grid[-1], venue=NXT) == {"005930"}
    assert storage.minute_status(conn, DAY, ["005930"], 381).today_total == 19
    assert storage.minute_status(conn, DAY, ["005930"], 690, venue=NXT).today_total == 11

    start = datetime.combine(DAY, time())
    frame = storage.bars_frame(conn, ["005930"], start, start + timedelta(days=1), minutes=60, venue=NXT)
    assert list(frame["bar_count"]) == [10, 1] and set(frame["close"]) == {2000}
    assert (
        storage.bars_frame(conn, ["005930"], start, start + timedelta(days=1), minutes=60)["bar_count"].sum()
        == 19
    )
    # The function called without a venue, as before migration 011, reads KRX.
    (count,) = conn.execute(
        "SELECT sum(bar_count) FROM minute_bars_resampled('1 hour', %s, %s, ARRAY['005930'])",
        (start, start + timedelta(days=1)),
    ).fetchone()
    assert count == 19
    day = load_sql("minute_bars_of_day")
    assert len(conn.execute(day, {"stock_code": "005930", "venue": "nxt", "day": DAY}).fetchall()) == 11

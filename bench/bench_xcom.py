"""XCom bytes of the collection DAGs: the former bar encoding against the current one, side by side.

    .venv/bin/python bench/bench_xcom.py [--codes 50] [--day 2026-11-25] [--tick 10:31]

The same simulated bars (``simulator.market.Market``, the shipped watch-list) are encoded both ways
as the fetch tasks' return values, one task per code (``kis_codes_per_task`` 1, the default):

- a minute run: each code's last 30 closed bars before the tick (``fetch_recent_bars``);
- a backfill day: each code's whole KRX day (``fetch_session_bars``, with its volumes).

Former: ``{"bars": [Bar.as_record() + "venue" per bar], ...}``; current: ``{"bars": {code: rows}}``
(``kis.bar.bars_by_code``). Printed per minute run, per backfill day and per trading day (the
minute DAG fetches in 381 runs a day, one per bar), as JSON text (what the Task SDK sends and
``jsonb::text`` shows) and as stored: ``pg_column_size`` of the values in a ``jsonb`` column, the
type of Airflow's ``xcom.value``, on the private cluster (TOAST compresses values over ~2 kB).
It also upserts the current encoding of the minute run and of the day through
``include/sql/upsert_minute_bars.sql`` into a fresh database and checks every bar came back equal.
Databases: ``bench_xcom`` (fresh, dropped at the end).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

import psycopg
from _harness import default_watchlist
from kis import schema
from kis.bar import KST, Bar, bars_by_code
from kis.calendar import default_calendar
from kis.resources import load_sql
from kis.venues import Venue

from devtools import localpg
from simulator.market import Market

DATABASE = "bench_xcom"
RECENT_BARS = 30  # what one request of the minute run returns
MINUTE_RUNS_PER_DAY = 381  # runs that fetch on a regular KRX day: one per bar (the gate skips the others)

Encoding = Callable[[str, list[Bar]], dict[str, Any]]


def former(code: str, bars: list[Bar]) -> dict[str, Any]:
    """A fetch task's value before: a record per bar, keys and venue repeated in each."""
    return {"bars": [bar.as_record() | {"venue": Venue.KRX.value} for bar in bars],
            "venue": Venue.KRX.value, "fetched": [code], "failed": {}}


def current(code: str, bars: list[Bar]) -> dict[str, Any]:
    """A fetch task's value now (``kis.batches.fetch_batch``): positional rows under the code."""
    return {"bars": bars_by_code(bars), "venue": Venue.KRX.value, "fetched": [code], "failed": {}}


def with_volumes(encoding: Encoding) -> Encoding:
    """The backfill's value: the same plus the day volume of the code."""
    def encode(code: str, bars: list[Bar]) -> dict[str, Any]:
        return encoding(code, bars) | {"volumes": {code: sum(b.volume for b in bars)}}
    return encode


def stored_sizes(conn: psycopg.Connection, values: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(JSON text bytes, bytes stored in a jsonb column) summed over ``values``."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS xcom_values (value jsonb)")
    conn.execute("TRUNCATE xcom_values")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO xcom_values VALUES (%s::jsonb)", [(json.dumps(v),) for v in values])
    text, stored = conn.execute(
        "SELECT sum(octet_length(value::text)), sum(pg_column_size(value)) FROM xcom_values"
    ).fetchone()
    return int(text), int(stored)


def compare(conn: psycopg.Connection, what: str, by_code: dict[str, list[Bar]], runs: int, encode_former: Encoding,
            encode_current: Encoding) -> None:
    before = stored_sizes(conn, [encode_former(code, bars) for code, bars in by_code.items()])
    after = stored_sizes(conn, [encode_current(code, bars) for code, bars in by_code.items()])
    bars = sum(len(b) for b in by_code.values())
    print(f"\n{what}: {len(by_code)} fetch tasks, {bars} bars; x{runs} a day")
    print(f"  {'':28} {'former':>12} {'current':>12} {'ratio':>7}")
    for label, i in (("JSON text, bytes", 0), ("stored (jsonb, TOAST), bytes", 1)):
        print(f"  {label:28} {before[i]:>12,} {after[i]:>12,} {after[i] / before[i]:>7.2f}")
    print(f"  {'per code, JSON text':28} {before[0] // len(by_code):>12,} {after[0] // len(by_code):>12,}")
    print(f"  {'per day, stored, MB':28} {before[1] * runs / 1e6:>12.1f} {after[1] * runs / 1e6:>12.1f}")


def upserted_equal(conn: psycopg.Connection, by_code: dict[str, list[Bar]]) -> bool:
    """Upserts the current encoding through the DAGs' statement; True when every bar reads back equal."""
    conn.execute("TRUNCATE stock_prices_minute")
    batches = [current(code, bars) for code, bars in by_code.items()]
    params = {"bars": json.dumps(batches)}
    conn.execute(load_sql("ensure_minute_partitions"), params)
    conn.execute(load_sql("upsert_minute_bars"), params)
    rows = conn.execute(
        "SELECT stock_code, datetime, open, high, low, close, volume FROM stock_prices_minute"
        " WHERE venue = 'krx' ORDER BY stock_code, datetime"
    ).fetchall()
    stored = [Bar(code, minute.replace(tzinfo=KST), *values) for code, minute, *values in rows]
    expected = sorted((b for bars in by_code.values() for b in bars), key=lambda b: (b.stock_code, b.minute))
    return stored == expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", type=int, default=50)
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 11, 25))
    parser.add_argument("--tick", type=time.fromisoformat, default=time(10, 31))
    args = parser.parse_args()
    codes = default_watchlist()[: args.codes]
    market = Market()
    tick = datetime.combine(args.day, args.tick, tzinfo=KST)
    until = default_calendar().last_closed_minute(tick, Venue.KRX)
    day = {code: market.day_bars(code, args.day) for code in codes}
    recent = {code: [b for b in bars if b.minute <= until][-RECENT_BARS:] for code, bars in day.items()}

    localpg.start()
    localpg.wait_until_accepting()
    dsn = localpg.create_database(DATABASE, drop_existing=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, today=args.day)
            print(f"{len(codes)} codes, {args.day}, minute run at {args.tick:%H:%M} KST (bars up to {until:%H:%M})")
            compare(conn, "Minute run (fetch_recent_bars)", recent, MINUTE_RUNS_PER_DAY, former, current)
            compare(conn, "Backfill day (fetch_session_bars)", day, 1, with_volumes(former), with_volumes(current))
            for what, by_code in (("minute run", recent), ("backfill day", day)):
                print(f"\nCurrent encoding of the {what} upserted and read back equal: {upserted_equal(conn, by_code)}")
    finally:
        with psycopg.connect(localpg.cluster().dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()

"""The upsert stays linear in the size of one batch (issue 21: a day in one statement took 346 s).

Not a timing test of the machine: the same statement on 2,000 and on 16,000 bars in ONE batch,
side by side, compared per bar. A linear statement costs the same per bar at both sizes; a
quadratic one costs 8 times more per bar at the larger, far beyond any noise. Two measures:

- what the plan moved through its sorts (memory and disk, from EXPLAIN ANALYZE): deterministic;
- the server's execution time per bar, the best of three tries of each size, interleaved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

import psycopg
import pytest

from kis import schema
from kis.bar import KST, Bar
from kis.resources import load_sql
from kis.storage import bars_json

DAY = date(2025, 11, 3)
MINUTES_PER_CODE = 100
# A quadratic path costs x8 per bar from the small batch to the large; linear costs x1.
MAX_GROWTH_PER_BAR = 2.0


def one_batch(bars: int) -> str:
    """``bars`` bars in one batch (one fetch task's value): 100 minutes of bars // 100 codes."""
    start = datetime.combine(DAY, time(9, 0), tzinfo=KST)
    rows = [
        Bar(f"A{c:05d}", start + timedelta(minutes=m), 1000 + m, 1010 + m, 990 + m, 1005 + m, 10 * m + c)
        for c in range(bars // MINUTES_PER_CODE)
        for m in range(MINUTES_PER_CODE)
    ]
    return bars_json(rows)


@pytest.fixture
def conn(market_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(market_dsn, autocommit=True) as connection:
        schema.migrate(connection, today=DAY)
        yield connection


def plan_of_upsert(conn: psycopg.Connection, batch: str) -> dict[str, Any]:
    """The executed plan of the upsert of ``batch`` into an empty table (EXPLAIN ANALYZE runs it)."""
    conn.execute("TRUNCATE stock_prices_minute")
    conn.execute(load_sql("ensure_minute_partitions"), {"bars": batch})
    (explained,) = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + load_sql("upsert_minute_bars"), {"bars": batch}
    ).fetchone()
    return (explained if isinstance(explained, list) else json.loads(explained))[0]


def sorted_kib(node: dict[str, Any]) -> int:
    """What the plan's sorts held, in KiB: their space in memory or on disk, and temporary files."""
    own = node.get("Sort Space Used", 0) + 8 * node.get("Temp Written Blocks", 0)
    return own + sum(sorted_kib(child) for child in node.get("Plans", []))


def test_the_upsert_costs_the_same_per_bar_in_a_batch_eight_times_larger(conn: psycopg.Connection) -> None:
    small, large = 2_000, 16_000
    batches = {small: one_batch(small), large: one_batch(large)}
    best_ms: dict[int, float] = {}
    sorts: dict[int, int] = {}
    for _ in range(3):
        for bars, batch in batches.items():
            plan = plan_of_upsert(conn, batch)
            best_ms[bars] = min(best_ms.get(bars, float("inf")), plan["Execution Time"])
            sorts[bars] = sorted_kib(plan["Plan"])
    assert conn.execute("SELECT count(*) FROM stock_prices_minute").fetchone() == (large,)

    sort_growth = (sorts[large] / large) / (sorts[small] / small)
    assert sort_growth <= MAX_GROWTH_PER_BAR, f"sorted KiB per bar x{sort_growth:.1f} ({sorts})"
    time_growth = (best_ms[large] / large) / (best_ms[small] / small)
    assert time_growth <= MAX_GROWTH_PER_BAR, f"execution time per bar x{time_growth:.1f} ({best_ms} ms)"

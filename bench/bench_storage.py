"""Storage benchmark: the set-based upsert against the seed's row-by-row ORM, and a year of reads.

    .venv/bin/python bench/bench_storage.py

Runs on the private cluster (devtools.localpg, started when needed) in a fresh database
``bench_storage``, dropped at the end. It prints:

1. rows per second writing a day of 50 codes (19,050 bars), first into an empty table, then the
   same bars again (every run re-reads the last 30 minutes, so re-upserts are the common case):
   the seed's collector (SQLAlchemy ORM: query each row, then insert or update it, commit per
   code) against ``include/sql/upsert_minute_bars.sql`` (one statement for the whole day, one per
   code's day as a backfill's mapped tasks send them, and in the minute DAG's shape, batches of 50
   codes x 30 bars); and the goals of issue 21 (a statement's time per bar independent of how the
   bars are split; the day in one statement at least 30x the ORM);
2. the time to read one code's day (``include/sql/minute_bars_of_day.sql``) from a table holding
   a year of 50 codes, p50/p95 over random code-days, with the plan showing partition pruning
   and the index-only scan.

The cluster trades durability for speed (fsync off): absolute figures are optimistic for both
approaches alike; the ratio is the point.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

import psycopg  # noqa: E402
from sqlalchemy import BigInteger, DateTime, Integer, String, create_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from devtools import localpg  # noqa: E402
from kis import schema, storage  # noqa: E402
from kis.bar import Bar  # noqa: E402
from kis.resources import load_sql  # noqa: E402
from kis.calendar import default_calendar  # noqa: E402

DATABASE = "bench_storage"
DAY = date(2025, 11, 3)
YEAR = 2025
READS = 400
ONE_STATEMENT = "set-based, one statement for the day"
PER_CODE_DAY = "set-based, one statement per code's day"
# Issue 21's goals: a day in one statement costs per bar at most 1.3 times what one statement per
# code's day costs, and writes at least 30 times the rows per second of the seed's ORM.
SPLIT_RATIO = 1.3
VERSUS_ORM = 30


class Base(DeclarativeBase):
    pass


class StockPriceMinute(Base):
    """The seed story's ORM model, mapped onto our table (which has no surrogate id)."""

    __tablename__ = "stock_prices_minute"
    stock_code: Mapped[str] = mapped_column(String(10), primary_key=True)
    datetime: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    open: Mapped[int] = mapped_column(Integer)
    high: Mapped[int] = mapped_column(Integer)
    low: Mapped[int] = mapped_column(Integer)
    close: Mapped[int] = mapped_column(Integer)
    volume: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(20))


def watchlist() -> list[str]:
    lines = (REPO / "include" / "watchlist.csv").read_text().splitlines()[1:]
    return [line.split(",")[0] for line in lines if line.strip()][:50]


def day_of_bars(codes: list[str], day: date = DAY, rng: random.Random | None = None) -> list[Bar]:
    """A day of bars on the calendar's grid: a random walk per code (seeded, so runs compare)."""
    rng = rng or random.Random(1)
    grid = default_calendar().expected_bars(day)
    bars = []
    for code in codes:
        price = rng.randrange(10_000, 300_000, 100)
        for minute in grid:
            close = max(100, price + 100 * rng.randint(-3, 3))
            high = max(price, close) + 100 * rng.randint(0, 2)
            low = max(100, min(price, close) - 100 * rng.randint(0, 2))
            bars.append(Bar(code, minute, price, high, low, close, rng.randint(0, 50_000)))
            price = close
    return bars


def orm_save(engine, bars: list[Bar]) -> None:
    """The seed's KISMinuteCollector._save_to_db: query, then update or add, one commit per code."""
    by_code: dict[str, list[Bar]] = {}
    for bar in bars:
        by_code.setdefault(bar.stock_code, []).append(bar)
    with Session(engine) as session:
        for code, code_bars in by_code.items():
            for bar in code_bars:
                minute = bar.minute.replace(tzinfo=None)
                existing = (
                    session.query(StockPriceMinute)
                    .filter(StockPriceMinute.stock_code == code, StockPriceMinute.datetime == minute)
                    .first()
                )
                if existing:
                    existing.open, existing.high, existing.low = bar.open, bar.high, bar.low
                    existing.close, existing.volume, existing.source = bar.close, bar.volume, "KIS"
                else:
                    session.add(
                        StockPriceMinute(
                            stock_code=code, datetime=minute, open=bar.open, high=bar.high, low=bar.low,
                            close=bar.close, volume=bar.volume, source="KIS",
                        )
                    )
            session.commit()


def set_based_save(conn: psycopg.Connection, bars: list[Bar], batch_size: int) -> None:
    for start in range(0, len(bars), batch_size):
        storage.upsert_bars(conn, bars[start : start + batch_size])


def minute_run_batches(bars: list[Bar]) -> list[Bar]:
    """The bars reordered as the minute DAG sends them: 30 minutes of every code per run."""
    return sorted(bars, key=lambda b: ((b.minute.hour * 60 + b.minute.minute) // 30, b.stock_code, b.minute))


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def write_benchmark(conn: psycopg.Connection, dsn: str, codes: list[str]) -> None:
    bars = day_of_bars(codes)
    run_order = minute_run_batches(bars)
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    per_code = len(bars) // len(codes)
    contenders = {
        "seed ORM, row by row": lambda: orm_save(engine, bars),
        ONE_STATEMENT: lambda: set_based_save(conn, bars, len(bars)),
        PER_CODE_DAY: lambda: set_based_save(conn, bars, per_code),
        "set-based, batches of 50 codes x 30 bars": lambda: set_based_save(conn, run_order, 1_500),
    }
    print(f"\n1. Writing a day of {len(codes)} codes: {len(bars):,} bars (same PostgreSQL, same data)")
    print(f"   {'approach':<42} {'insert (empty)':>22} {'re-upsert (unchanged)':>26}")
    results = {}
    for name, action in contenders.items():
        conn.execute("TRUNCATE stock_prices_minute")
        first, second = timed(action), timed(action)
        results[name] = (len(bars) / first, len(bars) / second)
        print(
            f"   {name:<42} {first:7.2f} s {len(bars) / first:>9,.0f} rows/s"
            f" {second:7.2f} s {len(bars) / second:>10,.0f} rows/s"
        )
    engine.dispose()
    orm = results["seed ORM, row by row"]
    for name in list(contenders)[1:]:
        insert, again = results[name][0] / orm[0], results[name][1] / orm[1]
        print(f"   ratio {name} / ORM: insert x{insert:.0f}, re-upsert x{again:.0f}")
    # Issue 21: the time per bar of one statement does not depend on how the bars are split.
    split = max(results[PER_CODE_DAY][i] / results[ONE_STATEMENT][i] for i in (0, 1))
    versus_orm = min(results[ONE_STATEMENT][i] / orm[i] for i in (0, 1))
    print("\n   Goals (issue 21), within this run:")
    print(f"   one statement's time per bar / {len(codes)} statements of one code's day: x{split:.2f} <= x{SPLIT_RATIO}"
          f" {'met' if split <= SPLIT_RATIO else 'MISSED'}")
    print(f"   one statement for the day / the ORM, rows per second: x{versus_orm:.0f} >= x{VERSUS_ORM}"
          f" {'met' if versus_orm >= VERSUS_ORM else 'MISSED'}")


def read_benchmark(conn: psycopg.Connection, codes: list[str]) -> None:
    sessions = default_calendar().sessions_between(date(YEAR, 1, 1), date(YEAR, 12, 31))
    minutes = [m.replace(tzinfo=None) for s in sessions for m in s.bar_minutes]
    conn.execute("TRUNCATE stock_prices_minute")
    storage.ensure_partitions(conn, date(YEAR, 1, 1), date(YEAR, 12, 31))
    started = time.perf_counter()
    # One set-based statement: every code x every minute of the year's sessions, a deterministic
    # walk around a per-code level that satisfies the table's CHECK constraints. Rows go in minute
    # order, so one code's day is spread over the heap as in production (not 381 adjacent rows).
    conn.execute(
        """
        INSERT INTO stock_prices_minute (stock_code, datetime, open, high, low, close, volume)
        SELECT c.code, m.minute, p.open, greatest(p.open, p.close) + 100, least(p.open, p.close) - 100,
               p.close, (m.n * 7919 + c.n * 104729) %% 50000
        FROM unnest(%(codes)s::text[]) WITH ORDINALITY AS c (code, n)
        CROSS JOIN unnest(%(minutes)s::timestamp[]) WITH ORDINALITY AS m (minute, n)
        CROSS JOIN LATERAL (
            SELECT 10000 + 1000 * c.n + 100 * ((m.n * 31) %% 40) AS open,
                   10000 + 1000 * c.n + 100 * ((m.n * 37) %% 40) AS close
        ) p
        ORDER BY m.n, c.n  -- minute by minute, all codes each time, as the pipeline writes them
        """,
        {"codes": codes, "minutes": minutes},
    )
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) stock_prices_minute")
    vacuumed = time.perf_counter() - started
    (rows,) = conn.execute("SELECT count(*) FROM stock_prices_minute").fetchone()
    # Sizes summed over the partitions: the heap, and each partitioned index's partitions.
    sizes = conn.execute(
        """
        SELECT 'heap', pg_size_pretty(sum(pg_relation_size(inhrelid)))
        FROM pg_inherits WHERE inhparent = 'stock_prices_minute'::regclass
        UNION ALL
        SELECT parent.relname, pg_size_pretty(sum(pg_relation_size(i.inhrelid)))
        FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent
        WHERE parent.relname IN ('uk_minute_stock_venue_datetime', 'idx_minute_stock_venue_datetime')
        GROUP BY parent.relname
        """
    ).fetchall()
    size = ", ".join(f"{name} {pretty}" for name, pretty in sizes)
    print(f"\n2. Reading one code's day from a year of {len(codes)} codes ({len(sessions)} sessions)")
    print(f"   table: {rows:,} rows ({size}); loaded in {loaded:.1f} s "
          f"({rows / loaded:,.0f} rows/s, one INSERT ... SELECT), VACUUM ANALYZE {vacuumed:.1f} s")

    measure_reads(conn, codes, sessions, "with the covering idx_minute_stock_venue_datetime")
    # The alternative: only the unique index, one heap page per minute read.
    conn.execute("DROP INDEX idx_minute_stock_venue_datetime")
    measure_reads(conn, codes, sessions, "with uk_minute_stock_venue_datetime only (covering index dropped)")


def measure_reads(conn: psycopg.Connection, codes: list[str], sessions: list, label: str) -> None:
    rng = random.Random(2)
    query = load_sql("minute_bars_of_day")
    timings, counts = [], set()
    for _ in range(READS):
        params = {"stock_code": rng.choice(codes), "venue": "krx", "day": rng.choice(sessions).day}
        started = time.perf_counter()
        counts.add(len(conn.execute(query, params, prepare=True).fetchall()))
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[int(0.95 * len(timings)) - 1]
    print(f"   {label}: {READS} random code-days (rows per read: {sorted(counts)}), prepared, warm cache:")
    print(f"     p50 {statistics.median(timings):.2f} ms, p95 {p95:.2f} ms, max {timings[-1]:.2f} ms")
    plan = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) " + query,
        {"stock_code": codes[0], "venue": "krx", "day": sessions[100].day},
    ).fetchall()
    print(f"     plan for {codes[0]} on {sessions[100].day}:")
    for (line,) in plan:
        print(f"       {line}")


def main() -> None:
    started_cluster = localpg.start()
    localpg.wait_until_accepting()
    dsn = localpg.create_database(DATABASE, drop_existing=True)
    codes = watchlist()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, today=DAY)
            version = conn.execute("SHOW server_version").fetchone()[0]
            print(f"PostgreSQL {version}, database {DATABASE} (fresh), {len(codes)} codes")
            write_benchmark(conn, dsn, codes)
            read_benchmark(conn, codes)
    finally:
        with psycopg.connect(localpg.cluster().dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        if started_cluster:  # left as found, as the scheduler benchmarks leave it
            localpg.stop()


if __name__ == "__main__":
    main()

"""The whole market (issue 23): each figure beside its floor or goal, in one run.

    .venv/bin/python bench/bench_market.py [--parts archive,live,storage] [--keys 3]
        [--live-codes 1800] [--live-runs 3] [--storage-days 21]

1. archive: under the scheduler (LocalExecutor, the devtools.airflow_env settings, pool kis_api at 8
   slots a key), the simulator's market on ``--keys`` app keys (KIS's 18 req/s each, 50 ms latency):
   kis_universe loads the day's masters, then kis_market_archive archives that day (every KOSPI and
   KOSDAQ stock, about 2,600 codes) from KIS's next day, on the past-day endpoint. Goals: KIS
   requests x1.00 of the floor (per code-day, its traded minutes in pages of 120 plus the day
   volume); wall time <= 1.15 x requests / (keys x the hook's paced 14.4 req/s) + 60 s; no EGW00201;
   each key's busiest second within its 18; the stack's CPU <= 5 ms per code-day; PSS peak printed.
2. live: minute runs of ``--live-codes`` generated codes on the same stack, shared across the keys in
   batches filling the pool. Goal: p95 from the minute's close (the trigger stands for the
   scheduler's tick) to the bars committed <= 45 s.
3. storage: ``--storage-days`` sessions of a whole market (2,600 codes) written through the
   product's upsert in the archive's batches of 50 code-days, into a fresh database of the private
   cluster. Goals: the day's write >= 50,000 bars/s; one code-day read p95 <= 5 ms; disk per year
   extrapolated.

Run it on a quiet machine: nothing else (no suite, no helper). The stack's figures are the
processes this started and the PostgreSQL server's; the simulator's CPU is KIS's, left out.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from datetime import date, datetime, timedelta

from _harness import (
    KST,
    appkeys,
    connection_ids,
    PACED_RATE,
    SERVER_LIMIT,
    CpuWindow,
    MemorySampler,
    measure_minute_run,
    percentile,
    running_stack,
    watchlist,
)

import psycopg  # noqa: E402
from bench_storage import day_of_bars  # noqa: E402

from devtools import localpg  # noqa: E402
from kis import schema, storage  # noqa: E402
from kis.calendar import default_calendar  # noqa: E402
from kis.resources import load_sql  # noqa: E402

# The archived day: a regular session; KIS's clock then reads the next session's 16:40.
ARCHIVE_DAY = date(2026, 11, 24)
LIVE_DAY = date(2026, 11, 25)
ARCHIVE_CODES_PER_TASK = 50
POOL_SLOTS_PER_KEY = 8
LIVE_GOAL_SECONDS = 45
STORAGE_CODES = 2600
STORAGE_GOAL_BARS_PER_SECOND = 50_000
READ_GOAL_MS = 5
CPU_GOAL_MS_PER_CODE_DAY = 5
READS = 400


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def by_connection(per_appkey: dict[str, int], keys: int) -> dict[str, int]:
    """The simulator's figures by app key, named by connection id (the key is never printed)."""
    names = {key: conn_id for (key, _), conn_id in zip(appkeys(keys), connection_ids(keys))}
    return {names.get(key, "another key"): value for key, value in per_appkey.items()}


def archive_floor(conn: psycopg.Connection, day: date) -> tuple[int, int]:
    """The archived code-days of ``day`` and their floor of requests: each code's stored (traded)
    minutes in pages of 120 (at least one page, which an untraded day answers empty) and the day
    volume."""
    rows = conn.execute(
        """
        SELECT v.stock_code, count(m.datetime)
        FROM minute_verification v
        LEFT JOIN stock_prices_minute m
               ON m.stock_code = v.stock_code AND m.venue = v.venue
              AND m.datetime >= %(day)s::date AND m.datetime < %(day)s::date + 1
        WHERE v.trading_date = %(day)s AND v.venue = 'krx'
        GROUP BY v.stock_code
        """,
        {"day": day},
    ).fetchall()
    return len(rows), sum(max(1, math.ceil(bars / 120)) + 1 for _, bars in rows)


def bench_archive(stack, keys: int) -> dict:
    kis_today = default_calendar().sessions_between(ARCHIVE_DAY + timedelta(days=1), ARCHIVE_DAY + timedelta(days=7))[0]
    stack.sim_clock(datetime.combine(ARCHIVE_DAY, datetime.min.time(), KST).replace(hour=7, minute=30))
    stack.wait_for_dag("kis_universe")
    stack.trigger("kis_universe", "bench_universe", datetime.combine(ARCHIVE_DAY, datetime.min.time(), KST).replace(hour=7, minute=30))
    universe = stack.wait_run("kis_universe", "bench_universe", timeout=600)
    print(f"kis_universe of {ARCHIVE_DAY}: {universe['state']}", flush=True)
    stack.sim_clock(datetime.combine(kis_today.day, datetime.min.time(), KST).replace(hour=16, minute=40))
    stack.sim_reset()
    stack.wait_for_dag("kis_market_archive")
    roots = {name: pid for name, pid in stack.cpu_roots().items() if name != "simulator"}  # KIS's, not ours
    with CpuWindow(roots) as cpu, MemorySampler(roots) as memory:
        t0 = stack.trigger(
            "kis_market_archive", "bench_archive",
            datetime.combine(ARCHIVE_DAY, datetime.min.time(), KST).replace(hour=16, minute=40),
        )  # fmt: skip
        run = stack.wait_run("kis_market_archive", "bench_archive", timeout=7200, poll=2)
        wall = time.time() - t0
    counters = stack.sim_counters()
    by_endpoint = counters["requests_by_endpoint"]
    requests = sum(n for endpoint, n in by_endpoint.items() if endpoint not in ("tokenP", "revokeP"))
    with psycopg.connect(stack.env["AIRFLOW_CONN_KIS_MARKET_DB"]) as conn:
        code_days, floor = archive_floor(conn, ARCHIVE_DAY)
    tasks = sum(1 for t in stack.task_instances("kis_market_archive", "bench_archive") if t["task_id"] == "archive_batch")
    wall_goal = 1.15 * requests / (keys * PACED_RATE) + 60
    peaks = by_connection(counters["peak_per_second_by_appkey"], keys)
    peak = memory.peak()
    return {
        "state": run["state"], "code_days": code_days, "tasks": tasks, "requests": requests, "floor": floor,
        "by_endpoint": by_endpoint, "wall": wall, "wall_goal": wall_goal, "egw": counters["egw00201"],
        "peaks": peaks, "cpu": sum(cpu.by_component.values()), "cpu_by_component": cpu.by_component,
        "cpu_ms_per_code_day": 1000 * sum(cpu.by_component.values()) / max(code_days, 1),
        "pss_peak_gb": peak.pss_mib / 1024 if peak else None,
    }


def bench_live(stack, keys: int, codes: int, runs: int) -> dict:
    slots = POOL_SLOTS_PER_KEY * keys
    per_task = math.ceil(codes / slots)
    watched, _ = watchlist(codes)
    stack.set_variable("kis_watchlist", json.dumps(watched))
    stack.set_variable("kis_codes_per_task", str(per_task))
    stack.sim_reset()
    tick = datetime.combine(LIVE_DAY, datetime.min.time(), KST).replace(hour=10, minute=1)
    measured = []
    roots = stack.cpu_roots()
    with CpuWindow(roots) as cpu:
        for i in range(runs):
            run = measure_minute_run(stack, tick, f"bench_live_{tick:%H%M}", timeout=300)
            measured.append(run)
            print(f"  live run {i + 1}: {run.state}, committed {run.since_trigger():.1f} s after the tick's trigger,"
                  f" {run.fetch_tasks} fetch tasks", flush=True)
            tick += timedelta(minutes=1)
    counters = stack.sim_counters()
    totals = [run.since_trigger() for run in measured]
    return {
        "codes": codes, "per_task": per_task, "tasks": measured[0].fetch_tasks, "p50": statistics.median(totals),
        "p95": percentile(totals, 95), "max": max(totals),
        "fetch_span": statistics.median(r.last_fetch_end - r.first_fetch_start for r in measured),
        "floor": codes / (keys * PACED_RATE), "egw": counters["egw00201"],
        "peaks": by_connection(counters["peak_per_second_by_appkey"], keys), "cpu_per_run": cpu.ours / runs,
        "ok": all(r.state == "success" and r.failed_tasks == 0 for r in measured),
    }


def bench_storage(days: int) -> dict:
    started_cluster = localpg.start()
    localpg.wait_until_accepting()
    name = "bench_market_storage"
    dsn = localpg.create_database(name, drop_existing=True)
    codes = [f"{n:06}" for n in range(1_000, 1_000 + STORAGE_CODES)]
    sessions = default_calendar().sessions_between(date(2026, 10, 1), date(2026, 12, 31))[:days]
    rng = random.Random(1)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, today=sessions[0].day)
            storage.ensure_partitions(conn, sessions[0].day, sessions[-1].day)
            rates = []
            for session in sessions:
                written, seconds = 0, 0.0
                for start in range(0, len(codes), ARCHIVE_CODES_PER_TASK):
                    bars = day_of_bars(codes[start : start + ARCHIVE_CODES_PER_TASK], session.day, rng)
                    began = time.perf_counter()
                    storage.upsert_bars(conn, bars)
                    seconds += time.perf_counter() - began
                    written += len(bars)
                rates.append(written / seconds)
                print(f"  {session.day}: {written:,} bars in {seconds:.1f} s of upserts, {written / seconds:,.0f} bars/s",
                      flush=True)
            conn.execute("VACUUM (ANALYZE) stock_prices_minute")
            (rows,) = conn.execute("SELECT count(*) FROM stock_prices_minute").fetchone()
            (size,) = conn.execute(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                " WHERE inhparent = 'stock_prices_minute'::regclass"
            ).fetchone()
            query = load_sql("minute_bars_of_day")
            timings = []
            for _ in range(READS):
                params = {"stock_code": rng.choice(codes), "venue": "krx", "day": rng.choice(sessions).day}
                began = time.perf_counter()
                conn.execute(query, params, prepare=True).fetchall()
                timings.append(1000 * (time.perf_counter() - began))
    finally:
        with psycopg.connect(localpg.cluster().dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if started_cluster:
            localpg.stop()
    sessions_a_year = 245
    return {
        "days": len(sessions), "rows": rows, "bytes": int(size), "rate_p50": statistics.median(rates), "rate_min": min(rates),
        "read_p50": statistics.median(timings), "read_p95": percentile(timings, 95),
        "bytes_per_year": int(size) / len(sessions) * sessions_a_year,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="archive,live,storage", help="comma-separated: archive, live, storage")
    p.add_argument("--keys", type=int, default=3)
    p.add_argument("--live-codes", type=int, default=1800)
    p.add_argument("--live-runs", type=int, default=3)
    p.add_argument("--storage-days", type=int, default=21, help="sessions of the whole market (default 21, a month)")
    p.add_argument("--latency-ms", type=int, default=50)
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    started = time.monotonic()
    results: dict[str, dict] = {}
    if parts & {"archive", "live"}:
        slots = POOL_SLOTS_PER_KEY * args.keys
        overrides = {"AIRFLOW__CORE__PARALLELISM": str(2 * slots)}
        with running_stack("bench_market", day=datetime.combine(ARCHIVE_DAY, datetime.min.time(), KST).replace(hour=7),
                           latency_ms=args.latency_ms, overrides=overrides, keys=args.keys) as stack:
            stack.wait_for_dag("kis_minute_bars")
            stack.set_pool("kis_api", slots)
            print(f"Stack up in {time.monotonic() - started:.0f} s: {args.keys} keys, pool kis_api {slots},"
                  f" parallelism {2 * slots}", flush=True)
            if "archive" in parts:
                results["archive"] = bench_archive(stack, args.keys)
            if "live" in parts:
                results["live"] = bench_live(stack, args.keys, args.live_codes, args.live_runs)
    if "storage" in parts:
        results["storage"] = bench_storage(args.storage_days)
    report(results, args)
    print(f"\nTotal wall time {time.monotonic() - started:.0f} s")
    return 0


def report(results: dict, args: argparse.Namespace) -> None:
    print("\n" + "=" * 100)
    print(f"The whole market: {args.keys} app keys, simulator {SERVER_LIMIT} req/s a key and {args.latency_ms} ms,"
          f" the hook paced at {PACED_RATE:g} req/s a key")
    print("=" * 100)
    if a := results.get("archive"):
        peak = max(a["peaks"].values(), default=0)
        print(f"\n1. Archive of {ARCHIVE_DAY} ({a['state']}): {a['code_days']:,} code-days in {a['tasks']} tasks")
        print(f"   KIS requests {a['requests']:,} vs floor {a['floor']:,}: x{a['requests'] / a['floor']:.3f}"
              f"  [goal x1.00: {verdict(round(a['requests'] / a['floor'], 2) <= 1.0)}]   {a['by_endpoint']}")
        print(f"   wall {a['wall']:.0f} s vs 1.15 x requests / rate + 60 s = {a['wall_goal']:.0f} s"
              f"  [{verdict(a['wall'] <= a['wall_goal'])}]")
        print(f"   EGW00201 {a['egw']}  [goal 0: {verdict(a['egw'] == 0)}];  busiest second per key {a['peaks']}"
              f"  [goal <= {SERVER_LIMIT}: {verdict(peak <= SERVER_LIMIT)}]")
        print(f"   stack CPU {a['cpu']:.0f} s = {a['cpu_ms_per_code_day']:.1f} ms per code-day"
              f"  [goal <= {CPU_GOAL_MS_PER_CODE_DAY}: {verdict(a['cpu_ms_per_code_day'] <= CPU_GOAL_MS_PER_CODE_DAY)}];"
              f"  PSS peak {a['pss_peak_gb']:.2f} GB")
        print("   CPU-s by component: " + ", ".join(f"{k} {v:.0f}" for k, v in a["cpu_by_component"].items()))
    if v := results.get("live"):
        print(f"\n2. Live: {v['codes']:,} codes, {v['per_task']} a task ({v['tasks']} tasks), {args.live_runs} runs")
        print(f"   from the minute's close to committed: p50 {v['p50']:.1f} s, p95 {v['p95']:.1f} s, max {v['max']:.1f} s"
              f"  [goal p95 <= {LIVE_GOAL_SECONDS} s: {verdict(v['p95'] <= LIVE_GOAL_SECONDS and v['ok'])}]"
              + ("" if v["ok"] else " (failed tasks)"))
        print(f"   fetch span {v['fetch_span']:.1f} s vs rate floor {v['floor']:.1f} s; EGW00201 {v['egw']};"
              f" busiest second per key {v['peaks']}; CPU {v['cpu_per_run']:.1f} s a run")
    if s := results.get("storage"):
        print(f"\n3. Storage: {s['days']} sessions of {STORAGE_CODES:,} codes, {s['rows']:,} bars, {s['bytes'] / 1e9:.2f} GB"
              f" with indexes")
        print(f"   a day's write: p50 {s['rate_p50']:,.0f} bars/s, slowest day {s['rate_min']:,.0f}"
              f"  [goal >= {STORAGE_GOAL_BARS_PER_SECOND:,}: {verdict(s['rate_min'] >= STORAGE_GOAL_BARS_PER_SECOND)}]")
        print(f"   one code-day read ({READS} random, prepared): p50 {s['read_p50']:.2f} ms, p95 {s['read_p95']:.2f} ms"
              f"  [goal p95 <= {READ_GOAL_MS} ms: {verdict(s['read_p95'] <= READ_GOAL_MS)}]")
        print(f"   disk per year (245 sessions, extrapolated): {s['bytes_per_year'] / 1e9:.0f} GB")


if __name__ == "__main__":
    sys.exit(main())

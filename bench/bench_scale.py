"""How many codes one app key collects within the minute, under the real scheduler (issue 7, Scale).

    .venv/bin/python bench/bench_scale.py [--codes 50,200,400,600,800] [--runs 2] [--pool N]

The same stack as bench_minute_run.py (LocalExecutor, PostgreSQL metadata DB, components on
127.0.0.1 with the devtools.airflow_env settings, the simulator at KIS's 18 req/s and 50 ms latency).
For each watch-list size it sets the Variables ``kis_watchlist`` (the shipped 50 codes, then
generated well-formed codes A00001...) and ``kis_codes_per_task`` = ceil(codes / pool slots),
so that one wave of mapped tasks fills the pool, and times ``--runs`` consecutive minute runs from the
run's queued_at to the end of ``upsert_bars`` (bars committed). It stops stepping after the first
size whose slowest run misses the minute.

What limits it is read off the figures: the fetch span against the rate floor (codes / the hook's
paced rate, 14.4 req/s), the upsert's duration (one statement over codes x 30 bars), and the rest (scheduling,
task start-up, XCom).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from datetime import date, datetime, timedelta

from _harness import KST, PACED_RATE, SERVER_LIMIT, CpuWindow, measure_minute_run, running_stack, watchlist


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codes", default="50,200,400,600,800", help="comma-separated watch-list sizes")
    p.add_argument("--runs", type=int, default=2, help="runs per size (default 2)")
    p.add_argument("--day", default="2026-11-25")
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--pool", type=int, help="kis_api slots (default: include/pools.json)")
    p.add_argument("--parallelism", type=int)
    p.add_argument("--budget", type=float, default=60.0, help="seconds a run may take (default: the minute)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.codes.split(",")]
    day = date.fromisoformat(args.day)
    overrides = {"AIRFLOW__CORE__PARALLELISM": str(args.parallelism)} if args.parallelism else {}
    started = time.monotonic()
    rows = []
    with running_stack("bench_scale", day=datetime(day.year, day.month, day.day, 9, 0, tzinfo=KST),
                       latency_ms=args.latency_ms, overrides=overrides) as stack:
        stack.wait_for_dag("kis_minute_bars")
        if args.pool:
            stack.set_pool("kis_api", args.pool)
        slots = stack.get("/pools/kis_api")["slots"]
        roots = stack.cpu_roots()
        print(f"Stack up in {time.monotonic() - started:.0f} s; pool kis_api {slots} slots,"
              f" parallelism {stack.env['AIRFLOW__CORE__PARALLELISM']}", flush=True)
        tick = datetime(day.year, day.month, day.day, 10, 1, tzinfo=KST)
        for n in sizes:
            codes, _ = watchlist(n)
            per_task = math.ceil(n / slots)
            stack.set_variable("kis_watchlist", json.dumps(codes))
            stack.set_variable("kis_codes_per_task", str(per_task))
            stack.sim_reset()
            runs = []
            with CpuWindow(roots) as cpu:
                for i in range(args.runs):
                    run = measure_minute_run(stack, tick, f"scale_{n}_{tick:%H%M}", timeout=240)
                    tick += timedelta(minutes=1)
                    runs.append(run)
                    print(f"  {n:4d} codes, {per_task:3d}/task, run {i + 1}: {run.state}, committed"
                          f" {run.since_queued():6.2f} s after queued_at", flush=True)
            counters = stack.sim_counters()
            data = sum(v for k, v in counters["requests_by_endpoint"].items() if "inquire" in k)
            spans = [r.last_fetch_end - r.first_fetch_start for r in runs]
            total = [r.since_queued() for r in runs]
            rows.append({
                "codes": n, "per_task": per_task, "tasks": runs[0].fetch_tasks,
                "p50": statistics.median(total), "max": max(total),
                "fetch_span": statistics.median(spans), "rate_floor": n / PACED_RATE,
                "req_per_s": n / statistics.median(spans),
                "upsert": statistics.median(r.upsert_end - r.upsert_start for r in runs),
                "other": statistics.median(t - s for t, s in zip(total, spans)),
                "cpu_per_run": cpu.ours / args.runs, "machine_cpu_per_s": cpu.machine / cpu.wall,
                "requests": data, "peak": counters["peak_per_second"], "egw": counters["egw00201"],
                "ok": all(r.state == "success" and r.failed_tasks == 0 for r in runs),
            })
            time.sleep(1)
            if max(total) > args.budget:
                print(f"  {n} codes missed the {args.budget:.0f} s budget: not stepping further", flush=True)
                break

    print("\n" + "=" * 118)
    print(f"kis_minute_bars at scale: simulator {SERVER_LIMIT} req/s, {args.latency_ms} ms; hook paced at {PACED_RATE:g} req/s;"
          f" pool {slots}; {args.runs} runs per size; seconds from queued_at to the bars committed")
    print("=" * 118)
    print(f"{'codes':>6}{'per task':>9}{'tasks':>6}{'p50':>8}{'max':>8}{'fetch span':>11}{'rate floor':>11}"
          f"{'req/s':>7}{'upsert':>8}{'rest':>7}{'CPU-s/run':>10}{'peak/s':>7}{'EGW00201':>9}  in {args.budget:.0f} s")
    for r in rows:
        print(f"{r['codes']:>6}{r['per_task']:>9}{r['tasks']:>6}{r['p50']:>8.1f}{r['max']:>8.1f}{r['fetch_span']:>11.1f}"
              f"{r['rate_floor']:>11.1f}{r['req_per_s']:>7.1f}{r['upsert']:>8.2f}{r['other']:>7.1f}{r['cpu_per_run']:>10.1f}"
              f"{r['peak']:>7}{r['egw']:>9}  {'yes' if r['max'] <= args.budget and r['ok'] else 'NO'}"
              + ("" if r["ok"] else " (failed tasks)"))
    fitting = [r["codes"] for r in rows if r["max"] <= args.budget and r["ok"]]
    print(f"\nLargest watch-list measured within {args.budget:.0f} s: {max(fitting) if fitting else 'none'} codes."
          f" Rate ceiling: {PACED_RATE:g} req/s x ({args.budget:.0f} s - fixed overhead) ->"
          f" about {PACED_RATE * (args.budget - min((r['other'] for r in rows), default=0)):.0f} codes;"
          f" {SERVER_LIMIT} req/s with rate_limit_safety 1.0 would give 25 % more and risk EGW00201.")
    print(f"Total wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

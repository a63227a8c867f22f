"""The per-minute run of ``kis_minute_bars`` under the real scheduler: latency, requests, memory.

    .venv/bin/python bench/bench_minute_run.py [--runs 10] [--codes 50] [--batch 10]
        [--parallelism N] [--pool N] [--latency-ms 50] [--no-backfill] [--celery-workers N]

The stack (see bench/_harness.py): LocalExecutor, the PostgreSQL metadata database on the private
cluster, scheduler / dag-processor / triggerer / api-server started separately on 127.0.0.1 with
the settings of devtools.airflow_env, the simulator as its own process (real mode, KIS's 18 req/s,
50 ms latency). The wall clock is not in a KRX session, so the benchmark plays the ticks of a
simulated day itself: for each minute it sets the simulator's market clock to the tick + 3 s,
triggers the run through the REST API with the tick as its logical date, and waits for it to end
(one run at a time, as max_active_runs=1 and the minute cadence impose).

Both shapes in one benchmark: one mapped fetch per code (Variable ``kis_codes_per_task`` = 1, the
default) and batched (``--batch`` codes per mapped task), switched through the DB Variable before
each run, so the same components serve both. (An ``AIRFLOW_VAR_KIS_CODES_PER_TASK`` env var would
win over the DB Variable: the harness removes any such variable from the environment.) Unless
``--no-bare``, also the same shape without our code (bench/dags/bare_minute_shape.py: the same
tasks, pool and label, a 50 ms sleep for the request, no hook, token, limiter or database):
Airflow's own floor on this machine, and what our code adds to it. The shapes take turns, tick
after tick, so that they share whatever the machine does meanwhile.

"Committed" is the ``upsert_bars`` task's end_date: the upsert's transaction commits inside the
task, before the task reports success, so it is the first moment Airflow knows the bars are stored
(an upper bound of the commit by the task's exit, a few ms). The bars' own ``created_at`` /
``updated_at`` are ``now()`` of that transaction, i.e. its *start*, a lower bound: both are printed.
Latency is taken from the run's ``queued_at`` (the run's creation: a cron run is created 0.01-0.12
s after its tick, AIRFLOW_3.md) and from the trigger call (adds the REST call).

``--celery-workers N`` starts a second stack beside the first, with a CeleryExecutor of N workers
and a private Redis (devtools/localredis.py, the Celery config celery_config/kis_celery.py), and
interleaves its per-code and batched runs with the LocalExecutor's, so that both executors share
the machine's drift too. Everything printed is masked: passwords in URLs and the values of the
local secrets (``--setting`` values included) show as ``***``.

Then the backfill of the same day under the scheduler, for the day's KIS request count (see the
README for how the whole day is computed from the sample), and /_sim/counters for the peak rate.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple
from datetime import date, datetime

from contextlib import ExitStack

from _harness import (KST, PACED_RATE, POSTGRES, SERVER_LIMIT, CpuWindow, MemorySampler, MinuteRun, measure_minute_run,
                      parse_ts, percentile, running_stack, watchlist)

from kis.calendar import default_calendar  # noqa: E402  (plugins/ is on sys.path via _harness)

# The goals, as ratios within one run (issues 16 and 21): per code against the bare shape, batched
# against the limiter's floor (codes at the hook's paced rate), and Celery against the
# LocalExecutor of the same run.
PER_CODE_VS_BARE = 1.15
BATCHED_OVER_FLOOR = 1.5
CPU_PER_FETCH_TASK_OVER_BARE_MS = 35
FETCH_SPAN_OVER_BARE = 0.5
POSTGRES_VS_BARE = 1.5
IDLE_CPU_PER_SECOND = 0.15
# The idle window: after the stack has parsed its DAGs and settled (its first seconds are start-up).
IDLE_SETTLE_SECONDS = 20
IDLE_WINDOW_SECONDS = 30
CELERY_PER_CODE_VS_LOCAL = 1.3
CELERY_BATCHED_OVER_LOCAL = 1.0
CELERY_CPU_VS_LOCAL = 1.2
BARE_DAG = Path(__file__).parent / "dags" / "bare_minute_shape.py"


class Shape(NamedTuple):
    name: str
    per_task: int  # kis_codes_per_task
    hour: int  # the simulated hour its ticks fall in
    dag_id: str = "kis_minute_bars"
    executor: str = "local"  # the stack that runs it: "local" or "celery"

    @property
    def collects(self) -> bool:
        """False for the bare shape, which asks KIS nothing."""
        return self.dag_id == "kis_minute_bars"


def data_requests(counters: dict) -> int:
    return sum(n for endpoint, n in counters["requests_by_endpoint"].items() if "inquire" in endpoint)


def token_requests(counters: dict) -> int:
    return sum(n for endpoint, n in counters["requests_by_endpoint"].items() if "oauth2" in endpoint)


def merge_counters(total: dict | None, run: dict) -> dict:
    """The simulator's counters of several runs (each run's counted from a reset)."""
    if total is None:
        return run
    by_endpoint = dict(total["requests_by_endpoint"])
    for endpoint, n in run["requests_by_endpoint"].items():
        by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + n
    return {"requests_by_endpoint": by_endpoint, "peak_per_second": max(total["peak_per_second"], run["peak_per_second"]),
            "egw00201": total["egw00201"] + run["egw00201"]}


class MaskingStream(io.TextIOBase):
    """A text stream that writes through to ``stream`` with the secrets masked: the password of any
    ``scheme://user:password@`` URL and every value of ``secrets``."""

    URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")

    def __init__(self, stream, secrets: Sequence[str] = ()):
        self.stream = stream
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        text = self.URL_PASSWORD.sub(r"\1***@", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def write(self, text: str) -> int:
        self.stream.write(self.mask(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def local_secrets() -> list[str]:
    """The values that must never be printed: the local cluster's, Redis's and Airflow's secrets."""
    from devtools import airflow_env, localpg

    found = [airflow_env.SIMULATOR_APPKEY, airflow_env.SIMULATOR_APPSECRET]
    for path in [localpg.cluster().password_file, *localpg.state_dir().glob("*")]:
        if path.is_file() and path.stat().st_size < 4096 and path.suffix not in (".log", ".lock"):
            try:
                found.append(path.read_text().strip())
            except (OSError, UnicodeDecodeError):
                pass
    return found


def run_interleaved(stacks: dict, shapes: list[Shape], day: date, runs: int, warmup: int, gap: float,
                    sampler: MemorySampler, cpu: dict[str, CpuWindow]) -> dict[str, tuple[list[MinuteRun], dict]]:
    """Tick after tick, one run of each shape in turn, so that the shapes share the machine's drift
    (a run of the benchmark varies by ~0.5 s at p95 from the next): the ratios are side by side."""
    nonce = uuid.uuid4().hex[:6]
    measured: dict[str, list[MinuteRun]] = {shape.name: [] for shape in shapes}
    counters: dict[str, dict | None] = {shape.name: None for shape in shapes}
    for i in range(warmup + runs):
        for shape in shapes:
            stack = stacks[shape.executor]
            tick = datetime(day.year, day.month, day.day, shape.hour, 1 + i, tzinfo=KST)
            if shape.collects:
                stack.set_variable("kis_codes_per_task", str(shape.per_task))
            stack.sim_reset()
            warm = i < warmup
            sampler.phase = f"{shape.name} warm-up" if warm else shape.name
            with nullcontext() if warm else cpu[shape.name]:
                run = measure_minute_run(stack, tick, f"bench_{shape.name.replace(' ', '_')}_{tick:%H%M}_{nonce}",
                                         dag_id=shape.dag_id)
            mark = "warm-up" if warm else f"run {i - warmup + 1:2d}"
            print(
                f"  {shape.name:15} {mark:8} {tick:%H:%M} {run.state:7} tasks={run.fetch_tasks:3d}"
                f" queued->committed {run.since_queued():6.2f} s  trigger->committed {run.since_trigger():6.2f} s",
                flush=True,
            )
            if not warm:
                measured[shape.name].append(run)
                counters[shape.name] = merge_counters(counters[shape.name], stack.sim_counters())
            time.sleep(gap)
    return {name: (measured[name], counters[name]) for name in measured}


def print_columns(corner: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[float]]], *,
                  label_width: int, width: int) -> None:
    """A table of figures: a header of ``columns``, then one labelled row of values each."""
    print(f"  {corner:<{label_width}}" + "".join(f"{c:>{width}}" for c in columns))
    for label, values in rows:
        print(f"  {label:<{label_width}}" + "".join(f"{v:>{width}.2f}" for v in values))


def goal_verdict(name: str, p95: dict[str, float], cpu_per_run: dict[str, float], floor: float) -> str:
    """The goal of shape ``name`` as a ratio within this run (issue 16), and whether it was met."""
    def verdict(text: str, met: bool) -> str:
        return f"{text}: " + ("met" if met else "MISSED")

    if name == "per-code" and "bare" in p95:
        return verdict(f"p95 <= {PER_CODE_VS_BARE}x bare ({PER_CODE_VS_BARE * p95['bare']:.2f} s)",
                       p95[name] <= PER_CODE_VS_BARE * p95["bare"])
    if name == "batched":
        return verdict(f"p95 <= floor {floor:.2f} + {BATCHED_OVER_FLOOR} s", p95[name] <= floor + BATCHED_OVER_FLOOR)
    if name == "celery per-code":
        return verdict(f"p95 <= {CELERY_PER_CODE_VS_LOCAL}x local ({CELERY_PER_CODE_VS_LOCAL * p95['per-code']:.2f} s),"
                       f" CPU <= {CELERY_CPU_VS_LOCAL}x",
                       p95[name] <= CELERY_PER_CODE_VS_LOCAL * p95["per-code"]
                       and cpu_per_run[name] <= CELERY_CPU_VS_LOCAL * cpu_per_run["per-code"])
    if name == "celery batched":
        return verdict(f"p95 <= local + {CELERY_BATCHED_OVER_LOCAL} s ({p95['batched'] + CELERY_BATCHED_OVER_LOCAL:.2f} s),"
                       f" CPU <= {CELERY_CPU_VS_LOCAL}x",
                       p95[name] <= p95["batched"] + CELERY_BATCHED_OVER_LOCAL
                       and cpu_per_run[name] <= CELERY_CPU_VS_LOCAL * cpu_per_run["batched"])
    return "Airflow alone, no KIS" if name == "bare" else ""


def goals(figures: dict, cpu: dict, results: dict, idle: CpuWindow, floor: float, day: dict | None) -> dict:
    """Prints the goals of issue 21, each a ratio or a difference within this run, met or missed."""
    fetch_span = {name: statistics.median(r.last_fetch_end - r.first_fetch_start for r in runs)
                  for name, (runs, _counters) in results.items() if name in ("per-code", "bare")}
    ours, bare = figures["per-code"], figures.get("bare")
    rows: list[tuple[str, float, float, str, bool]] = []  # (goal, value, limit, unit, met)
    if bare:
        tasks = results["per-code"][0][0].fetch_tasks
        rows += [
            ("per code p95 / bare p95", ours["queued_p95"] / bare["queued_p95"], PER_CODE_VS_BARE, "x"),
            ("CPU per fetch task above the bare shape", 1000 * (ours["cpu_ours_per_run"] - bare["cpu_ours_per_run"]) / tasks,
             CPU_PER_FETCH_TASK_OVER_BARE_MS, "ms"),
            ("fetch span per code - bare's", fetch_span["per-code"] - fetch_span["bare"], FETCH_SPAN_OVER_BARE, "s"),
            ("PostgreSQL CPU per run / bare's",
             cpu["per-code"].by_component[POSTGRES] / cpu["bare"].by_component[POSTGRES], POSTGRES_VS_BARE, "x"),
        ]
    rows += [
        ("batched p95 - the limiter's floor", figures["batched"]["queued_p95"] - floor, BATCHED_OVER_FLOOR, "s"),
        ("the stack idle, CPU-s per second", idle.ours / idle.wall, IDLE_CPU_PER_SECOND, ""),
    ]
    if day:
        rows.append(("KIS requests of a day / floor", day["total"] / day["floor"], 1.0, "x"))
    print("\nGoals (issue 21), within this run:")
    verdicts = {}
    for goal, value, limit, unit in rows:
        met = value <= limit + 1e-9
        verdicts[goal] = {"value": value, "limit": limit, "met": met}
        print(f"  {goal:<42} {value:>8.3f}{unit:<3} <= {limit:g}{unit:<3} {'met' if met else 'MISSED'}")
    return verdicts


def breakdown(runs: list[MinuteRun]) -> list[tuple[str, float]]:
    def med(f) -> float:
        values = [f(r) for r in runs if f(r) is not None]
        return statistics.median(values) if values else float("nan")

    return [
        ("trigger call -> run queued", med(lambda r: r.queued - r.trigger)),
        ("queued -> running (scheduler)", med(lambda r: r.started - r.queued)),
        ("running -> session_gate done", med(lambda r: r.gate_end and r.gate_end - r.started)),
        ("gate done -> first fetch starts", med(lambda r: r.first_fetch_start and r.first_fetch_start - r.gate_end)),
        ("first fetch start -> last fetch end", med(lambda r: r.last_fetch_end and r.last_fetch_end - r.first_fetch_start)),
        ("last fetch end -> upsert starts", med(lambda r: r.upsert_start and r.upsert_start - r.last_fetch_end)),
        ("upsert task (start -> end)", med(lambda r: r.upsert_end and r.upsert_end - r.upsert_start)),
        ("bars' now() (tx start) before upsert end", med(lambda r: r.last_write and r.upsert_end - r.last_write)),
        ("upsert end -> run end (gap check)", med(lambda r: r.run_end - r.committed)),
    ]


def day_floor_and_runs(stack, day: date, codes: list[str]) -> tuple[int, int, int]:
    """(minute runs that fetch, bars per code in the grid, backfill page floor summed over codes)."""
    session = default_calendar().session(day)
    # One fetching run per bar that closes: the gate skips the closing auction's ticks, and the
    # closing print's grace ticks ask only for codes whose closing bar is missing (none here).
    fetching = len(session.bar_minutes)
    import requests

    page_floor = 0
    for code in codes:
        truth = requests.get(f"{stack.sim}/_sim/truth", params={"code": code, "date": day.isoformat()}, timeout=30).json()
        page_floor += max(1, math.ceil(len(truth["bars"]) / 30))
    return fetching, len(session.bar_minutes), page_floor


def run_backfill(stack, day: date, sampler: MemorySampler) -> tuple[dict, dict, float]:
    sampler.phase = "backfill"
    stack.sim_reset()
    stack.sim_clock(datetime(day.year, day.month, day.day, 16, 6, tzinfo=KST))
    run_id = f"bench_backfill_{uuid.uuid4().hex[:6]}"
    t0 = stack.trigger("kis_minute_backfill", run_id, datetime(day.year, day.month, day.day, 16, 0, tzinfo=KST))
    run = stack.wait_run("kis_minute_backfill", run_id, timeout=300, poll=1.0)
    return run, stack.sim_counters(), parse_ts(run["end_date"]) - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="measured runs per shape (default 10)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured runs first, per shape (default 1)")
    p.add_argument("--codes", type=int, default=50)
    p.add_argument("--batch", type=int, default=10, help="codes per mapped task of the batched shape")
    p.add_argument("--day", default="2026-11-25", help="the simulated trading day")
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--parallelism", type=int, help="AIRFLOW__CORE__PARALLELISM (default: devtools.airflow_env)")
    p.add_argument("--pool", type=int, help="kis_api slots (default: include/pools.json)")
    p.add_argument("--setting", action="append", default=[], metavar="AIRFLOW__SECTION__KEY=VALUE",
                   help="an Airflow setting for every component, over devtools.airflow_env's (repeatable)")
    p.add_argument("--gap", type=float, default=1.0, help="seconds between two runs")
    p.add_argument("--no-backfill", action="store_true")
    p.add_argument("--no-bare", action="store_true", help="leave out the bare shape (bench/dags/bare_minute_shape.py)")
    p.add_argument("--celery-workers", type=int, default=0,
                   help="also run both shapes under a CeleryExecutor with this many workers, interleaved")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    # Masked from here on: a --setting can hold a DSN with its password.
    sys.stdout = MaskingStream(sys.stdout, local_secrets() + [v for s in args.setting for v in s.split("=", 1)[1:]
                                                              if re.search(r"PASSWORD|SECRET|TOKEN|_KEY", s.split("=")[0])])
    sys.stderr = MaskingStream(sys.stderr, sys.stdout.secrets)

    day = date.fromisoformat(args.day)
    codes, set_watchlist = watchlist(args.codes)
    overrides = dict(setting.split("=", 1) for setting in args.setting)
    if args.parallelism:
        overrides["AIRFLOW__CORE__PARALLELISM"] = str(args.parallelism)
    started = time.monotonic()
    print(f"Starting PostgreSQL databases, the simulator ({args.latency_ms} ms, real mode {SERVER_LIMIT}/s) and Airflow...",
          flush=True)
    with ExitStack() as stacks_context:
        stack = stacks_context.enter_context(running_stack(
            "bench_minute", day=datetime(day.year, day.month, day.day, 9, 0, tzinfo=KST),
            latency_ms=args.latency_ms, overrides=overrides, extra_dags=() if args.no_bare else [BARE_DAG]))
        stacks = {"local": stack}
        if args.celery_workers:
            stacks["celery"] = stacks_context.enter_context(running_stack(
                "bench_minute_celery", day=datetime(day.year, day.month, day.day, 9, 0, tzinfo=KST),
                latency_ms=args.latency_ms, overrides=overrides, celery_workers=args.celery_workers))
        settings = {k: stack.env[k] for k in (
            "AIRFLOW__CORE__PARALLELISM", "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME",
            "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY")}
        for each in stacks.values():
            each.wait_for_dag("kis_minute_bars")
            each.wait_for_dag("kis_minute_backfill")
            if args.pool:
                each.set_pool("kis_api", args.pool)
            if set_watchlist:
                each.set_variable("kis_watchlist", json.dumps(codes))
        pool = stack.get("/pools/kis_api")["slots"]
        print(f"Stack up in {time.monotonic() - started:.0f} s; parallelism {settings['AIRFLOW__CORE__PARALLELISM']},"
              f" pool kis_api {pool} slots, {len(codes)} codes", flush=True)

        sampled = {n: p.pid for n, p in stack.processes.items()}
        if "celery" in stacks:
            sampled |= {f"celery {n}": p.pid for n, p in stacks["celery"].processes.items()}
        with MemorySampler(sampled) as sampler:
            shapes = [Shape("per-code", 1, 10), Shape("batched", args.batch, 11)]
            if not args.no_bare:
                stack.wait_for_dag("bare_minute_shape")
                shapes.append(Shape("bare", 1, 12, "bare_minute_shape"))
            if "celery" in stacks:
                shapes += [Shape("celery per-code", 1, 13, executor="celery"),
                           Shape("celery batched", args.batch, 14, executor="celery")]
            roots = stack.cpu_roots()
            time.sleep(IDLE_SETTLE_SECONDS)
            with CpuWindow(roots) as idle:
                time.sleep(IDLE_WINDOW_SECONDS)  # the stack's own idle cost (scheduler loop at 0.1 s, heartbeats)
            load_before = os.getloadavg()
            cpu = {shape.name: CpuWindow(stacks[shape.executor].cpu_roots()) for shape in shapes}
            results = run_interleaved(stacks, shapes, day, args.runs, args.warmup, args.gap, sampler, cpu)
            backfill = None
            if not args.no_backfill:
                try:
                    backfill = run_backfill(stack, day, sampler)
                    print(f"  backfill {backfill[0]['state']} in {backfill[2]:.1f} s (trigger -> run end)", flush=True)
                except Exception as exc:  # report, keep the minute figures
                    print(f"  backfill did not complete: {exc}", flush=True)
            sampler.phase = "idle after"
            time.sleep(2)
        fetching_runs, bars_per_code, page_floor = day_floor_and_runs(stack, day, codes)

    # --- report -----------------------------------------------------------------------------------
    W = 92
    print("\n" + "=" * W)
    print(f"kis_minute_bars under the scheduler: {len(codes)} codes, simulator {args.latency_ms} ms, real mode"
          f" {SERVER_LIMIT} req/s (hook paces at {PACED_RATE:g}/s)")
    print(f"settings: parallelism {settings['AIRFLOW__CORE__PARALLELISM']}, idle sleep"
          f" {settings['AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME']} s, max_tis_per_query"
          f" {settings['AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY']}, pool kis_api {pool}; {args.runs} runs per shape after"
          f" {args.warmup} warm-up" + "".join(f"; {k}={v}" for k, v in overrides.items()))
    print("=" * W)
    print(f"{'shape':<26}{'tasks':>6} | {'from queued_at: p50    p95    max':>34} | {'from trigger: p50    p95':>25} | goal")
    figures = {}
    p95 = {shape.name: percentile([r.since_queued() for r in results[shape.name][0]], 95) for shape in shapes}
    cpu_per_run = {shape.name: cpu[shape.name].ours / args.runs for shape in shapes}
    floor = len(codes) / PACED_RATE
    for shape in shapes:
        name, per_task = shape.name, shape.per_task
        runs, counters = results[name]
        q = [r.since_queued() for r in runs]
        t = [r.since_trigger() for r in runs]
        w = [r.last_write - r.queued for r in runs if r.last_write]
        ok = all(r.state == "success" and r.failed_tasks == 0 for r in runs)
        verdict = goal_verdict(name, p95, cpu_per_run, floor)
        label = f"{name} ({per_task}/task)"
        print(f"{label:<26}{runs[0].fetch_tasks:>6} | {statistics.median(q):>17.2f} {percentile(q, 95):6.2f} {max(q):6.2f}"
              f" | {statistics.median(t):>18.2f} {percentile(t, 95):6.2f} | {verdict}"
              + ("" if ok else "  (FAILED runs/tasks!)"))
        figures[name] = {"per_task": per_task, "queued_p50": statistics.median(q), "queued_p95": percentile(q, 95),
                         "trigger_p50": statistics.median(t), "trigger_p95": percentile(t, 95),
                         "bars_tx_start_p50": statistics.median(w) if w else None,
                         "data_requests": data_requests(counters), "token_requests": token_requests(counters),
                         "peak_per_second": counters["peak_per_second"], "egw00201": counters["egw00201"],
                         "all_success": ok}
    floor_fetch = (len(codes) - 1) / PACED_RATE
    print(f"(fetch floor at the hook's {PACED_RATE:g} req/s: {len(codes)} requests need >= {floor_fetch:.2f} s + one"
          f" latency; the server's {SERVER_LIMIT}/s alone allows >= {(len(codes) - 1) // SERVER_LIMIT:.0f}-"
          f"{(len(codes) - 1) / SERVER_LIMIT:.2f} s)")

    print("\nCPU during the measured runs (2 cores = 2 CPU-s per wall second):")
    print(f"  {'shape':<16}{'wall s':>8}{'ours CPU-s':>12}{'per run':>9}{'machine CPU-s':>15}{'others':>8}")
    for name, *_ in shapes:
        c = cpu[name]
        print(f"  {name:<16}{c.wall:>8.1f}{c.ours:>12.1f}{c.ours / args.runs:>9.2f}{c.machine:>15.1f}"
              f"{max(0.0, c.machine - c.ours):>8.1f}   (others: PostgreSQL + other sessions' processes)")
        figures[name] |= {"cpu_ours_per_run": c.ours / args.runs, "cpu_machine": c.machine, "wall": c.wall,
                          "cpu_per_run_by_component": {k: v / args.runs for k, v in c.by_component.items()}}
    print("  CPU-s per run by process tree (the scheduler's holds the LocalExecutor workers and task processes;"
          " a Celery worker's its pool and task processes):")
    for executor in stacks:
        group = [s.name for s in shapes if s.executor == executor]
        components = list(cpu[group[0]].by_component)
        print_columns("shape", components, [(n, [cpu[n].by_component[k] / args.runs for k in components]) for n in group],
                      label_width=16, width=15)
    if "bare" in cpu:
        ours, bare = figures["per-code"], figures["bare"]
        print(f"  per code vs the bare shape: latency p50 x{ours['queued_p50'] / bare['queued_p50']:.2f},"
              f" CPU per run x{ours['cpu_ours_per_run'] / bare['cpu_ours_per_run']:.2f}"
              f" (+{(ours['cpu_ours_per_run'] - bare['cpu_ours_per_run']) / results['per-code'][0][0].fetch_tasks * 1000:.0f} ms"
              f" per fetch task),"
              f" PostgreSQL x{cpu['per-code'].by_component[POSTGRES] / cpu['bare'].by_component[POSTGRES]:.2f}")
    print(f"  our stack idle ({IDLE_WINDOW_SECONDS} s, {IDLE_SETTLE_SECONDS} s after start-up): {idle.ours / idle.wall:.2f}"
          f" CPU-s per second (= {idle.ours / idle.wall * 100 / 2:.0f} % of the machine); the machine meanwhile:"
          f" {idle.machine / idle.wall:.2f} CPU-s per second; by component: "
          + ", ".join(f"{name} {cpu_s / idle.wall:.3f}" for name, cpu_s in idle.by_component.items()))
    figures["idle_cpu_per_s"] = idle.ours / idle.wall
    print(f"  load average at the start of the runs: {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min)")

    print("\nWhere the time goes (median seconds):")
    steps = {n: breakdown(results[n][0]) for n, *_ in shapes}
    print_columns("", [n for n, *_ in shapes],
                  [(label, [steps[n][i][1] for n, *_ in shapes]) for i, (label, _) in enumerate(steps["per-code"])],
                  label_width=42, width=16)
    collecting = [s for s in shapes if s.collects]

    print("\nKIS requests (simulator /_sim/counters):")
    print(f"  {'phase':<22}{'runs':>6}{'data req':>10}{'per run':>9}{'token':>7}{'peak/s':>8}{'limit':>7}{'EGW00201':>10}")
    for name, *_ in collecting:
        f = figures[name]
        print(f"  {name:<22}{args.runs:>6}{f['data_requests']:>10}{f['data_requests'] / args.runs:>9.1f}"
              f"{f['token_requests']:>7}{f['peak_per_second']:>8}{SERVER_LIMIT:>7}{f['egw00201']:>10}")
    bf_requests = None
    if backfill:
        run, counters, seconds = backfill
        bf_requests = data_requests(counters)
        print(f"  {'backfill (' + run['state'] + ')':<22}{1:>6}{bf_requests:>10}{bf_requests:>9.1f}"
              f"{token_requests(counters):>7}{counters['peak_per_second']:>8}{SERVER_LIMIT:>7}{counters['egw00201']:>10}")
        figures["backfill"] = {"state": run["state"], "seconds": seconds, "data_requests": bf_requests,
                               "peak_per_second": counters["peak_per_second"], "egw00201": counters["egw00201"]}

    per_run = statistics.mean(figures[n]["data_requests"] / args.runs for n, *_ in collecting)
    minute_day = fetching_runs * per_run
    floor_minute = bars_per_code * len(codes)
    print(f"\nA whole simulated day ({day}, {len(codes)} codes), computed from the sample:")
    print(f"  minute DAG: {fetching_runs} fetching runs (one per bar that closes; cron `* 9-15` makes 420, the gate"
          f" skips the rest without a request) x {per_run:.1f} req = {minute_day:,.0f}")
    print(f"  floor: {bars_per_code} bars per code x {len(codes)} codes = {floor_minute:,}  ->"
          f" ratio {minute_day / floor_minute:.3f}")
    if bf_requests is not None:
        total = minute_day + bf_requests
        print(f"  backfill: {bf_requests:,} pages (floor {page_floor:,}: ceil(bars/30) per code) ->"
              f" ratio {bf_requests / page_floor:.3f}")
        print(f"  day total {total:,.0f} vs floor {floor_minute + page_floor:,} -> ratio"
              f" {total / (floor_minute + page_floor):.3f} (+ 1 token issue a day)")
        figures["day"] = {"minute_runs": fetching_runs, "minute_requests": minute_day, "backfill": bf_requests,
                          "floor": floor_minute + page_floor, "total": total}

    print("\nMemory of the Airflow components' process trees (PSS sum / RSS sum, MiB; sampled every 2 s):")
    print(f"  {'phase':<20}{'PSS peak':>10}{'RSS peak':>10}{'procs':>7}{'LocalExecutor workers':>23}   PSS by component")
    phases = ["idle"] + [n for n, *_ in shapes] + (["backfill"] if backfill else []) + ["idle after"]
    for ph in phases:
        s = sampler.peak(ph)
        if s:
            comps = ", ".join(f"{k} {v:.0f}" for k, v in s.by_component.items())
            print(f"  {ph:<20}{s.pss_mib:>10.0f}{s.rss_mib:>10.0f}{s.processes:>7}{s.executor_workers:>23}   {comps}")
    peak = sampler.peak()
    figures["memory_peak_pss_mib"] = peak.pss_mib
    figures["executor_workers_peak"] = max(s.executor_workers for _, s in sampler.samples)
    figures["goals"] = goals(figures, cpu, results, idle, floor, figures.get("day"))
    print(f"\nTotal wall time {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "pool": pool, "codes": len(codes), "figures": figures}, f, indent=2)
    return 0 if all(figures[n]["all_success"] for n, *_ in shapes) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the scheduler benchmarks: the stack, the REST calls, the timings, memory.

The stack is the one we ship for local use (``devtools.airflow_env`` settings, components started
separately on 127.0.0.1 by ``devtools.local_airflow``) on fresh databases of its own
(``airflow_<name>`` and ``kis_market_<name>`` on the private cluster, dropped and recreated at
start), with the simulator as a separate process. Three deliberate differences from `make
airflow`, all so that runs triggered for a simulated day behave like on-time cron runs:

- ``[scheduler] use_job_schedule = False``: the scheduler creates no cron runs of its own, only the
  benchmark's triggered ones (otherwise a benchmark started during KRX hours would see the
  wall-clock minute runs interleave);
- the Deadline Alerts are pushed out (``KIS_MINUTE_RUN_DEADLINE_SECONDS``,
  ``KIS_BACKFILL_DEADLINE_MINUTES``): a run of a past simulated day is "late" from the moment it is
  created, and an on-time run in production fires no callback either (the deadline rows are still
  written, so their cost stays in the figures);
- DAGs start unpaused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

import psycopg  # noqa: E402
import requests  # noqa: E402

from devtools import airflow_env, local_airflow, localpg, localredis  # noqa: E402
from devtools.net import free_port  # noqa: E402
from kis.client import DEFAULT_RATE_LIMIT, DEFAULT_RATE_LIMIT_SAFETY  # noqa: E402
from simulator.app import DEFAULT_APPKEY, DEFAULT_APPSECRET, RATE_LIMITS  # noqa: E402

KST = timezone(timedelta(hours=9))
FAR_FUTURE_SECONDS = 10 * 365 * 86400
TERMINAL = {"success", "failed"}
# The hook's default pace on a real account and the simulator's limit (KIS's, docs/kis-api.md).
PACED_RATE = DEFAULT_RATE_LIMIT["real"] * DEFAULT_RATE_LIMIT_SAFETY
SERVER_LIMIT = RATE_LIMITS["real"]


def parse_ts(text: str | None) -> float | None:
    """An API/DB timestamp as epoch seconds."""
    if text is None:
        return None
    if isinstance(text, datetime):
        return text.timestamp()
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 10 values is the 10th, i.e. the maximum)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def generated_codes(n: int) -> list[str]:
    """``n`` well-formed codes the simulator knows (``^[0-9A-Z]{6}$``): A00001, A00002, ..."""
    return [f"A{i:05d}" for i in range(1, n + 1)]


def default_watchlist() -> list[str]:
    lines = (REPO / "include" / "watchlist.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split(",")[0] for line in lines if line.strip()]


def watchlist(n: int) -> tuple[list[str], bool]:
    """The first ``n`` codes of the shipped watch-list, or generated ones beyond it; and whether the
    Variable ``kis_watchlist`` must be set (False when it is exactly the default list)."""
    default = default_watchlist()
    if n == len(default):
        return default, False
    if n < len(default):
        return default[:n], True
    return default + generated_codes(n - len(default)), True


# --- memory ----------------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _tree(roots: Sequence[int], children: dict[int, list[int]]) -> list[int]:
    seen, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.append(pid)
        stack.extend(children.get(pid, []))
    return seen


def _kib(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(roots: Sequence[int]) -> float:
    """CPU time of the process trees: utime+stime of the live processes plus cutime+cstime (the
    reaped children, such as finished task processes, accounted to the parent that waited)."""
    total = 0
    for pid in _tree(list(roots), _children_map()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent not idle since boot (all cores)."""
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return (sum(cpu[:8]) - cpu[3] - cpu[4]) / CLK_TCK


@dataclass
class CpuWindow:
    """CPU used during one or more phases by each of our process trees (named roots) and by the
    whole machine.

    ``ours`` is the Airflow components and the simulator; PostgreSQL (``POSTGRES``, the postmaster
    of the private cluster, whose backends are its children) is shown beside them, as it also
    serves the market and state databases of the tasks.
    """

    roots: Mapping[str, int]
    by_component: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0
    wall: float = 0.0

    @property
    def ours(self) -> float:
        return sum(cpu for name, cpu in self.by_component.items() if name != POSTGRES)

    def _sample(self) -> dict[str, float]:
        return {name: tree_cpu_seconds([pid]) for name, pid in self.roots.items()}

    def __enter__(self) -> CpuWindow:
        self._start = (self._sample(), machine_busy_seconds(), time.monotonic())
        return self

    def __exit__(self, *exc: object) -> None:
        """Adds the phase since ``__enter__``: a window entered again accumulates (interleaved runs)."""
        trees, machine, wall = self._sample(), machine_busy_seconds(), time.monotonic()
        for name in trees:
            self.by_component[name] = self.by_component.get(name, 0.0) + trees[name] - self._start[0][name]
        self.machine += machine - self._start[1]
        self.wall += wall - self._start[2]


POSTGRES = "postgres"


def postmaster_pid() -> int:
    """The private cluster's postmaster (the first line of its postmaster.pid)."""
    return int((localpg.cluster().data_dir / "postmaster.pid").read_text().split()[0])


@dataclass
class MemorySample:
    pss_mib: float
    rss_mib: float
    processes: int
    executor_workers: int
    by_component: dict[str, float]


class MemorySampler:
    """Sums PSS and RSS over the process trees of the started components, every ``interval`` s."""

    def __init__(self, roots: dict[str, int], interval: float = 2.0):
        self.roots = roots
        self.interval = interval
        self.samples: list[tuple[str, MemorySample]] = []
        self.phase = "idle"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> MemorySample:
        children = _children_map()
        pss = rss = 0
        count = workers = 0
        by_component: dict[str, float] = {}
        for name, root in self.roots.items():
            comp = 0
            for pid in _tree([root], children):
                p = _kib(f"/proc/{pid}/smaps_rollup", "Pss:")
                comp += p
                pss += p
                rss += _kib(f"/proc/{pid}/status", "VmRSS:")
                count += 1
                if name == "scheduler" and "LocalExecutor" in _cmdline(pid):
                    workers += 1
            by_component[name] = comp / 1024
        return MemorySample(pss / 1024, rss / 1024, count, workers, by_component)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((self.phase, self.sample()))

    def __enter__(self) -> MemorySampler:
        self.samples.append(("idle", self.sample()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peak(self, phase: str | None = None) -> MemorySample | None:
        chosen = [s for p, s in self.samples if phase is None or p == phase]
        return max(chosen, key=lambda s: s.pss_mib) if chosen else None


# --- the stack -------------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    api: str
    sim: str
    processes: dict[str, subprocess.Popen]
    simulator: subprocess.Popen
    started_cluster: bool
    redis: subprocess.Popen | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def cpu_roots(self) -> dict[str, int]:
        """The root PID of each process tree whose CPU a benchmark accounts, by component."""
        return {name: p.pid for name, p in self.processes.items()} | (
            {"redis": self.redis.pid} if self.redis else {}
        ) | {
            "simulator": self.simulator.pid,
            POSTGRES: postmaster_pid(),
        }

    # REST ---------------------------------------------------------------------------------------
    def login(self) -> None:
        r = self.session.post(
            f"{self.api}/auth/token", json={"username": "admin", "password": airflow_env.admin_password()}, timeout=10
        )
        r.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def get(self, path: str, **params):
        r = self.session.get(f"{self.api}/api/v2{path}", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def call(self, method: str, path: str, body: dict):
        r = self.session.request(method, f"{self.api}/api/v2{path}", json=body, timeout=30)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def set_variable(self, key: str, value: str) -> None:
        r = self.session.patch(f"{self.api}/api/v2/variables/{key}", json={"key": key, "value": value}, timeout=30)
        if r.status_code == 404:
            self.call("POST", "/variables", {"key": key, "value": value})
        elif r.status_code >= 400:
            raise RuntimeError(f"variable {key}: {r.status_code} {r.text[:300]}")

    def set_pool(self, name: str, slots: int) -> None:
        self.call("PATCH", f"/pools/{name}", {"name": name, "slots": slots, "include_deferred": False})

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = self.session.get(f"{self.api}/api/v2/dags/{dag_id}", timeout=10)
            if r.status_code == 200:
                if r.json().get("is_paused"):
                    self.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} was not parsed within {timeout} s ({r.status_code})")
            time.sleep(1)

    def trigger(self, dag_id: str, run_id: str, logical_date: datetime, conf: dict | None = None) -> float:
        """Triggers a run; returns the epoch time just before the call."""
        t0 = time.time()
        self.call(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            {"dag_run_id": run_id, "logical_date": logical_date.isoformat(), "conf": conf or {}},
        )
        return t0

    def wait_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 0.25) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} {run_id} still {run['state']} after {timeout} s")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        out, offset = [], 0
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=offset)
            out += page["task_instances"]
            offset += len(page["task_instances"])
            if offset >= page["total_entries"] or not page["task_instances"]:
                return out

    # simulator ----------------------------------------------------------------------------------
    def sim_clock(self, now: datetime) -> None:
        requests.post(f"{self.sim}/_sim/clock", json={"now": now.isoformat()}, timeout=10).raise_for_status()

    def sim_counters(self) -> dict:
        return requests.get(f"{self.sim}/_sim/counters", timeout=10).json()

    def sim_reset(self) -> None:
        requests.post(f"{self.sim}/_sim/counters/reset", timeout=10).raise_for_status()

    # market DB ----------------------------------------------------------------------------------
    def last_write(self, since: float) -> float | None:
        """The latest bar write (insert or update) at or after epoch ``since``, per the bars' own
        timestamps (``now()`` of the upsert transaction: its start, so a lower bound of the commit)."""
        with psycopg.connect(self.env["AIRFLOW_CONN_KIS_MARKET_DB"]) as conn:
            row = conn.execute(
                "SELECT max(greatest(created_at, coalesce(updated_at, created_at))) FROM stock_prices_minute"
                " WHERE greatest(created_at, coalesce(updated_at, created_at)) >= to_timestamp(%s)",
                (since,),
            ).fetchone()
        return row[0].timestamp() if row and row[0] else None


def _drop_database(name: str) -> None:
    with psycopg.connect(localpg.cluster().dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _others_connected(names: Sequence[str]) -> bool:
    with psycopg.connect(localpg.cluster().dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid() AND NOT (datname = ANY(%s))",
            (list(names),),
        ).fetchone()
    return bool(row and row[0])


def appkeys(keys: int) -> list[tuple[str, str]]:
    """The simulator's app keys and secrets of a stack of ``keys`` keys, the first its default."""
    return [(DEFAULT_APPKEY, DEFAULT_APPSECRET)] + [
        (f"{DEFAULT_APPKEY}-{n}", f"{DEFAULT_APPSECRET}-{n}") for n in range(2, keys + 1)
    ]


def connection_ids(keys: int) -> list[str]:
    """The KIS connections of those keys, in ``kis_connections``'s order."""
    return ["kis_default"] + [f"kis_key_{n}" for n in range(2, keys + 1)]


@contextmanager
def running_stack(
    name: str,
    *,
    day: datetime,
    latency_ms: int = 50,
    mode: str = "real",
    overrides: dict[str, str] | None = None,
    keep_databases: bool = False,
    extra_dags: Sequence[Path] = (),
    celery_workers: int = 0,
    keys: int = 1,
) -> Iterator[Stack]:
    """Cluster, fresh databases, the simulator (its market clock at ``day``) and the four components.

    ``keys``: that many app keys, each its own KIS connection (``kis_default``, ``kis_key_2``...) in
    the Variable ``kis_connections``, the simulator accepting each with its own limit and token; the
    stock masters (``kis_master``) come from the simulator too.

    ``extra_dags``: DAG files served beside the repository's (a folder of copies in AIRFLOW_HOME).
    ``celery_workers``: a CeleryExecutor with that many workers and a private Redis instead of the
    LocalExecutor (``devtools.local_airflow``).

    Everything started here is stopped on the way out, by process group; the cluster too when this
    started it and nobody else is connected to it.
    """
    for var in [k for k in os.environ if k.startswith(("AIRFLOW_VAR_KIS_", "AIRFLOW__", "AIRFLOW_CONN_KIS"))]:
        os.environ.pop(var)  # the benchmark's settings, not the caller's shell, decide
    started_cluster = localpg.start()
    localpg.wait_until_accepting()
    api_port, sim_port = free_port(), free_port()
    keyring = appkeys(keys)
    env = airflow_env.environment(
        name, api_port=api_port, kis_conn=airflow_env.kis_connection("127.0.0.1", sim_port, environment=mode),
        master_conn=airflow_env.master_connection("127.0.0.1", sim_port),
    )
    if keys > 1:
        conn_ids = connection_ids(keys)
        for conn_id, (appkey, appsecret) in zip(conn_ids[1:], keyring[1:]):
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = airflow_env.kis_connection(
                "127.0.0.1", sim_port, environment=mode, appkey=appkey, appsecret=appsecret
            )
        env["AIRFLOW_VAR_KIS_CONNECTIONS"] = json.dumps(conn_ids)
    env |= {
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "KIS_MINUTE_RUN_DEADLINE_SECONDS": str(FAR_FUTURE_SECONDS),
        "KIS_BACKFILL_DEADLINE_MINUTES": str(FAR_FUTURE_SECONDS // 60),
    }
    redis_port = free_port()
    if celery_workers:
        env |= airflow_env.celery(env, localredis.broker_url(redis_port))
    env |= overrides or {}
    if extra_dags:
        dags = Path(env["AIRFLOW_HOME"]) / "dags"
        shutil.rmtree(dags, ignore_errors=True)
        dags.mkdir(parents=True)
        for dag_file in [*(REPO / "dags").glob("*.py"), *extra_dags]:
            shutil.copy(dag_file, dags)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    databases = [env[v].rsplit("/", 1)[1] for v in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW_CONN_KIS_MARKET_DB")]
    for db in databases:
        _drop_database(db)
    log_dir = Path(env["AIRFLOW_HOME"]) / "components"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    sim_args = ["--mode", mode, "--latency-ms", str(latency_ms), "--now", day.isoformat(), "--log-level", "warning",
                "--appkeys", ",".join(f"{key}:{secret}" for key, secret in keyring)]
    with ExitStack() as stack:
        simulator = stack.enter_context(
            local_airflow.running_simulator(sim_port, sim_args, log_path=log_dir / "simulator.log")
        )
        redis = (
            stack.enter_context(localredis.running_redis(redis_port, log_dir / "redis.log"))
            if celery_workers
            else None
        )
        processes = stack.enter_context(
            local_airflow.running_airflow(env, log_dir=log_dir, celery_workers=celery_workers)
        )
        s = Stack(
            env=env,
            api=f"http://127.0.0.1:{api_port}",
            sim=f"http://127.0.0.1:{sim_port}",
            processes=processes,
            simulator=simulator,
            started_cluster=started_cluster,
            redis=redis,
        )
        s.login()
        try:
            yield s
        finally:
            s.session.close()
            stack.close()
            if not keep_databases:
                for db in databases:
                    try:
                        _drop_database(db)
                    except psycopg.Error:
                        pass
            if started_cluster and not _others_connected(databases):
                localpg.stop()


# --- a measured minute run -------------------------------------------------------------------------


@dataclass
class MinuteRun:
    tick: datetime
    run_id: str
    state: str
    trigger: float  # epoch of the trigger call
    queued: float
    started: float
    run_end: float
    gate_end: float | None
    first_fetch_start: float | None
    last_fetch_end: float | None
    upsert_start: float | None
    upsert_end: float | None
    last_write: float | None
    fetch_tasks: int
    failed_tasks: int

    @property
    def committed(self) -> float:
        return self.upsert_end or self.run_end

    def since_trigger(self) -> float:
        return self.committed - self.trigger

    def since_queued(self) -> float:
        return self.committed - self.queued


def measure_minute_run(stack: Stack, tick: datetime, run_id: str, *, lag: float = 3.0, timeout: float = 180,
                       dag_id: str = "kis_minute_bars") -> MinuteRun:
    """One minute run of ``dag_id`` (``kis_minute_bars`` or a DAG of its task ids) at ``tick``: the
    simulator's clock at tick + ``lag``, the trigger, the wait, then the timestamps of the run, its
    tasks and its bars."""
    stack.sim_clock(tick + timedelta(seconds=lag))
    t0 = stack.trigger(dag_id, run_id, tick)
    run = stack.wait_run(dag_id, run_id, timeout)
    tis = stack.task_instances(dag_id, run_id)

    def ends(task_id: str, key: str) -> list[float]:
        return [parse_ts(t[key]) for t in tis if t["task_id"] == task_id and t.get(key)]

    fetch_starts, fetch_ends = ends("fetch_recent_bars", "start_date"), ends("fetch_recent_bars", "end_date")
    return MinuteRun(
        tick=tick,
        run_id=run_id,
        state=run["state"],
        trigger=t0,
        queued=parse_ts(run["queued_at"]),
        started=parse_ts(run["start_date"]),
        run_end=parse_ts(run["end_date"]),
        gate_end=max(ends("session_gate", "end_date"), default=None),
        first_fetch_start=min(fetch_starts, default=None),
        last_fetch_end=max(fetch_ends, default=None),
        upsert_start=max(ends("upsert_bars", "start_date"), default=None),
        upsert_end=max(ends("upsert_bars", "end_date"), default=None),
        last_write=stack.last_write(t0),
        fetch_tasks=sum(1 for t in tis if t["task_id"] == "fetch_recent_bars"),
        failed_tasks=sum(1 for t in tis if t["state"] not in ("success", "skipped")),
    )

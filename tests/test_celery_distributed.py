"""The distributed path: two Celery workers collect a minute and a day (issue 16).

Two `airflow celery worker` processes stand in for two machines: each its own hostname (the name
it records on its task instances) and its own log-server port, sharing with the scheduler only what
machines would share: the metadata database, the market database (the KIS token and the rate
limiter) and the broker (a private Redis on 127.0.0.1, devtools/localredis.py). The stack is the
benchmarks' (bench/_harness.py): the scheduler, dag-processor, triggerer and API server started
separately, the simulator as its own process, runs triggered through the REST API.

A minute run (one fetch task per code), then the 16:00 backfill of the same simulated day; then:
the table equals the simulator's truth, both workers ran fetch tasks, one token was issued for
everything, and the simulator never saw more requests in a second than the limit. About 1.5 min.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date, datetime

import pytest
import requests

from devtools.airflow_env import REPO

sys.path.insert(0, str(REPO / "bench"))
from _harness import KST, SERVER_LIMIT, measure_minute_run, running_stack  # noqa: E402

from kis.bar import Bar  # noqa: E402

# The limit is asserted from the simulator's arrival times: alone on the machine, not beside other tests.
pytestmark = pytest.mark.solo
DAY = date(2026, 11, 25)
CODES = ["005930", "000660", "0126Z0", "035720", "005380", "051910", "006400", "035420", "068270", "105560"]


@pytest.fixture
def isolated_environ():
    """running_stack removes every AIRFLOW__* variable of this process (the suite's Airflow among them)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _stored(dsn: str) -> dict[str, list[Bar]]:
    import psycopg

    stored: dict[str, list[Bar]] = {code: [] for code in CODES}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT stock_code, datetime, open, high, low, close, volume FROM stock_prices_minute"
            " WHERE datetime::date = %s ORDER BY stock_code, datetime", (DAY,)
        ).fetchall()
    for code, minute, *values in rows:
        stored[code].append(Bar(code, minute.replace(tzinfo=KST), *values))
    return stored


def test_two_celery_workers_collect_a_minute_and_a_day(isolated_environ):
    overrides = {"AIRFLOW__CELERY__WORKER_CONCURRENCY": "4"}  # the pool's 8 slots need both workers
    with running_stack(f"celery_{os.getpid()}", day=datetime(2026, 11, 25, 9, 0, tzinfo=KST), celery_workers=2,
                       overrides=overrides) as stack:
        workers = {name: p for name, p in stack.processes.items() if name.startswith("celery-worker-")}
        envs = [p.own_env for p in workers.values()]
        assert len({e["KIS_WORKER_HOSTNAME"] for e in envs}) == 2
        assert len({e["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for e in envs}) == 2
        assert stack.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        stack.wait_for_dag("kis_minute_bars")
        stack.wait_for_dag("kis_minute_backfill")
        stack.set_variable("kis_watchlist", json.dumps(CODES))
        stack.set_variable("kis_codes_per_task", "1")
        truth = {
            code: [Bar.from_record(r) for r in requests.get(
                f"{stack.sim}/_sim/truth", params={"code": code, "date": DAY.isoformat()}, timeout=30
            ).json()["bars"]]
            for code in CODES
        }

        minute = measure_minute_run(stack, datetime(2026, 11, 25, 10, 31, tzinfo=KST), "celery_minute_1031")
        assert (minute.state, minute.failed_tasks, minute.fetch_tasks) == ("success", 0, len(CODES))
        stored = _stored(stack.env["AIRFLOW_CONN_KIS_MARKET_DB"])
        for code in CODES:
            assert len(stored[code]) == 30, code  # the last 30 closed bars, 10:01-10:30
            by_minute = {bar.minute: bar for bar in truth[code]}
            assert all(bar == by_minute[bar.minute] for bar in stored[code]), code

        stack.sim_clock(datetime(2026, 11, 25, 16, 6, tzinfo=KST))
        stack.trigger("kis_minute_backfill", "celery_backfill", datetime(2026, 11, 25, 16, 0, tzinfo=KST))
        backfill = stack.wait_run("kis_minute_backfill", "celery_backfill", timeout=300, poll=1.0)
        assert backfill["state"] == "success"
        stored = _stored(stack.env["AIRFLOW_CONN_KIS_MARKET_DB"])
        for code in CODES:
            assert stored[code] == truth[code], code

        hosts = {
            ti["hostname"]
            for dag_id, run_id in (("kis_minute_bars", "celery_minute_1031"), ("kis_minute_backfill", "celery_backfill"))
            for ti in stack.task_instances(dag_id, run_id)
            if ti["task_id"].startswith("fetch_")
        }
        assert hosts == {"kis-worker-1", "kis-worker-2"}

        counters = stack.sim_counters()
        assert counters["tokens_issued"] == 1
        assert counters["peak_per_second"] <= SERVER_LIMIT  # the simulator's real mode: KIS's 18/s
        assert counters["egw00201"] == 0

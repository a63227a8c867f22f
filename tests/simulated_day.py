"""A simulated trading day wired into Airflow for DAG tests: the market handle and its helpers.

The fixtures that build one (``dagbag``, ``simulated_market``, ``market``) are in conftest.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from devtools import airflow_env
from kis.bars import KST, Bar
from simulator.testing import SimulatorHandle

DAGS_FOLDER = airflow_env.REPO / "dags"
CODES = ["005930", "000660", "0126Z0", "035720"]


def kst(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=KST)


@dataclass
class Market:
    """A simulated market wired into Airflow's connections for one test."""

    sim: SimulatorHandle
    dsn: str
    dagbag: Any

    def run(self, dag_id: str, tick: datetime, *, conf: dict | None = None, lag: float = 2.0):
        """One run of ``dag_id`` at ``tick``, with the simulator's clock ``lag`` seconds later."""
        self.sim.set_now(tick + timedelta(seconds=lag))
        return self.dagbag.get_dag(dag_id).test(logical_date=tick, run_conf=conf)

    def stored(self, day: date, codes=CODES, venue: str = "krx") -> dict[str, list[Bar]]:
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT stock_code, datetime, open, high, low, close, volume FROM stock_prices_minute"
                " WHERE datetime::date = %s AND venue = %s ORDER BY stock_code, datetime",
                (day, venue),
            ).fetchall()
        stored: dict[str, list[Bar]] = {code: [] for code in codes}
        for code, minute, *values in rows:
            stored.setdefault(code, []).append(Bar(code, minute.replace(tzinfo=KST), *values))
        return stored

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(self.dsn) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def data_requests(self) -> int:
        return sum(n for endpoint, n in self.sim.counters()["requests_by_endpoint"].items() if "inquire" in endpoint)


def task_states(dag_run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, []).append(getattr(ti.state, "value", ti.state))
    return states


def wait_for(what: str, probe, timeout: float = 120.0, interval: float = 1.0):
    """``probe()``'s first truthy answer, asked every ``interval`` seconds for at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")

"""A simulated trading day wired into Airflow for DAG tests: the market handle and its helpers.

The fixtures that build one (``dagbag``, ``simulated_market``, ``market``) are in conftest.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

import httpx
import psycopg

from devtools import airflow_env
from kis.bar import KST, Bar
from simulator.testing import SimulatorHandle

if TYPE_CHECKING:
    from airflow.models.asset import AssetEvent

DAGS_FOLDER = airflow_env.REPO / "dags"
CODES = ["005930", "000660", "0126Z0", "035720"]
#: The environment of a local Airflow whose tests trigger their runs: unpausing a DAG otherwise lets
#: the scheduler add the run of the wall clock's latest interval (a minute run when the suite runs
#: during KRX's session), whose requests and alerts the test then counts as its own.
TRIGGERED_RUNS_ONLY = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}


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

    def run_on_events(self, dag_id: str, events: list[AssetEvent], tick: datetime):
        """One run of ``dag_id`` at ``tick`` triggered by ``events``, as the scheduler runs an asset-
        scheduled DAG: ``dag.test()`` makes a manual run, and the run is given the events to consume
        as the scheduler's ``_create_dag_runs_asset_triggered`` gives them (its tasks read them as
        ``triggering_asset_events``)."""
        from airflow.models import dagrun
        from airflow.models.asset import AssetEvent as Event
        from sqlalchemy import select

        create = dagrun.get_or_create_dagrun

        def with_events(*, session, **kwargs):
            run = create(session=session, **kwargs)
            ids = [event.id for event in events]
            run.consumed_asset_events.extend(session.scalars(select(Event).where(Event.id.in_(ids))))
            session.commit()
            return run

        with patch.object(dagrun, "get_or_create_dagrun", with_events):
            return self.dagbag.get_dag(dag_id).test(logical_date=tick)

    def data_requests(self) -> int:
        return sum(n for endpoint, n in self.sim.counters()["requests_by_endpoint"].items() if "inquire" in endpoint)


def announced(dag_run) -> list[AssetEvent]:
    """The asset events ``verify_day`` of ``dag_run`` emitted (dag.test() reuses run ids: only
    those since the task started), oldest first."""
    from airflow.models.asset import AssetEvent as Event
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    (verify,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "verify_day"]
    if verify.start_date is None:  # skipped: never ran
        return []
    with create_session() as session:
        return list(
            session.scalars(
                select(Event)
                .options(joinedload(Event.asset))
                .where(
                    Event.source_dag_id == dag_run.dag_id,
                    Event.source_run_id == dag_run.run_id,
                    Event.source_task_id == "verify_day",
                    Event.timestamp >= verify.start_date,
                )
                .order_by(Event.id)
            )
        )


@contextmanager
def local_airflow(name: str, sim: SimulatorHandle, **variables: str) -> Iterator[tuple[httpx.Client, str]]:
    """A local Airflow (scheduler, dag-processor, triggerer, api-server) on fresh metadata and
    market databases, whose KIS is ``sim``, with the environment ``variables`` (e.g.
    ``AIRFLOW_VAR_KIS_WATCHLIST``); yields a client of its REST API logged in as admin, and the
    market database's DSN."""
    from devtools import localpg
    from devtools.local_airflow import running_airflow
    from devtools.net import free_port

    port = free_port()
    env = airflow_env.environment(
        f"{name}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", api_port=port,
        kis_conn=airflow_env.kis_connection(sim.host, sim.port, appkey=sim.appkey, appsecret=sim.appsecret),
        master_conn=airflow_env.master_connection(sim.host, sim.port),
    ) | variables
    # Fresh databases: no run, event or bar of an earlier session.
    localpg.create_database(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1], drop_existing=True)
    market_dsn = localpg.create_database(env["AIRFLOW_CONN_KIS_MARKET_DB"].rsplit("/", 1)[1], drop_existing=True)
    with running_airflow(env):
        base = f"http://127.0.0.1:{port}"
        login = {"username": "admin", "password": airflow_env.admin_password()}
        token = httpx.post(f"{base}/auth/token", json=login).json()["access_token"]
        with httpx.Client(base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            yield api, market_dsn


def store_universe(conn: psycopg.Connection, day: date, members: dict[str, tuple[str, str, bool]]) -> None:
    """A loaded universe of ``day`` as kis_universe stores it (without the files): ``members`` maps
    each code to its market, security group and halt flag."""
    markets = sorted({market for market, _, _ in members.values()})
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO stock_universe_loads (trading_date, market, records, sha256, run_id)"
            " VALUES (%s, %s, 1, 'test', 'test')",
            [(day, market) for market in markets],
        )
        cur.executemany(
            "INSERT INTO stock_universe_daily (trading_date, stock_code, market, security_group, halted,"
            " liquidation, administrative, spac, preferred) VALUES (%s, %s, %s, %s, %s, false, false, false, false)",
            [(day, code, *member) for code, member in members.items()],
        )


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

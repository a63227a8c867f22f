"""The Deadline Alert under the real scheduler: a minute run not done in time raises an alert.

`dag.test()` cannot show this (it does not evaluate deadlines, and Airflow 3.3.2's `dags test`
cannot even finish a run of a DAG that declares them), so this starts the scheduler, the
dag-processor, the triggerer (where the async callback runs) and the api-server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from devtools import airflow_env, localpg
from devtools.local_airflow import running_airflow
from devtools.net import free_port
from simulated_day import TRIGGERED_RUNS_ONLY, wait_for
from simulator.testing import run_simulator

pytestmark = pytest.mark.stack
TICK = "2026-11-25T10:31:00+09:00"


@pytest.fixture
def scheduler_with_slow_kis(pg_cluster) -> Iterator[tuple[str, dict[str, str], str]]:
    """A local Airflow whose KIS answers after 4 s, with a minute-run deadline of 1 s."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    port = free_port()
    with run_simulator(now="2026-11-25T10:31:02+09:00", faults={"latency_ms": 4000}) as sim:
        env = airflow_env.environment(
            f"deadline_{worker}", api_port=port,
            kis_conn=airflow_env.kis_connection(sim.host, sim.port, appkey=sim.appkey, appsecret=sim.appsecret),
        )
        env |= TRIGGERED_RUNS_ONLY | {
            "KIS_DEADLINE_ALERTS": "auto",  # the suite's own dag.test() runs turn them off
            "KIS_MINUTE_RUN_DEADLINE_SECONDS": "1",
            "AIRFLOW_VAR_KIS_WATCHLIST": "005930",
        }
        # Fresh databases: a run of the same logical date must not exist from an earlier session.
        localpg.create_database(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1], drop_existing=True)
        market_dsn = localpg.create_database(env["AIRFLOW_CONN_KIS_MARKET_DB"].rsplit("/", 1)[1], drop_existing=True)
        with running_airflow(env):
            yield f"http://127.0.0.1:{port}", env, market_dsn


def test_a_late_minute_run_fires_its_deadline_alert(scheduler_with_slow_kis):
    base, env, market_dsn = scheduler_with_slow_kis
    token = httpx.post(
        f"{base}/auth/token", json={"username": "admin", "password": airflow_env.admin_password()}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    wait_for(
        "the dag-processor parses kis_minute_bars",
        lambda: httpx.get(f"{base}/api/v2/dags/kis_minute_bars", headers=headers).status_code == 200,
    )
    unpaused = httpx.patch(f"{base}/api/v2/dags/kis_minute_bars", headers=headers, json={"is_paused": False})
    assert unpaused.status_code == 200, unpaused.text
    triggered = httpx.post(
        f"{base}/api/v2/dags/kis_minute_bars/dagRuns", headers=headers, json={"logical_date": TICK}
    )
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["dag_run_id"]

    def alert():
        with psycopg.connect(market_dsn) as conn:
            try:
                return conn.execute(
                    "SELECT kind, dag_id, run_id, trading_date::text, message FROM collection_alerts"
                    " WHERE kind = 'deadline_missed' AND run_id = %s",
                    (run_id,),
                ).fetchall()
            except psycopg.errors.UndefinedTable:  # the run's gate has not migrated the schema yet
                return None

    ((kind, dag_id, alert_run_id, trading_date, message),) = wait_for("the deadline alert", alert)
    assert (kind, dag_id, alert_run_id, trading_date) == ("deadline_missed", "kis_minute_bars", run_id, "2026-11-25")
    assert "minute run" in message and run_id in message
    # The run itself still completes: the alert reports lateness, it does not stop the collection.
    state = wait_for(
        "the run ends",
        lambda: (s := httpx.get(f"{base}/api/v2/dags/kis_minute_bars/dagRuns/{run_id}", headers=headers)
                 .json()["state"]) in ("success", "failed") and s,
    )
    assert state == "success"

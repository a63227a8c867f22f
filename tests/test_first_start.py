"""The first start, as a newcomer makes it: `make airflow` from a fresh state directory.

It replays a past session (``--replay``, as ``make airflow REPLAY=...``), so that minute runs fetch
whatever the hour: the UI answers, and by the end of the first minute run (about a minute after
it) bars are stored, no task failed and no alert was raised. A trigger dated by the browser's
clock, days ahead of the replayed one (the trigger form's default), is refused with the reason. Also
run alone as ``make check-first-start``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from simulated_day import wait_for

from devtools import airflow_env, localpg
from devtools.local_airflow import wait_for_http
from devtools.net import free_port

# Alone on the machine: each minute run of 50 codes must end within its 50 s deadline, or its
# Deadline Alert fails the check; a test beside it would share the two cores.
pytestmark = pytest.mark.solo
# A Friday's regular session, from its open as the README's REPLAY=2026-11-27:
# started later, the first minute run would report the minutes before the start as gaps.
REPLAY = "2026-11-27"
# The first minute run after the start: the one a fresh start can get wrong (its bars reach back to
# the open; its tasks are the first the new stack runs). Later runs are the suite's minute runs.
WATCHED_RUNS = 1


@pytest.fixture
def fresh_make_airflow() -> Iterator[tuple[str, Path, int, subprocess.Popen]]:
    """``python -m devtools.local_airflow --replay REPLAY`` in a new state directory; stopped as
    Ctrl-C stops it. Yields the UI's address, the state directory, the replay cluster's port and
    the process."""
    # Under /var/tmp: as root the cluster runs as the postgres user, who must reach it.
    state = Path(tempfile.mkdtemp(prefix="kis-first-start-", dir="/var/tmp"))
    state.chmod(0o755)
    api_port, pg_port = free_port(), free_port()
    # A newcomer's shell: none of the suite's Airflow settings (it turns deadline alerts off).
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "KIS_"))}
    argv = [
        sys.executable, "-m", "devtools.local_airflow", "--replay", REPLAY, "--api-port", str(api_port),
        "--simulator-port", str(free_port()), "--replay-pg-port", str(pg_port),
    ]  # fmt: skip
    with open(state / "make-airflow.log", "wb") as log:
        process = subprocess.Popen(
            argv, cwd=airflow_env.REPO, env={**env, "KIS_STATE_DIR": str(state)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{api_port}", state, pg_port, process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # The logs outlive the state directory, for a failure in CI.
        logs = airflow_env.REPO / "test-output" / "first-start"
        shutil.rmtree(logs, ignore_errors=True)
        components = state / "replay" / "airflow-local" / "components"
        if components.exists():
            shutil.copytree(components, logs, dirs_exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copy(state / "make-airflow.log", logs)
        shutil.rmtree(state, ignore_errors=True)


def test_a_fresh_start_fetches_bars_and_fails_and_alerts_nothing(fresh_make_airflow) -> None:
    base, state, pg_port, process = fresh_make_airflow
    log = state / "make-airflow.log"

    def ui_announced() -> bool:
        assert process.poll() is None, log.read_text()
        return "Airflow UI:" in log.read_text()

    # What a newcomer waits for: the address printed once everything has started.
    wait_for("make airflow prints the UI's address", ui_announced, timeout=300)
    wait_for_http(f"{base}/api/v2/monitor/health", timeout=30, processes={"make airflow": process})
    password = (state / "admin.password").read_text().strip()
    token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    market = localpg.Cluster(state / "replay" / "pg", pg_port).dsn("kis_market_local")
    backfill = f"{base}/api/v2/dags/kis_minute_backfill"

    def backfill_parsed() -> bool:
        return httpx.get(backfill, headers=headers).status_code == 200

    wait_for("the backfill DAG is parsed", backfill_parsed, timeout=60)
    browsers_clock = {"logical_date": datetime.now(UTC).isoformat(), "conf": {}}
    refused = httpx.post(f"{backfill}/dagRuns", headers=headers, json=browsers_clock)
    assert refused.status_code == 400, refused.text
    assert "ahead of this Airflow's clock" in refused.json()["detail"], refused.text

    def watched_runs_ended() -> bool:
        assert process.poll() is None, log.read_text()
        ended = httpx.get(
            f"{base}/api/v2/dags/kis_minute_bars/dagRuns", params={"state": ["success", "failed"]},
            headers=headers, timeout=30,
        ).json()["total_entries"]  # fmt: skip
        return ended >= WATCHED_RUNS

    # Bounded by the runs, not by a watch of fixed length: a run that ended has raised what it raises
    # (its gap check ran, and it missed its deadline or not).
    wait_for(f"{WATCHED_RUNS} minute runs end", watched_runs_ended, timeout=300, interval=2)

    with psycopg.connect(market) as conn:
        bars = conn.execute("SELECT count(*), count(DISTINCT datetime) FROM stock_prices_minute").fetchone()
        alerts = conn.execute("SELECT kind, message FROM collection_alerts").fetchall()
    runs = [
        (run["logical_date"], run["state"], run["start_date"], run["end_date"])
        for run in httpx.get(f"{base}/api/v2/dags/~/dagRuns", headers=headers).json()["dag_runs"]
    ]
    unhappy = [
        (ti["dag_id"], ti["task_id"], ti["rendered_map_index"], ti["state"])
        for state_name in ("failed", "up_for_retry", "upstream_failed")
        for ti in httpx.get(
            f"{base}/api/v2/dags/~/dagRuns/~/taskInstances", params={"state": state_name}, headers=headers
        ).json()["task_instances"]
    ]
    seen = {"bars, minutes": bars, "runs": runs, "alerts": alerts, "failed tasks": unhappy}
    # Minute runs of the replayed day only (no backfill of a day before the start), with bars stored.
    assert runs and {logical_date[:10] for logical_date, *_ in runs} == {REPLAY}, seen
    assert bars[0] > 0, seen
    assert alerts == [] and unhappy == [], seen

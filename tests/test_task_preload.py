"""The preload plugin covers what a fetch task imports (plugins/kis_task_preload.py).

A task process is forked from its LocalExecutor worker for each task and thrown away after it, so a
module the task imports itself is imported again by every task: 50 times a minute with one fetch
task per code. Before the preload covered the lazy imports (the holidays library, the SQL operator,
the Postgres hook), they were most of a fetch task's CPU (bench/README.md). This parses the DAG
and fetches one code as the task does, in a fresh interpreter that has imported only what a worker
has, and lists what it still had to import; then it checks that the year's holidays were computed
by the preload too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from simulated_day import DAGS_FOLDER
from simulator.testing import run_simulator

from devtools.airflow_env import REPO
from devtools.local_airflow import PLUGINS

A_FETCH_TASK = """
import json, sys
from datetime import datetime

import kis_task_preload  # noqa: F401  (what the plugin manager imported before the workers forked)
# What a worker has imported itself before it forks a task: it is the task's supervisor.
import airflow.sdk.execution_time.supervisor  # noqa: F401
import airflow.sdk.execution_time.task_runner  # noqa: F401
from airflow.dag_processing.dagbag import DagBag

before = set(sys.modules)

# This year's holidays were computed by the preload: without the library, the year still loads.
import kis.calendar
from kis.bar import KST

holidays, kis.calendar.KoreaExchange = kis.calendar.KoreaExchange, None
kis.calendar.default_calendar().load_years(datetime.now(KST).year)
kis.calendar.KoreaExchange = holidays

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors

from kis import minute_run, task_context

run = task_context.Run("kis_minute_bars", "preload_check", datetime.fromisoformat(sys.argv[2]))
assert minute_run.fetch_recent_bars(["005930"], run), "the simulator returned no bar"
# The DAG file itself is imported by each task under a generated name: that is the parse.
print(json.dumps(sorted(m for m in set(sys.modules) - before if not m.startswith("unusual_prefix_"))))
"""


def test_a_fetch_task_finds_its_imports_and_the_holidays_preloaded(point_kis_at: Callable[..., None]) -> None:
    with run_simulator(now="2026-11-25T10:31:00+09:00") as sim:
        point_kis_at(sim)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(REPO)])}
        done = subprocess.run(
            [sys.executable, "-c", A_FETCH_TASK, str(DAGS_FOLDER / "kis_minute_bars.py"), "2026-11-25T10:31:00+09:00"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == [], f"a fetch task imports these itself; add them to plugins/kis_task_preload.py: {imported}"

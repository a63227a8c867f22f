"""What a fetch task imports is imported before its process starts: by the preload plugin
(plugins/kis_task_preload.py) in a LocalExecutor worker, by the Celery config
(celery_config/kis_celery.py) in a Celery worker.

A task process is forked from its worker for each task and thrown away after it, so a module the
task imports itself is imported again by every task: 50 times a minute with one fetch task per
code. Before the preload covered the lazy imports (the holidays library, the SQL operator, the
Postgres hook), they were most of a fetch task's CPU (bench/README.md). `airflow celery worker`
loads no plugins before its pool forks, so without the Celery config the preload never reached a
Celery task, and every task re-imported everything (issue 16).

Each case starts a fresh interpreter that has imported only what its worker has: a LocalExecutor
worker (the plugin, the Task SDK's supervisor and task runner), or the worker's Celery app built
with ``[celery] celery_config_options`` as compose and ``make airflow`` set it, after what Celery
imports before it starts its pool (``loader.init_worker()``, the step of ``WorkController`` that
precedes the pool). Then it parses the DAG and fetches one code as the task does, lists what it
still had to import, and checks that the year's holidays were computed by the preload too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from simulated_day import DAGS_FOLDER
from simulator.testing import run_simulator

from devtools.airflow_env import CELERY_CONFIG_DIR, CELERY_CONFIG_OPTIONS, REPO
from devtools.local_airflow import PLUGINS

A_LOCAL_WORKER = """
import json, sys
from datetime import datetime

import kis_task_preload  # noqa: F401  (what the plugin manager imported before the workers forked)
# What a worker has imported itself before it forks a task: it is the task's supervisor.
import airflow.sdk.execution_time.supervisor  # noqa: F401
import airflow.sdk.execution_time.task_runner  # noqa: F401
from airflow.dag_processing.dagbag import DagBag

before = set(sys.modules)
"""

A_CELERY_WORKER = """
import json, sys
from datetime import datetime

from airflow.providers.celery.executors.celery_executor_utils import app

assert "kis_task_preload" not in sys.modules, "the scheduler's side must not import the preload"
app.loader.init_worker()  # what the worker does before its pool forks
for module in ("kis_task_preload", "airflow.sdk.execution_time.supervisor",
               "airflow.sdk.execution_time.task_runner", "airflow.dag_processing.dagbag"):
    assert module in sys.modules, module
from airflow.sdk.execution_time import supervisor, task_runner  # noqa: F401
from airflow.dag_processing.dagbag import DagBag  # noqa: F401
from airflow.sdk.plugins_manager import _get_plugins

assert _get_plugins.cache_info().currsize == 1, "the plugins were not loaded before the fork"

before = set(sys.modules)
# A task process loads the plugins for their macros and listeners: cached in the worker already.
from airflow.sdk.plugins_manager import integrate_macros_plugins
integrate_macros_plugins()
"""

A_FETCH_TASK = """
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

WORKERS = {
    "local-executor": (A_LOCAL_WORKER, {"PYTHONPATH": os.pathsep.join([str(PLUGINS), str(REPO)])},
                       "plugins/kis_task_preload.py"),
    "celery": (
        A_CELERY_WORKER,
        {
            "PYTHONPATH": str(CELERY_CONFIG_DIR),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_OPTIONS,
            # Never contacted: building the app and importing its modules needs no broker.
            "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:9/0",
        },
        "celery_config/kis_celery.py",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("worker", list(WORKERS))
def test_a_fetch_task_finds_its_imports_and_the_holidays_preloaded(
    point_kis_at: Callable[..., None], worker: str
) -> None:
    imported_before, env, preload = WORKERS[worker]
    with run_simulator(now="2026-11-25T10:31:00+09:00") as sim:
        point_kis_at(sim)
        done = subprocess.run(
            [sys.executable, "-c", imported_before + A_FETCH_TASK, str(DAGS_FOLDER / "kis_minute_bars.py"),
             "2026-11-25T10:31:00+09:00"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == [], f"a {worker} task imports these itself; add them to {preload}: {imported}"

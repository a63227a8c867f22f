"""A Celery worker's pool process has what a fetch task imports (celery_config/kis_celery.py).

`airflow celery worker` loads no plugins before its pool forks, so without the Celery config the
preload of plugins/kis_task_preload.py never reached a Celery task, and every task re-imported
everything (issue 16). This builds the worker's Celery app in a fresh interpreter with
``[celery] celery_config_options`` set as compose and ``make airflow`` set it, lets Celery import
what a worker imports before it starts its pool (``loader.init_worker()``, the step of
``WorkController`` that precedes the pool), then loads the plugins, parses the DAG and fetches one
code as a task does (tests/test_task_preload.py), and lists what that still had to import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from simulated_day import DAGS_FOLDER
from simulator.testing import run_simulator
from test_task_preload import A_FETCH_TASK

from devtools.airflow_env import CELERY_CONFIG_DIR, CELERY_CONFIG_OPTIONS

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


def test_a_celery_pool_process_has_what_a_fetch_task_imports(point_kis_at: Callable[..., None]) -> None:
    # The fetch task of tests/test_task_preload.py, after what the worker imported.
    fetch = A_FETCH_TASK.split("before = set(sys.modules)\n", 1)[1]
    with run_simulator(now="2026-11-25T10:31:00+09:00") as sim:
        point_kis_at(sim)
        env = {
            **os.environ,
            "PYTHONPATH": str(CELERY_CONFIG_DIR),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_OPTIONS,
            # Never contacted: building the app and importing its modules needs no broker.
            "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:9/0",
        }
        done = subprocess.run(
            [sys.executable, "-c", A_CELERY_WORKER + fetch, str(DAGS_FOLDER / "kis_minute_bars.py"),
             "2026-11-25T10:31:00+09:00"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == [], f"a Celery task imports these itself; add them to celery_config/kis_celery.py: {imported}"

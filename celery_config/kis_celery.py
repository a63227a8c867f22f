"""The Celery configuration of our workers: Airflow's defaults, plus what a task needs, imported before the pool forks.

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=kis_celery.CELERY_CONFIG

A Celery worker runs each task in one of its pool processes, forked from the worker when it
starts; that pool process supervises the task and forks the task process for each task. Whatever
the worker has imported before its pool forks is therefore imported in every task for free, and
whatever it has not is imported again by every task. `airflow celery worker` loads no plugins
before its pool forks, so plugins/kis_task_preload.py, which a LocalExecutor's workers inherit from
the scheduler, never reached a Celery task: each one re-imported everything (5-11 s per task on 2
cores, issue 16).

Celery imports the modules of ``imports`` in the worker's main process before it starts the pool
(``import_default_modules``), and only in a worker: the scheduler and the API server build the
Celery app from this dictionary too, to publish tasks, and import none of them. The list:

- ``kis_task_preload``: what a task of our DAGs imports and computes (the holidays, the Fernet);
- the Task SDK's supervisor (what the pool process runs) and task runner (what the task process runs);
- the DagBag, with which the task process parses its DAG file;
- ``kis_celery_preload`` (beside this file): loads the plugins once, as each task process would.

Airflow puts ``$AIRFLOW_HOME/config`` on ``sys.path`` in every component: compose mounts this
folder there; ``make airflow`` puts it on ``PYTHONPATH``. tests/test_task_preload.py checks that a
pool process has everything a fetch task imports.
"""

from __future__ import annotations

import os
import socket

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

PRELOAD = (
    "kis_task_preload",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
    "kis_celery_preload",
)

CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), *PRELOAD),
}


def hostname() -> str:
    """``[core] hostname_callable`` of a worker: ``KIS_WORKER_HOSTNAME`` when set, else the FQDN.

    Several workers on one machine (``make airflow --celery-workers 2``) then record distinct names
    on their task instances; on machines of their own the FQDN (compose sets the container's
    hostname to ``WORKER_HOSTNAME``) is what the API server fetches logs from.
    """
    return os.environ.get("KIS_WORKER_HOSTNAME") or socket.getfqdn()

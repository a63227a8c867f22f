"""Preloads what a task of the KIS DAGs imports into every Airflow component, the scheduler included.

The plugin manager imports each file of this folder when a component starts, and the scheduler's
LocalExecutor forks its worker processes after that. A task process is forked from its worker for
each task and thrown away after it, so whatever it imports itself is paid again by every task: the
DAG file it re-parses, and the modules our code imports lazily to keep DAG parsing light (the SQL
operator, the Postgres hook). Preloaded here, a task process starts with all of them imported, and
with what every fetch task computes the same way: this year's and next year's KRX holidays, and
Airflow's Fernet with its cipher initialized (the token store decrypts the KIS token with it).
Measured with bench/bench_minute_run.py (bench/README.md); tests/test_task_preload.py lists what a
fetch task still imports itself.
"""

import warnings

# Third-party deprecations that opened every task log and that we cannot fix at their source:
# Airflow's own file discovery builds pathspec's GitWildMatchPattern for the plugins folder's
# .airflowignore (seen in every task log of `make airflow`), and starlette warns that it is used
# with httpx (Airflow's in-process execution API: `airflow dags test`, `dag.test()`). Filtered here,
# first, because the task processes inherit this module's filters (forked from a component that
# imported it), and not with PYTHONWARNINGS, which would also switch off Airflow's display of its
# own deprecations (airflow/configuration.py shows them only while sys.warnoptions is empty).
warnings.filterwarnings("ignore", message=r"GitWildMatchPattern \('gitwildmatch'\) is deprecated", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated")

import _strptime  # noqa: F401  (datetime.strptime imports it on first use: the bars' timestamps)
import netrc  # noqa: F401  (requests reads ~/.netrc for a session that trusts the environment)
from contextlib import suppress
from datetime import datetime

import airflow.providers.common.sql.operators.sql  # noqa: F401  (upsert_bars_step)
import airflow.providers.postgres.hooks.postgres  # noqa: F401  (the hook's state DB, the market DB)
import airflow.providers.standard.decorators.python  # noqa: F401  (@task, resolved lazily by airflow.sdk)
import airflow.providers.standard.decorators.short_circuit  # noqa: F401  (@task.short_circuit)
import airflow.providers.standard.sensors.date_time  # noqa: F401  (the backfill's close sensor)
import airflow.sdk.definitions.decorators  # noqa: F401
import airflow.sdk.execution_time.cache  # noqa: F401  (the connection lookups' secret cache)
import airflow.timetables.trigger  # noqa: F401
import airflow.version  # noqa: F401  (the DAG parse)
import jinja2.ext  # noqa: F401  (the templater's jinja2.ext.do, for map_index_template)
from airflow.sdk.crypto import get_fernet

import kis.dag_parts  # noqa: F401  (the DAG files' label filter and upsert task)
import kis.hook  # noqa: F401
import kis.minute_backfill  # noqa: F401
import kis.minute_run  # noqa: F401
import kis.timetable  # noqa: F401  (the minute DAG's schedule, parsed with the DAG file)
from kis.bar import KST
from kis.calendar import default_calendar

_year = datetime.now(KST).year
default_calendar().load_years(_year, _year + 1)
with suppress(Exception):  # without a key, the token store says so in the task that needs one
    _fernet = get_fernet()
    _fernet.decrypt(_fernet.encrypt(b"preload"))

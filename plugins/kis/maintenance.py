"""The tasks of ``kis_maintenance``: what the collection leaves behind, kept at its retention.

Every collection run leaves rows in Airflow's metadata database (its run, task instances, XComs,
audit log, deadline), a log file per task try, and rows in the market database's side tables
(alerts, the memory of live gaps alerted, the verification history). Each of them is trimmed here
past its own retention, counted back from the maintenance run's own time (its logical date), never
the wall clock: a manual run of an old date trims less, never more. The bars are not touched: their
monthly partitions have their own retention (``KIS_MINUTE_RETENTION_MONTHS``, the backfill DAG).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kis import task_context
from kis.bar import KST
from kis.task_context import CollectionFailed, Run
from kis.resources import load_sql

log = logging.getLogger(__name__)

#: The DAGs whose metadata and task logs are trimmed (this one's own included).
COLLECTION_DAG_IDS = (
    "kis_minute_bars", "kis_minute_backfill", "kis_minute_backfill_nextrade", "kis_resampled_bars", "kis_maintenance",
    "kis_universe", "kis_market_archive",
)
#: Airflow's metadata database, for ``airflow db clean``: task code has no access of its own (Task SDK).
METADATA_DB_CONN_ID = "airflow_db"
# The tables `airflow db clean` trims, confined to the collection DAGs by --dag-ids: a run takes its
# task instances (their tries, reschedules, XComs), task state and deadline along. `callback` has no
# dag_id: it is trimmed for every DAG, but only the callbacks that are finished or whose deadline is
# gone (its run deleted), which is what a run of ours leaves behind.
RUN_TABLES = ("dag_run", "task_instance", "log", "callback")
XCOM_TABLES = ("xcom",)  # on a shorter retention: the bulk of the bytes
# Airflow 3.3.2 filters these by a dag_id column they no longer have, so with --dag-ids their own
# pass fails ("Encountered error when attempting to clean table ..."); their rows go with their
# run or task instance (ON DELETE CASCADE), so that failure is expected and costs nothing.
CASCADED_WITHOUT_DAG_ID = frozenset({"deadline", "task_reschedule"})
_TABLE_FAILED = re.compile(r"Encountered error when attempting to clean table '(\w+)'")
# The Variables of the retention, in days, and their defaults.
RETENTION_DAYS = {
    "kis_metadata_retention_days": 14,
    "kis_xcom_retention_days": 3,
    "kis_alert_retention_days": 90,
    "kis_verification_retention_days": 400,
}


@dataclass(frozen=True)
class Retention:
    """How many days each kind of row is kept (Variables, read at run time)."""

    runs: int  # kis_metadata_retention_days: runs, task instances, audit log, task logs on disk
    xcoms: int  # kis_xcom_retention_days: the XComs of the runs kept
    alerts: int  # kis_alert_retention_days: collection_alerts and alerted_gaps, by trading date
    verifications: int  # kis_verification_retention_days: minute_verification_history, by trading date

    @classmethod
    def configured(cls) -> Retention:
        """The Variables, or their defaults; a value that is not a whole number of days >= 1 fails
        the task with the Variable's name, before anything is deleted."""
        days = [_days(name, task_context.variable(name), default) for name, default in RETENTION_DAYS.items()]
        return cls(*days)


def _days(name: str, value: str | None, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days < 1:
        raise CollectionFailed(f"Variable {name} must be a whole number of days >= 1, got {value!r}")
    return days


def trim_metadata(run: Run, retention: Retention, dag_ids: Sequence[str] = COLLECTION_DAG_IDS) -> dict[str, str]:
    """Runs ``airflow db clean`` for ``dag_ids``: their runs and what hangs on them older than
    ``retention.runs`` days, then their XComs older than ``retention.xcoms`` days, without archive
    tables. Returns the cut-off of each, ISO-formatted."""
    cutoffs = {"runs": run.at - timedelta(days=retention.runs), "xcoms": run.at - timedelta(days=retention.xcoms)}
    env = _metadata_db_environment()
    for what, tables in (("runs", RUN_TABLES), ("xcoms", XCOM_TABLES)):
        _db_clean(cutoffs[what], tables, dag_ids, env)
    return {what: cutoff.isoformat() for what, cutoff in cutoffs.items()}


def _metadata_db_environment() -> dict[str, str]:
    """The environment of the ``airflow db clean`` process: this one's, with the metadata database of
    the connection ``airflow_db``. A task process's own setting is blanked by the Task SDK."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    url = PostgresHook(postgres_conn_id=METADATA_DB_CONN_ID).sqlalchemy_url.render_as_string(hide_password=False)
    blanked = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")  # and their _CMD, _SECRET
    env = {key: value for key, value in os.environ.items() if not key.startswith(blanked)}
    return env | {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}


def _db_clean(before: datetime, tables: Sequence[str], dag_ids: Sequence[str], env: dict[str, str]) -> None:
    """One ``airflow db clean``; raises when it failed or left a table of ours uncleaned."""
    argv = [
        sys.executable, "-m", "airflow", "db", "clean",
        "--clean-before-timestamp", before.isoformat(),
        "--tables", ",".join(tables),
        "--dag-ids", ",".join(dag_ids),
        "--skip-archive", "--yes",
    ]
    log.info("airflow db clean, before %s: %s", before.astimezone(KST).strftime("%Y-%m-%d %H:%M KST"), ", ".join(tables))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    for line in output.splitlines():
        if line.strip():
            log.info("| %s", line)
    uncleaned = set(_TABLE_FAILED.findall(output)) - CASCADED_WITHOUT_DAG_ID
    if done.returncode != 0 or uncleaned:
        raise RuntimeError(
            f"airflow db clean exited {done.returncode}"
            + (f" and did not clean {', '.join(sorted(uncleaned))}" if uncleaned else "")
            + " (its output is above)"
        )


def trim_task_logs(run: Run, retention: Retention, base_log_folder: Path,
                   dag_ids: Sequence[str] = COLLECTION_DAG_IDS) -> dict[str, int]:
    """Deletes the task log files of ``dag_ids`` last written more than ``retention.runs`` days
    before the run, and the folders left empty (``airflow db clean`` leaves the files)."""
    cutoff = (run.at - timedelta(days=retention.runs)).timestamp()
    files = size = 0
    for dag_id in dag_ids:
        folder = base_log_folder / f"dag_id={dag_id}"
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                size += path.stat().st_size
                path.unlink()
                files += 1
        for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    log.info("Task logs older than %d days: %d files, %.1f MB deleted", retention.runs, files, size / 1e6)
    return {"files": files, "bytes": size}


def trim_market_side_tables(run: Run, retention: Retention, conn: Any = None) -> dict[str, Any]:
    """Deletes the alerts, alerted gaps and collection starts of the trading dates more than
    ``retention.alerts`` days before the run's KST date, and the verification history more than ``retention.verifications``
    days before it, in one statement (include/sql/trim_side_tables.sql). Never a bar."""
    if conn is None:
        with task_context.market_db() as own:
            return trim_market_side_tables(run, retention, own)
    today = run.at.astimezone(KST).date()
    before = {
        "alerts_before": today - timedelta(days=retention.alerts),
        "verifications_before": today - timedelta(days=retention.verifications),
    }
    with conn.transaction():
        row = conn.execute(load_sql("trim_side_tables"), before).fetchone()
    deleted = dict(zip(("alerts", "alerted_gaps", "collection_starts", "verification_history"), row, strict=True))
    log.info(
        "Deleted %(alerts)d alerts, %(alerted_gaps)d alerted gaps and %(collection_starts)d collection "
        "starts before %(alerts_before)s, "
        "%(verification_history)d verification history rows before %(verifications_before)s",
        deleted | before,
    )
    return deleted | {key: day.isoformat() for key, day in before.items()}


def base_log_folder() -> Path:
    """Where the task logs of this worker are written (``[logging] base_log_folder``)."""
    from airflow.configuration import conf

    return Path(conf.get("logging", "base_log_folder"))


"""What both collection DAGs share: the run, the watch-list in batches, the upsert step, alerts.

Each DAG's own task logic is in the module named after it (:mod:`kis.minute_bars`,
:mod:`kis.minute_backfill`); the DAG files only wire those functions into tasks. Every function
takes the run's own time (its logical date) and never the wall clock, so a rerun of an old run
fetches and checks the same minutes, and tests drive a simulated day by choosing logical dates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kis import alerts, schema
from kis.alerts import Alert, send_alert
from kis.errors import KisUnknownCode
from kis.resources import KIS_CONN_ID, MARKET_DB_CONN_ID
from kis.watchlist import load_watchlist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """The DAG run a task belongs to: its ids, for alerts, and its moment, for everything else."""

    dag_id: str
    run_id: str
    at: datetime  # the logical date; for a manual run without one, when it was triggered

    @classmethod
    def of(cls, dag_run: Any) -> Run:
        return cls(dag_run.dag_id, dag_run.run_id, dag_run.logical_date or dag_run.run_after)


# The label of a mapped fetch task in the grid: its code, or its first and last codes for a batch
# (Airflow keeps at most 250 characters of it: a list of every code would not fit).
BATCH_LABEL = (
    "{% set codes = task.op_kwargs['codes'] %}{{ codes[0] }}"
    "{% if codes | length > 1 %}…{{ codes[-1] }} ({{ codes | length }} codes){% endif %}"
)


def upsert_bars_step(fetch_task_id: str, *, bars_key: str | None = None):
    """The upsert task of both DAGs: one set-based statement over every bar the mapped fetches
    returned (their XComs, or each XCom's ``bars_key``), concatenated into one JSON parameter.

    It runs as soon as the fetches are done and one of them succeeded, so one failed code never
    holds back the others. The partitions the batch needs are ensured in the same transaction.
    """
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    # A list of task ids makes xcom_pull return a list even when there is one mapped task.
    pulled = f"ti.xcom_pull(task_ids=['{fetch_task_id}']) | reject('none')"
    if bars_key:
        pulled += f" | map(attribute='{bars_key}')"
    return SQLExecuteQueryOperator(
        task_id="upsert_bars",
        conn_id=MARKET_DB_CONN_ID,
        sql=["sql/ensure_minute_partitions.sql", "sql/upsert_minute_bars.sql"],
        parameters={"bars": "{{ " + pulled + " | sum(start=[]) | tojson }}"},
        trigger_rule="all_done_min_one_success",
        show_return_value_in_logs=True,
    )


class CollectionFailed(AirflowFailException):
    """A task's work failed in a way that retrying cannot mend: Airflow fails it without retries."""


def variable(key: str, default: str | None = None) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(key, default=default)


def market_db():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DB_CONN_ID).get_conn()


def kis_hook():
    from kis.hook import KisHook

    return KisHook(kis_conn_id=KIS_CONN_ID)


def watchlist_batches(conn, day: date) -> list[list[str]]:
    """The day's watch-list in batches, without the codes KIS already called unknown today."""
    watchlist = load_watchlist(variable("kis_watchlist"))
    if watchlist.invalid:
        log.warning("Invalid watch-list entries, never sent to KIS: %s", ", ".join(watchlist.invalid))
    unknown = alerts.codes_alerted(conn, "unknown_code", day)
    if unknown:
        log.warning("Codes KIS reported unknown today, not asked again: %s", ", ".join(sorted(unknown)))
    return watchlist.batches(int(variable("kis_codes_per_task", "1")), leaving_out=unknown)


def prepared_market_db(day: date):
    """The market database with its schema current (one query when it is). The partitions a batch
    needs are ensured by the upsert step itself, in its own transaction."""
    conn = market_db()
    applied = schema.migrate(conn, today=day)
    if applied:
        log.info("Market schema upgraded: %s", ", ".join(applied))
    conn.commit()
    return conn


def fail_when_fetches_failed(batches: Sequence[Sequence[str]], fetched: Sequence[Any]) -> None:
    """Failed mapped fetches left no XCom: fail this task so that the run shows it."""
    if len(fetched) < len(batches):
        raise CollectionFailed(
            f"{len(batches) - len(fetched)} of {len(batches)} fetch tasks failed: their bars are not stored. "
            "Clear the failed fetch tasks (with downstream) to fetch them again."
        )


def alert_unknown_code(code: str, err: KisUnknownCode, day: date, run: Run) -> None:
    send_alert(
        Alert(
            kind="unknown_code",
            message=f"KIS does not know {code} ({err.msg_cd}: {err.msg1}); left out for the rest of {day}",
            trading_date=day,
            dag_id=run.dag_id,
            run_id=run.run_id,
            stock_code=code,
            details={"msg_cd": err.msg_cd, "msg1": err.msg1},
        )
    )


def log_rejects(code: str, rejected: Sequence[Any]) -> None:
    for reject in rejected:
        log.warning("%s: rejected row (%s): %s", code, reject.reason, dict(reject.row))

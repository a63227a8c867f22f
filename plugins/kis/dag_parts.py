"""The parts the collection DAGs are built of: the mapped fetch tasks' label, the upsert task, the
trading date parameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kis import metrics
from kis.resources import MARKET_DB_CONN_ID
from kis.venues import Venue


def batch_label(op_kwargs: Mapping[str, Any]) -> str:
    """The label of a mapped fetch task in the grid: its venue unless KRX, then its code, or its
    first and last codes for a batch (Airflow keeps at most 250 characters of it: a list of every
    code would not fit), then, when the run shares its work across several app keys, the
    connection it was handed."""
    codes, venue = op_kwargs["codes"], op_kwargs.get("venue", Venue.KRX.value)
    conn_ids = op_kwargs.get("conn_ids") or ()
    label = "" if venue == Venue.KRX.value else f"{venue} "
    label += codes[0] if len(codes) == 1 else f"{codes[0]}…{codes[-1]} ({len(codes)} codes)"
    return label + (f" via {conn_ids[0]}" if len(conn_ids) > 1 else "")


# The fetch tasks' map_index_template, with batch_label among the DAG's user_defined_filters: each
# task process compiles its template, and this one compiles in a tenth of the time the label's
# logic took as Jinja statements (0.3 ms instead of 2.4).
BATCH_LABEL = "{{ task.op_kwargs | batch_label }}"
LABEL_FILTERS = {"batch_label": batch_label}


def upsert_bars_step(fetch_task_id: str):
    """The upsert task of both DAGs: one set-based statement over every bar the mapped fetches
    returned (their XComs, each a venue's bars by code, see :func:`kis.batches.fetch_batch`), sent
    as one JSON parameter.

    It runs as soon as the fetches are done, failed ones included: a fetch task with a failed code
    pushed the other codes' bars before failing (``fetch_batch``), and xcom_pull returns the XComs
    of failed task instances too, so one failed code never holds back the others, even when it
    shares the run's only batch. The partitions the batch needs are ensured in the same transaction.
    """
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    # A list of task ids makes xcom_pull return a list even when there is one mapped task.
    pulled = f"ti.xcom_pull(task_ids=['{fetch_task_id}']) | reject('none') | list"
    return SQLExecuteQueryOperator(
        task_id="upsert_bars",
        conn_id=MARKET_DB_CONN_ID,
        sql=["sql/ensure_minute_partitions.sql", "sql/upsert_minute_bars.sql"],
        parameters={"bars": "{{ " + pulled + " | tojson }}"},
        # The log says what the upsert did in one line, the operator's "result: {counts}": the hook
        # does not log each statement again with its parameter (every bar of the batch).
        hook_params={"log_sql": False},
        output_processor=upsert_counts,
        trigger_rule="all_done",
        on_success_callback=metrics.bars_stored,
    )


def upsert_counts(results: Sequence[Any], descriptions: Sequence[Any]) -> dict[str, int]:
    """The upsert step's value (its XCom and its log line): the one row of counts of
    upsert_minute_bars.sql, the last statement, by column name (received, duplicates, inserted,
    updated, unchanged)."""
    return {column[0]: count for column, count in zip(descriptions[-1], results[-1][0])}


def trading_date_param(description: str):
    """The ``date`` parameter of a DAG that works on one trading day (the UI's *Trading date*):
    empty, the run's own date."""
    from airflow.sdk import Param

    return Param(None, type=["null", "string"], format="date", title="Trading date", description=description)

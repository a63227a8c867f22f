"""
### KIS universe: every listed stock of the day, from KIS's stock masters

Every weekday at **07:30 KST**, before Nextrade's pre-market (08:00) and KRX's (08:30), and from
the UI (*Trigger*): the universe of the day into `stock_universe`.

1. **trading_day_gate**: a day without a KRX session has no universe: the run skips.
2. **update_universe**: downloads `kospi_code.mst.zip`, `kosdaq_code.mst.zip` and
   `konex_code.mst.zip` from the connection **`kis_master`** (KIS's download server
   `https://new.real.download.dws.co.kr` when it is not defined), parses them and stores the
   day in one transaction: who is listed (`stock_universe_daily`), each code's description and
   its first and last day (`stock_universe`), the files (`stock_universe_loads`). Listings,
   delistings, market moves, halts and resumptions since the last loaded day are in its log and
   its return value. A watch-listed code (`kis_watchlist`) that left the universe is alerted once
   (`left_universe`).

A damaged or truncated file (a wrong record length, a field out of shape, a broken zip) stores
nothing: the task names the file and the line, and the last loaded day stays the universe. So
does a day on which a market loses more than 5 % of its codes at once (a file cut at a line's end
looks valid): if the market really changed so much, trigger the DAG with **allow_large_change**.
The task is retried twice, 5 minutes apart (KIS may be rewriting its files), before 08:00.

Why 07:30: KIS writes the files overnight at an hour it does not document; a file of the day before
is recorded with a warning (byte for byte the previous day's) and its changes show a day late.
KIS's server only serves the current files: a run of another day than the server's (its `Date`)
fails instead of recording a wrong day. docs/stock-masters.md has the layouts and their sources.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task
from kis import task_context, universe
from kis.timetable import FIRST_RUN_AT_NEXT_TICK, KisCronTimetable


@dag(
    dag_display_name="KIS universe: the listed stocks of the day",
    schedule=KisCronTimetable("30 7 * * 1-5", timezone="Asia/Seoul", run_immediately=FIRST_RUN_AT_NEXT_TICK),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "market-data", "retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["kis", "universe"],
    params={
        "allow_large_change": Param(
            False,
            type="boolean",
            title="Allow a large change",
            description="Store the day even when a market loses more than 5 % of its codes at once.",
        ),
    },
    doc_md=__doc__,
)
def kis_universe():
    @task.short_circuit
    def trading_day_gate(dag_run=None) -> bool:
        return universe.is_trading_day(task_context.Run.of(dag_run))

    @task
    def update_universe(params=None, dag_run=None) -> dict:
        return universe.update_universe(task_context.Run.of(dag_run), allow_large_change=params["allow_large_change"])

    trading_day_gate() >> update_universe()


kis_universe()

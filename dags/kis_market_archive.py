"""
### KIS market archive: every listed stock's minute bars, day by day

Every weekday at **16:40 KST**, after KRX's close, and from the UI with the `date` parameter
(*Trading date*: any past session KIS still serves, about a year; empty: the run's own day), the
whole day of every code of that day's universe (`kis_universe`), for each venue of `kis_venues`:

1. **trading_day_gate**: skips a day without a session; otherwise hands out, in batches of
   `kis_archive_codes_per_task` codes shared across the app keys of `kis_connections`, the codes
   of the universe selected by `kis_archive_universe` whose day is not archived yet: a re-run of
   a day, or of a year with `airflow backfill create`, fetches only what is missing.
2. **wait_for_close**: waits, deferred, until the venues' day is over (Nextrade's at 20:00).
3. **archive_batch**: one mapped task per batch in the `kis_api` pool: each code's day (the
   past-day endpoint by KIS's clock, 120 rows a page), upserted in one statement and verified by
   the task itself; its XCom is counts only. A code halted all day or without a trade is explained.
4. **close_day**: each venue's day judged whole from the stored verification; a day that passes
   gets an event on its Asset `kis_market_archive_<venue>`; otherwise the run fails, naming the
   codes still missing.

Configuration: Variables `kis_archive_universe` (default `{"markets": ["KOSPI", "KOSDAQ"],
"groups": ["ST"]}`), `kis_archive_codes_per_task` (50), `kis_venues`, `kis_connections`,
`kis_completeness_threshold`; connections of `kis_connections` and `kis_market_db`.
docs/operations.md, "The market archive", has the arithmetic of a day and of a year.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import dag, task
from kis import assets, dag_parts, market_archive
from kis.minute_backfill import backfill_wait_until
from kis.task_context import Run
from kis.timetable import FIRST_RUN_AT_NEXT_TICK, KisCronTimetable
from kis.venues import Venue

ALL_VENUES = tuple(Venue)


@dag(
    dag_display_name="KIS market archive: every listed stock's day",
    schedule=KisCronTimetable("40 16 * * 1-5", timezone="Asia/Seoul", run_immediately=FIRST_RUN_AT_NEXT_TICK),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "market-data", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["kis", "minute-bars", "archive"],
    user_defined_filters=dag_parts.LABEL_FILTERS,
    user_defined_macros={"backfill_wait_until": backfill_wait_until, "covers": ALL_VENUES},
    params={"date": dag_parts.trading_date_param("The date to archive (KST). Empty: the run's own date.")},
    doc_md=__doc__,
)
def kis_market_archive():
    # The batches reach the log once, in the operator's "Condition result".
    @task.short_circuit(show_return_value_in_logs=False)
    def trading_day_gate(params=None, dag_run=None) -> list[dict]:
        return market_archive.plan_archive(market_archive.archive_day(dag_run, params))

    batches = trading_day_gate()

    wait_for_close = DateTimeSensorAsync(
        task_id="wait_for_close",
        target_time="{{ backfill_wait_until(dag_run, params, covers) }}",
    )

    @task(pool="kis_api", map_index_template=dag_parts.BATCH_LABEL, multiple_outputs=False)
    def archive_batch(
        codes: list[str], venue: str, conn_ids: list[str], halted: list[str], params=None, dag_run=None, ti=None
    ) -> dict:
        return market_archive.archive_batch(
            codes, Venue(venue), market_archive.archive_day(dag_run, params), Run.of(dag_run),
            conn_ids=conn_ids, halted=halted, ti=ti,
        )

    @task(trigger_rule="all_done", outlets=[assets.ARCHIVED_DAYS])
    def close_day(params=None, dag_run=None, outlet_events=None) -> dict:
        return market_archive.close_day(market_archive.archive_day(dag_run, params), outlet_events)

    batches >> wait_for_close >> archive_batch.expand_kwargs(batches) >> close_day()


kis_market_archive()

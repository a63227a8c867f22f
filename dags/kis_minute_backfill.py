"""
### KIS minute backfill and verification: after the close

Every time here is KST (Asia/Seoul). `kis_minute_backfill` covers KRX at 16:00 KST on weekdays,
and must be done by **17:30 KST**; `kis_minute_backfill_nextrade` covers Nextrade and the unified
view (KRX + Nextrade) at 20:10 KST, after their 20:00 close, and must be done by **21:40 KST**
(`KIS_BACKFILL_DEADLINE_MINUTES`, 90 min after the start; a late run raises `deadline_missed`;
the UI's deadline card rounds 90 minutes to "2 hours", the alert's name beside it says 17:30 KST).
A new DAG's first run is its next 16:00 (20:10): a day before it was first started is backfilled
by triggering it. Each backfills the venues of the Variable `kis_venues` it covers, and skips when
there is none; a run's mapped tasks are labelled with their venue (unless KRX). Any date can be
triggered from the UI with the `date` parameter (*Trading date*), the form's *Logical Date*
cleared: a logical date ahead of the server's clock (the browser's, in a replay) is refused with
the reason, as Airflow would start none of the run's tasks until then:

1. **trading_day_gate**: skips days without a session; a past date on a mock account fails here,
   with the reason (KIS serves past minute bars to real accounts only).
2. **wait_for_close**: waits, deferred (no worker slot held), until the venue's day is over:
   16:35 KST on a CSAT day, when the 16:00 run starts before the close.
3. **fetch_session_bars**: one mapped task per venue and batch of codes in the `kis_api` pool: the
   whole day (today's endpoint walked backwards, or the daily endpoint for a past date). A code that
   fails is alerted with its reason on the task's last try and the task ends failed, but the
   other codes of its batch are still upserted; an unknown code is alerted once and left out of
   the verification, and so is a code Nextrade does not trade (as information).
4. **upsert_bars**: the same set-based upsert as the minute DAG, over the whole day.
5. **verify_day**: the stored bars against each venue's grid, written to the report table; the
   run fails and alerts when a venue's day is below the completeness threshold or a code has a
   gap that its volumes do not explain. Bars served outside the grid are stored and reported.
6. **apply_retention**: drops the partitions older than `KIS_MINUTE_RETENTION_MONTHS`, off the
   path to the verification; it detaches them concurrently and waits for no lock longer than a
   few seconds: when a reader blocks it, it fails and is retried 10 minutes later.

Configuration: Variables `kis_watchlist`, `kis_codes_per_task`, `kis_venues`, `kis_connections` (the
app keys the run is shared across, default `["kis_default"]`), `kis_completeness_threshold` (0.98 by
default); connections `kis_default` (and the others of `kis_connections`) and `kis_market_db`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import dag, task
from kis import assets, dag_parts, minute_backfill
from kis.alerts import backfill_deadline, deadline_alerts
from kis.resources import INCLUDE_DIR
from kis.task_context import Run
from kis.timetable import FIRST_RUN_AT_NEXT_TICK, KisCronTimetable
from kis.venues import Venue


def backfill_dag(dag_id: str, *, title: str, cron: str, covers: Sequence[Venue], tags: Sequence[str]):
    """The backfill-and-verification DAG of the venues ``covers`` (named ``title`` in the UI), run
    at ``cron`` (KST)."""
    covers = tuple(covers)

    @dag(
        dag_id=dag_id,
        dag_display_name=f"KIS minute backfill: {title}",
        schedule=KisCronTimetable(cron, timezone="Asia/Seoul", run_immediately=FIRST_RUN_AT_NEXT_TICK),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "market-data", "retries": 2, "retry_delay": timedelta(minutes=1)},
        tags=["kis", "minute-bars", "backfill", "verification", *tags],
        template_searchpath=[str(INCLUDE_DIR)],
        user_defined_filters=dag_parts.LABEL_FILTERS,
        user_defined_macros={"backfill_wait_until": minute_backfill.backfill_wait_until, "covers": covers},
        params={
            "date": dag_parts.trading_date_param(
                f"The date to backfill and verify on {title} (KST). Empty: the run's own date."
            ),
        },
        deadline=deadline_alerts(
            "backfill", after_logical_date=backfill_deadline(), scheduled_at=minute_backfill.start_time(cron)
        ),
        doc_md=__doc__,
    )
    def backfill():
        def backfill_day(params, dag_run) -> minute_backfill.BackfillDay:
            return minute_backfill.BackfillDay.of(dag_run, params, covers)

        # The batches reach the log once, in the operator's "Condition result".
        @task.short_circuit(show_return_value_in_logs=False)
        def trading_day_gate(params=None, dag_run=None) -> list[dict]:
            return minute_backfill.plan_backfill(backfill_day(params, dag_run))

        batches = trading_day_gate()

        wait_for_close = DateTimeSensorAsync(
            task_id="wait_for_close",
            target_time="{{ backfill_wait_until(dag_run, params, covers) }}",
        )

        @task(
            pool="kis_api",
            map_index_template=dag_parts.BATCH_LABEL,
            show_return_value_in_logs=False,
            # One XCom: a dict return would otherwise also push each of its keys, bars included, again.
            multiple_outputs=False,
        )
        def fetch_session_bars(
            codes: list[str], venue: str, conn_ids: list[str] | None = None, params=None, dag_run=None, ti=None
        ) -> dict:
            return minute_backfill.fetch_session_bars(
                codes, Venue(venue), backfill_day(params, dag_run), Run.of(dag_run), conn_ids=conn_ids, ti=ti
            )

        fetched = fetch_session_bars.expand_kwargs(batches)

        upsert = dag_parts.upsert_bars_step("fetch_session_bars")

        @task(trigger_rule="all_done", outlets=[assets.VERIFIED_DAYS])
        def verify_day(params=None, dag_run=None, ti=None, outlet_events=None) -> dict:
            # Pulled, not passed: a failed gate leaves None here instead of skipping the verification.
            batches = ti.xcom_pull(task_ids="trading_day_gate")
            fetched = ti.xcom_pull(task_ids=["fetch_session_bars"])
            return minute_backfill.verify_day(
                backfill_day(params, dag_run), batches, fetched, Run.of(dag_run), outlet_events
            )

        # Blocked by a lock, it fails after its lock timeout and is retried later; off the path to
        # verify_day, it never fails the day's verification.
        @task(retries=3, retry_delay=timedelta(minutes=10))
        def apply_retention(params=None, dag_run=None) -> list[str]:
            return minute_backfill.apply_retention(backfill_day(params, dag_run))

        batches >> wait_for_close >> fetched >> upsert >> verify_day()
        batches >> apply_retention()

    return backfill()


backfill_dag("kis_minute_backfill", title="KRX", cron="0 16 * * 1-5", covers=[Venue.KRX], tags=["krx"])
backfill_dag(
    "kis_minute_backfill_nextrade",
    title="Nextrade and unified",
    cron="10 20 * * 1-5",
    covers=[Venue.NEXTRADE, Venue.UNIFIED],
    tags=["nextrade"],
)

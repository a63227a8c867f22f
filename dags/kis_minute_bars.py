"""
### KIS minute bars: every minute of the session

Each tick stores the closed 1-minute bars of the watch-list on each venue of the Variable
`kis_venues` (`["krx"]` by default; `nxt` and `unified` add Nextrade). Every time here is KST
(Asia/Seoul): the ticks are the cron `* 9-15 * * 1-5` in KST plus every minute of a special
session the cron misses (`include/krx_special_sessions.csv`: CSAT day runs to 16:30 KST, so it
ticks until 16:35) and, with Nextrade, its day from 08:01 to 20:05 KST
(`include/venue_sessions.csv`). Each run must be done **50 s after its minute**
(`KIS_MINUTE_RUN_DEADLINE_SECONDS`; a late run raises `deadline_missed`). The venues are read when
the DAG file is parsed: a change of `kis_venues` reaches the schedule at the next parse. A new
DAG's first run is its next tick, never a minute that was over before it was first started.

1. **session_gate**: skips the run, without a request to KIS, outside the session (weekends,
   holidays, before a late open, after the close and its closing print) and when no bar has
   closed since the previous tick (the closing auction); after the closing bar it asks only for
   the codes whose closing print is not stored yet. Otherwise it brings the market schema up to
   date and hands out the watch-list in batches.
2. **fetch_recent_bars**: one mapped task per venue and batch (one code by default) in the
   `kis_api` pool, labelled with the code (and the venue, unless KRX): one request per code for
   the last 30 closed bars, so a late or retried run heals itself. A code Nextrade does not trade
   is reported once a day (`not_on_venue`, information) and not asked there again that day. With
   several app keys (`kis_connections`) each task is handed one (`005930 via kis_second`); a key
   KIS refuses is alerted once a day (`key_refused`), the task goes on with the next key, and the
   later runs leave the refused key out.
3. **upsert_bars**: one set-based `INSERT ... ON CONFLICT DO UPDATE` over all fetched bars; it
   runs even when some codes failed (a fetch task with a failed code still hands over the others'
   bars, alerts the code with its reason on its last try, then ends failed), so one code never
   holds back the others.
4. **check_live_gaps**: a closed minute still missing two minutes later raises one alert. It
   checks the minutes from the day's first minute run minus the 30 bars that run re-read: those
   before (a start in the middle of a session) were within no run's reach, so they are left to
   the backfill's verification, as the first run's log says. A later outage is alerted.

Clear one failed `fetch_recent_bars` task in the grid to fetch and store that code again.
Configuration: Variables `kis_watchlist`, `kis_codes_per_task`, `kis_venues` and `kis_connections` (the app
keys the run is shared across, default `["kis_default"]`); connections `kis_default` (and the others of
`kis_connections`) and `kis_market_db`. The run's minute is its logical date, never the wall clock; which endpoint serves
it is decided by KIS's clock: a run cleared or retried after its day fetches from the past-day
endpoint (real accounts; a mock account fails with that reason).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from kis import dag_parts, minute_run, task_context
from kis.alerts import deadline_alerts, minute_run_deadline
from kis.resources import INCLUDE_DIR
from kis.task_context import Run
from kis.timetable import FIRST_RUN_AT_NEXT_TICK, KrxSessionTimetable
from kis.venues import Venue


@dag(
    schedule=KrxSessionTimetable(
        "* 9-15 * * 1-5",
        timezone="Asia/Seoul",
        venues=task_context.scheduled_venues(),
        run_immediately=FIRST_RUN_AT_NEXT_TICK,
    ),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
    default_args={
        "owner": "market-data",
        # Short enough that both retries still fit inside the minute.
        "retries": 2,
        "retry_delay": timedelta(seconds=5),
    },
    tags=["kis", "minute-bars", "collection"],
    template_searchpath=[str(INCLUDE_DIR)],
    user_defined_filters=dag_parts.LABEL_FILTERS,
    deadline=deadline_alerts("minute run", after_logical_date=minute_run_deadline()),
    doc_md=__doc__,
)
def kis_minute_bars():
    # The batches reach the log once, in the operator's "Condition result".
    @task.short_circuit(show_return_value_in_logs=False)
    def session_gate(dag_run=None) -> list[dict]:
        return minute_run.plan_minute_run(Run.of(dag_run))

    @task(
        pool="kis_api",
        map_index_template=dag_parts.BATCH_LABEL,
        show_return_value_in_logs=False,
        # One XCom: a dict return would otherwise also push each of its keys, bars included, again.
        multiple_outputs=False,
    )
    def fetch_recent_bars(
        codes: list[str], venue: str, conn_ids: list[str] | None = None, dag_run=None, ti=None
    ) -> dict:
        return minute_run.fetch_recent_bars(codes, Run.of(dag_run), Venue(venue), conn_ids=conn_ids, ti=ti)

    batches = session_gate()
    fetched = fetch_recent_bars.expand_kwargs(batches)

    upsert = dag_parts.upsert_bars_step("fetch_recent_bars")

    @task(trigger_rule="all_done")
    def check_live_gaps(batches: list[dict], dag_run=None, ti=None) -> int:
        fetched = ti.xcom_pull(task_ids=["fetch_recent_bars"])
        return minute_run.check_live_gaps(batches, fetched, Run.of(dag_run))

    fetched >> upsert >> check_live_gaps(batches)


kis_minute_bars()

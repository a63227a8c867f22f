"""
### KIS resampled bars: 5, 10, 30 and 60 minutes of each verified day

Runs when a backfill has verified a day: it is scheduled on the Assets of the verified minute bars,
`kis_minute_bars_krx`, `kis_minute_bars_nxt` and `kis_minute_bars_unified` (any of them), whose
events `verify_day` emits for each venue whose day passed. One mapped task per day and venue the
run's events announce (an event's extra names them: `date`, `venue`, `codes`):

1. **plan_days**: the days and venues of the triggering events, once each.
2. **materialize_day**: replaces that day's 5/10/30/60-minute bars of the venue in
   `stock_prices_resampled`, computed by `minute_bars_resampled` (buckets from 09:00; the closing
   auction is its own 15:30 bucket up to 30 minutes and closes the 15:00 bucket at 60). A re-run
   (clear the run) or a re-verified day replaces the day, never adds to it.

To materialize a day by hand, create an event on one of the Assets (its page, *Create Asset
Event*) with the extra `{"date": "2026-11-25", "venue": "krx"}` (every code stored that day), or
add `"codes": [...]`. A run without events does nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetAny, dag, task
from kis import assets, resampling
from kis.task_context import Run


@dag(
    dag_id="kis_resampled_bars",
    dag_display_name="KIS resampled bars: 5/10/30/60 minutes of the verified days",
    schedule=AssetAny(*assets.MINUTE_BARS.values()),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Seoul"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "market-data", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["kis", "minute-bars", "resampled", "assets"],
    doc_md=__doc__,
)
def kis_resampled_bars():
    @task
    def plan_days(triggering_asset_events=None) -> list[dict]:
        return resampling.plan_days(triggering_asset_events)

    @task(map_index_template=resampling.DAY_LABEL)
    def materialize_day(day: str, venue: str, codes: list[str] | None, dag_run=None) -> int:
        return resampling.materialize_day(day, venue, codes, Run.of(dag_run))

    materialize_day.expand_kwargs(plan_days())


kis_resampled_bars()

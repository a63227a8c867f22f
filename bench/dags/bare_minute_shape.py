"""The minute DAG's shape without our code: Airflow's own floor for `bench_minute_run.py`.

The same tasks, task ids, pool, mapping (one task per code) and label template as
``kis_minute_bars``, but each fetch sleeps the simulator's 50 ms instead of calling KIS (no hook,
no token, no limiter, no database) and returns 30 bars of the same shape; the upsert only counts
them. What the minute DAG costs beyond this is the cost of our code.
"""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task

CODES = 50
BARS_PER_FETCH = 30


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Seoul"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "benchmark", "retries": 0},
    tags=["benchmark"],
)
def bare_minute_shape():
    @task
    def session_gate() -> list[list[str]]:
        return [[f"{i:06d}"] for i in range(CODES)]

    @task(pool="kis_api", map_index_template="{{ task.op_kwargs['codes'][0] }}", show_return_value_in_logs=False)
    def fetch_recent_bars(codes: list[str]) -> list[dict]:
        time.sleep(0.05)
        return [
            {"stock_code": codes[0], "minute": f"2026-11-25T10:{m:02d}:00+09:00", "open": 71000.0,
             "high": 71100.0, "low": 70900.0, "close": 71000.0, "volume": 1234}
            for m in range(BARS_PER_FETCH)
        ]

    @task(trigger_rule="all_done")
    def upsert_bars(fetched: list[list[dict]]) -> int:
        return sum(len(bars) for bars in fetched)

    upsert_bars(fetch_recent_bars.expand(codes=session_gate()))


bare_minute_shape()

"""
### KIS maintenance: what the collection leaves behind, at its retention

Every day at **05:30 KST**, outside every session (Nextrade opens at 08:00), each task trims one
kind of leftover of the collection DAGs (`kis_minute_bars`, `kis_minute_backfill`,
`kis_minute_backfill_nextrade`, and this one), counted back from the run's own date:

1. **trim_metadata**: Airflow's own `airflow db clean` (no archive tables) on the metadata
   database: their runs, task instances and tries, audit log, deadlines and finished callbacks
   older than `kis_metadata_retention_days` (14), then their XComs older than
   `kis_xcom_retention_days` (3). A minute day leaves ~20,000 task instances and ~13 MB of XCom.
   The last scheduled run of each DAG is always kept (Airflow's rule). Task code has no
   metadata-database access of its own (Task SDK): the command gets it from the connection
   **`airflow_db`**, which the worker must have (`AIRFLOW_CONN_AIRFLOW_DB`; `make airflow` and
   the compose stack set it).
2. **trim_task_logs**: the task log files of those DAGs last written more than
   `kis_metadata_retention_days` ago, in this worker's `[logging] base_log_folder`.
3. **trim_market_side_tables**: in the market database, `collection_alerts` and `alerted_gaps`
   of the trading dates older than `kis_alert_retention_days` (90), and
   `minute_verification_history` older than `kis_verification_retention_days` (400). Never the
   bars (`KIS_MINUTE_RETENTION_MONTHS`, the backfill DAG) nor the current report of a day.

The retentions are Variables, in whole days (>= 1; another value fails the task with its name
before anything is deleted). A manual run of a past date trims less, never more.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from kis import maintenance
from kis.task_context import Run
from kis.timetable import FIRST_RUN_AT_NEXT_TICK, KisCronTimetable


@dag(
    dag_display_name="KIS maintenance: metadata, task logs, side tables",
    schedule=KisCronTimetable("30 5 * * *", timezone="Asia/Seoul", run_immediately=FIRST_RUN_AT_NEXT_TICK),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "market-data", "retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["kis", "maintenance"],
    doc_md=__doc__,
)
def kis_maintenance():
    @task
    def trim_metadata(dag_run=None) -> dict[str, str]:
        return maintenance.trim_metadata(Run.of(dag_run), maintenance.Retention.configured())

    @task
    def trim_task_logs(dag_run=None) -> dict[str, int]:
        return maintenance.trim_task_logs(
            Run.of(dag_run), maintenance.Retention.configured(), maintenance.base_log_folder()
        )

    @task
    def trim_market_side_tables(dag_run=None) -> dict:
        return maintenance.trim_market_side_tables(Run.of(dag_run), maintenance.Retention.configured())

    trim_metadata()
    trim_task_logs()
    trim_market_side_tables()


kis_maintenance()

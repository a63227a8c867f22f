"""kis_maintenance under real Airflow (`dag.test()`, the suite's PostgreSQL metadata database): a
simulated week of minute runs is trimmed to the retention and stays there, day after day; and the
market database's side tables keep their own retention, with real rows.

A run made by ``dag.test()`` starts now; each one of the simulated week is then dated back to its
logical date (its run, task instances, tries, XComs and audit log rows), as if the scheduler had run
it on that day, which is what ``airflow db clean`` reads.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta

import psycopg
import pytest
from simulated_day import CODES, kst, task_states

from kis import maintenance, task_context
from kis.bar import BAR_ROW, KST

WEEK = [date(2026, 9, 7) + timedelta(days=n) for n in range(7)]  # Monday to Sunday, no holiday
TICK = "09:31"
RUN_TABLES = {"dag_run": "start_date", "task_instance": "start_date", "task_instance_history": "start_date",
              "xcom": "timestamp", "log": "dttm"}


def metadata_db() -> psycopg.Connection:
    return psycopg.connect(os.environ["AIRFLOW_CONN_AIRFLOW_DB"], autocommit=True)


def date_back(dag_id: str, run_id: str, at: datetime) -> None:
    """Moves every wall-clock column of a run's rows to ``at``, as if it had run then."""
    with metadata_db() as conn:
        conn.execute(
            "UPDATE dag_run SET start_date = %s, end_date = %s, queued_at = %s WHERE dag_id = %s AND run_id = %s",
            (at, at + timedelta(seconds=10), at, dag_id, run_id),
        )
        for table, column in RUN_TABLES.items():
            if table != "dag_run":
                conn.execute(
                    f"UPDATE {table} SET {column} = %s WHERE dag_id = %s AND run_id = %s AND {column} IS NOT NULL",
                    (at, dag_id, run_id),
                )


def rows_of(run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per run id, the rows each table holds for it (kis_minute_bars)."""
    with metadata_db() as conn:
        return {
            run_id: {
                table: conn.execute(
                    f"SELECT count(*) FROM {table} WHERE dag_id = 'kis_minute_bars' AND run_id = %s", (run_id,)
                ).fetchone()[0]
                for table in RUN_TABLES
            }
            for run_id in run_ids
        }


def minute_run(market, day: date) -> str:
    """One minute run of ``day``, dated back to it; its run id."""
    tick = kst(f"{day.isoformat()}T{TICK}")
    run = market.run("kis_minute_bars", tick)
    with metadata_db() as conn:  # what a task's audit trail leaves in the log table
        conn.execute(
            "INSERT INTO log (dttm, dag_id, task_id, run_id, event, owner) VALUES (now(), 'kis_minute_bars',"
            " 'session_gate', %s, 'running', 'market-data')",
            (run.run_id,),
        )
    date_back("kis_minute_bars", run.run_id, tick + timedelta(seconds=2))
    return run.run_id


def maintenance_run(market, day: date):
    return market.run("kis_maintenance", kst(f"{day.isoformat()}T05:30"))


@pytest.fixture
def retention(monkeypatch, tmp_path):
    """Short retentions, so that a week crosses them; task logs in ``tmp_path``."""
    monkeypatch.setenv("AIRFLOW_VAR_KIS_METADATA_RETENTION_DAYS", "3")
    monkeypatch.setenv("AIRFLOW_VAR_KIS_XCOM_RETENTION_DAYS", "2")
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(tmp_path / "logs"))
    return tmp_path / "logs"


def task_log(folder, dag_id: str, run_id: str, written: datetime):
    path = folder / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=session_gate" / "attempt=1.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("log line\n" * 100)
    os.utime(path, (written.timestamp(), written.timestamp()))
    return path


def test_the_maintenance_dag_runs_daily_outside_the_sessions(dagbag):
    dag = dagbag.get_dag("kis_maintenance")
    assert dag.timetable.summary == "30 5 * * *"
    assert str(dag.timetable._timezone.name) == "Asia/Seoul"
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md
    assert "maintenance" in dag.tags
    assert {task.task_id for task in dag.tasks} == {"trim_metadata", "trim_task_logs", "trim_market_side_tables"}
    for task in dag.tasks:
        assert task.owner == "market-data" and task.retries >= 2
    # Every collection DAG is trimmed, this one included.
    assert set(maintenance.COLLECTION_DAG_IDS) == set(dagbag.dag_ids)


def test_a_week_of_minute_runs_is_trimmed_to_the_retention_and_stays_flat(market, retention, monkeypatch):
    runs = {day: minute_run(market, day) for day in WEEK}
    logs = {day: task_log(retention, "kis_minute_bars", runs[day], kst(f"{day.isoformat()}T{TICK}")) for day in WEEK}
    other_dag_log = task_log(retention, "someone_elses_dag", "old", kst("2026-09-01T09:00"))
    before = rows_of(list(runs.values()))
    # A fetch task's XCom says its venue once and each code once, its bars as positional rows.
    with metadata_db() as conn:
        (value,) = conn.execute(
            "SELECT value FROM xcom WHERE dag_id = 'kis_minute_bars' AND run_id = %s AND task_id = 'fetch_recent_bars'"
            " AND map_index = 0 AND key = 'return_value'",
            (runs[WEEK[0]],),
        ).fetchone()
    assert value["venue"] == "krx" and value["fetched"] == [CODES[0]] and list(value["bars"]) == [CODES[0]]
    assert value["bars"][CODES[0]][-1] == ["2026-09-07T09:30:00", *value["bars"][CODES[0]][-1][1:]]
    assert {len(row) for row in value["bars"][CODES[0]]} == {len(BAR_ROW)}
    monday_rows = before[runs[WEEK[0]]]
    assert all(monday_rows[table] > 0 for table in ("dag_run", "task_instance", "xcom", "log")), monday_rows

    # A retention that is not a whole number of days fails the tasks that read it, and deletes nothing.
    monkeypatch.setenv("AIRFLOW_VAR_KIS_METADATA_RETENTION_DAYS", "a week")
    failed = maintenance_run(market, date(2026, 9, 14))
    assert set(task_states(failed)["trim_metadata"]) == {"failed"}
    assert rows_of(list(runs.values())) == before
    monkeypatch.setenv("AIRFLOW_VAR_KIS_METADATA_RETENTION_DAYS", "3")

    # Monday 05:30: runs of Friday 09:31 and later are kept (3 days), XComs from Saturday 09:31 (2 days).
    monday = maintenance_run(market, date(2026, 9, 14))
    assert set(task_states(monday)) == {"trim_metadata", "trim_task_logs", "trim_market_side_tables"}
    assert all(states == ["success"] for states in task_states(monday).values()), task_states(monday)
    kept_runs, kept_xcoms = WEEK[4:], WEEK[5:]
    after = rows_of(list(runs.values()))
    for day, run_id in runs.items():
        expected = {table: before[run_id][table] if day in kept_runs else 0 for table in RUN_TABLES}
        if day not in kept_xcoms:
            expected["xcom"] = 0
        assert after[run_id] == expected, day
    assert [day for day in WEEK if logs[day].exists()] == kept_runs
    assert not (retention / "dag_id=kis_minute_bars" / f"run_id={runs[WEEK[0]]}").exists()
    assert other_dag_log.exists()

    # A day later, one more day of runs in, one more day out: the rows stay where they were.
    runs[date(2026, 9, 14)] = minute_run(market, date(2026, 9, 14))
    maintenance_run(market, date(2026, 9, 15))
    kept = rows_of([runs[day] for day in (date(2026, 9, 11), *WEEK[5:], date(2026, 9, 14))])
    assert kept[runs[date(2026, 9, 11)]] == dict.fromkeys(RUN_TABLES, 0)
    totals = {table: sum(rows[table] for rows in rows_of(list(runs.values())).values()) for table in RUN_TABLES}
    totals_monday = {table: sum(rows[table] for rows in after.values()) for table in RUN_TABLES}
    # Saturday and Sunday (sessionless, the gate skips) and Monday are kept; Friday (a session) left.
    assert totals["dag_run"] == totals_monday["dag_run"] == 3
    for day in (*WEEK[5:], date(2026, 9, 14)):
        assert rows_of([runs[day]])[runs[day]]["task_instance"] > 0


# --- the market database's side tables --------------------------------------------------------------


def test_alerts_and_verification_history_keep_their_own_retention_and_no_bar_is_touched(market_dsn, airflow_db):
    from kis import schema, storage
    from kis.bar import Bar

    today = date(2026, 9, 14)
    run = task_context.Run("kis_maintenance", "r", datetime(2026, 9, 14, 5, 30, tzinfo=KST))
    retention = maintenance.Retention(runs=14, xcoms=3, alerts=90, verifications=400)
    days = [today - timedelta(days=n) for n in (0, 89, 90, 91, 399, 400, 401, 800)]
    with psycopg.connect(market_dsn, autocommit=True) as conn:
        schema.migrate(conn, today=today)
        for day in days:
            conn.execute(
                "INSERT INTO collection_alerts (kind, dag_id, run_id, stock_code, trading_date, message)"
                " VALUES ('gap', 'kis_minute_bars', 'r', '005930', %s, 'gap')",
                (day,),
            )
            conn.execute(
                "INSERT INTO alerted_gaps (stock_code, venue, datetime, run_id) VALUES ('005930', 'krx', %s, 'r')",
                (datetime.combine(day, datetime.min.time()).replace(hour=15, minute=19),),
            )
            storage.record_minute_run(conn, day, datetime.combine(day, time(9, 1), tzinfo=KST))
            for table in ("minute_verification", "minute_verification_history"):
                conn.execute(
                    f"INSERT INTO {table} (trading_date, stock_code, venue, expected, stored, present,"
                    " missing_minutes, volume_sum, volume_status, status, run_id)"
                    " VALUES (%s, '005930', 'krx', 381, 381, 381, '{}', 1, 'match', 'complete', 'r')",
                    (day,),
                )
            storage.upsert_bars(conn, [Bar("005930", datetime(day.year, day.month, day.day, 9, 0, tzinfo=KST), 1, 1, 1, 1, 1)])
        deleted = maintenance.trim_market_side_tables(run, retention, conn)

        def dates(sql: str) -> list[date]:
            return [today - day for (day,) in conn.execute(sql).fetchall()]

        assert (deleted["alerts"], deleted["alerted_gaps"], deleted["collection_starts"], deleted["verification_history"]) == (
            5, 5, 5, 2
        )
        assert deleted["alerts_before"] == "2026-06-16" and deleted["verifications_before"] == "2025-08-10"
        keep_alerts = [timedelta(days=n) for n in (0, 89, 90)]
        assert dates("SELECT trading_date FROM collection_alerts ORDER BY 1 DESC") == keep_alerts
        assert dates("SELECT datetime::date FROM alerted_gaps ORDER BY 1 DESC") == keep_alerts
        assert dates("SELECT trading_date FROM minute_collection_start ORDER BY 1 DESC") == keep_alerts
        assert dates("SELECT trading_date FROM minute_verification_history ORDER BY 1 DESC") == [
            timedelta(days=n) for n in (0, 89, 90, 91, 399, 400)
        ]
        # The bars and each day's current report are the market's, with retentions of their own.
        assert conn.execute("SELECT count(*) FROM minute_verification").fetchone()[0] == len(days)
        assert conn.execute("SELECT count(*) FROM stock_prices_minute").fetchone()[0] == len(days)

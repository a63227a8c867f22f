"""A verified day, announced as an Asset event, and the DAG that runs on it (`dag.test()`, PostgreSQL).

The backfill's ``verify_day`` emits one event per venue whose day passed; ``kis_resampled_bars``,
run on those events, materializes the day's 5/10/30/60-minute bars; the last test has the real
scheduler do it, from the backfill's trigger to the resampled table. Which days are not announced
(a venue not in ``kis_venues``, a day that failed) is checked beside the runs that show it, in
test_dags.py and test_venues.py.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import psycopg
import pytest
from simulated_day import CODES, DAGS_FOLDER, announced, kst, local_airflow, task_states, wait_for

from kis import storage
from simulator.testing import run_simulator

DAY = date(2026, 11, 25)


def resampled_table(market, day: date, venue: str = "krx") -> list[tuple]:
    return market.query(
        "SELECT stock_code, minutes, bucket_start, open, high, low, close, volume, bar_count"
        " FROM stock_prices_resampled WHERE venue = %s AND bucket_start::date = %s ORDER BY 1, 2, 3",
        venue, day,
    )


def resampled_view(market, day: date, codes, venue: str = "krx") -> list[tuple]:
    start = datetime.combine(day, time())
    with psycopg.connect(market.dsn) as conn:
        return sorted(
            (bar.stock_code, minutes, bar.bucket_start, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.bar_count)
            for minutes in (5, 10, 30, 60)
            for bar in storage.resampled_bars(conn, codes, start, start + timedelta(days=1), minutes=minutes, venue=venue)
        )


def test_a_verified_day_is_announced_and_its_resampled_bars_materialized(market):
    backfill = market.run("kis_minute_backfill", kst("2026-11-25T16:00"))
    assert backfill.state == "success"
    (event,) = announced(backfill)
    assert (event.asset.name, event.asset.uri) == ("kis_minute_bars_krx", "kis://minute-bars/krx")
    assert event.extra == {
        "date": "2026-11-25",
        "venue": "krx",
        "completeness": 1.0,
        "threshold": 0.98,
        "codes": sorted(CODES),
        "codes_with_gaps": [],
        "unverifiable": [],
        "present": 381 * len(CODES),
        "expected": 381 * len(CODES),
    }

    run = market.run_on_events("kis_resampled_bars", [event], kst("2026-11-25T16:30"))
    assert run.state == "success", task_states(run)
    (label,) = [ti.rendered_map_index for ti in run.get_task_instances() if ti.task_id == "materialize_day"]
    assert label == "krx 2026-11-25"
    table = resampled_table(market, DAY)
    assert table == resampled_view(market, DAY, CODES)
    assert len(table) == len(CODES) * (77 + 39 + 14 + 7)  # 5, 10, 30, 60 minutes of a regular day

    # A bar corrected after the first run: the re-run replaces the day, it never adds to it.
    market.query("UPDATE stock_prices_minute SET volume = volume + 1000 WHERE datetime = '2026-11-25 15:30'")
    assert market.run_on_events("kis_resampled_bars", [event], kst("2026-11-25T16:31")).state == "success"
    again = resampled_table(market, DAY)
    assert again == resampled_view(market, DAY, CODES) and len(again) == len(table) and again != table


def test_the_documented_subscriber_runs_on_the_event(market, tmp_path, capsys):
    """The DAG of docs/bars-out.md ("Subscribing a DAG of your own"), run on a backfill's event."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    backfill = market.run("kis_minute_backfill", kst("2026-11-25T16:00"))
    (event,) = announced(backfill)
    doc = (DAGS_FOLDER.parent / "docs" / "bars-out.md").read_text()
    sample = doc.split("### Subscribing a DAG of your own")[1].split("```python\n")[1].split("```")[0]
    assert "...  # your model" in sample
    (tmp_path / "my_daily_model.py").write_text(
        sample.replace("...  # your model", "print('scored', code, len(frame), frame.index[-1].isoformat())")
    )
    bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)  # as the dag-processor would, so that a run can be made
    market.dagbag = bag
    run = market.run_on_events("my_daily_model", [event], kst("2026-11-25T16:30"))
    assert run.state == "success", task_states(run)
    out = capsys.readouterr().out
    for code in CODES:
        assert f"scored {code} 14 2026-11-25T15:30:00+09:00" in out, code  # 30-minute bars: 13 and the close


def test_a_run_without_events_materializes_nothing(market):
    run = market.dagbag.get_dag("kis_resampled_bars").test(logical_date=kst("2026-11-25T16:30"))
    assert run.state == "success"
    assert task_states(run) == {"plan_days": ["success"], "materialize_day": ["skipped"]}


def test_an_event_without_a_day_fails_the_run_at_once_and_materializes_nothing(market, capsys):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == "kis_minute_bars_nxt"))
        event = AssetEvent(asset_id=asset.id, extra={"venue": "nxt", "day": "2026-11-25"})
        session.add(event)
        session.flush()
        session.expunge(event)
    run = market.run_on_events("kis_resampled_bars", [event], kst("2026-11-25T20:40"))
    assert run.state == "failed"
    assert task_states(run) == {"plan_days": ["failed"], "materialize_day": ["upstream_failed"]}
    (plan,) = [ti for ti in run.get_task_instances() if ti.task_id == "plan_days"]
    assert plan.try_number == 1  # no retry mends an event
    log = capsys.readouterr().out  # dag.test() prints the task logs
    assert "Asset events without a valid date and venue in their extra: kis_minute_bars_nxt event" in log
    assert "KeyError: 'date'" in log and "Nothing was materialized" in log


# --- under the real scheduler ----------------------------------------------------------------------


@pytest.mark.stack
def test_the_scheduler_runs_the_resampling_when_the_backfill_verifies_a_day(pg_cluster):
    with (
        run_simulator(now="2026-11-25T16:00:02+09:00") as sim,
        local_airflow("assets", sim, AIRFLOW_VAR_KIS_WATCHLIST="005930") as (api, market_dsn),
    ):
        for dag_id in ("kis_minute_backfill", "kis_resampled_bars"):
            wait_for(f"the dag-processor parses {dag_id}", lambda d=dag_id: api.get(f"/dags/{d}").status_code == 200)
            assert api.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        triggered = api.post("/dags/kis_minute_backfill/dagRuns", json={"logical_date": "2026-11-25T16:00:00+09:00"})
        assert triggered.status_code == 200, triggered.text
        backfill_run = triggered.json()["dag_run_id"]

        def resampling_run():
            runs = api.get("/dags/kis_resampled_bars/dagRuns").json()["dag_runs"]
            return next((run for run in runs if run["state"] in ("success", "failed")), None)

        run = wait_for("kis_resampled_bars runs on the verified day", resampling_run, timeout=600)
        assert (run["state"], run["run_type"]) == ("success", "asset_triggered")
        backfill = api.get(f"/dags/kis_minute_backfill/dagRuns/{backfill_run}").json()
        assert backfill["state"] == "success"
        events = api.get("/assets/events", params={"source_run_id": backfill_run}).json()["asset_events"]
        assert [(e["uri"], e["extra"]["date"], e["extra"]["codes"]) for e in events] == [
            ("kis://minute-bars/krx", "2026-11-25", ["005930"])
        ]
        with psycopg.connect(market_dsn) as conn:
            table = conn.execute(
                "SELECT stock_code, minutes, bucket_start, open, high, low, close, volume, bar_count, run_id"
                " FROM stock_prices_resampled ORDER BY 1, 2, 3"
            ).fetchall()
            start = datetime.combine(DAY, time())
            view = sorted(
                (bar.stock_code, minutes, bar.bucket_start, bar.open, bar.high, bar.low, bar.close, bar.volume,
                 bar.bar_count, run["dag_run_id"])
                for minutes in (5, 10, 30, 60)
                for bar in storage.resampled_bars(conn, ["005930"], start, start + timedelta(days=1), minutes=minutes)
            )
        assert table == view and len(table) == 77 + 39 + 14 + 7

"""A verified day, announced as an Asset event, and the DAG that runs on it (`dag.test()`, PostgreSQL).

The backfill's ``verify_day`` emits one event per venue whose day passed; ``kis_resampled_bars``,
run on those events, materializes the day's 5/10/30/60-minute bars. Which days are not announced
(a venue not in ``kis_venues``, a day that failed) is checked beside the runs that show it, in
test_dags.py and test_venues.py.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import psycopg
from simulated_day import CODES, DAGS_FOLDER, announced, kst, task_states

from kis import storage

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

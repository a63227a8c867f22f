"""Issue 11's four cases under real Airflow (`dag.test()`) on the simulator: the day KIS serves is
the KIS clock's day (the simulator's market clock, sent as the HTTP ``Date`` header), never the
run's logical date; the day volume counts off-session trades; the closing auction and CSAT's late
hour; and the completeness threshold. The last test runs the runs Airflow's own backfill makes of a
date range.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from simulated_day import CODES, kst, task_states

DAY = date(2026, 11, 25)
NEXT_MORNING = kst("2026-11-26T09:10")


def lag_until(tick: datetime, clock: datetime) -> float:
    """The ``lag`` of ``Market.run`` that puts the simulator's clock at ``clock``."""
    return (clock - tick).total_seconds()


def traded(bars, first=None, last=None):
    """The bars the past-day endpoint serves: it leaves out the minutes without trades."""
    return [b for b in bars if b.volume > 0 and (first is None or b.minute >= first) and (last is None or b.minute <= last)]


def requests(market) -> dict[str, int]:
    return dict(market.sim.counters()["requests_by_endpoint"])


def past_day_requests(market) -> int:
    return sum(n for endpoint, n in requests(market).items() if "dailychartprice" in endpoint and "itemchart" not in endpoint)


def every_log(caplog, capfd, since: float) -> str:
    """Everything the run logged: captured records and output, and the task log files it wrote."""
    out, err = capfd.readouterr()
    files = [p for p in (Path(os.environ["AIRFLOW_HOME"]) / "logs").rglob("*") if p.is_file() and p.stat().st_mtime >= since]
    return "\n".join([out, err, caplog.text, *(p.read_text(errors="replace") for p in files)])


def no_retry_delay(market, monkeypatch, dag_id: str, task_id: str) -> None:
    monkeypatch.setattr(market.dagbag.get_dag(dag_id).get_task(task_id), "retry_delay", timedelta(0))


# --- case 1: the 16:00 backfill cleared and re-run the next morning ------------------------------


def test_backfill_rerun_next_morning_stores_the_day_from_the_past_day_endpoint(market):
    tick = kst("2026-11-25T16:00")
    dag_run = market.run("kis_minute_backfill", tick, lag=lag_until(tick, NEXT_MORNING))
    assert market.sim.now().date() == date(2026, 11, 26)
    stored = market.stored(DAY)
    for code in CODES:
        assert stored[code] == traded(market.sim.truth(code, DAY)), code
    assert market.query("SELECT count(*) FROM stock_prices_minute WHERE datetime >= '2026-11-26'") == [(0,)]
    assert past_day_requests(market) >= len(CODES) * 4  # 381 bars: 4 pages of 120 per code
    report = dict(market.query("SELECT stock_code, status FROM minute_verification WHERE trading_date = %s", DAY))
    assert set(report) == set(CODES)
    assert set(report.values()) <= {"complete", "complete_with_explained_absences", "unverifiable"}, report
    assert dag_run.state == "success"


# Case 1's backfill and case 3's minute run, each re-run the next morning: its tick and fetch task.
RERUNS = {
    "kis_minute_backfill": ("2026-11-25T16:00", "fetch_session_bars"),
    "kis_minute_bars": ("2026-11-25T10:31", "fetch_recent_bars"),
}


@pytest.mark.parametrize("dag_id", list(RERUNS))
def test_a_rerun_next_morning_on_a_mock_account_fails_and_says_why(
    simulated_market, monkeypatch, caplog, capfd, dag_id
):
    when, task_id = RERUNS[dag_id]
    started = time.time()
    with simulated_market(mode="mock") as market:
        no_retry_delay(market, monkeypatch, dag_id, task_id)
        tick = kst(when)
        dag_run = market.run(dag_id, tick, lag=lag_until(tick, NEXT_MORNING))
        assert dag_run.state == "failed"  # never a silent success with nothing stored
        states = task_states(dag_run)
        assert set(states[task_id]) == {"failed"}
        assert "success" not in states.get("verify_day", [])
        assert market.query("SELECT count(*) FROM stock_prices_minute") == [(0,)]  # nothing half-stored
        assert past_day_requests(market) == 0
        text = every_log(caplog, capfd, started)
        assert "mock account" in text and "FHKST03010230" in text  # the reason: past days need a real account


# --- case 2: the backfill at 16:45, when the day volume counts off-session trades ----------------


def test_backfill_at_1645_calls_every_fully_stored_code_complete(market):
    tick = kst("2026-11-25T16:00")
    dag_run = market.run("kis_minute_backfill", tick, lag=45 * 60)
    stored = market.stored(DAY)
    rows = market.query(
        "SELECT stock_code, status, volume_status, reported_volume, volume_sum FROM minute_verification"
        " WHERE trading_date = %s", DAY,
    )
    report = {code: (status, vs, reported, summed) for code, status, vs, reported, summed in rows}
    full = [code for code in CODES if len(market.sim.truth(code, DAY)) == 381]
    assert full  # codes without a VI that day: every minute is there
    for code in CODES:
        assert stored[code] == market.sim.truth(code, DAY), code
    for code in full:
        assert report[code][0] == "complete", (code, report[code])
    # The case this test is about: KIS's day volume at 16:45 exceeds the session's.
    assert any(report[code][1] == "exceeds" for code in full), report
    for code in full:
        assert report[code][2] == market.sim.cumulative_volume(code, DAY, at=kst("2026-11-25T16:45")) or report[code][2] >= report[code][3]
    assert {s for s, *_ in report.values()} <= {"complete", "unverifiable", "complete_with_explained_absences"}
    assert market.query("SELECT count(*) FROM collection_alerts WHERE kind = 'incomplete_day'") == [(0,)]
    assert dag_run.state == "success"


# --- case 3: a minute run of 10:31 re-run the next morning ---------------------------------------


# After midnight KIS's new day has no bar yet: its today endpoint answers an empty page, and only its
# clock (the Date header) tells that the run's day is past.
@pytest.mark.parametrize("cleared", [NEXT_MORNING, kst("2026-11-26T00:07")], ids=["at 09:10", "after midnight"])
def test_minute_run_rerun_next_morning_stores_its_bars_from_the_past_day_endpoint(market, cleared):
    tick = kst("2026-11-25T10:31")
    dag_run = market.run("kis_minute_bars", tick, lag=lag_until(tick, cleared))
    stored = market.stored(DAY)
    for code in CODES:
        truth = market.sim.truth(code, DAY)
        window = traded(truth, kst("2026-11-25T10:01"), kst("2026-11-25T10:30"))
        assert window and [b for b in stored[code] if b.minute >= window[0].minute] == window, code
        assert all(b in truth for b in stored[code]), code  # nothing else of the day, nothing invented
    assert market.query("SELECT count(*) FROM stock_prices_minute WHERE datetime >= '2026-11-26'") == [(0,)]
    assert past_day_requests(market) >= len(CODES)
    assert dag_run.state == "success"


# --- case 4: CSAT's late hour, the closing auction, the closing print -----------------------------


def test_csat_day_1631_run_stores_the_1630_closing_bar_live(market):
    csat = date(2026, 11, 19)
    dag = market.dagbag.get_dag("kis_minute_bars")
    # The scheduler creates this tick (not only the task code called at an odd time).
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=__import__("airflow.timetables.base", fromlist=["TimeRestriction"]).TimeRestriction(
            earliest=kst("2026-11-19T16:30:30"), latest=None, catchup=True
        ),
    )
    assert info.logical_date == kst("2026-11-19T16:31")
    dag_run = market.run("kis_minute_bars", kst("2026-11-19T16:31"))
    assert dag_run.state == "success"
    stored = {b.minute: b for b in market.stored(csat)["005930"]}
    closing = [b for b in market.sim.truth("005930", csat) if b.minute == kst("2026-11-19T16:30")]
    assert closing and stored.get(kst("2026-11-19T16:30")) == closing[0]
    assert past_day_requests(market) == 0


def test_closing_auction_ticks_ask_nothing_and_the_grace_asks_only_what_is_missing(market):
    assert market.run("kis_minute_bars", kst("2026-11-25T15:20")).state == "success"
    # Even a code whose last bar before the auction is missing is not asked during it (the 15:31
    # run re-reads the last 30 minutes anyway).
    market.query("DELETE FROM stock_prices_minute WHERE stock_code = '005930' AND datetime = %s", datetime(2026, 11, 25, 15, 19))
    market.sim.reset_counters()
    for minute in range(21, 31):
        dag_run = market.run("kis_minute_bars", kst(f"2026-11-25T15:{minute}"))
        assert dag_run.state == "success"
        assert requests(market) == {}, f"15:{minute} asked KIS during the closing auction"
    assert market.run("kis_minute_bars", kst("2026-11-25T15:31")).state == "success"
    assert market.data_requests() == len(CODES)
    closing = datetime(2026, 11, 25, 15, 30)
    assert market.query("SELECT count(*) FROM stock_prices_minute WHERE datetime = %s", closing) == [(len(CODES),)]
    # One code's closing print is not stored (say it printed late): the next tick asks only that one.
    market.query("DELETE FROM stock_prices_minute WHERE stock_code = '000660' AND datetime = %s", closing)
    market.sim.reset_counters()
    dag_run = market.run("kis_minute_bars", kst("2026-11-25T15:32"))
    assert dag_run.state == "success"
    assert market.data_requests() == 1
    labels = [ti.rendered_map_index for ti in dag_run.get_task_instances() if ti.task_id == "fetch_recent_bars"]
    assert labels == ["000660"]
    assert market.query("SELECT count(*) FROM stock_prices_minute WHERE datetime = %s", closing) == [(len(CODES),)]


# --- the completeness threshold ------------------------------------------------------------------


def test_the_completeness_threshold_decides_a_day_with_lost_minutes(simulated_market, monkeypatch):
    lost = ["10:05", "10:06", "10:07", "11:00", "11:01", "12:30", "13:41", "14:00", "14:01", "14:02", "15:30"]
    faults = {"drop_minutes": [{"code": "000660", "minutes": lost, "date": "2026-11-25"}]}
    with simulated_market(faults=faults) as market:
        monkeypatch.setenv("AIRFLOW_VAR_KIS_COMPLETENESS_THRESHOLD", "0.98")
        passed = market.run("kis_minute_backfill", kst("2026-11-25T16:00"))
        rows = market.query("SELECT status, present, expected FROM minute_verification")
        completeness = sum(p for _, p, _ in rows) / sum(e for *_, e in rows)
        assert 0.98 <= completeness < 0.999, completeness
        (status,), = market.query("SELECT status FROM minute_verification WHERE stock_code = '000660'")
        assert status == "gap"  # its closing bar is lost too: nothing can explain it
        assert passed.state == "success"
        assert task_states(passed)["verify_day"] == ["success"]
        (message,), = market.query("SELECT message FROM collection_alerts WHERE kind = 'incomplete_day'")
        assert "000660" in message and "above the threshold" in message  # passed, the gap still alerted

        monkeypatch.setenv("AIRFLOW_VAR_KIS_COMPLETENESS_THRESHOLD", "0.999")
        failed = market.run("kis_minute_backfill", kst("2026-11-25T16:00"))
        assert failed.state == "failed"
        assert task_states(failed)["verify_day"] == ["failed"]
        messages = [m for (m,) in market.query("SELECT message FROM collection_alerts WHERE kind = 'incomplete_day' ORDER BY id")]
        assert len(messages) == 2 and "000660" in messages[-1] and "below the threshold" in messages[-1]


# --- Airflow's own backfill over a date range ----------------------------------------------------


def test_airflow_backfill_over_a_range_with_a_holiday(simulated_market):
    """The runs `airflow backfill create` (or the UI's backfill form) makes of 2026-10-08..12: the
    dates and the checks of Airflow's own backfill (its dry run), each run as the scheduler would run
    it (dag.test()), on a real account whose clock is 2026-11-30 09:10 KST, two codes."""
    import psycopg
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.backfill import ReprocessBehavior, _do_dry_run
    from airflow.utils.session import create_session

    from kis.bar import KST
    from kis.calendar import default_calendar

    codes = ["005930", "000660"]
    sessions = [date(2026, 10, 8), date(2026, 10, 12)]
    holiday = date(2026, 10, 9)  # Hangul Day
    assert [s.day for s in default_calendar().sessions_between(date(2026, 10, 8), date(2026, 10, 12))] == sessions
    with simulated_market(codes=codes) as market:
        sim, clock = market.sim, kst("2026-11-30T09:10")
        sync_bag_to_db(market.dagbag, "dags-folder", None)  # as the dag-processor has before a backfill
        with create_session() as session:
            backfill = _do_dry_run(
                dag_id="kis_minute_backfill", from_date=kst("2026-10-08T00:00"), to_date=kst("2026-10-12T16:00"),
                # Every date, its runs of an earlier session of the suite included (the metadata
                # database outlives it): a fresh database's backfill, whose default is NONE.
                reverse=False, reprocess_behavior=ReprocessBehavior.COMPLETED, session=session,
            )  # fmt: skip
            ticks = [info.logical_date for info in backfill]
        # One run a weekday at 16:00, the holiday's too (the cron does not know it); in date order, as
        # the backfill's max_active_runs of 1 runs them.
        runs = {tick.astimezone(KST).date(): market.run("kis_minute_backfill", tick, lag=lag_until(tick, clock))
                for tick in ticks}
        assert set(runs) == {*sessions, holiday}
        for day, run in runs.items():
            assert run.state == "success", (day, task_states(run))
        holiday_states = task_states(runs[holiday])
        assert {task: holiday_states[task] for task in ("trading_day_gate", "upsert_bars")} == {
            "trading_day_gate": ["success"], "upsert_bars": ["skipped"]
        }
        with psycopg.connect(market.dsn) as conn:
            verified = conn.execute(
                "SELECT trading_date, stock_code, status FROM minute_verification WHERE trading_date <= '2026-10-12' ORDER BY 1, 2"
            ).fetchall()
            for day in sessions:
                for code in codes:
                    stored = conn.execute(
                        "SELECT count(*) FROM stock_prices_minute WHERE stock_code = %s AND datetime::date = %s", (code, day)
                    ).fetchone()[0]
                    assert stored == len(traded(sim.truth(code, day))), (code, day)
            assert conn.execute("SELECT count(*) FROM stock_prices_minute WHERE datetime::date = %s", (holiday,)).fetchone() == (0,)
        counters = sim.counters()["requests_by_endpoint"]
    assert {(d, c) for d, c, _ in verified} == {(d, c) for d in sessions for c in codes}
    assert {s for *_, s in verified} <= {"complete", "complete_with_explained_absences", "unverifiable"}, verified
    # One day-volume request per code and session, none for the holiday; the past-day endpoint paged.
    assert sum(n for e, n in counters.items() if "inquire-daily-itemchartprice" in e) == 4, counters
    assert sum(n for e, n in counters.items() if "inquire-time-dailychartprice" in e) >= 4 * 3, counters

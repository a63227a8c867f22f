"""The minute DAG's timetable: the ticks the scheduler creates on a regular day, on CSAT day and on any
special session a user adds, and the timetable's way through serialization to the scheduler.

Ticks are asked for as the scheduler asks: ``next_dagrun_info`` again and again, each time with the
previous run's data interval, never by calling the task code at a time the scheduler never creates.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable
from kis.calendar import CLOSING_PRINT_GRACE, KST, KrxCalendar, default_calendar
from kis.timetable import DEFAULT_CRON, MANUAL_RUN_LEAD, KisCronTimetable, KrxSessionTimetable
from kis.venues import Venue

ONE_MINUTE = timedelta(minutes=1)
CSAT = date(2026, 11, 19)  # session 10:00-16:30, closing bar 16:30 (docs/krx-sessions.md)
REGULAR = date(2026, 11, 25)


def kst(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=KST)


def minutes(first: datetime, last: datetime) -> list[datetime]:
    return [first + i * ONE_MINUTE for i in range(int((last - first) / ONE_MINUTE) + 1)]


def ticks(timetable, day: date, start: str = "00:00", end: str = "23:59") -> list[datetime]:
    """Every tick of ``day`` (KST) from ``start`` to ``end``, both included (as a DAG's start and end
    dates are), stepping from one run to the next as the scheduler does."""
    restriction = TimeRestriction(
        earliest=pendulum.instance(kst(day, start)),
        latest=pendulum.instance(kst(day, end)),
        catchup=True,  # with catchup the answer depends on the runs only, not on the wall clock
    )
    found: list[datetime] = []
    last: DataInterval | None = None
    while (info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)):
        # As CronTriggerTimetable: the run's logical date is its tick, and it runs right then.
        assert info.logical_date == info.run_after == info.data_interval.end
        found.append(info.logical_date.astimezone(KST))
        last = info.data_interval
        assert len(found) <= 24 * 60, "the timetable does not advance"
    return found


def rows_with(*extra: dict[str, str]) -> list[dict[str, str]]:
    return default_calendar().special_session_rows() + list(extra)


# --- the ticks ----------------------------------------------------------------------------------


def test_regular_day_ticks_are_exactly_the_cron() -> None:
    found = ticks(KrxSessionTimetable(), REGULAR)
    assert found == minutes(kst(REGULAR, "09:00"), kst(REGULAR, "15:59"))
    assert len(found) == 420
    assert found == ticks(CronTriggerTimetable(DEFAULT_CRON, timezone="Asia/Seoul"), REGULAR)


def test_csat_day_collects_its_late_hour_live() -> None:
    found = ticks(KrxSessionTimetable(), CSAT)
    session = default_calendar().session(CSAT)
    window = minutes(session.open + ONE_MINUTE, session.close + CLOSING_PRINT_GRACE)
    assert window[0] == kst(CSAT, "10:01") and window[-1] == kst(CSAT, "16:35")
    assert set(window) <= set(found)  # every collection minute is a tick, 16:00-16:35 included
    assert kst(CSAT, "16:31") in found  # the 16:30 closing bar is fetched once it has closed
    # Nothing else was added: the cron's ticks (09:00-15:59, the gate skips those before 10:01),
    # then 16:00-16:35 and not one minute more.
    assert found == minutes(kst(CSAT, "09:00"), kst(CSAT, "16:35"))
    assert found[-1] == kst(CSAT, "16:35")
    # A start date on an added minute is a tick of its own, as on a cron tick.
    late_start = ticks(KrxSessionTimetable(), CSAT, "16:10", "16:20")
    assert late_start == minutes(kst(CSAT, "16:10"), kst(CSAT, "16:20"))


def test_a_row_a_user_adds_is_collected_live_and_a_closure_keeps_the_cron() -> None:
    late = date(2027, 3, 3)  # a Wednesday, made up: 08:00-18:00 (both ends outside the cron), and a closure
    calendar = KrxCalendar(
        rows_with(
            {"date": "2027-03-03", "open": "08:00", "close": "18:00", "note": "test"},
            {"date": "2026-11-25", "open": "", "close": "", "note": "test closure"},
        )
    )
    timetable = KrxSessionTimetable(calendar=calendar)
    assert ticks(timetable, late) == minutes(kst(late, "08:01"), kst(late, "18:05"))
    # 08:00 is no tick: the first bar is still forming.
    assert ticks(timetable, late, "08:00", "08:02") == [kst(late, "08:01"), kst(late, "08:02")]
    # A closure takes no tick away: the session gate skips those runs without a request.
    assert len(ticks(timetable, REGULAR)) == 420
    assert "08:01-08:59, 16:00-18:05 on 2027-03-03" in timetable.description


def test_without_catchup_the_newest_tick_runs_as_with_cron_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.timetables import trigger

    timetable = KrxSessionTimetable()
    restriction = TimeRestriction(earliest=pendulum.instance(kst(CSAT, "00:00")), latest=None, catchup=False)
    last_run = DataInterval.exact(pendulum.instance(kst(CSAT, "15:59")))

    def next_at(now: str, last: DataInterval | None = last_run) -> datetime:
        monkeypatch.setattr(trigger, "utcnow", lambda: pendulum.instance(kst(CSAT, now)).in_timezone("UTC"))
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        return info.logical_date.astimezone(KST)

    assert next_at("16:03:30") == kst(CSAT, "16:03")  # a missed minute is skipped, not caught up
    assert next_at("15:59:30") == kst(CSAT, "16:00")
    assert next_at("16:50:00") == kst(CSAT, "16:35")  # a late scheduler still fetches the closing bar
    last_tick = DataInterval.exact(pendulum.instance(kst(CSAT, "16:35")))
    assert next_at("16:40:00", last_tick) == kst(CSAT + timedelta(days=1), "09:00")


# --- what the UI shows --------------------------------------------------------------------------


def test_summary_and_description_read_as_the_cron_plus_the_special_sessions() -> None:
    timetable = KrxSessionTimetable()
    assert timetable.summary == "* 9-15 * * 1-5 + KRX special sessions"
    assert timetable.description == (
        "Every minute, between 09:00 and 15:59, Monday through Friday (Asia/Seoul), plus KRX special"
        " sessions: 16:00-16:35 on 2024-11-14, 2025-11-13, 2026-11-19"
    )


# --- serialization: the DAG processor writes it, the scheduler reads it -------------------------


def test_serialize_round_trip_keeps_cron_and_sessions() -> None:
    added = {"date": "2027-03-03", "open": "11:00", "close": "18:00", "note": "test"}
    calendar = KrxCalendar(rows_with(added))
    timetable = KrxSessionTimetable(calendar=calendar)
    data = timetable.serialize()
    restored = KrxSessionTimetable.deserialize(data)
    assert restored == timetable and restored.serialize() == data
    assert restored != KrxSessionTimetable()  # the added row is part of it
    # The scheduler never reads the CSV: the rows travel in the serialized form.
    assert ticks(restored, date(2027, 3, 3))[-1] == kst(date(2027, 3, 3), "18:05")
    assert ticks(restored, CSAT) == ticks(timetable, CSAT)


def test_the_plugin_registers_the_timetable_for_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow import plugins_manager
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.serialization.helpers import TimetableNotRegistered

    # The plugins folder is this checkout's plugins/ (tests/conftest.py sets AIRFLOW__CORE__PLUGINS_FOLDER).
    registered = plugins_manager.get_timetables_plugins()
    assert registered["kis.timetable.KrxSessionTimetable"] is KrxSessionTimetable
    encoded = encode_timetable(KrxSessionTimetable())
    assert encoded["__type"] == "kis.timetable.KrxSessionTimetable"
    decoded = decode_timetable(encoded)
    assert isinstance(decoded, KrxSessionTimetable) and decoded == KrxSessionTimetable()
    assert ticks(decoded, CSAT)[-1] == kst(CSAT, "16:35")

    # Without the plugin neither side accepts it: the registration is what makes it work.
    monkeypatch.setattr(plugins_manager, "get_timetables_plugins", dict)
    with pytest.raises(TimetableNotRegistered):
        encode_timetable(KrxSessionTimetable())
    with pytest.raises(TimetableNotRegistered):
        decode_timetable(encoded)


# --- the DAG ------------------------------------------------------------------------------------


def test_minute_dag_is_scheduled_by_the_session_timetable(dagbag) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dagbag.get_dag("kis_minute_bars")
    assert isinstance(dag.timetable, KrxSessionTimetable), "wire schedule=KrxSessionTimetable(...) in the DAG"
    assert dag.timetable.summary == "* 9-15 * * 1-5 + KRX special sessions"
    assert str(dag.timetable._timezone.name) == "Asia/Seoul"
    # The DAG as the scheduler gets it: serialized by the DAG processor, deserialized elsewhere.
    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert isinstance(scheduled.timetable, KrxSessionTimetable)
    assert ticks(scheduled.timetable, CSAT) == minutes(kst(CSAT, "09:00"), kst(CSAT, "16:35"))
    assert len(ticks(scheduled.timetable, REGULAR)) == 420


# --- venues: Nextrade's hours ---------------------------------------------------------------------


def test_with_nextrade_the_ticks_cover_its_whole_day_and_only_on_session_days() -> None:
    timetable = KrxSessionTimetable(venues=(Venue.KRX, Venue.UNIFIED))
    assert ticks(timetable, REGULAR) == minutes(kst(REGULAR, "08:01"), kst(REGULAR, "20:05"))
    # CSAT day: no pre-market, the after-market to 20:00, and the cron's own ticks from 09:00.
    assert ticks(timetable, CSAT) == minutes(kst(CSAT, "09:00"), kst(CSAT, "20:05"))
    saturday = date(2026, 11, 28)
    assert ticks(timetable, saturday) == []
    assert timetable.summary == "* 9-15 * * 1-5 + KRX special sessions + Nextrade hours"
    assert "plus unified (KRX + Nextrade): 08:01-08:59, 16:00-20:05 on a regular day" in timetable.description


def test_serialize_round_trip_keeps_the_venues() -> None:
    timetable = KrxSessionTimetable(venues=(Venue.NEXTRADE,))
    restored = KrxSessionTimetable.deserialize(timetable.serialize())
    assert restored == timetable and restored != KrxSessionTimetable()
    assert ticks(restored, REGULAR) == ticks(timetable, REGULAR)


# --- the first schedule: what a fresh start runs ------------------------------------------------


@pytest.mark.parametrize(
    ("dag_id", "now", "first"),
    [
        # After the close: no minute run of 15:35 (past its deadline), no backfill of the day.
        ("kis_minute_bars", "19:00:00", "2026-12-01T09:00"),
        ("kis_minute_backfill", "19:00:00", "2026-12-01T16:00"),
        ("kis_minute_backfill_nextrade", "21:00:00", "2026-12-01T20:10"),
        ("kis_maintenance", "19:00:00", "2026-12-01T05:30"),
        # In the session: a whole minute to start up, not the minute that is under way.
        ("kis_minute_bars", "10:00:30", "2026-11-30T10:01"),
        # Minutes after a tick, when Airflow's ``run_immediately=False`` would still run it (5 min).
        ("kis_minute_bars", "16:03:00", "2026-12-01T09:00"),
        ("kis_minute_backfill", "16:04:00", "2026-12-01T16:00"),
    ],
)
def test_a_dags_first_run_is_its_next_tick(dagbag, monkeypatch, dag_id: str, now: str, first: str) -> None:
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables import trigger

    monday = date(2026, 11, 30)
    monkeypatch.setattr(trigger, "utcnow", lambda: pendulum.instance(kst(monday, now)).in_timezone("UTC"))
    # As the scheduler has the DAG: serialized by the DAG processor, deserialized elsewhere.
    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.get_dag(dag_id)))
    info = dag.next_dagrun_info(last_automated_run_info=None)
    assert info.logical_date == info.run_after == datetime.fromisoformat(first + "+09:00")


@pytest.mark.parametrize(
    "cron",
    ["* 9-15 * * 1-5", "*/7 8-17 * * MON-FRI", "0,30 * 1,15 * 1-5", "* 16 * 11 4", "* * * * 0,7", "* 10-16 * * 0-6"],
)
def test_the_extra_minutes_of_a_session_are_those_croniter_never_ticks_at(cron: str) -> None:
    """extra_minutes tests each minute against the cron's expanded fields; croniter's own walk over
    the session (what the fields cannot express falls back to) must find the same minutes."""
    from croniter import croniter

    timetable = KrxSessionTimetable(cron, timezone="Asia/Seoul")
    sessions = [default_calendar().session(date(2026, 11, 19)), default_calendar().session(date(2026, 11, 25)),
                default_calendar().session(date(2026, 11, 25), Venue.UNIFIED)]  # CSAT day, a regular day, 08:00-20:00
    for session in sessions:
        first, last = session.open + timedelta(minutes=1), session.close + CLOSING_PRINT_GRACE
        walk = croniter(cron, start_time=(first - timedelta(minutes=1)).replace(tzinfo=None))
        ticked = set()
        while (tick := walk.get_next(datetime).replace(tzinfo=KST)) <= last:
            ticked.add(tick)
        minutes = [first + timedelta(minutes=i) for i in range(int((last - first).total_seconds() // 60) + 1)]
        assert timetable.extra_minutes(session) == [m for m in minutes if m not in ticked], (cron, session)


# --- manual runs: never dated ahead of the clock --------------------------------------------------


@pytest.mark.parametrize(
    "timetable", [KrxSessionTimetable(), KisCronTimetable("0 16 * * 1-5", timezone="Asia/Seoul")], ids=["minute", "daily"]
)
def test_a_manual_run_dated_ahead_of_the_clock_is_refused_with_the_way_out(timetable) -> None:
    """The trigger form fills in the browser's time: in a replay, days ahead of the stack's clock,
    and Airflow would start none of the run's tasks before then while the run holds the DAG."""
    now = pendulum.now("UTC")
    browser = now.add(days=3, hours=4, minutes=40, seconds=30)
    with pytest.raises(ValueError) as refused:
        timetable.infer_manual_data_interval(run_after=browser)
    message = str(refused.value)
    assert f"The logical date {browser.in_timezone('Asia/Seoul'):%Y-%m-%d %H:%M} KST is 3 days 4 h 40 min ahead" in message
    assert f"of this Airflow's clock ({now.in_timezone('Asia/Seoul'):%Y-%m-%d %H}:" in message
    assert "Clear the logical date" in message
    # A browser a little fast, or a date in the past, is a run as before.
    for logical_date in (now.add(seconds=MANUAL_RUN_LEAD.total_seconds() - 60), now.subtract(days=2)):
        assert timetable.infer_manual_data_interval(run_after=logical_date).end == logical_date


@pytest.mark.parametrize("dag_id", ["kis_minute_bars", "kis_minute_backfill", "kis_minute_backfill_nextrade", "kis_maintenance"])
def test_the_api_server_refuses_a_trigger_dated_ahead_and_takes_one_without_a_date(dagbag, dag_id: str) -> None:
    """What ``POST /api/v2/dags/{dag_id}/dagRuns`` (the trigger form) does with the body, on the DAG
    as the API server has it: a ValueError here is its 400 with the message."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.get_dag(dag_id)))
    assert isinstance(served.timetable, (KrxSessionTimetable, KisCronTimetable))
    ahead = TriggerDAGRunPostBody(logical_date=pendulum.now("UTC").add(days=3), conf={})
    with pytest.raises(ValueError, match="ahead of this Airflow's clock"):
        ahead.validate_context(served)
    cleared = TriggerDAGRunPostBody(logical_date=None, conf={}).validate_context(served)
    assert cleared["logical_date"] is None and cleared["data_interval"] is None


def test_the_plugin_registers_the_daily_timetable() -> None:
    from airflow import plugins_manager
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    assert plugins_manager.get_timetables_plugins()["kis.timetable.KisCronTimetable"] is KisCronTimetable
    timetable = KisCronTimetable("0 16 * * 1-5", timezone="Asia/Seoul")
    decoded = decode_timetable(encode_timetable(timetable))
    assert type(decoded) is KisCronTimetable and decoded.summary == "0 16 * * 1-5"

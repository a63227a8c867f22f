"""The KRX calendar against every fact of docs/krx-sessions.md for 2024-2026."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from kis.calendar import KST, KrxCalendar, Session, default_calendar, trading_day
from kis.venues import Venue, parse_venues

CAL = default_calendar()

WEEKDAY_CLOSURES_2026 = [
    "01-01", "02-16", "02-17", "02-18", "03-02", "05-01", "05-05", "05-25", "06-03",
    "07-17", "08-17", "09-24", "09-25", "10-05", "10-09", "12-25", "12-31",
]  # fmt: skip


def kst(day: str, hhmmss: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(hhmmss), tzinfo=KST)


@pytest.mark.parametrize(("year", "sessions"), [(2024, 244), (2025, 242), (2026, 244)])
def test_session_count_per_year(year: int, sessions: int) -> None:
    assert len(CAL.sessions_between(date(year, 1, 1), date(year, 12, 31))) == sessions


def test_every_2026_weekday_closure_and_nothing_else() -> None:
    closures = {date.fromisoformat(f"2026-{md}") for md in WEEKDAY_CLOSURES_2026}
    day = date(2026, 1, 1)
    while day.year == 2026:
        expected = day.weekday() < 5 and day not in closures
        assert CAL.is_session(day) is expected, day
        day += timedelta(days=1)


@pytest.mark.parametrize(
    "closed",
    ["2026-06-03", "2026-07-17", "2026-12-31", "2024-10-01", "2025-01-27", "2024-12-31", "2025-12-31"],
)
def test_named_closures(closed: str) -> None:
    day = date.fromisoformat(closed)
    assert CAL.session(day) is None
    assert CAL.expected_bars(day) == ()


@pytest.mark.parametrize(("weekend_year", "closed"), [(2022, "2022-12-30"), (2023, "2023-12-29")])
def test_year_end_closure_moves_to_last_business_day(weekend_year: int, closed: str) -> None:
    assert date(weekend_year, 12, 31).weekday() >= 5
    assert not CAL.is_session(date.fromisoformat(closed))


def test_weekends_are_closed() -> None:
    assert not CAL.is_session(date(2026, 11, 28))
    assert not CAL.is_session(date(2026, 11, 29))


def test_normal_day_grid() -> None:
    session = CAL.session(date(2026, 11, 25))
    assert session is not None
    bars = session.bar_minutes
    assert len(bars) == 381
    assert bars[0] == kst("2026-11-25", "09:00")
    assert bars[-2] == kst("2026-11-25", "15:19")
    assert bars[-1] == session.closing_bar == session.close == kst("2026-11-25", "15:30")
    assert all(b - a == timedelta(minutes=1) for a, b in zip(bars[:-2], bars[1:-1], strict=True))
    assert CAL.expected_bars(date(2026, 11, 25)) == bars


@pytest.mark.parametrize("first_day", ["2024-01-02", "2025-01-02", "2026-01-02"])
def test_first_day_of_year_opens_at_ten(first_day: str) -> None:
    bars = CAL.expected_bars(date.fromisoformat(first_day))
    assert len(bars) == 321
    assert bars[0] == kst(first_day, "10:00")
    assert bars[-2:] == (kst(first_day, "15:19"), kst(first_day, "15:30"))


def test_first_day_rule_holds_without_the_table(tmp_path: Path) -> None:
    empty = tmp_path / "none.csv"
    empty.write_text("date,open,close,note\n")
    calendar = KrxCalendar(empty)
    assert len(calendar.expected_bars(date(2026, 1, 2))) == 321
    assert len(calendar.expected_bars(date(2027, 1, 4))) == 321  # 2027-01-01 Fri, then a weekend


@pytest.mark.parametrize("csat", ["2024-11-14", "2025-11-13", "2026-11-19"])
def test_csat_day_is_one_hour_late(csat: str) -> None:
    session = CAL.session(date.fromisoformat(csat))
    assert session is not None
    assert (session.open, session.close) == (kst(csat, "10:00"), kst(csat, "16:30"))
    assert len(session.bar_minutes) == 381
    assert session.bar_minutes[-2] == kst(csat, "16:19")
    assert session.closing_bar == kst(csat, "16:30")


@pytest.mark.parametrize(
    ("at", "last_closed", "in_window"),
    [
        ("08:59", None, False),
        ("09:00", None, False),
        ("09:00:59", None, False),
        ("09:01", "09:00", True),
        ("15:19:59", "15:18", True),
        ("15:20", "15:19", True),
        ("15:30:30", "15:19", True),
        ("15:31", "15:30", True),
        ("15:35", "15:30", True),
        ("15:36", "15:30", False),
        ("15:45", "15:30", False),
        ("16:10", "15:30", False),
    ],
)
def test_last_closed_minute_and_window_on_a_normal_day(at: str, last_closed: str | None, in_window: bool) -> None:
    day = "2026-11-25"
    expected = kst(day, last_closed) if last_closed else None
    assert CAL.last_closed_minute(kst(day, at)) == expected
    assert CAL.in_collection_window(kst(day, at)) is in_window


@pytest.mark.parametrize(
    ("at", "last_closed", "in_window"),
    [
        ("09:30", None, False),
        ("10:00", None, False),
        ("10:01", "10:00", True),
        ("15:45", "15:44", True),
        ("16:10", "16:09", True),
        ("16:25", "16:19", True),
        ("16:31", "16:30", True),
        ("16:35", "16:30", True),
        ("16:36", "16:30", False),
    ],
)
def test_last_closed_minute_and_window_on_csat_day(at: str, last_closed: str | None, in_window: bool) -> None:
    day = "2026-11-19"
    expected = kst(day, last_closed) if last_closed else None
    assert CAL.last_closed_minute(kst(day, at)) == expected
    assert CAL.in_collection_window(kst(day, at)) is in_window


def test_non_session_days_have_no_closed_minute_nor_window() -> None:
    for at in (kst("2026-12-31", "10:00"), kst("2026-11-28", "10:00")):
        assert CAL.last_closed_minute(at) is None
        assert not CAL.in_collection_window(at)


def test_aware_datetimes_in_any_zone_are_converted() -> None:
    at_utc = datetime(2026, 11, 25, 1, 31, tzinfo=UTC)  # 10:31 KST
    assert CAL.last_closed_minute(at_utc) == kst("2026-11-25", "10:30")
    # 2026-11-24 23:30 UTC is already 08:30 on the 25th in Seoul: before the open, not a day earlier.
    assert not CAL.in_collection_window(datetime(2026, 11, 24, 23, 30, tzinfo=UTC))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        CAL.last_closed_minute(datetime(2026, 11, 25, 10, 31))
    with pytest.raises(ValueError, match="naive"):
        CAL.in_collection_window(datetime(2026, 11, 25, 10, 31))


def test_user_table_adds_a_session_and_a_closure(tmp_path: Path) -> None:
    table = tmp_path / "special.csv"
    table.write_text(
        "# a comment line\n"
        "date,open,close,note\n"
        "2027-11-18,10:00,16:30,CSAT 2027\n"
        "2026-11-25,,,exchange outage\n"
        "2026-11-28,09:00,15:30,a Saturday session\n",
        encoding="utf-8",
    )
    calendar = KrxCalendar(table)
    csat = calendar.session(date(2027, 11, 18))
    assert csat == Session(date(2027, 11, 18), kst("2027-11-18", "10:00"), kst("2027-11-18", "16:30"))
    assert not calendar.is_session(date(2026, 11, 25))
    assert len(calendar.expected_bars(date(2026, 11, 28))) == 381
    # the default table knows none of these
    assert len(CAL.expected_bars(date(2027, 11, 18))) == 381
    assert CAL.session(date(2027, 11, 18)).open.time() == time(9, 0)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "row",
    ["2026-11-25,10:00,,half a row", "2026-11-25,15:30,15:35,too short", "2026-13-01,09:00,15:30,bad date"],
)
def test_bad_table_rows_fail_clearly(tmp_path: Path, row: str) -> None:
    table = tmp_path / "bad.csv"
    table.write_text(f"date,open,close,note\n{row}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv: data row 1"):
        KrxCalendar(table)


def test_sessions_between_is_inclusive_and_ordered() -> None:
    sessions = CAL.sessions_between(date(2026, 11, 19), date(2026, 11, 25))
    assert [s.day for s in sessions] == [date(2026, 11, d) for d in (19, 20, 23, 24, 25)]


# --- Nextrade and the unified view (include/venue_sessions.csv) -----------------------------------


def hhmm(minutes) -> list[str]:
    return [m.strftime("%H:%M") for m in minutes]


def test_nextrade_regular_day_has_its_three_segments_and_nothing_in_the_pauses() -> None:
    session = CAL.session(date(2026, 11, 25), Venue.NEXTRADE)
    assert [(s.name, s.open.time(), s.close.time()) for s in session.segments] == [
        ("pre_market", time(8, 0), time(8, 50)),
        ("main", time(9, 0), time(15, 20)),
        ("after_market", time(15, 40), time(20, 0)),
    ]
    grid = hhmm(session.bar_minutes)
    assert len(grid) == 50 + 380 + 260 == 690
    assert grid[0] == "08:00" and grid[49] == "08:49" and grid[50] == "09:00"
    assert grid[429] == "15:19" and grid[430] == "15:40" and grid[-1] == "19:59"
    assert session.closing_bar is None  # no closing auction on Nextrade
    assert trading_day(session) == (kst("2026-11-25", "08:00"), kst("2026-11-25", "20:05"))


def test_unified_grid_is_the_union_of_krx_and_nextrade() -> None:
    day = date(2026, 11, 25)
    unified = CAL.session(day, Venue.UNIFIED)
    assert set(unified.bar_minutes) == set(CAL.expected_bars(day)) | set(CAL.expected_bars(day, Venue.NEXTRADE))
    assert len(unified.bar_minutes) == 691 and list(unified.bar_minutes) == sorted(unified.bar_minutes)
    assert kst("2026-11-25", "15:30") in unified.bar_minutes  # KRX's closing bar, in Nextrade's pause


def test_nextrade_on_csat_day_and_before_its_launch() -> None:
    csat = CAL.session(date(2025, 11, 13), Venue.NEXTRADE)
    assert [(s.name, s.open.time(), s.close.time()) for s in csat.segments] == [
        ("main", time(10, 0), time(16, 20)),
        ("after_market", time(16, 40), time(20, 0)),
    ]  # no pre-market that day; its trading day still starts at 08:00 for what KIS serves
    assert trading_day(csat)[0] == kst("2025-11-13", "08:00")
    before = date(2025, 2, 28)
    assert CAL.session(before, Venue.NEXTRADE) is None
    assert CAL.expected_bars(before, Venue.UNIFIED) == CAL.expected_bars(before)
    assert CAL.session(date(2026, 11, 28), Venue.NEXTRADE) is None  # KRX's closures are Nextrade's


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("nxt,,lunch,12:00,13:00,", "segment 'lunch'"),
        ("krx,,main,09:00,15:20,", "venue 'krx'"),
        ("nxt,,main,15:20,09:00,", "not after open"),
        ("nxt,,pre_market,08:00,09:10,", "overlap"),
    ],
)
def test_bad_venue_session_rows_fail_clearly(tmp_path: Path, row: str, error: str) -> None:
    table = tmp_path / "venues.csv"
    table.write_text(f"venue,date,segment,open,close,note\nnxt,,main,09:00,15:20,\n{row}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=error):
        KrxCalendar(venue_sessions=table)


def test_venue_sessions_round_trip_through_their_rows() -> None:
    rebuilt = KrxCalendar(CAL.special_session_rows(), CAL.venue_session_rows())
    for day in (date(2025, 11, 13), date(2026, 11, 25)):
        for venue in Venue:
            assert rebuilt.session(day, venue) == CAL.session(day, venue)


@pytest.mark.parametrize(
    ("raw", "venues"),
    [(None, (Venue.KRX,)), ("", (Venue.KRX,)), ('["unified"]', (Venue.UNIFIED,)), ('["NXT", "krx", "nxt"]', (Venue.NEXTRADE, Venue.KRX))],
)
def test_kis_venues_variable(raw, venues) -> None:
    assert parse_venues(raw) == venues


@pytest.mark.parametrize(("raw", "error"), [('["bats"]', "unknown venue 'bats'"), ("[]", "non-empty"), ('"krx"', "non-empty")])
def test_bad_kis_venues_fail_clearly(raw, error) -> None:
    with pytest.raises(ValueError, match=error):
        parse_venues(raw)


def test_a_minute_runs_reach_is_one_page_of_the_today_endpoint() -> None:
    """The live gap check and the dashboard start a day's collection RUN_REACH before its first run:
    what one request of the today endpoint returns."""
    from kis.calendar import RUN_REACH
    from kis.endpoints import TODAY_MINUTES_PAGE_ROWS

    assert RUN_REACH == TODAY_MINUTES_PAGE_ROWS * timedelta(minutes=1)

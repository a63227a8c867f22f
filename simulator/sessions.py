"""The sessions the simulated market trades in: the simulator's own statement of KRX's and Nextrade's
hours, each fact with its source (docs/krx-sessions.md gives them at length).

The simulator stands in for the market, so its days come from this evidence, never from the
collector's calendar (``kis.calendar``), which they are the check of: tests/test_simulator_sessions.py
compares the two on every day of 2024-2026 and every venue, so a session grid wrong in either is
found by a test. The facts are written as they are reported (when continuous trading stops, when the
closing auction matches), not as the collector computes its grid from them.

The closures are listed for 2024-2026. Another year has only the rules below: weekends, January 1,
the year-end closure and the first trading day's late open. Its lunar holidays, elections, CSAT day
and Nextrade's special hours are not known: add them here, with their sources, before a test plays
such a day.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from datetime import date, datetime, time, timedelta

from kis.bar import KST
from kis.venues import Venue

__all__ = ["NEXTRADE_REGULAR", "Segment", "Session", "Sessions"]

ONE_MINUTE = timedelta(minutes=1)
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class KrxHours:
    """One day of KRX: continuous trading from ``opens`` until ``auction``, when the closing call
    auction starts; its single-price match at ``match`` is the day's last bar."""

    opens: time
    auction: time
    match: time


# Regular session: continuous trading 09:00-15:20, closing call auction 15:20-15:30 matched at 15:30
# (Donga 2026-01-14; Edaily 2025-03-04: Nextrade pauses "정규장 종료 전 10분 (15:20-15:30)" for it).
REGULAR = KrxHours(time(9, 0), time(15, 20), time(15, 30))
# The first trading day of every year opens an hour late for the opening ceremony and closes as usual
# (Hankyung 2019-12-31; Kukinews 2024-12-17 for 2025-01-02; Digital Today and Asiae 2025-12-18 for
# 2026-01-02; Maeil 2020-12-30 for 2021-01-04).
FIRST_DAY = KrxHours(time(10, 0), time(15, 20), time(15, 30))
# CSAT (수능) day: everything one hour late, the closing call 16:20-16:30 (Edaily 2025-11-12 and The
# Fact 2025-11-13 for 2025; Donga 2021-11-04 for the rule). 2026's notice not seen: assumed (S2).
CSAT = KrxHours(time(10, 0), time(16, 20), time(16, 30))
CSAT_DAYS = (date(2024, 11, 14), date(2025, 11, 13), date(2026, 11, 19))

# The weekday closures of KRX (휴장일) from 2024 to 2026. KRX closes on every public holiday, its
# substitute holidays and temporary holidays (유가증권시장 업무규정 제5조, as The Fact 2024-09-10 and
# Economist 2023-05-15 report), on Labor Day (May 1: Businesspost 2024-03-27, Joongang 2014) and on the
# last business day of the year (Kukinews 2024-12-17; CNB 2019: "매년 마지막 영업일은 주식시장은 휴장").
# The years' dates: trading-holidays.com's 2024 list, with Businesspost 2024-03-27 (the election of
# April 10) and The Fact 2024-09-10 (Armed Forces Day, temporary); the 2025 list of hola0829.tistory.com,
# with Newsis 2025-01-17 (January 27, temporary) and JoongAng Daily 2025-05-20 (the election of June 3);
# the 2026 list of b83.nicesongtoyou.com, with JoongAng 2026-01-28 and Segye 2026-02-04 (Constitution
# Day a public holiday again from 2026).
CLOSED = {
    date(2024, 1, 1): "New Year's Day",
    date(2024, 2, 9): "Seollal",
    date(2024, 2, 12): "Seollal, substitute holiday",
    date(2024, 3, 1): "Independence Movement Day",
    date(2024, 4, 10): "National Assembly election",
    date(2024, 5, 1): "Labor Day",
    date(2024, 5, 6): "Children's Day, substitute holiday",
    date(2024, 5, 15): "Buddha's Birthday",
    date(2024, 6, 6): "Memorial Day",
    date(2024, 8, 15): "Liberation Day",
    date(2024, 9, 16): "Chuseok",
    date(2024, 9, 17): "Chuseok",
    date(2024, 9, 18): "Chuseok",
    date(2024, 10, 1): "Armed Forces Day, temporary holiday",
    date(2024, 10, 3): "National Foundation Day",
    date(2024, 10, 9): "Hangul Day",
    date(2024, 12, 25): "Christmas",
    date(2024, 12, 31): "year-end closure",
    date(2025, 1, 1): "New Year's Day",
    date(2025, 1, 27): "temporary holiday",
    date(2025, 1, 28): "Seollal",
    date(2025, 1, 29): "Seollal",
    date(2025, 1, 30): "Seollal",
    date(2025, 3, 3): "Independence Movement Day, substitute holiday",
    date(2025, 5, 1): "Labor Day",
    date(2025, 5, 5): "Children's Day and Buddha's Birthday",
    date(2025, 5, 6): "substitute holiday",
    date(2025, 6, 3): "presidential election",
    date(2025, 6, 6): "Memorial Day",
    date(2025, 8, 15): "Liberation Day",
    date(2025, 10, 3): "National Foundation Day",
    date(2025, 10, 6): "Chuseok",
    date(2025, 10, 7): "Chuseok",
    date(2025, 10, 8): "Chuseok, substitute holiday",
    date(2025, 10, 9): "Hangul Day",
    date(2025, 12, 25): "Christmas",
    date(2025, 12, 31): "year-end closure",
    date(2026, 1, 1): "New Year's Day",
    date(2026, 2, 16): "Seollal",
    date(2026, 2, 17): "Seollal",
    date(2026, 2, 18): "Seollal",
    date(2026, 3, 2): "Independence Movement Day, substitute holiday",
    date(2026, 5, 1): "Labor Day",
    date(2026, 5, 5): "Children's Day",
    date(2026, 5, 25): "Buddha's Birthday, substitute holiday",
    date(2026, 6, 3): "local elections",
    date(2026, 7, 17): "Constitution Day",
    date(2026, 8, 17): "Liberation Day, substitute holiday",
    date(2026, 9, 24): "Chuseok",
    date(2026, 9, 25): "Chuseok",
    date(2026, 10, 5): "National Foundation Day, substitute holiday",
    date(2026, 10, 9): "Hangul Day",
    date(2026, 12, 25): "Christmas",
    date(2026, 12, 31): "year-end closure",
}
LISTED_YEARS = frozenset(day.year for day in CLOSED)

# Nextrade opened on 2025-03-04 (Edaily 2025-03-04; iMBC 2025-03-04) and trades on KRX's session days
# only (S7). Its segments: pre-market 08:00-08:50, main market 09:00-15:20, paused while KRX runs its
# opening and closing auctions (Edaily 2025-03-04); after-market orders from 15:30, continuous trading
# 15:40-20:00 (S6: Kiwoom's guide as relayed by kkong1003.tistory.com).
NEXTRADE_LAUNCH = date(2025, 3, 4)
NEXTRADE_REGULAR: Mapping[str, tuple[time, time]] = {
    "pre_market": (time(8, 0), time(8, 50)),
    "main": (time(9, 0), time(15, 20)),
    "after_market": (time(15, 40), time(20, 0)),
}
# Days on which Nextrade keeps other hours; a segment left out is not held.
NEXTRADE_DAYS: Mapping[date, Mapping[str, tuple[time, time]]] = {
    # CSAT day: no pre-market, main 10:00-16:20, after-market one hour late, the close unchanged
    # (Nextrade's notice as Herald Economy, The Fact and Aju News reported it, 2025-10-30).
    date(2025, 11, 13): {"main": (time(10, 0), time(16, 20)), "after_market": (time(16, 40), time(20, 0))},
    # The first trading day of 2026: no pre-market, the main market from 10:00:30, closing as usual
    # (Asiae 2025-12-18; News1 2025-12-31; Kukinews 2026-01-02).
    date(2026, 1, 2): {"main": (time(10, 0), time(15, 20)), "after_market": (time(15, 40), time(20, 0))},
    # CSAT 2026: assumed as in 2025 (S8).
    date(2026, 11, 19): {"main": (time(10, 0), time(16, 20)), "after_market": (time(16, 40), time(20, 0))},
}


@dataclass(frozen=True)
class Segment:
    """A stretch of a venue's day with a bar every minute: KRX's ``regular`` session (its closing
    print included), or Nextrade's ``pre_market``, ``main`` or ``after_market``."""

    name: str
    bar_minutes: tuple[datetime, ...]


@dataclass(frozen=True)
class Session:
    """One venue's trading day in the simulated market."""

    day: date
    venue: Venue
    segments: tuple[Segment, ...]
    closing_print: datetime | None = None  # KRX's closing-auction match, when the day has KRX's session

    @cached_property
    def bar_minutes(self) -> tuple[datetime, ...]:
        """Every minute with a bar, in time order, each once."""
        return tuple(sorted({minute for segment in self.segments for minute in segment.bar_minutes}))

    @property
    def open(self) -> datetime:
        """The first bar of the day."""
        return self.bar_minutes[0]


class Sessions:
    """Which days each venue trades, and its minutes, from the facts above.

    :param nextrade_regular: Nextrade's segments on a regular day (a test plays other hours than
        the collector's calendar with it, e.g. an after-market trading from 15:30).
    """

    def __init__(self, nextrade_regular: Mapping[str, tuple[time, time]] = NEXTRADE_REGULAR) -> None:
        self.nextrade_regular = dict(nextrade_regular)
        self._sessions: dict[tuple[date, Venue], Session | None] = {}

    def session(self, day: date, venue: Venue = Venue.KRX) -> Session | None:
        """``venue``'s day, or None when it does not trade."""
        if (day, venue) not in self._sessions:
            self._sessions[(day, venue)] = self._session(day, venue)
        return self._sessions[(day, venue)]

    def _session(self, day: date, venue: Venue) -> Session | None:
        hours = self._krx_hours(day)
        if hours is None:
            return None
        krx = _krx_segment(day, hours)
        match = datetime.combine(day, hours.match, tzinfo=KST)
        if venue is Venue.KRX:
            return Session(day, venue, (krx,), match)
        nextrade = self._nextrade_segments(day)
        if venue is Venue.NEXTRADE:
            return Session(day, venue, nextrade) if nextrade else None
        # The unified view (KIS's UN): both venues' minutes; KRX's alone before Nextrade opened (K11).
        return Session(day, venue, (krx, *nextrade), match)

    def sessions_between(self, start: date, end: date, venue: Venue = Venue.KRX) -> list[Session]:
        """Every session of ``venue`` from ``start`` to ``end``, both included, in date order."""
        days = (start + timedelta(days=i) for i in range((end - start).days + 1))
        return [session for day in days if (session := self.session(day, venue)) is not None]

    def _krx_hours(self, day: date) -> KrxHours | None:
        if _closed(day):
            return None
        if day in CSAT_DAYS:
            return CSAT
        return FIRST_DAY if day == _first_trading_day(day.year) else REGULAR


    def _nextrade_segments(self, day: date) -> tuple[Segment, ...]:
        if day < NEXTRADE_LAUNCH:
            return ()
        hours = NEXTRADE_DAYS.get(day, self.nextrade_regular)
        return tuple(
            Segment(name, _minutes(day, opens, closes))
            for name, (opens, closes) in sorted(hours.items(), key=lambda item: item[1])
        )


def _closed(day: date) -> bool:
    if day.weekday() >= 5 or day in CLOSED:
        return True
    if day.year in LISTED_YEARS:
        return False
    # A year not listed: the rules only, January 1 and the year-end closure on its last weekday.
    year_end = date(day.year, 12, 31)
    while year_end.weekday() >= 5:
        year_end -= ONE_DAY
    return (day.month, day.day) == (1, 1) or day == year_end


@functools.cache
def _first_trading_day(year: int) -> date:
    day = date(year, 1, 1)
    while _closed(day):
        day += ONE_DAY
    return day


def _krx_segment(day: date, hours: KrxHours) -> Segment:
    match = datetime.combine(day, hours.match, tzinfo=KST)
    return Segment("regular", (*_minutes(day, hours.opens, hours.auction), match))


def _minutes(day: date, first: time, end: time) -> tuple[datetime, ...]:
    """The bars of continuous trading from ``first`` until ``end``: each minute's bar is labelled by
    its start, so the last starts a minute before ``end``."""
    minute, stop = datetime.combine(day, first, tzinfo=KST), datetime.combine(day, end, tzinfo=KST)
    minutes = []
    while minute < stop:
        minutes.append(minute)
        minute += ONE_MINUTE
    return tuple(minutes)

"""KRX trading sessions and the expected minute-bar grid of each (see docs/krx-sessions.md).

Three sources decide a date, the later overriding the earlier:

1. weekends and the ``holidays`` library's ``KoreaExchange`` (public holidays, elections, temporary
   holidays, and the year-end closure, which the library already moves to the last business day
   when December 31 falls on a weekend);
2. the rule that the first trading day of every year opens at 10:00;
3. the special-sessions table ``include/krx_special_sessions.csv`` (CSAT days, extra closures, any
   future change of hours), which a user extends without touching code.

Bars are labelled by the start of their minute, as KIS labels them: a regular day has the
continuous bars 09:00…15:19 and the closing-auction bar 15:30, 381 in all.

Nextrade trades on KRX's session days in the segments of ``include/venue_sessions.csv`` (regular:
08:00-08:50, 09:00-15:20, 15:30-20:00, 700 bars); the unified view's grid is the union of both.
"""

from __future__ import annotations

import csv
import functools
import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path

# Imported by name, not through ``holidays.financial_holidays``, which loads it on first use: then
# every task process of the minute DAG paid ~0.15 CPU-s for it instead of the preloading parent.
from holidays.financial.korea_exchange import KoreaExchange

from kis.bar import KST
from kis.venues import Venue

__all__ = [
    "CLOSING_AUCTION",
    "CLOSING_PRINT_GRACE",
    "DEFAULT_SPECIAL_SESSIONS",
    "KST",
    "NEXTRADE_LAUNCH",
    "ONE_MINUTE",
    "KrxCalendar",
    "Segment",
    "Session",
    "default_calendar",
    "trading_day",
]

DEFAULT_SPECIAL_SESSIONS = Path(__file__).parents[2] / "include" / "krx_special_sessions.csv"
DEFAULT_VENUE_SESSIONS = Path(__file__).parents[2] / "include" / "venue_sessions.csv"
NEXTRADE_LAUNCH = date(2025, 3, 4)
NEXTRADE_SEGMENTS = ("pre_market", "main", "after_market")
# Nextrade's day starts at 08:00 even when a segment is not held (CSAT day has no pre-market).
VENUE_DAY_START = time(8, 0)

ONE_MINUTE = timedelta(minutes=1)
# The closing call auction takes the last 10 minutes before the close and has no bars of its own.
CLOSING_AUCTION = timedelta(minutes=10)
# The closing print has been seen as late as 15:32: collection keeps going a little after the close.
CLOSING_PRINT_GRACE = timedelta(minutes=5)
# How far back a minute run reaches: the 30 closed bars of one page of the today endpoint
# (kis.endpoints.TODAY_MINUTES_PAGE_ROWS). A run re-reads them all, so a minute one run missed is
# healed by the next; collection of a day began this long before its first minute run.
RUN_REACH = 30 * ONE_MINUTE

REGULAR_OPEN = time(9, 0)
REGULAR_CLOSE = time(15, 30)
FIRST_DAY_OPEN = time(10, 0)


@dataclass(frozen=True)
class Segment:
    """A stretch of one venue's trading day with a bar every minute (KRX's regular session, or a
    Nextrade pre-market, main or after-market)."""

    name: str
    open: datetime  # aware KST: the first bar
    close: datetime  # aware KST: when it ends; KRX's closing-auction match, which is a bar of its own
    closing_auction: bool = False

    @property
    def bar_minutes(self) -> tuple[datetime, ...]:
        """Every minute of continuous trading, then the closing bar when the segment has one."""
        end = self.close - CLOSING_AUCTION if self.closing_auction else self.close
        continuous = tuple(self.open + i * ONE_MINUTE for i in range(int((end - self.open) / ONE_MINUTE)))
        return continuous + ((self.close,) if self.closing_auction else ())


@dataclass(frozen=True)
class Session:
    """One venue's trading day: when its first bar starts and when its day ends.

    KRX's (the default) is one segment from the open to the closing-auction match; Nextrade's and
    the unified view's have several, given by ``segments``.
    """

    day: date
    open: datetime  # aware KST: the first bar
    close: datetime  # aware KST: KRX's closing-auction match (the closing bar); else the day's end
    venue: Venue = Venue.KRX
    segments: tuple[Segment, ...] = ()

    def __post_init__(self) -> None:
        if not self.segments:
            regular = Segment("regular", self.open, self.close, closing_auction=True)
            object.__setattr__(self, "segments", (regular,))

    @cached_property
    def bar_minutes(self) -> tuple[datetime, ...]:
        """The expected bar grid: every segment's bars, in time order, each minute once."""
        return tuple(sorted({minute for segment in self.segments for minute in segment.bar_minutes}))

    @property
    def closing_bar(self) -> datetime | None:
        """The closing-auction bar that ends the day (KRX's), or None when the day ends without one."""
        last = max(self.segments, key=lambda segment: segment.close)
        return last.close if last.closing_auction else None


@dataclass(frozen=True)
class _Override:
    """One row of the special-sessions table; ``hours`` is None for a closure."""

    hours: tuple[time, time] | None
    note: str


class KrxCalendar:
    """Answers which dates are sessions, their hours, and which bars should exist at a moment.

    :param special_sessions: the special-sessions CSV; defaults to ``include/krx_special_sessions.csv``.
        Rows (mappings with the CSV's columns, as :meth:`special_session_rows` returns them) are taken
        as they are: a timetable carries them in its serialized form and rebuilds the calendar from them.
    """

    def __init__(
        self,
        special_sessions: Path | Iterable[Mapping[str, str]] | None = None,
        venue_sessions: Path | Iterable[Mapping[str, str]] | None = None,
    ) -> None:
        if special_sessions is None or isinstance(special_sessions, Path):
            self._overrides = _read_special_sessions(special_sessions or DEFAULT_SPECIAL_SESSIONS)
        else:
            self._overrides = _parse_special_sessions(special_sessions, "special sessions")
        if venue_sessions is None or isinstance(venue_sessions, Path):
            rows, source = _read_rows(venue_sessions or DEFAULT_VENUE_SESSIONS), str(venue_sessions or DEFAULT_VENUE_SESSIONS)
        else:
            rows, source = list(venue_sessions), "venue sessions"
        self._nextrade = _parse_venue_sessions(rows, source)
        self._closed_by_year: dict[int, frozenset[date]] = {}
        self._first_day_by_year: dict[int, date | None] = {}
        # The simulator and Airflow workers may ask from several threads; the per-year caches are
        # filled at most once each.
        self._lock = threading.Lock()

    def is_session(self, day: date) -> bool:
        return self.session(day) is not None

    def session(self, day: date, venue: Venue = Venue.KRX) -> Session | None:
        """The session of ``day`` on ``venue``, or None when it does not trade that day."""
        krx = self._krx_session(day)
        if venue is Venue.KRX or krx is None:
            return krx
        nextrade = self._nextrade_segments(day)
        if not nextrade:
            return None if venue is Venue.NEXTRADE else replace(krx, venue=venue)
        segments = tuple(sorted(nextrade + (krx.segments if venue is Venue.UNIFIED else ()), key=lambda s: s.open))
        return Session(
            day=day,
            open=min(s.open for s in segments),
            close=max(s.close for s in segments),
            venue=venue,
            segments=segments,
        )

    def _krx_session(self, day: date) -> Session | None:
        override = self._overrides.get(day)
        if override is not None:
            return _make_session(day, *override.hours) if override.hours else None
        if not self._is_regular_trading_day(day):
            return None
        opens = FIRST_DAY_OPEN if self._first_trading_day(day.year) == day else REGULAR_OPEN
        return _make_session(day, opens, REGULAR_CLOSE)

    def _nextrade_segments(self, day: date) -> tuple[Segment, ...]:
        if day < NEXTRADE_LAUNCH:
            return ()
        hours = self._nextrade.get(day, self._nextrade.get(None, {}))
        return tuple(
            Segment(name, datetime.combine(day, opens, tzinfo=KST), datetime.combine(day, closes, tzinfo=KST))
            for name, (opens, closes) in sorted(
                ((name, held) for name, held in hours.items() if held is not None), key=lambda item: item[1][0]
            )
        )

    def expected_bars(self, day: date, venue: Venue = Venue.KRX) -> tuple[datetime, ...]:
        """The bar grid of ``day`` on ``venue``; empty on a day without a session."""
        session = self.session(day, venue)
        return session.bar_minutes if session else ()

    def last_closed_minute(self, at: datetime, venue: Venue = Venue.KRX) -> datetime | None:
        """The start of the newest bar of ``venue``'s grid whose minute has ended at ``at``.

        Bar ``m`` is closed at ``m + 1 minute``; the closing bar therefore from ``close + 1 minute``.
        None before the first bar closes and on days without a session.
        """
        at = _to_kst(at)
        session = self.session(at.date(), venue)
        if session is None:
            return None
        closed = [m for m in session.bar_minutes if m + ONE_MINUTE <= at]
        return closed[-1] if closed else None

    def in_collection_window(self, at: datetime, venue: Venue = Venue.KRX) -> bool:
        """Whether a collection run at ``at`` has a closed bar of ``venue`` to fetch and its day is not over."""
        at = _to_kst(at)
        session = self.session(at.date(), venue)
        if session is None:
            return False
        return session.open + ONE_MINUTE <= at <= session.close + CLOSING_PRINT_GRACE

    def special_session_rows(self) -> list[dict[str, str]]:
        """The special-sessions table as rows of its CSV columns, in date order (blank hours: closed)."""
        return [
            {
                "date": day.isoformat(),
                "open": override.hours[0].strftime("%H:%M") if override.hours else "",
                "close": override.hours[1].strftime("%H:%M") if override.hours else "",
                "note": override.note,
            }
            for day, override in sorted(self._overrides.items())
        ]

    def venue_session_rows(self) -> list[dict[str, str]]:
        """The venue-sessions table as rows of its CSV columns (blank hours: segment not held)."""
        return [
            {
                "venue": Venue.NEXTRADE.value,
                "date": day.isoformat() if day else "",
                "segment": name,
                "open": hours[0].strftime("%H:%M") if hours else "",
                "close": hours[1].strftime("%H:%M") if hours else "",
            }
            for day, segments in sorted(self._nextrade.items(), key=lambda item: item[0] or date.min)
            for name, hours in segments.items()
        ]

    def sessions_between(self, start: date, end: date, venue: Venue = Venue.KRX) -> list[Session]:
        """Every session of ``venue`` from ``start`` to ``end``, both included, in date order."""
        days = (start + timedelta(days=i) for i in range((end - start).days + 1))
        return [s for day in days if (s := self.session(day, venue)) is not None]

    def _is_regular_trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self._closed_days(day.year)

    def _closed_days(self, year: int) -> frozenset[date]:
        with self._lock:
            if year not in self._closed_by_year:
                self._closed_by_year[year] = frozenset(KoreaExchange(years=year))
            return self._closed_by_year[year]

    def load_years(self, *years: int) -> None:
        """Computes the closed days of ``years`` now instead of on first use (the task preload
        does, so that every task process forked after it finds them computed)."""
        for year in years:
            self._first_trading_day(year)

    def _first_trading_day(self, year: int) -> date | None:
        """The first weekday of ``year`` that is not a holiday (overrides do not move the rule)."""
        if year not in self._first_day_by_year:
            candidates = (date(year, 1, 1) + timedelta(days=i) for i in range(31))
            first = next((d for d in candidates if self._is_regular_trading_day(d)), None)
            self._first_day_by_year[year] = first
        return self._first_day_by_year[year]


def trading_day(session: Session) -> tuple[datetime, datetime]:
    """The first and last minute a served bar of ``session``'s venue is stored at, whatever the grid.

    KRX: the open to the closing print's grace. Nextrade and the unified view: 08:00 (or the first
    segment, if earlier) to the end of the day plus the same grace, so that a bar in a pause or a
    segment that moved is stored and reported, never dropped.
    """
    first, last = session.open, session.close + CLOSING_PRINT_GRACE
    if session.venue is not Venue.KRX:
        first = min(first, datetime.combine(session.day, VENUE_DAY_START, tzinfo=KST))
    return first, last


@functools.cache
def default_calendar() -> KrxCalendar:
    """The calendar of the default special-sessions table, built once per process."""
    return KrxCalendar()


def _make_session(day: date, opens: time, closes: time) -> Session:
    return Session(
        day=day,
        open=datetime.combine(day, opens, tzinfo=KST),
        close=datetime.combine(day, closes, tzinfo=KST),
    )


def _to_kst(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: give a time-zone aware datetime (e.g. KST)")
    return at.astimezone(KST)


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The data rows of a CSV table of ``include/``; ``#`` lines are comments."""
    with path.open(encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
    return list(csv.DictReader(lines))


def _read_special_sessions(path: Path) -> dict[date, _Override]:
    """Parse the special-sessions CSV. Errors name the file and data row."""
    return _parse_special_sessions(_read_rows(path), str(path))


# Nextrade's segments by date (None: the regular days), each segment's hours or None when not held.
_VenueHours = dict[date | None, dict[str, tuple[time, time] | None]]


def _parse_venue_sessions(rows: Iterable[Mapping[str, str]], source: str) -> _VenueHours:
    """Parse rows of the venue-sessions table; errors name ``source`` and the data row."""
    hours: _VenueHours = {}
    for number, row in enumerate(rows, start=1):
        try:
            venue, segment = (row.get(k, "").strip() for k in ("venue", "segment"))
            if venue != Venue.NEXTRADE.value:
                raise ValueError(f"venue {venue!r}: only {Venue.NEXTRADE.value!r} has segments here")
            if segment not in NEXTRADE_SEGMENTS:
                raise ValueError(f"segment {segment!r}: choose from {', '.join(NEXTRADE_SEGMENTS)}")
            day = date.fromisoformat(row["date"].strip()) if (row.get("date") or "").strip() else None
            opens, closes = (row.get(k, "").strip() for k in ("open", "close"))
            held = None
            if opens or closes:
                held = (time.fromisoformat(opens), time.fromisoformat(closes))
                if held[1] <= held[0]:
                    raise ValueError(f"close {closes} is not after open {opens}")
            segments = hours.setdefault(day, {})
            if segment in segments:
                raise ValueError(f"segment {segment} appears twice for {day or 'the regular days'}")
            segments[segment] = held
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: data row {number}: {err}") from err
    for day, segments in hours.items():
        held = sorted(h for h in segments.values() if h is not None)
        if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(held)):
            raise ValueError(f"{source}: the segments of {day or 'the regular days'} overlap")
    return hours


def _parse_special_sessions(rows: Iterable[Mapping[str, str]], source: str) -> dict[date, _Override]:
    """Parse rows of the special-sessions table; errors name ``source`` and the data row."""
    overrides: dict[date, _Override] = {}
    for number, row in enumerate(rows, start=1):
        try:
            day = date.fromisoformat(row["date"].strip())
            opens, closes = (row.get(k, "").strip() for k in ("open", "close"))
            if not opens and not closes:
                hours = None
            else:
                hours = (time.fromisoformat(opens), time.fromisoformat(closes))
                if datetime.combine(day, hours[1]) - CLOSING_AUCTION <= datetime.combine(day, hours[0]):
                    raise ValueError(f"close {closes} leaves no continuous session after open {opens}")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: data row {number}: {err}") from err
        overrides[day] = _Override(hours=hours, note=(row.get("note") or "").strip())
    return overrides

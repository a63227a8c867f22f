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
"""

from __future__ import annotations

import csv
import functools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path

# Imported by name, not through ``holidays.financial_holidays``, which loads it on first use: then
# every task process of the minute DAG paid ~0.15 CPU-s for it instead of the preloading parent.
from holidays.financial.korea_exchange import KoreaExchange

from kis.bars import KST

__all__ = [
    "CLOSING_AUCTION",
    "CLOSING_PRINT_GRACE",
    "DEFAULT_SPECIAL_SESSIONS",
    "KST",
    "ONE_MINUTE",
    "KrxCalendar",
    "Session",
    "default_calendar",
]

DEFAULT_SPECIAL_SESSIONS = Path(__file__).parents[2] / "include" / "krx_special_sessions.csv"

ONE_MINUTE = timedelta(minutes=1)
# The closing call auction takes the last 10 minutes before the close and has no bars of its own.
CLOSING_AUCTION = timedelta(minutes=10)
# The closing print has been seen as late as 15:32: collection keeps going a little after the close.
CLOSING_PRINT_GRACE = timedelta(minutes=5)

REGULAR_OPEN = time(9, 0)
REGULAR_CLOSE = time(15, 30)
FIRST_DAY_OPEN = time(10, 0)


@dataclass(frozen=True)
class Session:
    """One KRX trading day: when continuous trading starts and when the closing auction matches."""

    day: date
    open: datetime  # aware KST: the first bar
    close: datetime  # aware KST: the closing-auction match, labelled as the closing bar

    @cached_property
    def bar_minutes(self) -> tuple[datetime, ...]:
        """The expected bar grid: every minute of continuous trading, then the closing bar."""
        continuous_end = self.close - CLOSING_AUCTION
        count = int((continuous_end - self.open) / ONE_MINUTE)
        return tuple(self.open + i * ONE_MINUTE for i in range(count)) + (self.close,)

    @property
    def closing_bar(self) -> datetime:
        return self.close


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

    def __init__(self, special_sessions: Path | Iterable[Mapping[str, str]] | None = None) -> None:
        if special_sessions is None or isinstance(special_sessions, Path):
            self._overrides = _read_special_sessions(special_sessions or DEFAULT_SPECIAL_SESSIONS)
        else:
            self._overrides = _parse_special_sessions(special_sessions, "special sessions")
        self._closed_by_year: dict[int, frozenset[date]] = {}
        self._first_day_by_year: dict[int, date | None] = {}
        # The simulator and Airflow workers may ask from several threads; the per-year caches are
        # filled at most once each.
        self._lock = threading.Lock()

    def is_session(self, day: date) -> bool:
        return self.session(day) is not None

    def session(self, day: date) -> Session | None:
        """The session of ``day``, or None when KRX is closed that day."""
        override = self._overrides.get(day)
        if override is not None:
            return _make_session(day, *override.hours) if override.hours else None
        if not self._is_regular_trading_day(day):
            return None
        opens = FIRST_DAY_OPEN if self._first_trading_day(day.year) == day else REGULAR_OPEN
        return _make_session(day, opens, REGULAR_CLOSE)

    def expected_bars(self, day: date) -> tuple[datetime, ...]:
        """The bar grid of ``day``; empty on a day without a session."""
        session = self.session(day)
        return session.bar_minutes if session else ()

    def last_closed_minute(self, at: datetime) -> datetime | None:
        """The start of the newest bar of the grid whose minute has ended at ``at``.

        Bar ``m`` is closed at ``m + 1 minute``; the closing bar therefore from ``close + 1 minute``.
        None before the first bar closes and on days without a session.
        """
        at = _to_kst(at)
        session = self.session(at.date())
        if session is None:
            return None
        closed = [m for m in session.bar_minutes if m + ONE_MINUTE <= at]
        return closed[-1] if closed else None

    def in_collection_window(self, at: datetime) -> bool:
        """Whether a collection run at ``at`` has a closed bar to fetch and the session is not over."""
        at = _to_kst(at)
        session = self.session(at.date())
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

    def sessions_between(self, start: date, end: date) -> list[Session]:
        """Every session from ``start`` to ``end``, both included, in date order."""
        days = (start + timedelta(days=i) for i in range((end - start).days + 1))
        return [s for s in map(self.session, days) if s is not None]

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


def _read_special_sessions(path: Path) -> dict[date, _Override]:
    """Parse the special-sessions CSV; ``#`` lines are comments. Errors name the file and line."""
    with path.open(encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
    return _parse_special_sessions(csv.DictReader(lines), str(path))


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

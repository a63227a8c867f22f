"""What the market archive covers, and how far it is: the universe it selects (Variable
``kis_archive_universe``) and, for the dashboard, its progress over the days KIS still serves.

The archive's unit is a code-day: one code's whole day on one venue, settled once verified
(``is_settled``, migration 020). Its progress counts, per month, the code-days a run of each day
would cover (archive_progress.sql: the same selection as the run's gate) and those settled; what
is left is priced in KIS requests at the cheapest endpoint for the day (docs/kis-api.md, "The
cheapest way to a whole day") and in time at the archive keys' paced rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any

from kis.bar import KST
from kis.calendar import KrxCalendar, Session
from kis.code_alerts import NOT_ON_VENUE, UNKNOWN_CODE
from kis.endpoints import PAST_MINUTES_PAGE_ROWS, TODAY_MINUTES_PAGE_ROWS
from kis.masters import StockMarket
from kis.resources import load_sql
from kis.venues import Venue

UNIVERSE_VARIABLE = "kis_archive_universe"
DEFAULT_UNIVERSE = '{"markets": ["KOSPI", "KOSDAQ"], "groups": ["ST"]}'
# KIS keeps about a year of minute bars ("최대 1년 분봉 보관", docs/kis-api.md, FHKST03010230).
HISTORY = timedelta(days=365)


@dataclass(frozen=True)
class UniverseSelection:
    """Which codes of the universe the archive covers: ``markets`` and security ``groups`` (None: all)."""

    markets: tuple[StockMarket, ...] | None
    groups: tuple[str, ...] | None

    @classmethod
    def parse(cls, raw: str | None) -> UniverseSelection:
        """A ``kis_archive_universe`` value: a JSON object with ``markets`` (KOSPI, KOSDAQ, KONEX) and
        ``groups`` (security group codes: ST stocks, EF ETFs, EN ETNs, ...), each a list, or null
        for all; unset or blank is the default, every KOSPI and KOSDAQ stock. Raises ``ValueError``
        naming the Variable and what is wrong."""
        text = raw if raw is not None and raw.strip() else DEFAULT_UNIVERSE
        example = f"e.g. {DEFAULT_UNIVERSE}"
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict) or set(value) - {"markets", "groups"}:
            raise ValueError(
                f"{UNIVERSE_VARIABLE} must be a JSON object with markets and groups, {example}; got {raw!r}"
            )
        markets, groups = value.get("markets"), value.get("groups")
        try:
            parsed_markets = (
                None if markets is None else tuple(StockMarket(m.lower()) for m in _strings(markets))
            )
        except ValueError:
            raise ValueError(
                f"{UNIVERSE_VARIABLE}: markets must be a list of "
                f"{', '.join(m.label for m in StockMarket)}; got {markets!r}"
            ) from None
        parsed_groups = None if groups is None else tuple(_strings(groups))
        if parsed_groups is not None and not all(_is_group(g) for g in parsed_groups):
            raise ValueError(
                f"{UNIVERSE_VARIABLE}: groups must be a list of two-letter security groups (ST, EF, EN, ...); "
                f"got {groups!r}"
            )
        return cls(parsed_markets, parsed_groups)

    def params(self) -> dict[str, Any]:
        return {
            "markets": None if self.markets is None else [market.value for market in self.markets],
            "groups": None if self.groups is None else list(self.groups),
        }


def _is_group(group: str) -> bool:
    return len(group) == 2 and group.isascii() and group.isalpha() and group.isupper()


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise ValueError(value)
    return value


def requests_per_code_day(session: Session, *, today: bool) -> int:
    """What one code's day costs at the cheapest endpoint KIS serves for it: KIS's today on the today
    endpoint (30 rows a page, the day volume in its answer), a past day on the past-day endpoint
    (120 rows a page) plus one request for the day volume. A full KRX day: 13 and 5."""
    bars = len(session.bar_minutes)
    if today:
        return math.ceil(bars / TODAY_MINUTES_PAGE_ROWS)
    return math.ceil(bars / PAST_MINUTES_PAGE_ROWS) + 1


def archivable_sessions(calendar: KrxCalendar, venue: Venue, now: datetime) -> list[Session]:
    """The sessions of ``venue`` the archive can still fetch at ``now``: those of the last year (what
    KIS keeps) whose day has ended, today's once it has, oldest first."""
    today = now.astimezone(KST).date()
    sessions = calendar.sessions_between(today - HISTORY + timedelta(days=1), today, venue)
    return [session for session in sessions if session.close < now]


@dataclass(frozen=True)
class ArchiveRate:
    """The requests/s the archive asks at: the paced rates of the keys that serve past days (real
    accounts), or why there is none."""

    keys: int
    requests_per_second: float
    problem: str | None = None

    def seconds(self, requests: int) -> float | None:
        return requests / self.requests_per_second if self.requests_per_second else None


def progress(
    conn: Any,
    calendar: KrxCalendar,
    venue: Venue,
    chosen: UniverseSelection,
    now: datetime,
    rate: ArchiveRate,
) -> dict[str, Any]:
    """The archive's progress on ``venue``: per month of the archivable sessions, newest first, the
    code-days expected and settled, the requests the rest costs and the time at ``rate``; and the
    whole year's totals. A session without a loaded universe on or after it counts no code-day (its
    codes are not known until kis_universe runs) and is counted as such."""
    sessions = archivable_sessions(calendar, venue, now)
    today = now.astimezone(KST).date()
    params = {
        "days": [session.day for session in sessions], "venue": venue.value, **chosen.params(),
        "left_out_kinds": [UNKNOWN_CODE], "venue_kind": NOT_ON_VENUE,
    }  # fmt: skip
    rows = {day: (has_universe, expected, settled) for day, has_universe, expected, settled in conn.execute(
        load_sql("archive_progress"), params
    )}  # fmt: skip
    days = [_DayProgress.of(session, *rows[session.day], today=session.day == today) for session in sessions]
    months = [
        _summary(list(days_of_month), rate) | {"month": month}
        for month, days_of_month in groupby(reversed(days), key=lambda d: f"{d.day:%Y-%m}")
    ]
    return {
        "venue": venue.value,
        "selection": chosen.params(),
        "from": sessions[0].day.isoformat() if sessions else None,
        "to": sessions[-1].day.isoformat() if sessions else None,
        "keys": rate.keys,
        "requests_per_second": round(rate.requests_per_second, 2),
        "rate_problem": rate.problem,
        "total": _summary(days, rate),
        "months": months,
    }


@dataclass(frozen=True)
class _DayProgress:
    day: date
    has_universe: bool
    expected: int
    settled: int
    requests_per_code: int

    @classmethod
    def of(cls, session: Session, has_universe: bool, expected: int, settled: int, *, today: bool) -> _DayProgress:
        return cls(session.day, has_universe, expected, settled, requests_per_code_day(session, today=today))


def _summary(days: Sequence[_DayProgress], rate: ArchiveRate) -> dict[str, Any]:
    expected = sum(d.expected for d in days)
    settled = sum(d.settled for d in days)
    requests = sum((d.expected - d.settled) * d.requests_per_code for d in days)
    seconds = rate.seconds(requests)
    return {
        "sessions": len(days),
        "sessions_without_universe": sum(not d.has_universe for d in days),
        "expected": expected,
        "archived": settled,
        "remaining": expected - settled,
        "remaining_requests": requests,
        "estimated_seconds": None if seconds is None else round(seconds),
    }


def archive_rate(settings: Mapping[str, Any]) -> ArchiveRate:
    """The archive's rate from each connection's settings (``kis.client.KisSettings`` by connection
    id, or the exception that kept one from loading): only real accounts serve past days."""
    problems = [f"{conn_id}: {value}" for conn_id, value in settings.items() if isinstance(value, Exception)]
    real = [value for value in settings.values() if not isinstance(value, Exception) and value.environment == "real"]
    problem = "; ".join(problems) or (None if real else "no connection of kis_connections is a real account's")
    return ArchiveRate(len(real), sum(s.paced_rate for s in real), problem)

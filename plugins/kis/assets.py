"""The minute bars as Airflow Assets: one per venue, updated when the backfill verifies a day.

A DAG scheduled on ``MINUTE_BARS[Venue.KRX]`` (or any of them) runs after a day of that venue
passed its verification. Each event's extra says which day: ``date`` (ISO), ``venue``,
``completeness`` (fraction), ``threshold``, ``codes`` (the codes verified), ``codes_with_gaps`` and
``unverifiable`` (alerted, yet the day passed), ``present`` and ``expected`` (bars).

The events go through the alias ``VERIFIED_DAYS``, the backfill's outlet, and never through the
venue Assets as static outlets: Airflow emits an event for every static outlet of a task that
succeeds, so a DAG covering Nextrade and the unified view would announce a unified day that
``kis_venues`` never asked for. Through the alias, only the days that ``verify_day`` checked and
passed are announced, and only when the task succeeds (a failed verification emits nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from kis.venues import Venue

if TYPE_CHECKING:
    from kis.verification import DayOutcome

__all__ = [
    "ARCHIVED_DAYS",
    "MARKET_ARCHIVE",
    "MINUTE_BARS",
    "VERIFIED_DAYS",
    "VerifiedDay",
    "announce_archived_days",
    "announce_verified_days",
    "verified_days",
]

#: The verified minute bars of each venue (``stock_prices_minute`` in the market database).
MINUTE_BARS: dict[Venue, Asset] = {
    venue: Asset(name=f"kis_minute_bars_{venue.value}", uri=f"kis://minute-bars/{venue.value}", group="kis")
    for venue in Venue
}
#: The backfill's outlet: each verified day is announced on its venue's Asset through it.
VERIFIED_DAYS = AssetAlias("kis_verified_days", group="kis")

#: The market archive's day of each venue (``kis_market_archive``): the same table, another set of
#: codes. Its own Assets, not ``MINUTE_BARS``: a subscriber of the watch-list's days (the resampling
#: at 16:00) is not run again for the whole market at 16:40, nor once per past day when a year of
#: history is backfilled, unless it subscribes here. The event's extra is bounded whatever the
#: universe: it has no ``codes`` (every code of the day's archive, :func:`verified_days` reads None)
#: but ``code_count``, and counts of the codes with gaps and unverifiable.
MARKET_ARCHIVE: dict[Venue, Asset] = {
    venue: Asset(name=f"kis_market_archive_{venue.value}", uri=f"kis://market-archive/{venue.value}", group="kis")
    for venue in Venue
}
#: The archive's outlet, as ``VERIFIED_DAYS`` is the backfill's.
ARCHIVED_DAYS = AssetAlias("kis_archived_days", group="kis")


def announce_verified_days(outlet_events: Any, days: Iterable[DayOutcome]) -> None:
    """Records one event per day that passed on its venue's Asset; Airflow emits them when the
    task succeeds. ``outlet_events`` is the task's ``outlet_events`` context entry."""
    for day in _passed(days):
        outlet_events[VERIFIED_DAYS].add(MINUTE_BARS[day.venue], extra=_extra(day))


def announce_archived_days(outlet_events: Any, days: Iterable[DayOutcome]) -> None:
    """As :func:`announce_verified_days`, for the market archive's days, on ``MARKET_ARCHIVE``."""
    for day in _passed(days):
        extra = _extra(day)
        del extra["codes"]
        extra |= {
            "code_count": day.codes,
            "codes_with_gaps": len(day.codes_with_gaps),
            "unverifiable": len(day.unverifiable),
        }
        outlet_events[ARCHIVED_DAYS].add(MARKET_ARCHIVE[day.venue], extra=extra)


def _passed(days: Iterable[DayOutcome]) -> Iterable[DayOutcome]:
    for day in days:
        if not day.passed:
            raise ValueError(f"{day.day} on {day.venue.label} did not pass its verification: not announced")
        yield day


def _extra(day: DayOutcome) -> dict[str, Any]:
    return {
        "date": day.day.isoformat(),
        "venue": day.venue.value,
        "completeness": round(day.completeness, 5),
        "threshold": day.threshold,
        "codes": list(day.stock_codes),
        "codes_with_gaps": list(day.codes_with_gaps),
        "unverifiable": list(day.unverifiable),
        "present": day.present,
        "expected": day.expected,
    }


@dataclass(frozen=True)
class VerifiedDay:
    """A day and venue an event announced, with its codes (None: every code stored that day)."""

    day: date
    venue: Venue
    codes: tuple[str, ...] | None

    def as_kwargs(self) -> dict[str, Any]:
        """The day as a mapped task's arguments (JSON: an XCom)."""
        return {"day": self.day.isoformat(), "venue": self.venue.value, "codes": self.codes and list(self.codes)}


def verified_days(events: Iterable[Any]) -> list[VerifiedDay]:
    """The days and venues announced by ``events`` (asset events, as ``triggering_asset_events``
    lists them), each once, in order; a later event of the same day and venue (a re-verification)
    wins. Raises ``ValueError`` naming every event whose extra lacks a valid ``date`` or ``venue``,
    or whose ``codes``, when given, is no list of codes."""
    found: dict[tuple[date, Venue], VerifiedDay] = {}
    bad: list[str] = []
    for event in events:
        extra = event.extra or {}
        try:
            day = VerifiedDay(date.fromisoformat(extra["date"]), Venue(extra["venue"]), _codes(extra.get("codes")))
        except (KeyError, ValueError, TypeError) as err:
            bad.append(f"{event.asset.name} event of {event.timestamp} ({type(err).__name__}: {err}): {extra!r}")
            continue
        found[day.day, day.venue] = day
    if bad:
        raise ValueError("Asset events without a valid date and venue in their extra: " + "; ".join(bad))
    return list(found.values())


def _codes(codes: Any) -> tuple[str, ...] | None:
    if codes is None:
        return None
    if isinstance(codes, str) or not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise TypeError(f"codes must be a list of stock codes, got {codes!r}")
    return tuple(codes)

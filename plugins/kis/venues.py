"""The venues a stock's minute bars can come from: KRX, Nextrade (NXT), or both together.

The Variable ``kis_venues`` lists the venues to collect (default ``["krx"]``); docs/krx-sessions.md
has each venue's hours and what is known of its bars.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum

__all__ = ["DEFAULT_VENUES", "Venue", "parse_venues"]


class Venue(StrEnum):
    """A venue as stored in ``stock_prices_minute.venue`` and named in ``kis_venues``."""

    KRX = "krx"
    NEXTRADE = "nxt"
    UNIFIED = "unified"  # KRX and Nextrade together, as KIS's ``UN`` market code serves them

    @property
    def label(self) -> str:
        return {Venue.KRX: "KRX", Venue.NEXTRADE: "Nextrade", Venue.UNIFIED: "KRX + Nextrade"}[self]


DEFAULT_VENUES: tuple[Venue, ...] = (Venue.KRX,)


def parse_venues(raw: str | Sequence[str] | None) -> tuple[Venue, ...]:
    """The venues of a ``kis_venues`` value: a JSON list such as ``["krx", "unified"]``, in the
    order given; unset or blank is ``["krx"]``. Raises ``ValueError`` naming what is wrong."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_VENUES
    names = json.loads(raw) if isinstance(raw, str) else raw
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ValueError(f"kis_venues must be a non-empty JSON list of {_choices()}, got {raw!r}")
    venues: list[Venue] = []
    for name in names:
        try:
            venue = Venue(str(name).strip().lower())
        except ValueError:
            raise ValueError(f"kis_venues: unknown venue {name!r}; choose from {_choices()}") from None
        if venue not in venues:
            venues.append(venue)
    return tuple(venues)


def _choices() -> str:
    return ", ".join(f'"{venue.value}"' for venue in Venue)

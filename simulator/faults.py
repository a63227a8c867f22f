"""Fault injection for one simulator run: latency, error rates by kind, unknown codes, halts, lost minutes,
rows after the cursor, minutes the collector's calendar does not predict, and two market facts that
live here so that a test can set them at any time: splits and the codes Nextrade trades.

The configuration is a flat JSON object (CLI ``--faults``, ``POST /_sim/faults``); every key is
optional and unknown keys are rejected so that a typo does not silently disable a test::

    {"seed": 0, "latency_ms": 50, "jitter_ms": 20,
     "http_5xx": 0.1, "rate_storm": 0.0, "malformed_json": 0.0, "truncated_body": 0.0,
     "missing_fields": 0.0,
     "unknown_codes": ["999990"],
     "halts": [{"code": "005930", "start": "10:00", "end": "10:30", "date": "2026-11-25"}],
     "drop_minutes": [{"code": "005930", "minutes": ["10:31", "10:32"], "date": "2026-11-25", "venue": "krx"}],
     "rows_after_cursor": true,
     "splits": [{"code": "005930", "date": "2026-11-20", "ratio": 50}],
     "nxt_codes": ["005930", "000660"],
     "unpredicted_minutes": [{"code": "005930", "venue": "nxt", "minutes": ["15:25"], "date": "2026-11-25"}],
     "damaged_masters": {"kosdaq": "truncated_record"}}

``date`` is optional in halts, drop_minutes and unpredicted_minutes (without it they apply to every
day). ``rows_after_cursor``: true, or a number of minutes that bounds how far past the cursor rows go.
Halts apply to every venue; a drop to its ``venue`` only (``krx``, ``nxt`` or ``unified``; default
``krx``). ``nxt_codes`` absent: the default watch-list's codes. An unpredicted minute takes
``minutes`` (a list) or ``minute`` (one), and ``venue`` ``krx`` or ``nxt``. ``damaged_masters``: the
master files served damaged, by market (``kospi``, ``kosdaq``, ``konex``): ``truncated_zip`` (the
download cut short) or ``truncated_record`` (the file's last record cut).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from kis.masters import StockMarket
from kis.venues import Venue

from simulator.market import CODE_PATTERN, Halt, Split, UnpredictedMinutes
from simulator.masters import DAMAGES

__all__ = ["ERROR_KINDS", "FaultConfig", "FaultInjector"]

# Each is a probability per data call; at most one of them hits a call.
ERROR_KINDS = ("http_5xx", "rate_storm", "malformed_json", "truncated_body", "missing_fields")


@dataclass(frozen=True)
class DroppedMinutes:
    """Minutes the API never returns for a code: data lost for good, not an expected absence."""

    code: str
    minutes: frozenset[time]
    day: date | None = None
    venue: Venue = Venue.KRX  # the answers they are lost from: one market code's

    def covers(self, code: str, minute: datetime, venue: Venue = Venue.KRX) -> bool:
        return (
            code == self.code
            and venue is self.venue
            and (self.day is None or minute.date() == self.day)
            and minute.time() in self.minutes
        )


@dataclass(frozen=True)
class FaultConfig:
    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rates: dict[str, float] = field(default_factory=dict)
    unknown_codes: frozenset[str] = frozenset()
    halts: tuple[Halt, ...] = ()
    drop_minutes: tuple[DroppedMinutes, ...] = ()
    # The today endpoint answers up to the clock's current minute even when the cursor is earlier:
    # None off, 0 without a bound, n at most n minutes past the cursor.
    rows_after_cursor: int | None = None
    splits: tuple[Split, ...] = ()
    nxt_codes: frozenset[str] | None = None  # None: the default watch-list's codes
    unpredicted_minutes: tuple[UnpredictedMinutes, ...] = ()
    damaged_masters: dict[StockMarket, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # as given, for GET /_sim/faults

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> FaultConfig:
        """Validate a fault configuration; a ValueError names what is wrong."""
        raw = dict(raw or {})
        known = {
            "seed", "latency_ms", "jitter_ms", "unknown_codes", "halts", "drop_minutes",
            "rows_after_cursor", "splits", "nxt_codes", "unpredicted_minutes", "damaged_masters", *ERROR_KINDS,
        }  # fmt: skip
        if unknown := set(raw) - known:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(known)}")
        rates = {kind: float(raw.get(kind, 0.0)) for kind in ERROR_KINDS}
        if any(not 0.0 <= p <= 1.0 for p in rates.values()) or sum(rates.values()) > 1.0:
            raise ValueError(f"error rates must be probabilities summing to at most 1: {rates}")
        try:
            halts = tuple(
                Halt(h["code"], time.fromisoformat(h["start"]), time.fromisoformat(h["end"]), _day(h))
                for h in raw.get("halts", [])
            )
            drops = tuple(
                DroppedMinutes(
                    d["code"], frozenset(time.fromisoformat(m) for m in d["minutes"]), _day(d), Venue(d.get("venue", "krx"))
                )
                for d in raw.get("drop_minutes", [])
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"halts/drop_minutes entries need code and start/end or minutes: {err}") from err
        return cls(
            seed=int(raw.get("seed", 0)),
            latency_ms=float(raw.get("latency_ms", 0.0)),
            jitter_ms=float(raw.get("jitter_ms", 0.0)),
            error_rates=rates,
            unknown_codes=frozenset(raw.get("unknown_codes", [])),
            halts=halts,
            drop_minutes=drops,
            rows_after_cursor=_rows_after_cursor(raw.get("rows_after_cursor", False)),
            splits=tuple(_split(entry) for entry in raw.get("splits", [])),
            nxt_codes=_codes(raw["nxt_codes"]) if "nxt_codes" in raw else None,
            unpredicted_minutes=tuple(_unpredicted(entry) for entry in raw.get("unpredicted_minutes", [])),
            damaged_masters=_damaged_masters(raw.get("damaged_masters", {})),
            raw=raw,
        )

    def is_dropped(self, code: str, minute: datetime, venue: Venue = Venue.KRX) -> bool:
        return any(d.covers(code, minute, venue) for d in self.drop_minutes)


class FaultInjector:
    """Draws the faults of each call from one seeded RNG, so a run with the same calls repeats."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)

    def latency_seconds(self) -> float:
        return (self.config.latency_ms + self.rng.uniform(0, self.config.jitter_ms)) / 1000

    def draw_error(self) -> str | None:
        """The error kind that hits this call, or None."""
        if not any(self.config.error_rates.values()):
            return None
        roll = self.rng.random()
        for kind in ERROR_KINDS:
            roll -= self.config.error_rates[kind]
            if roll < 0:
                return kind
        return None


def _day(entry: dict[str, Any]) -> date | None:
    return date.fromisoformat(entry["date"]) if entry.get("date") else None


def _rows_after_cursor(value: Any) -> int | None:
    """``true`` → 0 (no bound), ``false`` → None (off), a positive whole number of minutes → that bound."""
    if isinstance(value, bool):
        return 0 if value else None
    if isinstance(value, int) and value > 0:
        return value
    raise ValueError(f"rows_after_cursor must be true, false or a positive number of minutes, not {value!r}")


def _split(entry: Any) -> Split:
    try:
        code, day, ratio = str(entry["code"]), date.fromisoformat(entry["date"]), float(entry["ratio"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"splits entries need code, date (YYYY-MM-DD) and ratio: {entry!r}") from err
    if not CODE_PATTERN.match(code) or not 0 < ratio < float("inf") or ratio == 1:
        raise ValueError(f"a split needs a six-character code and a positive ratio other than 1: {entry!r}")
    return Split(code, day, ratio)


def _codes(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) and CODE_PATTERN.match(c) for c in value):
        raise ValueError(f"nxt_codes must be a list of six-character codes: {value!r}")
    return frozenset(value)


def _unpredicted(entry: Any) -> UnpredictedMinutes:
    """An ``unpredicted_minutes`` entry: ``code``, ``venue`` (krx or nxt), ``minutes`` or ``minute``, ``date``."""
    try:
        code, venue = str(entry["code"]), Venue(entry["venue"])
        minutes = entry["minutes"] if "minutes" in entry else [entry["minute"]]
        times = frozenset(time.fromisoformat(m) for m in minutes)
        day = _day(entry)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"unpredicted_minutes entries need code, venue, minutes (HH:MM) and optionally date: {entry!r}") from err
    if venue is Venue.UNIFIED or not CODE_PATTERN.match(code) or any(t.second or t.microsecond for t in times):
        raise ValueError(f"an unpredicted minute needs a six-character code, venue krx or nxt, whole minutes: {entry!r}")
    return UnpredictedMinutes(code, venue, times, day)


def _damaged_masters(value: Any) -> dict[StockMarket, str]:
    """``damaged_masters``: ``{"kospi" | "kosdaq" | "konex": "truncated_zip" | "truncated_record"}``."""
    try:
        damaged = {StockMarket(market): damage for market, damage in dict(value).items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"damaged_masters maps kospi, kosdaq or konex to a damage: {value!r}") from err
    if not set(damaged.values()) <= set(DAMAGES):
        raise ValueError(f"damaged_masters: the damages are {', '.join(DAMAGES)}, not {value!r}")
    return damaged

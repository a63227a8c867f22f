"""KIS minute-chart rows -> validated :class:`~kis.bar.Bar` records, and a day's volume.

Both minute endpoints (today's FHKST03010200 and past days' FHKST03010230) return ``output2`` rows
with the same field names, every value a string. The mapping from KIS names to ours lives in
:data:`ROW_FIELDS` and nowhere else. A bad row is rejected with its reason; the good rows of the
same response are kept. :func:`day_volume` reads the daily rows of the period-price endpoint
(FHKST03010100).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from kis.bar import KST, Bar

CODE_PATTERN = re.compile(r"[0-9A-Z]{6}")

#: KIS ``output2`` field -> ``Bar`` field. Time fields are combined into ``Bar.minute``.
ROW_FIELDS: dict[str, str] = {
    "stck_bsop_date": "date",  # business date, YYYYMMDD
    "stck_cntg_hour": "time",  # start of the minute, HHMMSS (KST wall clock)
    "stck_oprc": "open",
    "stck_hgpr": "high",
    "stck_lwpr": "low",
    "stck_prpr": "close",
    "cntg_vol": "volume",  # this minute's volume (acml_* fields are cumulative: never used for a bar)
}
_PRICE_FIELDS = ("open", "high", "low", "close")

# Exact integers only: "123.5", "1e3", " 12", "+5" are rejected rather than rounded.
_INTEGER = re.compile(r"-?[0-9]+")
_DATE = re.compile(r"[0-9]{8}")
_TIME = re.compile(r"[0-9]{6}")


def validate_code(code: str) -> str:
    """Return ``code`` when it is a KRX short code (six of 0-9/A-Z), else raise :class:`ValueError`."""
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        raise ValueError(f"invalid stock code {code!r}: expected six characters of 0-9 or A-Z")
    return code


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A response row that did not become a bar, and why."""

    row: Mapping[str, Any]
    reason: str


@dataclass
class ParsedRows:
    """The outcome of parsing one or more pages: bars in the order seen, and the rejects."""

    bars: list[Bar] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


class RowError(ValueError):
    """Why one row is not a valid bar (the message is the rejection reason)."""


def parse_bar(row: Mapping[str, Any], *, code: str, day: date) -> Bar:
    """Parse one ``output2`` row of ``code`` on business date ``day``; raise :class:`RowError`."""
    if not isinstance(row, Mapping):
        raise RowError(f"row is not an object: {type(row).__name__}")
    values: dict[str, str] = {}
    for kis_name, name in ROW_FIELDS.items():
        raw = row.get(kis_name)
        if raw is None or raw == "":
            raise RowError(f"missing field {kis_name}")
        if not isinstance(raw, str):
            raise RowError(f"{kis_name} is not a string: {raw!r}")
        values[name] = raw

    minute = row_minute(row)
    if minute is None:
        raise RowError(f"bad date/time {values['date']!r} {values['time']!r}")
    if minute.date() != day:
        raise RowError(f"business date {minute.date().isoformat()} is not the asked {day.isoformat()}")
    if minute.second:
        raise RowError(f"time {values['time']} is not the start of a minute")

    numbers: dict[str, int] = {}
    for name in (*_PRICE_FIELDS, "volume"):
        if not _INTEGER.fullmatch(values[name]):
            raise RowError(f"{name} is not an integer: {values[name]!r}")
        numbers[name] = int(values[name])
    if any(numbers[name] <= 0 for name in _PRICE_FIELDS):
        raise RowError("non-positive price")
    if numbers["volume"] < 0:
        raise RowError(f"negative volume {numbers['volume']}")
    low, high = numbers["low"], numbers["high"]
    if high < low:
        # Checked before the order of open and close, so that the reason names it: such a row must
        # never reach the upsert, whose CHECK would refuse the whole batch (every code's minute).
        raise RowError(f"high below low: high {high} low {low}")
    if not (low <= numbers["open"] <= high and low <= numbers["close"] <= high):
        raise RowError(
            f"OHLC out of order: open {numbers['open']} high {high} low {low} close {numbers['close']}"
        )
    return Bar(stock_code=code, minute=minute, **numbers)


def row_minute(row: Any) -> datetime | None:
    """A row's KST minute from ``stck_bsop_date`` + ``stck_cntg_hour``, or None when they do not
    parse. Paging reads it of every row, also of rows rejected for other reasons."""
    try:
        day, hour = row["stck_bsop_date"], row["stck_cntg_hour"]
    except (KeyError, TypeError):
        return None
    if not isinstance(day, str) or not isinstance(hour, str) or not _DATE.fullmatch(day) or not _TIME.fullmatch(hour):
        return None
    try:
        # The fields' digits, not strptime: a page's rows are read twice (paging, then parsing),
        # and strptime was 3 ms of a 120-row page's ~10 ms of client CPU (bench/README.md).
        return datetime(
            int(day[:4]), int(day[4:6]), int(day[6:]), int(hour[:2]), int(hour[2:4]), int(hour[4:]), tzinfo=KST
        )
    except ValueError:  # no such date or time (20261301, 246000)
        return None


def parse_rows(rows: Iterable[Mapping[str, Any]], *, code: str, day: date) -> ParsedRows:
    """Parse every row; keep the good ones, reject the others with their reason."""
    parsed = ParsedRows()
    for row in rows:
        try:
            parsed.bars.append(parse_bar(row, code=code, day=day))
        except RowError as reason:
            parsed.rejected.append(RejectedRow(row=row, reason=str(reason)))
    return parsed


def parse_int(value: Any) -> int | None:
    """An exact integer from a KIS string field, or None when absent or not an integer."""
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


def day_volume(rows: Iterable[Any], day: date) -> int | None:
    """``acml_vol`` of the FHKST03010100 ``output2`` row of ``day`` (``stck_bsop_date``), or None.

    None when no row is of that day or its volume is not an exact integer: an unknown volume
    explains no missing minute, a wrong one could.
    """
    yyyymmdd = day.strftime("%Y%m%d")
    for row in rows:
        if isinstance(row, Mapping) and row.get("stck_bsop_date") == yyyymmdd:
            return parse_int(row.get("acml_vol"))
    return None

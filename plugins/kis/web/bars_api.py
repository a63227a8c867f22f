"""The bars out: one code's day of one venue, in minute bars or resampled, as JSON or CSV.

Read through :func:`kis.storage.resampled_bars`, the resampling the views and ``bars_frame`` use
(buckets from 09:00, labelled by their start; the closing-auction bar is its own 15:30 bucket up to
30 minutes and closes the 15:00 bucket at 60). Times are ISO 8601 in KST with their offset.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from kis import storage
from kis.bar import KST
from kis.venues import Venue

__all__ = ["COLUMNS", "INTERVALS", "day_bars", "day_bars_csv", "interval"]

#: The bar lengths served, in minutes (1: the minute bars as stored).
INTERVALS = (1, 5, 10, 30, 60)
#: The fields of a bar, in the CSV's column order; ``bar_count``: the minute bars in the bar.
COLUMNS = ("time", "open", "high", "low", "close", "volume", "bar_count")


def interval(minutes: int) -> int:
    """``minutes`` when it is one of :data:`INTERVALS`, else a ``ValueError`` naming them."""
    if minutes not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(map(str, INTERVALS))} (minutes), got {minutes}")
    return minutes


def day_bars(conn: psycopg.Connection, code: str, day: date, minutes: int, venue: Venue) -> dict[str, Any]:
    """``code``'s bars of ``day`` on ``venue`` at ``minutes`` (one of :data:`INTERVALS`), oldest first."""
    start = datetime.combine(day, datetime.min.time())
    rows = storage.resampled_bars(conn, [code], start, start + timedelta(days=1), minutes=minutes, venue=venue)
    return {
        "code": code,
        "venue": Venue(venue).value,
        "date": day.isoformat(),
        "interval": minutes,
        "bars": [
            {
                "time": bar.bucket_start.replace(tzinfo=KST).isoformat(),
                "open": bar.open,
                "high": bar.high,
                "low": bar.low,
                "close": bar.close,
                "volume": bar.volume,
                "bar_count": bar.bar_count,
            }
            for bar in rows
        ],
    }


def day_bars_csv(body: dict[str, Any]) -> str:
    """The bars of :func:`day_bars` as CSV, a header line first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(body["bars"])
    return out.getvalue()

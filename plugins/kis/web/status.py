"""What the minute-status API and the dashboard show, read from the market database.

Plain functions on a psycopg connection, so the tests call them on a real database without any web
server, and the FastAPI app only adds the wiring (connection, watch-list, clock, authentication).
Every statement is a file in ``include/sql``. Every time in an answer is ISO 8601 in KST with its
offset (``"2024-11-08T09:01:00+09:00"``): bars are stored as naive KST wall-clock values, and get
their offset here. Everything is of one venue (KRX by default), measured against that venue's grid,
and every answer names it. Percentages are truncated to three decimals (``minute_status.sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from kis import storage
from kis.resources import load_sql
from kis.bar import KST
from kis.calendar import RUN_REACH, KrxCalendar, Session
from kis.venues import Venue

__all__ = ["ALERT_LIMIT", "CELL_STATES", "heatmap", "latest_alerts", "minute_status"]

ALERT_LIMIT = 20

# One character per heatmap cell keeps a day of 50 codes x 381 minutes at about 20 kB of JSON.
CELL_STATES = {
    "c": "collected",
    "a": "expected_absence",
    "m": "missing",
    "b": "before_collection",  # before the day's first minute run could fetch: the backfill's
    "f": "not_yet",
}


def minute_status(
    conn: psycopg.Connection,
    day: date,
    codes: Sequence[str],
    calendar: KrxCalendar,
    *,
    venue: Venue = Venue.KRX,
    alert_limit: int = ALERT_LIMIT,
) -> dict[str, Any]:
    """The seed's minute-status figures of ``day`` on ``venue``, per-code completeness (least
    complete first) and the latest alerts.

    ``expected_total`` is the venue's grid length times the number of codes (381 x 50 on a regular
    KRX day, 0 on a holiday), never 390 x 50; ``collection_rate`` is None when nothing is expected.
    On a day without a session no code is expected: ``codes`` lists only those with bars stored
    anyway (normally none), so that it agrees with ``stock_count``.
    """
    venue = Venue(venue)
    session = calendar.session(day, venue)
    grid = session.bar_minutes if session else ()
    status = storage.minute_status(conn, day, codes, len(grid), venue=venue)
    verifications = _rows(conn, "day_verification", {"day": day, "venue": venue.value})
    verification = {row["stock_code"]: row for row in verifications}
    per_code = [
        {
            **row,
            "first_time": _iso_bar(row["first_time"]),
            "last_time": _iso_bar(row["last_time"]),
            "verification": _verification_of(verification.get(row["stock_code"])),
        }
        for row in status.per_code
        if session is not None or row["bars"]
    ]
    return {
        "date": day.isoformat(),
        "venue": venue.value,
        "session": _session_json(session),
        "today_total": status.today_total or 0,
        "expected_total": status.expected_total or 0,
        "collection_rate": status.collection_rate,
        "stock_count": status.stock_count or 0,
        "first_time": _iso_bar(status.first_time),
        "last_time": _iso_bar(status.last_time),
        "codes": per_code,
        "alerts": latest_alerts(conn, day, alert_limit, venue=venue),
    }


def heatmap(
    conn: psycopg.Connection,
    day: date,
    codes: Sequence[str],
    calendar: KrxCalendar,
    now: datetime,
    *,
    venue: Venue = Venue.KRX,
) -> dict[str, Any]:
    """Codes x minutes of ``day`` on ``venue``: one state character per grid minute (see ``CELL_STATES``);
    ``minutes`` are the grid's KST clock labels (``"09:00"``), ``generated_at`` is ``now`` in KST. No
    rows on a day without a session, as ``minute_status`` lists no code then.

    :param now: the current time (aware), which decides the minutes that are not due yet.
    """
    venue = Venue(venue)
    session = calendar.session(day, venue)
    grid = [minute.replace(tzinfo=None) for minute in session.bar_minutes] if session else []
    closing = session.closing_bar.replace(tzinfo=None) if session and session.closing_bar else None
    params = {
        "day": day,
        "venue": venue.value,
        "grid": grid,
        "closing": closing,
        "codes": list(codes),
        "now": now.astimezone(KST).replace(tzinfo=None),
        "reach": RUN_REACH,
    }
    return {
        "date": day.isoformat(),
        "venue": venue.value,
        "session": _session_json(session),
        "generated_at": now.astimezone(KST).isoformat(timespec="seconds"),
        "states": CELL_STATES,
        "minutes": [minute.strftime("%H:%M") for minute in grid],
        "rows": _rows(conn, "minute_heatmap", params) if session else [],
    }


def latest_alerts(
    conn: psycopg.Connection, day: date, limit: int = ALERT_LIMIT, *, venue: Venue = Venue.KRX
) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts about ``day`` on ``venue`` (or no venue in particular);
    ``raised_at`` and ``resolved_at`` (None while open) in KST with their offset."""
    rows = _rows(conn, "latest_alerts", {"day": day, "venue": Venue(venue).value, "limit": limit})
    return [{**row, "raised_at": _iso(row["raised_at"]), "resolved_at": _iso(row["resolved_at"])} for row in rows]


def _rows(conn: psycopg.Connection, sql_name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(load_sql(sql_name), params).fetchall()


def _verification_of(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "status": row["status"],
        "volume_status": row["volume_status"],
        "missing": row["missing"],
        "unexpected": row["unexpected"],
        "checked_at": _iso(row["checked_at"]),
    }


def _session_json(session: Session | None) -> dict[str, Any] | None:
    if session is None:
        return None
    return {
        "open": session.open.isoformat(),
        "close": session.close.isoformat(),
        "closing_bar": session.closing_bar.isoformat() if session.closing_bar else None,
        "bars_per_code": len(session.bar_minutes),
    }


def _iso(moment: datetime | None) -> str | None:
    """An aware moment (a timestamptz) in KST with its offset, to the second."""
    return moment.astimezone(KST).isoformat(timespec="seconds") if moment is not None else None


def _iso_bar(minute: datetime | str | None) -> str | None:
    """A bar's naive KST minute (a datetime, or its ISO text from a JSON column) with its offset."""
    if minute is None:
        return None
    if isinstance(minute, str):
        minute = datetime.fromisoformat(minute)
    return minute.replace(tzinfo=KST).isoformat()

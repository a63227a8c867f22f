"""The minute-status API and the dashboard: figures on a populated market database, Airflow's
authentication in front of them, and the page in a real headless Chromium against a real api-server.

One market database is loaded once per module with three dates:
- ``COMPLETE_DAY``: every code has every bar of the grid;
- ``GAP_DAY``: one code complete, one with a gap its volumes do not explain, one whose two missing
  minutes are explained (a VI: the minute volumes add up to the reported day volume), one without
  any bar;
- ``MIDDAY_START``: collection began with a minute run at 14:30 (its 30 bars reach back to
  14:00); one code has every bar since, the others none; not verified yet;
- ``HOLIDAY``: no session, nothing expected.

``GAP_DAY`` also has Nextrade (nxt) bars, stored and verified apart: one code complete with a bar
off the grid, one without the day's last bar (19:59, explained by its volumes), two without any.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from devtools import airflow_env, localpg
from devtools.local_airflow import running_airflow
from devtools.net import free_port
from kis import schema, storage
from kis.archive_scope import ArchiveRate, UniverseSelection
from kis.bar import KST, Bar
from kis.calendar import RUN_REACH, default_calendar
from kis.venues import Venue

from browser import Secret, browser_fixture, log_in  # noqa: F401 - the browser fixture
from simulated_day import store_universe

REPO = Path(__file__).resolve().parents[1]
OUTPUT_DIR = REPO / "test-output"
COMPLETE_DAY = date(2026, 11, 24)
GAP_DAY = date(2026, 11, 25)
MIDDAY_START = datetime(2026, 11, 26, 14, 30, tzinfo=KST)  # the day's first minute run
FIRST_FETCHED = 300  # 14:00, the grid index of the first minute that run fetched
HOLIDAY = date(2026, 10, 9)  # Hangul Day
CODES = ["005930", "000660", "035420", "068270"]
COMPLETE, GAPPY, EXPLAINED, EMPTY = CODES
GAP_MINUTES = 10
VI_MINUTES = 2
BARS_PER_DAY = 381
NXT_BARS_PER_DAY = 690  # 08:00-08:49, 09:00-15:19, 15:40-19:59
NXT_OFF_GRID = datetime(2026, 11, 25, 8, 55, tzinfo=KST)  # between Nextrade's pre- and main market
# A clock after both days' close, so that every minute of them is due.
AFTER_CLOSE = datetime(2026, 11, 26, 16, 0, tzinfo=KST)


def _grid(day: date, venue: Venue = Venue.KRX) -> list[datetime]:
    session = default_calendar().session(day, venue)
    return list(session.bar_minutes) if session else []


def _truncated(percent: float) -> float:
    """A percentage as the API shows it: three decimals, truncated."""
    return math.floor(percent * 1000) / 1000


def _bars(code: str, minutes: list[datetime]) -> list[Bar]:
    return [Bar(code, minute, 1000, 1010, 990, 1000, 100 + i) for i, minute in enumerate(minutes)]


def _load_market(dsn: str) -> None:
    """Stores the three dates and verifies the two sessions, as the backfill DAG would."""
    complete_grid, gap_grid = _grid(COMPLETE_DAY), _grid(GAP_DAY)
    assert len(complete_grid) == len(gap_grid) == BARS_PER_DAY
    gap_day_bars = {
        COMPLETE: _bars(COMPLETE, gap_grid),
        GAPPY: _bars(GAPPY, gap_grid[:100] + gap_grid[100 + GAP_MINUTES :]),
        EXPLAINED: _bars(EXPLAINED, gap_grid[:200] + gap_grid[200 + VI_MINUTES :]),
    }
    with psycopg.connect(dsn) as conn:
        schema.migrate(conn, today=COMPLETE_DAY)
        storage.ensure_partitions(conn, HOLIDAY, GAP_DAY)
        storage.upsert_bars(conn, [bar for code in CODES for bar in _bars(code, complete_grid)])
        storage.upsert_bars(conn, [bar for bars in gap_day_bars.values() for bar in bars])
        storage.verify_day(conn, COMPLETE_DAY, complete_grid, CODES, run_id="test")
        volumes = {code: sum(bar.volume for bar in bars) for code, bars in gap_day_bars.items()}
        volumes[GAPPY] += 5_000  # the day volume exceeds the bars: lost minutes or off-session trades
        storage.verify_day(conn, GAP_DAY, gap_grid, CODES, volumes, run_id="test")
        # GAP_DAY's universe, which every day before it takes too (the market archive's progress).
        store_universe(conn, GAP_DAY, {code: ("kospi", "ST", False) for code in CODES})
        nxt_grid = _grid(GAP_DAY, Venue.NEXTRADE)
        assert len(nxt_grid) == NXT_BARS_PER_DAY
        nxt_bars = {COMPLETE: _bars(COMPLETE, nxt_grid + [NXT_OFF_GRID]), GAPPY: _bars(GAPPY, nxt_grid[:-1])}
        storage.upsert_bars(conn, [bar for bars in nxt_bars.values() for bar in bars], venue=Venue.NEXTRADE)
        midday_grid = _grid(MIDDAY_START.date())
        assert midday_grid[FIRST_FETCHED] == MIDDAY_START - RUN_REACH
        storage.upsert_bars(conn, _bars(COMPLETE, midday_grid[FIRST_FETCHED:]))
        storage.record_minute_run(conn, MIDDAY_START.date(), MIDDAY_START)
        nxt_volumes = {code: sum(bar.volume for bar in bars) for code, bars in nxt_bars.items()}
        storage.verify_day(
            conn, GAP_DAY, nxt_grid, CODES, nxt_volumes, run_id="test", venue=Venue.NEXTRADE, closing=None
        )
        conn.execute(
            "INSERT INTO collection_alerts (kind, dag_id, run_id, stock_code, trading_date, minutes, message)"
            " VALUES ('incomplete_day', 'kis_minute_backfill', 'test', %s, %s, %s, 'gap of ten minutes')",
            (GAPPY, GAP_DAY, [m.replace(tzinfo=None) for m in gap_grid[100 : 100 + GAP_MINUTES]]),
        )
        conn.execute(
            "INSERT INTO collection_alerts (kind, dag_id, run_id, stock_code, venue, trading_date, message)"
            " VALUES ('gap', 'kis_minute_bars', 'test', %s, 'nxt', %s, 'a Nextrade gap')",
            (GAPPY, GAP_DAY),
        )
        conn.commit()


@pytest.fixture(scope="module")
def market_db(pg_cluster: localpg.Cluster) -> Iterator[str]:
    name = f"t_web_{os.getpid()}"
    dsn = localpg.create_database(name, drop_existing=True)
    _load_market(dsn)
    yield dsn
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the figures, through the app in-process -----------------------------------------------------


@pytest.fixture(scope="module")
def app_client(market_db: str, airflow_db: dict[str, str]):
    """The plugin app in a TestClient, on the module's database, with Airflow's auth manager."""
    from airflow.api_fastapi.app import create_auth_manager
    from fastapi.testclient import TestClient

    from kis.web.app import Sources, create_app

    create_auth_manager().init()
    sources = Sources(
        connect=lambda: psycopg.connect(market_db), codes=lambda: CODES, now=lambda: AFTER_CLOSE,
        archive_rate=lambda: ArchiveRate(keys=1, requests_per_second=14.4),
    )
    with TestClient(create_app(sources)) as client:
        yield client


@pytest.fixture(scope="module")
def admin_jwt(airflow_db: dict[str, str]) -> str:
    """A token as the simple auth manager issues it at login."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return Secret(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin")))


def _get(client, path: str, token: str) -> dict[str, Any]:
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_complete_day(app_client, admin_jwt):
    status = _get(app_client, f"/api/minute-status?date={COMPLETE_DAY}", admin_jwt)
    assert status["venue"] == "krx"
    assert status["today_total"] == status["expected_total"] == BARS_PER_DAY * len(CODES)
    assert status["collection_rate"] == 100.0
    assert status["stock_count"] == len(CODES)
    assert status["first_time"] == "2026-11-24T09:00:00+09:00"
    assert status["last_time"] == "2026-11-24T15:30:00+09:00"
    assert {(c["first_time"], c["last_time"]) for c in status["codes"]} == {
        ("2026-11-24T09:00:00+09:00", "2026-11-24T15:30:00+09:00")
    }
    assert status["session"]["bars_per_code"] == BARS_PER_DAY
    assert {c["stock_code"]: (c["completeness"], c["verification"]["status"]) for c in status["codes"]} == {
        code: (100.0, "complete") for code in CODES
    }
    assert status["alerts"] == []

    heatmap = _get(app_client, f"/api/heatmap?date={COMPLETE_DAY}", admin_jwt)
    assert heatmap["minutes"][0] == "09:00" and heatmap["minutes"][-1] == "15:30"
    assert len(heatmap["minutes"]) == BARS_PER_DAY
    assert {row["stock_code"]: row["cells"] for row in heatmap["rows"]} == {
        code: "c" * BARS_PER_DAY for code in CODES
    }


def test_day_with_gaps(app_client, admin_jwt):
    status = _get(app_client, f"/api/minute-status?date={GAP_DAY}", admin_jwt)
    stored = 3 * BARS_PER_DAY - GAP_MINUTES - VI_MINUTES
    assert status["today_total"] == stored
    assert status["expected_total"] == BARS_PER_DAY * len(CODES)
    assert status["collection_rate"] == _truncated(100 * stored / (BARS_PER_DAY * len(CODES)))
    assert status["stock_count"] == 3
    # Least complete first, as the dashboard lists them.
    assert [c["stock_code"] for c in status["codes"]] == [EMPTY, GAPPY, EXPLAINED, COMPLETE]
    per_code = {c["stock_code"]: c for c in status["codes"]}
    assert per_code[GAPPY]["bars"] == BARS_PER_DAY - GAP_MINUTES
    assert per_code[GAPPY]["completeness"] == _truncated(100 * (BARS_PER_DAY - GAP_MINUTES) / BARS_PER_DAY)
    assert per_code[EXPLAINED]["completeness"] == 99.475  # 379/381 = 99.4750656...: truncated
    assert per_code[EMPTY]["bars"] == 0 and per_code[EMPTY]["first_time"] is None
    assert {code: c["verification"]["status"] for code, c in per_code.items()} == {
        COMPLETE: "complete",
        GAPPY: "unverifiable",
        EXPLAINED: "complete_with_explained_absences",
        EMPTY: "no_data",
    }
    assert [(a["kind"], a["stock_code"], a["minute_count"], a["resolved_at"]) for a in status["alerts"]] == [
        ("incomplete_day", GAPPY, GAP_MINUTES, None)
    ]
    assert status["alerts"][0]["raised_at"].endswith("+09:00")
    assert per_code[COMPLETE]["verification"]["checked_at"].endswith("+09:00")

    cells = {
        row["stock_code"]: row["cells"]
        for row in _get(app_client, f"/api/heatmap?date={GAP_DAY}", admin_jwt)["rows"]
    }
    assert cells[COMPLETE] == "c" * BARS_PER_DAY
    assert cells[GAPPY] == "c" * 100 + "m" * GAP_MINUTES + "c" * (BARS_PER_DAY - 100 - GAP_MINUTES)
    assert cells[EXPLAINED] == "c" * 200 + "a" * VI_MINUTES + "c" * (BARS_PER_DAY - 200 - VI_MINUTES)
    assert cells[EMPTY] == "m" * BARS_PER_DAY


def test_a_venue_is_shown_on_its_own_grid(app_client, admin_jwt):
    """Nextrade's day of the same codes and date: its own bars, grid, verification and alerts."""
    status = _get(app_client, f"/api/minute-status?date={GAP_DAY}&venue=nxt", admin_jwt)
    assert (status["venue"], status["session"]["bars_per_code"], status["session"]["closing_bar"]) == (
        "nxt",
        NXT_BARS_PER_DAY,
        None,
    )
    assert status["today_total"] == (NXT_BARS_PER_DAY + 1) + (NXT_BARS_PER_DAY - 1)
    assert status["expected_total"] == NXT_BARS_PER_DAY * len(CODES)
    assert status["first_time"] == "2026-11-25T08:00:00+09:00" and status["last_time"] == "2026-11-25T19:59:00+09:00"
    verification = {
        c["stock_code"]: (c["bars"], c["verification"]["status"], c["verification"]["missing"], c["verification"]["unexpected"])
        for c in status["codes"]
    }
    assert verification == {
        COMPLETE: (NXT_BARS_PER_DAY + 1, "complete", 0, 1),  # the bar off the grid: reported, harmless
        GAPPY: (NXT_BARS_PER_DAY - 1, "complete_with_explained_absences", 1, 0),  # no closing bar to miss
        EXPLAINED: (0, "no_data", NXT_BARS_PER_DAY, 0),
        EMPTY: (0, "no_data", NXT_BARS_PER_DAY, 0),
    }
    # Its own alerts and those about no venue in particular, newest first.
    assert [(a["kind"], a["venue"]) for a in status["alerts"]] == [("gap", "nxt"), ("incomplete_day", None)]

    heatmap = _get(app_client, f"/api/heatmap?date={GAP_DAY}&venue=nxt", admin_jwt)
    assert heatmap["venue"] == "nxt"
    assert (heatmap["minutes"][0], heatmap["minutes"][-1], len(heatmap["minutes"])) == ("08:00", "19:59", 690)
    cells = {row["stock_code"]: row["cells"] for row in heatmap["rows"]}
    assert cells[COMPLETE] == "c" * NXT_BARS_PER_DAY
    assert cells[GAPPY] == "c" * (NXT_BARS_PER_DAY - 1) + "a"
    assert _get(app_client, f"/api/heatmap?date={GAP_DAY}&venue=krx", admin_jwt)["venue"] == "krx"


def test_an_unknown_venue_is_rejected_with_the_choices(app_client, admin_jwt):
    for path in ("/api/minute-status", "/api/heatmap"):
        response = app_client.get(f"{path}?venue=NXT", headers={"Authorization": f"Bearer {admin_jwt}"})
        assert response.status_code == 422, path
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", "venue"] and error["msg"] == "Input should be 'krx', 'nxt' or 'unified'"


def _stored_bars(dsn: str, code: str, day: date, venue: str = "krx") -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT datetime, open, high, low, close, volume FROM stock_prices_minute"
            " WHERE stock_code = %s AND venue = %s AND datetime::date = %s ORDER BY datetime",
            (code, venue, day),
        ).fetchall()


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0] == "time,open,high,low,close,volume,bar_count"
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


def test_a_days_bars_as_csv_are_the_stored_bars(app_client, admin_jwt, market_db):
    headers = {"Authorization": f"Bearer {admin_jwt}"}
    stored = _stored_bars(market_db, GAPPY, GAP_DAY)
    minute_rows = _csv(app_client.get(f"/api/bars?code={GAPPY}&date={GAP_DAY}&format=csv", headers=headers))
    assert [
        (datetime.fromisoformat(r["time"]), int(r["open"]), int(r["high"]), int(r["low"]), int(r["close"]), int(r["volume"]))
        for r in minute_rows
    ] == [(minute.replace(tzinfo=KST), *values) for minute, *values in stored]
    assert minute_rows[0]["time"] == "2026-11-25T09:00:00+09:00" and {r["bar_count"] for r in minute_rows} == {"1"}

    # 5-minute bars: the stored minutes grouped by their 5-minute bucket from 09:00, the closing
    # auction's 15:30 bar in a bucket of its own.
    response = app_client.get(f"/api/bars?code={GAPPY}&date={GAP_DAY}&interval=5&format=csv", headers=headers)
    assert response.headers["content-disposition"] == f'attachment; filename="{GAPPY}_krx_{GAP_DAY}_5min.csv"'
    buckets: dict[datetime, list[tuple]] = {}
    for minute, *values in stored:
        buckets.setdefault(minute.replace(minute=minute.minute - minute.minute % 5), []).append(values)
    expected = [
        (start.replace(tzinfo=KST).isoformat(), bars[0][0], max(b[1] for b in bars), min(b[2] for b in bars),
         bars[-1][3], sum(b[4] for b in bars), len(bars))
        for start, bars in buckets.items()
    ]
    got = [
        (r["time"], *(int(r[c]) for c in ("open", "high", "low", "close", "volume", "bar_count")))
        for r in _csv(response)
    ]
    assert got == expected
    assert got[-1][0] == "2026-11-25T15:30:00+09:00" and got[-1][-1] == 1
    assert len(got) == 77 - GAP_MINUTES // 5  # 09:00-15:19 and the close, less the two buckets of the gap


def test_a_days_bars_as_json_per_venue_and_interval(app_client, admin_jwt, market_db):
    body = _get(app_client, f"/api/bars?code={COMPLETE}&date={GAP_DAY}&venue=nxt&interval=60", admin_jwt)
    assert (body["code"], body["venue"], body["date"], body["interval"]) == (COMPLETE, "nxt", "2026-11-25", 60)
    # Nextrade's 08:00 to 19:59, and the bar it served off the grid (08:55), in the 08:00 bucket.
    assert [bar["time"][11:16] for bar in body["bars"]] == [f"{hour:02d}:00" for hour in range(8, 20)]
    assert body["bars"][0]["bar_count"] == 50 + 1
    assert sum(bar["volume"] for bar in body["bars"]) == sum(row[-1] for row in _stored_bars(market_db, COMPLETE, GAP_DAY, "nxt"))
    # The default interval is the minute bars; a code without bars has none.
    assert len(_get(app_client, f"/api/bars?code={COMPLETE}&date={GAP_DAY}", admin_jwt)["bars"]) == BARS_PER_DAY
    assert _get(app_client, f"/api/bars?code={EMPTY}&date={GAP_DAY}", admin_jwt)["bars"] == []


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("code=5930", "code", "String should match pattern '^[0-9A-Z]{6}$'"),
        ("code=005930&interval=15", "interval", "Value error, interval must be one of 1, 5, 10, 30, 60 (minutes), got 15"),
        ("code=005930&interval=five", "interval", "Input should be a valid integer, unable to parse string as an integer"),
        ("code=005930&format=xlsx", "format", "Input should be 'json' or 'csv'"),
        ("code=005930&date=2026-13-01", "date", "Input should be a valid date or datetime, month value is outside expected range of 1-12"),
        ("date=2026-11-25", "code", "Field required"),
    ],
)
def test_bad_bars_queries_are_rejected_naming_the_parameter(app_client, admin_jwt, query, field, message):
    response = app_client.get(f"/api/bars?{query}", headers={"Authorization": f"Bearer {admin_jwt}"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["loc"], error["msg"]) == (["query", field], message)


def test_minutes_not_due_yet_are_not_missing(market_db):
    """On the day itself, at 10:00:30, the bars up to 09:58 are due; 09:59 is still being collected."""
    from kis.web import status

    now = datetime.combine(GAP_DAY, datetime.min.time(), KST) + timedelta(hours=10, seconds=30)
    with psycopg.connect(market_db) as conn:
        rows = status.heatmap(conn, GAP_DAY, [EMPTY], default_calendar(), now)["rows"]
    assert rows == [
        {"stock_code": EMPTY, "verification": "no_data", "cells": "m" * 59 + "f" * (BARS_PER_DAY - 59)}
    ]
    # Nextrade's day ends without a closing print to wait for: at 20:01:30 its last bar, 19:59, is due.
    now = datetime.combine(GAP_DAY, datetime.min.time(), KST) + timedelta(hours=20, minutes=1, seconds=30)
    with psycopg.connect(market_db) as conn:
        rows = status.heatmap(conn, GAP_DAY, [EMPTY], default_calendar(), now, venue=Venue.NEXTRADE)["rows"]
    assert rows == [{"stock_code": EMPTY, "verification": "no_data", "cells": "m" * NXT_BARS_PER_DAY}]


def test_minutes_before_collection_began_are_the_backfills_not_missing(market_db):
    """A start at 14:30: what its first run could not reach is left to the backfill, as the live gap
    check leaves it, until the day's verification; a day without any minute run is all before."""
    from kis.web import status

    day, after = MIDDAY_START.date(), BARS_PER_DAY - FIRST_FETCHED
    with psycopg.connect(market_db) as conn:
        cells = {row["stock_code"]: row["cells"] for row in status.heatmap(conn, day, CODES, default_calendar(), AFTER_CLOSE)["rows"]}
        assert cells == {code: "b" * FIRST_FETCHED + ("c" if code == COMPLETE else "m") * after for code in CODES}
        evening = AFTER_CLOSE + timedelta(hours=5)  # after Nextrade's 20:00 close
        nxt = status.heatmap(conn, day, [COMPLETE], default_calendar(), evening, venue=Venue.NEXTRADE)["rows"]
        assert nxt == [{"stock_code": COMPLETE, "verification": None, "cells": "b" * NXT_BARS_PER_DAY}]
        # Verified, what is still missing is missing (a gap here: the volumes do not explain it).
        storage.verify_day(conn, day, _grid(day), CODES, run_id="test")
        verified = status.heatmap(conn, day, [COMPLETE], default_calendar(), AFTER_CLOSE)["rows"]
        conn.rollback()
    assert verified[0]["cells"] == "m" * FIRST_FETCHED + "c" * after


def test_holiday_expects_nothing(app_client, admin_jwt):
    status = _get(app_client, f"/api/minute-status?date={HOLIDAY}", admin_jwt)
    assert (
        status["today_total"],
        status["expected_total"],
        status["collection_rate"],
        status["stock_count"],
    ) == (
        0,
        0,
        None,
        0,
    )
    assert status["session"] is None
    # Nothing is expected, so no code is listed as if it were (nor in the heatmap).
    assert status["codes"] == []
    heatmap = _get(app_client, f"/api/heatmap?date={HOLIDAY}", admin_jwt)
    assert heatmap["minutes"] == [] and heatmap["rows"] == []


def test_every_route_needs_a_login(app_client):
    for path in (
        f"/api/minute-status?date={COMPLETE_DAY}",
        "/api/heatmap",
        f"/api/bars?code={COMPLETE}&date={COMPLETE_DAY}&format=csv",
        "/api/archive-progress",
        "/dashboard",
        "/static/dashboard.js",
    ):
        assert app_client.get(path).status_code == 401, path
        assert app_client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403, path
        app_client.cookies.set("_token", "not-a-jwt")
        try:
            assert app_client.get(path).status_code == 403, path
        finally:
            app_client.cookies.clear()


def test_a_browser_without_login_is_sent_to_the_login_page_and_back(app_client):
    """Only a browser's visit to the page (it asks for HTML) is redirected; the API stays 401 JSON."""
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    response = app_client.get(f"/dashboard?date={GAP_DAY}&venue=nxt", headers=html, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == (
        "../api/v2/auth/login?next=%2Fdashboard%3Fdate%3D2026-11-25%26venue%3Dnxt"
    )
    for path, headers in (
        ("/dashboard", {"Accept": "application/json"}),
        ("/dashboard", {}),
        (f"/api/minute-status?date={GAP_DAY}", html),
    ):
        response = app_client.get(path, headers=headers, follow_redirects=False)
        assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"}), path


def test_bad_date_is_rejected(app_client, admin_jwt):
    response = app_client.get(
        "/api/minute-status?date=2026-13-01", headers={"Authorization": f"Bearer {admin_jwt}"}
    )
    assert response.status_code == 422


def test_the_archive_progress_counts_the_year_kis_keeps_per_month(app_client, admin_jwt):
    """Each session up to GAP_DAY takes GAP_DAY's universe (the four codes); the settled ones are the
    complete and explained code-days; the day after GAP_DAY has no universe yet."""
    progress = _get(app_client, "/api/archive-progress", admin_jwt)
    sessions = default_calendar().sessions_between(date(2025, 11, 27), AFTER_CLOSE.date())
    assert (progress["venue"], progress["from"], progress["to"]) == ("krx", str(sessions[0].day), "2026-11-26")
    assert len(progress["months"]) == 13 and progress["months"][0]["month"] == "2026-11"
    expected = len(CODES) * (len(sessions) - 1)
    # COMPLETE_DAY's four; GAP_DAY's complete, explained and unverifiable (GAPPY: its day volume exceeds
    # its bars) codes; not EMPTY's day, no_data.
    archived = len(CODES) + 3
    assert progress["total"] | {"remaining_requests": None} == {
        "sessions": len(sessions), "sessions_without_universe": 1, "expected": expected, "archived": archived,
        "remaining": expected - archived, "remaining_requests": None,
        "estimated_seconds": round(progress["total"]["remaining_requests"] / 14.4),
    }  # fmt: skip
    assert (progress["keys"], progress["requests_per_second"], progress["rate_problem"]) == (1, 14.4, None)
    nextrade = _get(app_client, "/api/archive-progress?venue=nxt", admin_jwt)
    assert (nextrade["venue"], nextrade["total"]["archived"]) == ("nxt", 2)  # COMPLETE and GAPPY on GAP_DAY
    bad_venue = app_client.get("/api/archive-progress?venue=tokyo", headers={"Authorization": f"Bearer {admin_jwt}"})
    assert bad_venue.status_code == 422


def test_a_bad_archive_selection_answers_503_naming_the_variable(market_db, airflow_db, admin_jwt):
    from fastapi.testclient import TestClient

    from kis.web.app import Sources, create_app

    sources = Sources(
        connect=lambda: psycopg.connect(market_db), now=lambda: AFTER_CLOSE,
        archive_selection=lambda: UniverseSelection.parse('{"markets": ["NYSE"]}'),
    )
    with TestClient(create_app(sources)) as client:
        response = client.get("/api/archive-progress", headers={"Authorization": f"Bearer {admin_jwt}"})
    assert response.status_code == 503
    assert response.json()["detail"].startswith("kis_archive_universe: markets must be a list of KOSPI")


def test_unmigrated_database_answers_503(new_database, airflow_db, admin_jwt):
    from fastapi.testclient import TestClient

    from kis.web.app import Sources, create_app

    dsn = new_database()
    sources = Sources(connect=lambda: psycopg.connect(dsn), codes=lambda: CODES, now=lambda: AFTER_CLOSE)
    with TestClient(create_app(sources)) as client:
        response = client.get("/api/minute-status", headers={"Authorization": f"Bearer {admin_jwt}"})
    assert response.status_code == 503
    assert "schema" in response.json()["detail"]


# --- a real api-server with the plugin --------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(pg_cluster: localpg.Cluster) -> Iterator[dict[str, Any]]:
    """An api-server on a free port, its market database loaded with the three dates, and a token."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    port = free_port()
    env = airflow_env.environment(f"webtest_{worker}", api_port=port)
    env["AIRFLOW_VAR_KIS_WATCHLIST"] = ",".join(CODES)
    # Two keys for the archive's rate, which the API server reads from them (no request to KIS).
    env |= {
        "AIRFLOW_CONN_KIS_DEFAULT": airflow_env.kis_connection("127.0.0.1", free_port()),
        "AIRFLOW_CONN_KIS_MOCK": airflow_env.kis_connection("127.0.0.1", free_port(), environment="mock"),
        "AIRFLOW_VAR_KIS_CONNECTIONS": '["kis_default", "kis_mock"]',
    }
    market_dsn = localpg.create_database(
        env["AIRFLOW_CONN_KIS_MARKET_DB"].rsplit("/", 1)[1], drop_existing=True
    )
    _load_market(market_dsn)
    base = f"http://127.0.0.1:{port}"
    with running_airflow(env, components=("api-server",)):
        login = httpx.post(
            f"{base}/auth/token", json={"username": "admin", "password": airflow_env.admin_password()}
        )
        assert login.status_code == 201, login.status_code
        yield {"base": base, "token": Secret(login.json()["access_token"]), "env": env}


@pytest.mark.stack
def test_api_server_protects_and_serves_the_plugin(api_server):
    base, token = api_server["base"], api_server["token"]
    url = f"{base}/kis/api/minute-status?date={GAP_DAY}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer forged"}).status_code == 403
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["expected_total"] == BARS_PER_DAY * len(CODES)
    assert httpx.get(f"{base}/kis/dashboard", cookies={"_token": token}).status_code == 200
    # The archive's rate from the connections of kis_connections: the real key's paced 14.4/s only.
    progress = httpx.get(f"{base}/kis/api/archive-progress", headers={"Authorization": f"Bearer {token}"}).json()
    assert (progress["keys"], progress["requests_per_second"], progress["rate_problem"]) == (1, 14.4, None)

    plugins = httpx.get(f"{base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()[
        "plugins"
    ]
    ours = next(p for p in plugins if p["name"] == "kis_minute_bars_web")
    assert ours["external_views"][0]["href"] == "/kis/dashboard"
    assert ours["fastapi_apps"][0]["url_prefix"] == "/kis"


@pytest.mark.stack
def test_curl_gets_a_days_5_minute_csv(api_server):
    """As docs/bars-out.md shows it: a token from /auth/token, then curl."""
    base, token = api_server["base"], api_server["token"]
    url = f"{base}/kis/api/bars?code={COMPLETE}&date={GAP_DAY}&interval=5&format=csv"
    curl = subprocess.run(
        ["curl", "--silent", "--fail-with-body", "--header", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert curl.returncode == 0, curl.stdout
    lines = curl.stdout.splitlines()
    assert lines[0] == "time,open,high,low,close,volume,bar_count"
    assert lines[1].startswith("2026-11-25T09:00:00+09:00,1000,1010,990,1000,") and lines[1].endswith(",5")
    assert lines[-1].startswith("2026-11-25T15:30:00+09:00,") and lines[-1].endswith(",1")
    assert len(lines) == 1 + 77
    unauthenticated = subprocess.run(
        ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", url],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert unauthenticated.stdout == "401"


# --- the dashboard in headless Chromium ------------------------------------------------------------


@pytest.mark.stack
def test_dashboard_in_a_browser(api_server, browser):
    base = api_server["base"]
    log_in(browser, base, api_server["token"])
    browser.call("Page.navigate", url=f"{base}/kis/dashboard?date={GAP_DAY}")
    state = browser.wait_for(
        "document.body && ['ready', 'error'].includes(document.body.dataset.state)"
        " && document.body.dataset.state"
    )
    error = browser.evaluate("document.getElementById('error').textContent")
    assert state == "ready", error
    stored = 3 * BARS_PER_DAY - GAP_MINUTES - VI_MINUTES
    assert browser.evaluate("document.getElementById('rate').textContent") == (
        f"{_truncated(100 * stored / 4 / BARS_PER_DAY):g} %"
    )
    assert browser.evaluate(KST_UNLABELLED_JS) == []
    assert browser.evaluate("document.getElementById('updated').textContent").endswith(" KST")
    canvas = browser.evaluate(
        "[document.getElementById('heatmap').width, document.getElementById('heatmap').height]"
    )
    assert canvas[0] > 600 and canvas[1] > 40
    # The pixel of GAPPY's first missing minute is red, COMPLETE's at the same minute green.
    assert browser.evaluate(_pixel_js(GAPPY, 100)) == [224, 49, 49]
    assert browser.evaluate(_pixel_js(COMPLETE, 100)) == [47, 158, 68]
    # The latency panel follows the chosen date: the runs of that KST day, not the latest of any.
    assert browser.evaluate("document.getElementById('latency-note').textContent") == (
        f"No runs of kis_minute_bars on {GAP_DAY}."
    )
    asked = browser.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('dag_id_pattern=kis_minute_bars'))"
    )
    assert asked and {
        (httpx.URL(url).params["run_after_gte"], httpx.URL(url).params["run_after_lt"]) for url in asked
    } == {(f"{GAP_DAY}T00:00:00+09:00", f"{GAP_DAY + timedelta(days=1)}T00:00:00+09:00")}
    assert browser.evaluate("document.getElementById('ahead').hidden") is True  # no run dated ahead of the clock
    # The market archive's section loads when opened: a row per month of the year KIS keeps, by the
    # server's clock (the figures: test_the_archive_progress_counts_the_year_kis_keeps_per_month).
    browser.evaluate("document.querySelector('#archive summary').click()")
    browser.wait_for("document.querySelectorAll('#archive-months tbody tr').length >= 12")
    summary = browser.evaluate("document.getElementById('archive-summary').textContent")
    assert re.match(r"[\d,]+ of [\d,]+ code-days archived on krx \(\d{4}-\d\d-\d\d to ", summary), summary
    assert browser.evaluate(
        "[...document.querySelectorAll('#archive-months tbody tr')].every(r => r.cells.length === 7)"
    )
    browser.screenshot(OUTPUT_DIR / "dashboard.png")
    # Each code's row links to its bars of the day as CSV, which the logged-in browser downloads.
    links = browser.evaluate(
        f"[...[...document.querySelectorAll('#per-code tbody tr')].find(r => r.cells[0].textContent === '{GAPPY}')"
        ".querySelectorAll('.bars-out a')].map(a => a.href)"
    )
    assert links == [
        f"{base}/kis/api/bars?code={GAPPY}&date={GAP_DAY}&venue=krx&interval={m}&format=csv" for m in (1, 5, 10, 30, 60)
    ]
    csv_text = browser.call(
        "Runtime.evaluate", expression=f"fetch({json.dumps(links[1])}).then(r => r.text())", awaitPromise=True
    )["result"]["value"]
    assert csv_text.startswith("time,open,high,low,close,volume,bar_count\n2026-11-25T09:00:00+09:00,")

    # The venue selector: Nextrade's day of the same date, remembered in the URL.
    browser.evaluate(
        "(() => { const v = document.getElementById('venue'); v.value = 'nxt';"
        " v.dispatchEvent(new Event('change')); })()"
    )
    browser.wait_for("heatmapData.venue === 'nxt' && document.body.dataset.state === 'ready'")
    assert browser.evaluate("heatmapData.minutes.length") == NXT_BARS_PER_DAY
    assert browser.evaluate("new URL(location.href).searchParams.get('venue')") == "nxt"
    # GAPPY's missing 19:59 is an explained absence (blue): no closing print was due.
    assert browser.evaluate(_pixel_js(GAPPY, NXT_BARS_PER_DAY - 1)) == [116, 192, 252]
    browser.screenshot(OUTPUT_DIR / "dashboard-nxt.png")
    assert browser.errors == []


@pytest.mark.stack
def test_the_date_is_shown_and_typed_as_iso_whatever_the_browsers_locale(api_server, browser):
    """A date input shows the locale's order (11/25/2026 in en-US) beside KST times: the field is
    text, YYYY-MM-DD, with the browser's calendar behind a button."""
    base = api_server["base"]
    log_in(browser, base, api_server["token"])
    browser.call("Page.navigate", url=f"{base}/kis/dashboard?date={GAP_DAY}")
    browser.wait_for("document.body && document.body.dataset.state === 'ready'")
    assert browser.evaluate("document.getElementById('date').type") == "text"
    assert browser.evaluate("document.getElementById('date').value") == str(GAP_DAY)
    assert browser.evaluate("getComputedStyle(document.getElementById('calendar')).opacity") == "0"

    def choose(text: str) -> None:
        browser.type_into("document.getElementById('date')", text)
        browser.evaluate("document.getElementById('date').dispatchEvent(new Event('change'))")

    choose(str(COMPLETE_DAY))
    browser.wait_for(f"heatmapData.date === '{COMPLETE_DAY}' && document.body.dataset.state === 'ready'")
    assert browser.evaluate("new URL(location.href).searchParams.get('date')") == str(COMPLETE_DAY)
    choose("11/25/2026")  # refused at the field, nothing loaded
    assert browser.evaluate("document.getElementById('date').validity.patternMismatch") is True
    assert browser.evaluate("[heatmapData.date, new URL(location.href).searchParams.get('date')]") == [str(COMPLETE_DAY)] * 2
    # The calendar button opens the browser's picker; a day picked there is shown and loaded as ISO.
    browser.click("document.getElementById('pick')")
    browser.evaluate(
        f"(() => {{ const c = document.getElementById('calendar'); c.value = '{GAP_DAY}';"
        " c.dispatchEvent(new Event('change')); })()"
    )
    browser.wait_for(f"heatmapData.date === '{GAP_DAY}' && document.body.dataset.state === 'ready'")
    assert browser.evaluate("document.getElementById('date').value") == str(GAP_DAY)
    assert browser.errors == []


@pytest.mark.stack
def test_a_mid_day_start_in_a_browser(api_server, browser):
    """The minutes before the day's first minute run could reach are the backfill's, in a colour and
    legend of their own, and counted apart from those due."""
    base, day = api_server["base"], MIDDAY_START.date()
    log_in(browser, base, api_server["token"])
    browser.call("Page.navigate", url=f"{base}/kis/dashboard?date={day}")
    assert browser.wait_for(
        "document.body && ['ready', 'error'].includes(document.body.dataset.state) && document.body.dataset.state"
    ) == "ready", browser.evaluate("document.getElementById('error').textContent")
    before, red, green = [177, 151, 252], [224, 49, 49], [47, 158, 68]
    assert browser.evaluate(_pixel_js(COMPLETE, 0)) == before
    assert browser.evaluate(_pixel_js(EMPTY, FIRST_FETCHED - 1)) == before
    assert browser.evaluate(_pixel_js(EMPTY, FIRST_FETCHED)) == red  # within the first run's reach
    assert browser.evaluate(_pixel_js(COMPLETE, FIRST_FETCHED)) == green
    legend = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#legend span')].map(s => [s.dataset.state, s.textContent]))"
    )
    assert legend == {
        "c": "collected", "a": "expected absence", "m": "missing", "b": "before collection began", "f": "not yet"
    }
    swatch = browser.evaluate("getComputedStyle(document.querySelector('#legend [data-state=b] i')).backgroundColor")
    assert swatch == f"rgb({before[0]}, {before[1]}, {before[2]})"
    due, missing = len(CODES) * (BARS_PER_DAY - FIRST_FETCHED), (len(CODES) - 1) * (BARS_PER_DAY - FIRST_FETCHED)
    assert browser.evaluate("document.getElementById('due').textContent") == f"{_truncated(100 * (due - missing) / due):g} %"
    assert browser.evaluate("document.getElementById('due-detail').textContent") == (
        f"{missing} missing of {due} due cells; {len(CODES) * FIRST_FETCHED:,} before collection began, the backfill's"
    )
    browser.screenshot(OUTPUT_DIR / "dashboard-mid-day-start.png")
    assert browser.errors == []


@pytest.mark.stack
def test_a_run_dated_ahead_of_the_clock_is_explained_on_the_dashboard(api_server, browser):
    """A run Airflow will start no task of for days, holding its DAG: the trigger refuses one dated
    by the browser's clock (kis.timetable), but a data interval given by hand (the form's "Specify
    Manually") or a clock set back still makes one; the dashboard names it and the way out."""
    base, token = api_server["base"], api_server["token"]
    # The DAGs in the api-server's metadata database, as the dag-processor writes them.
    subprocess.run(
        [str(airflow_env.VENV_BIN / "airflow"), "dags", "reserialize"],
        env={**os.environ, **api_server["env"]}, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    api = httpx.Client(base_url=f"{base}/api/v2/dags/kis_minute_backfill", headers={"Authorization": f"Bearer {token}"})
    ahead = datetime.now(KST).replace(microsecond=0) + timedelta(days=3, minutes=10, seconds=30)
    created = api.post("/dagRuns", json={
        "logical_date": ahead.isoformat(), "data_interval_start": (ahead - timedelta(days=1)).isoformat(),
        "data_interval_end": ahead.isoformat(), "conf": {},
    })  # fmt: skip
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    try:
        log_in(browser, base, token)
        browser.call("Page.navigate", url=f"{base}/kis/dashboard?date={GAP_DAY}")
        browser.wait_for("document.body && document.body.dataset.state === 'ready'")
        assert browser.evaluate("document.getElementById('ahead').hidden") is False
        assert browser.evaluate("document.getElementById('ahead').innerText") == (
            f"kis_minute_backfill {run_id}: its logical date, {ahead:%Y-%m-%d %H:%M:%S} KST, is 3 days 10 min ahead"
            " of the server's clock. Airflow starts none of its tasks before then, and it holds the DAG's one active"
            " run: the DAG's other runs wait behind it. Mark it failed (or delete it) and trigger again with the"
            " logical date cleared."
        )
        assert browser.errors == []
    finally:
        api.delete(f"/dagRuns/{run_id}")
        api.close()


def _pixel_js(code: str, minute_index: int) -> str:
    """JS giving the RGB of the centre of one heatmap cell, located by the page's own geometry."""
    return (
        "(() => { const d = heatmapData, g = heatmapGeometry(d), s = window.devicePixelRatio || 1;"
        f" const r = d.rows.findIndex(x => x.stock_code === '{code}');"
        f" const x = (LABEL_WIDTH + {minute_index} * g.cellWidth + g.cellWidth / 2) * s;"
        " const y = (AXIS_HEIGHT + r * ROW_HEIGHT + ROW_HEIGHT / 2) * s;"
        " const ctx = document.getElementById('heatmap').getContext('2d');"
        " return Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)); })()"
    )


# The texts of the page that show a clock time without saying KST, themselves or in their column's
# header (the canvas's axis is under a heading that says it).
KST_UNLABELLED_JS = """(() => {
  const unlabelled = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent;
    if (!/\\d{2}:\\d{2}/.test(text) || text.includes("KST")) continue;
    const td = walker.currentNode.parentElement.closest("td");
    const header = td ? td.closest("table").tHead.rows[0].cells[td.cellIndex].textContent : "";
    if (!header.includes("KST")) unlabelled.push(text);
  }
  return unlabelled;
})()"""


@pytest.mark.stack
def test_dashboard_without_login_goes_to_the_login_page_and_back(api_server, browser):
    base = api_server["base"]
    browser.call("Page.navigate", url=f"{base}/kis/dashboard?date={GAP_DAY}")
    login = browser.wait_for("location.pathname.endsWith('/auth/login/') || location.pathname.endsWith('/auth/login')"
                             " ? location.href : ''")
    assert "Not authenticated" not in browser.evaluate("document.body ? document.body.innerText : ''")
    assert httpx.URL(login).params["next"] == f"/kis/dashboard?date={GAP_DAY}"
    # Signing in with the page's own form brings the browser back to the dashboard, which loads.
    browser.wait_for("!!document.querySelector('input[name=password]')")
    browser.evaluate(_sign_in_js("admin", airflow_env.admin_password()))
    assert browser.wait_for("location.pathname === '/kis/dashboard' && document.body"
                            " && ['ready', 'error'].includes(document.body.dataset.state) && document.body.dataset.state") == "ready"
    assert browser.evaluate("location.search") == f"?date={GAP_DAY}"


def _sign_in_js(username: str, password: str) -> str:
    """JS filling the simple auth manager's login form (React inputs: the native setter, then an
    input event) and submitting it."""
    return (
        "(() => { const set = (name, value) => { const input = document.querySelector(`input[name=${name}]`);"
        " Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, value);"
        " input.dispatchEvent(new Event('input', { bubbles: true }));"
        " input.dispatchEvent(new Event('change', { bubbles: true })); };"
        f" set('username', {json.dumps(username)}); set('password', {json.dumps(password)});"
        # After React has rendered the new values (the button is disabled while the form is empty).
        " setTimeout(() => document.querySelector('button[type=submit]').click(), 500); })()"
    )


@pytest.mark.stack
def test_dashboard_inside_the_airflow_ui(api_server, browser):
    """The external view: the UI's own page /plugin/kis-dashboard shows the dashboard in an iframe."""
    base = api_server["base"]
    log_in(browser, base, api_server["token"])
    browser.call("Page.navigate", url=f"{base}/plugin/kis-dashboard")
    frame_state = (
        "(() => { const d = document.querySelector('iframe')?.contentDocument;"
        " return d && d.body && d.body.dataset.state; })()"
    )
    assert browser.wait_for(f"['ready', 'error'].includes({frame_state}) && {frame_state}") == "ready"
    browser.screenshot(OUTPUT_DIR / "airflow-ui-dashboard.png")

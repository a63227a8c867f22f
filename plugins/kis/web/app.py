"""The plugin's FastAPI app: the minute-status API and the collection dashboard.

The API server mounts it under ``/kis`` (``plugins/kis_web_plugin.py``):

- ``GET /kis/api/minute-status?date=YYYY-MM-DD&venue=krx``: the seed's figures, per-code
  completeness and verification, the latest alerts (see :func:`kis.web.status.minute_status`);
- ``GET /kis/api/heatmap?date=YYYY-MM-DD&venue=krx``: codes x minutes states
  (:func:`kis.web.status.heatmap`);
- ``GET /kis/api/bars?code=005930&date=YYYY-MM-DD&interval=5&format=csv&venue=krx``: one code's
  bars of a day, the minute bars (``interval=1``, the default) or resampled to 5, 10, 30 or 60
  minutes, as JSON (the default) or CSV with a header line (:mod:`kis.web.bars_api`);
- ``GET /kis/api/archive-progress?venue=krx``: the market archive's progress per month over the
  days KIS still serves, with the requests left and the time at the keys' rate
  (:func:`kis.archive_scope.progress`);
- ``GET /kis/dashboard``: the page, shown inside the Airflow UI as an external view; it reads the
  two endpoints above and the run latencies from Airflow's own REST API.

``date`` defaults to today in KST; ``venue`` (krx, nxt or unified) to krx, and an unknown one is
answered 422 naming the choices. A mounted app inherits no authentication from the API server, so
the whole app depends on Airflow's own security dependency: the caller must be logged in (Bearer
token, or the UI's ``_token`` cookie, which the dashboard's iframe sends) and allowed to read the
runs of ``kis_minute_bars``. No credential gives 401, an invalid one 403; except that a browser
(it asks for HTML) opening the dashboard without a login is sent to Airflow's login page, which
brings it back. Every time in the answers is ISO 8601 in KST with its offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from kis import archive_scope
from kis.alerts import minute_run_deadline
from kis.archive_scope import ArchiveRate, UniverseSelection
from kis.bar import KST
from kis.calendar import KrxCalendar, default_calendar
from kis.parsing import CODE_PATTERN
from kis.resources import MARKET_DB_CONN_ID
from kis.timetable import MANUAL_RUN_LEAD
from kis.venues import Venue
from kis.web import bars_api, status

__all__ = ["COLLECTION_DAG_ID", "LOGIN_PATH", "Sources", "create_app"]

COLLECTION_DAG_ID = "kis_minute_bars"
STATIC_DIR = Path(__file__).parent / "static"
# The only files the page needs; served by a route (not a StaticFiles mount, which would bypass the
# app's authentication dependency).
STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
NO_STORE = {"Cache-Control": "no-store"}
# Airflow's public login route, relative to the dashboard (<base>/kis/dashboard): it redirects to the
# configured auth manager's login page (``get_url_login``) with ``next``, after checking that ``next``
# stays on this server, and the simple auth manager's page returns there after the login.
LOGIN_PATH = "../api/v2/auth/login"
# ``date`` in the URL; ``day`` in the code, so as not to shadow the type.
DateParam = Annotated[
    date | None, Query(alias="date", description="The trading date (KST); today when left out.")
]
VenueParam = Annotated[
    Venue, Query(description="The venue: krx, nxt (Nextrade) or unified (KRX + Nextrade).")
]
CodeParam = Annotated[
    str, Query(pattern=f"^{CODE_PATTERN.pattern}$", description="The stock code: six of 0-9 or A-Z, e.g. 005930.")
]
IntervalParam = Annotated[
    int,
    AfterValidator(bars_api.interval),
    Query(description="Minutes per bar: 1 (the minute bars), 5, 10, 30 or 60."),
]
FormatParam = Annotated[Literal["json", "csv"], Query(alias="format", description="json or csv (with a header line).")]
AlertLimit = Annotated[int, Query(ge=0, le=200, description="How many of the latest alerts to return.")]


def _market_connection() -> psycopg.Connection:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DB_CONN_ID).get_conn()


def _watchlist_codes() -> Sequence[str]:
    """The watch-list the DAGs collect: the Variable ``kis_watchlist`` or ``include/watchlist.csv``."""
    # The API server is no task: the models' Variable reads the metadata database and the
    # environment directly (the SDK's would need a supervisor).
    from airflow.models.variable import Variable

    from kis.watchlist import load_watchlist

    return load_watchlist(Variable.get("kis_watchlist", default_var=None)).codes


def _archive_selection() -> UniverseSelection:
    """The Variable ``kis_archive_universe``; a bad value raises ``ValueError`` naming it."""
    from airflow.models.variable import Variable

    return UniverseSelection.parse(Variable.get(archive_scope.UNIVERSE_VARIABLE, default_var=None))


def _archive_rate() -> ArchiveRate:
    """The paced rate of the keys of ``kis_connections`` that serve past days."""
    from airflow.models.variable import Variable

    from kis.app_keys import parse_connections
    from kis.hook import KisHook

    settings: dict[str, object] = {}
    for conn_id in parse_connections(Variable.get("kis_connections", default_var=None)):
        try:
            settings[conn_id] = KisHook(kis_conn_id=conn_id).settings
        except Exception as err:  # noqa: BLE001 - a missing or incomplete connection, named in the answer
            settings[conn_id] = err
    return archive_scope.archive_rate(settings)


def _run_deadline_seconds() -> int:
    return int(minute_run_deadline().total_seconds())


@dataclass(frozen=True)
class Sources:
    """Where the app reads from; the defaults are the Airflow connection, Variable and wall clock."""

    connect: Callable[[], psycopg.Connection] = _market_connection
    codes: Callable[[], Sequence[str]] = _watchlist_codes
    now: Callable[[], datetime] = lambda: datetime.now(KST)
    calendar: Callable[[], KrxCalendar] = default_calendar
    run_deadline_seconds: Callable[[], int] = _run_deadline_seconds
    archive_selection: Callable[[], UniverseSelection] = _archive_selection
    archive_rate: Callable[[], ArchiveRate] = _archive_rate


def _authorized() -> Any:
    """Airflow's check that the caller may read the collection DAG's runs (imported lazily: the
    security module pulls in the API server's whole stack)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=COLLECTION_DAG_ID)


def create_app(sources: Sources | None = None) -> FastAPI:
    """The app, every route behind Airflow's authentication; ``sources`` replaces the defaults in tests."""
    src = sources or Sources()
    app = FastAPI(
        title="KIS minute bars",
        description=__doc__,
        dependencies=[Depends(_authorized())],
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def login_first(request: Request, exc: StarletteHTTPException) -> Response:
        """A browser on the dashboard without a login goes to the login page and comes back; every
        other error, and any client that does not ask for HTML, keeps FastAPI's JSON answer."""
        if exc.status_code == 401 and _is_page_visit(request):
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{LOGIN_PATH}?{urlencode({'next': back})}", status_code=303)
        return await http_exception_handler(request, exc)

    @contextmanager
    def market_db() -> Iterator[psycopg.Connection]:
        try:
            conn = src.connect()
        except psycopg.OperationalError as err:
            raise HTTPException(503, f"The market database is unreachable: {err}") from None
        try:
            yield conn
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction):
            raise HTTPException(
                503, "The market schema does not exist yet or is behind this version: the DAGs create and "
                "upgrade it on their runs."
            ) from None
        finally:
            conn.close()

    def day_of(requested: date | None) -> date:
        return requested or src.now().astimezone(KST).date()

    @app.get("/api/minute-status", summary="The collection status of a date")
    def minute_status(
        day: DateParam = None, venue: VenueParam = Venue.KRX, alerts: AlertLimit = status.ALERT_LIMIT
    ) -> JSONResponse:
        with market_db() as conn:
            body = status.minute_status(
                conn, day_of(day), src.codes(), src.calendar(), venue=venue, alert_limit=alerts
            )
        return JSONResponse(body, headers=NO_STORE)

    @app.get(
        "/api/heatmap", summary="Codes x minutes of a date: collected, missing, expected absence, not yet"
    )
    def heatmap(day: DateParam = None, venue: VenueParam = Venue.KRX) -> JSONResponse:
        with market_db() as conn:
            body = status.heatmap(conn, day_of(day), src.codes(), src.calendar(), src.now(), venue=venue)
        return JSONResponse(body, headers=NO_STORE)

    @app.get("/api/bars", summary="One code's bars of a date, per minute or resampled, as JSON or CSV")
    def day_bars(
        code: CodeParam,
        day: DateParam = None,
        interval: IntervalParam = 1,
        venue: VenueParam = Venue.KRX,
        output: FormatParam = "json",
    ) -> Response:
        with market_db() as conn:
            body = bars_api.day_bars(conn, code, day_of(day), interval, venue)
        if output == "json":
            return JSONResponse(body, headers=NO_STORE)
        name = f"{code}_{body['venue']}_{body['date']}_{interval}min.csv"
        headers = NO_STORE | {"Content-Disposition": f'attachment; filename="{name}"'}
        return PlainTextResponse(bars_api.day_bars_csv(body), media_type="text/csv", headers=headers)

    @app.get(
        "/api/archive-progress",
        summary="The market archive's code-days archived of those expected per month, the requests left and their time",
    )
    def archive_progress(venue: VenueParam = Venue.KRX) -> JSONResponse:
        try:
            chosen, rate = src.archive_selection(), src.archive_rate()
        except ValueError as err:  # a bad kis_archive_universe or kis_connections
            raise HTTPException(503, str(err)) from None
        with market_db() as conn:
            body = archive_scope.progress(conn, src.calendar(), venue, chosen, src.now(), rate)
        return JSONResponse(body, headers=NO_STORE)

    @app.get("/dashboard", response_class=HTMLResponse, summary="The collection dashboard")
    def dashboard() -> HTMLResponse:
        page = (STATIC_DIR / "dashboard.html").read_text(encoding="utf-8")
        page = page.replace("{{RUN_DEADLINE_SECONDS}}", str(src.run_deadline_seconds()))
        page = page.replace("{{COLLECTION_DAG_ID}}", COLLECTION_DAG_ID)
        page = page.replace("{{MANUAL_RUN_LEAD_SECONDS}}", str(int(MANUAL_RUN_LEAD.total_seconds())))
        return HTMLResponse(page, headers=NO_STORE)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "Not found")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])

    return app


def _is_page_visit(request: Request) -> bool:
    """A browser opening the dashboard: a GET of the page that accepts HTML (``fetch`` and API
    clients ask for JSON or anything)."""
    return (
        request.method == "GET"
        and request.url.path.endswith("/dashboard")
        and "text/html" in request.headers.get("accept", "")
    )

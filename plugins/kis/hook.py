"""The Airflow face of the KIS Open API: a connection in, validated minute bars out.

DAG tasks see only :meth:`KisHook.recent_bars` and :meth:`KisHook.session_bars` and the
:class:`BarsResult` they return. The hook reads the connection, pages the minute endpoints and
walks a day backwards; the requests themselves are :mod:`kis.endpoints` (one function per
endpoint) over :class:`kis.client.KisClient` (transport, token, pacing, retries, errors).

Connection (``kis_default``, e.g. ``AIRFLOW_CONN_KIS_DEFAULT``), of type ``kis`` (the form of
:mod:`kis.provider`) or ``http``:

- host and port: ``https://openapi.koreainvestment.com`` 9443 (real),
  ``https://openapivts.koreainvestment.com`` 29443 (mock), or the simulator (``http://...``); the
  scheme in the host or in ``schema`` (default https for ``kis``, http for ``http``);
- login: the app key; password: the app secret;
- extra: ``environment`` ("real" | "mock"), ``custtype`` ("P"), ``rate_limit`` (requests per
  second of the app key, default 18 real / 1 mock: KIS's notice of 2026-04-20,
  ``kis.client.DEFAULT_RATE_LIMIT``), ``rate_limit_safety`` (fraction of it used, default 0.8),
  ``state_conn_id`` (Postgres connection of the shared token and limiter state, default
  ``kis_market_db``), ``token_issue_interval`` (seconds between token issues, default 60), and the
  request options ``timeout``, ``verify``, ``proxies``, ``cert``, ``trust_env``. See docs/hook.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from airflow.sdk.bases.hook import BaseHook

from kis import endpoints
from kis.bar import KST, Bar
from kis.calendar import trading_day
from kis.client import KisClient, KisSettings
from kis.endpoints import MinutePage
from kis.errors import KisNotYet, KisUnsupported
from kis.parsing import RejectedRow, validate_code
from kis.provider import CONN_FIELDS, CONN_TYPE, HOOK_NAME, UI_FIELD_BEHAVIOUR, base_url
from kis.resources import KIS_CONN_ID
from kis.schema import migrate
from kis.venues import Venue

if TYPE_CHECKING:
    import psycopg

ONE_MINUTE = timedelta(minutes=1)
#: The stock whose minute bars :meth:`KisHook.test_connection` asks for (Samsung Electronics).
PROBE_CODE = "005930"


class SessionWindow(Protocol):
    """What the hook needs of a trading day (``kis.calendar.Session`` is one)."""

    day: date
    open: datetime
    close: datetime
    venue: Venue


@dataclass
class BarsResult:
    """What a minute-bar call returns.

    :param bars: the validated closed bars, oldest first, one per minute.
    :param rejected: the rows that were not bars, each with its reason.
    :param cumulative_volume: the day's cumulative volume (``acml_vol``) as KIS reported it for the
        asked day (today: the today endpoint's summary; a past day: its period-price row), else None.
    :param pages: requests made for the data (retries not counted).
    :param rate_limited: EGW00201 answers retried during the call.
    """

    code: str
    day: date
    bars: list[Bar] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    cumulative_volume: int | None = None
    pages: int = 0
    rate_limited: int = 0


class KisHook(BaseHook):
    """Interact with the KIS Open API (real, mock, or the simulator).

    One hook per task (or per process): its client keeps a keep-alive HTTP session and one
    connection to the state database; use it as a context manager or call :meth:`close`. Do not
    share an instance across a ``fork``.

    :param kis_conn_id: the connection of the API, see the module docstring.
    :param max_attempts: attempts per request for EGW00201, 5xx, timeouts and bad bodies.
    :param backoff_max: the longest wait between two attempts, seconds (exponential, jittered).
    """

    conn_name_attr = "kis_conn_id"
    default_conn_name = KIS_CONN_ID
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(self, kis_conn_id: str = default_conn_name, *, max_attempts: int = 12, backoff_max: float = 8.0):
        super().__init__()
        self.kis_conn_id = kis_conn_id
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        self._client: KisClient | None = None
        self._state_conn: psycopg.Connection[Any] | None = None

    # --- the connection form and its Test button ------------------------------------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's own fields as WTForms fields, for Airflow 3.0 and 3.1 (3.2 and later read
        ``conn-fields`` of :func:`kis.provider.get_provider_info`, the same definitions)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import Optional, any_of

        widgets = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            enum = [any_of(schema["enum"])] if "enum" in schema else []
            widgets[name] = (IntegerField if "integer" in schema["type"] else StringField)(
                lazy_gettext(spec["label"]),
                widget=BS3TextFieldWidget(),
                description=spec["description"],
                validators=[Optional(), *enum],
                default=schema.get("default"),
            )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The standard fields' labels and placeholders, for Airflow 3.0 and 3.1 (see above)."""
        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}

    def test_connection(self) -> tuple[bool, str]:
        """Gets a token (the shared one, or a new one) and asks KIS for one page of minute bars.

        What the UI's Test button and ``airflow connections test`` show: ``(True, what KIS
        answered)`` or ``(False, which step failed and why)``. The message never holds the app key
        or secret. The hook needs its state database (extra ``state_conn_id``) for the token.
        """
        try:
            settings = self.settings
        except Exception as exc:  # noqa: BLE001 - any failure is the answer, as a message
            return False, f"The connection {self.kis_conn_id!r} is incomplete: {exc}"
        step = (
            f"Cannot use the state database {settings.state_conn_id!r} (extra state_conn_id), which keeps "
            "the token and the rate limit every worker shares"
        )
        try:
            client = self.get_conn()
            step = f"The token request to KIS at {settings.base_url} failed"
            client.token()
            step = f"The minute-bar request ({PROBE_CODE}) to KIS at {settings.base_url} failed"
            page = _probe_page(client)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer, without secrets
            # kis.errors carry only KIS's code and text, and the client drops requests' exceptions (their
            # request holds the secret headers): no credential reaches the message.
            return False, f"{step}: {str(exc) or type(exc).__name__}"
        finally:
            self.close()
        served = client.server_now()
        clock = f", KIS's clock {served.astimezone(KST):%Y-%m-%d %H:%M} KST" if served else ""
        return True, (
            f"KIS at {settings.base_url} ({settings.environment}) answered: a token, and {page.rows} "
            f"minute bars of {PROBE_CODE} ({endpoints.TODAY_MINUTES_TR_ID}{clock})."
        )

    # --- connection handling -------------------------------------------------------------------

    @cached_property
    def settings(self) -> KisSettings:
        """The connection's settings, read once; the app key and secret are masked in task logs."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.kis_conn_id)
        settings = KisSettings.from_connection(
            login=conn.login, password=conn.password, base_url=base_url(conn), extra=conn.extra_dejson
        )
        # Airflow masks a connection's password (the secret) and extra as it reads them, in the task
        # and its supervisor (one round trip each); the login, the app key, is ours to mask.
        mask_secret(settings.app_key)
        return settings

    def get_conn(self) -> KisClient:
        """The client of this hook, made on first use. A state database without the token and
        limiter tables gets them at the client's first request (``prepare_state``): no task pays a
        schema check, and a new database needs no step of its own."""
        if self._client is None:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            state_conn = PostgresHook(postgres_conn_id=self.settings.state_conn_id).get_conn()
            state_conn.autocommit = True
            self._state_conn = state_conn
            self._client = KisClient(
                self.settings,
                state_conn,
                issue_token=endpoints.issue_token,
                max_attempts=self.max_attempts,
                backoff_max=self.backoff_max,
                prepare_state=lambda: migrate(state_conn),
            )
        return self._client

    def close(self) -> None:
        """Close the HTTP session and the state connection."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._state_conn is not None:
            self._state_conn.close()
            self._state_conn = None

    def __enter__(self) -> KisHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the minute-bar calls --------------------------------------------------------------------

    def recent_bars(self, code: str, *, until: datetime, venue: Venue = Venue.KRX) -> BarsResult:
        """The closed bars of ``until``'s day on ``venue`` up to ``until`` (included): one request, normally.

        While that day is KIS's today: the today endpoint, at most 30 bars. A past day (a run cleared
        or retried after its day): one page of the past-day endpoint, up to 120 bars, on a real
        account; :class:`KisUnsupported` on a mock one.

        :param code: the stock code.
        :param until: the last closed minute (from the run's logical time and the calendar); the
            request never asks past it, and a row after it (the forming minute) is dropped.
        :param venue: whose trades: KRX's, Nextrade's, or both (KIS's market code).
        """
        until = until.astimezone(KST).replace(second=0, microsecond=0)
        result = BarsResult(code=validate_code(code), day=until.date())
        keep = lambda minute: minute <= until
        asked = {"code": code, "day": result.day, "until": until.time(), "venue": venue}
        if self._may_be_today(result.day):
            page = self._call(result, lambda c: endpoints.today_minute_bars(c, **asked))
            if self._served_day(page, result.day) == result.day:
                _collect(result, page, keep=keep)
                result.cumulative_volume = page.day_volume
                return result
        self._require_past_days(result.day)
        page = self._call(result, lambda c: endpoints.past_minute_bars(c, **asked))
        _collect(result, page, keep=keep)
        return result

    def session_bars(self, code: str, session: SessionWindow) -> BarsResult:
        """Every bar of ``code`` in ``session``'s venue day (its closing print included), walked
        backwards from the close, and the day's volume.

        KIS's clock decides the endpoint: its today is walked on the today endpoint (call it after
        the close), a past day on the past-day endpoint, which only real accounts have, plus one
        request to the period-price endpoint (FHKST03010100) for the day's volume, which the
        past-day endpoint does not report.

        :param session: the trading day (``kis.calendar.Session``): its day, open, close and venue.
            A bar the venue served outside the session's segments (its grid) is kept when it lies in
            the venue's trading day (``kis.calendar.trading_day``): the API, not the grid, decides.
        """
        validate_code(code)
        result = BarsResult(code=code, day=session.day)
        venue = session.venue
        if self._may_be_today(session.day):
            today = functools.partial(endpoints.today_minute_bars, code=code, day=session.day, venue=venue)
            first = self._call(result, lambda c: today(c, until=session.close.astimezone(KST).time()))
            if self._served_day(first, session.day) == session.day:
                self._walk(result, session, today, endpoints.TODAY_MINUTES_PAGE_ROWS, first)
                result.cumulative_volume = first.day_volume
                return result
            result = BarsResult(code=code, day=session.day, pages=result.pages, rate_limited=result.rate_limited)
        self._require_past_days(session.day)
        past = functools.partial(endpoints.past_minute_bars, code=code, day=session.day, venue=venue)
        self._walk(result, session, past, endpoints.PAST_MINUTES_PAGE_ROWS)
        result.cumulative_volume = self._call(
            result, lambda c: endpoints.day_volume_of(c, code, day=session.day, venue=venue)
        )
        return result

    def kis_today(self) -> date | None:
        """KIS's current date (KST) as its latest answer told it; None before the first answer."""
        now = self.get_conn().server_now()
        return now.astimezone(KST).date() if now else None

    def _may_be_today(self, day: date) -> bool:
        """Whether to try the today endpoint for ``day``: KIS's clock says so, or is not read yet
        (its first answer tells, see :meth:`_served_day`). Raises for a day after KIS's today."""
        today = self.kis_today()
        if today is not None and day > today:
            raise KisNotYet(f"{day} is after KIS's today ({today}): there are no bars of it yet")
        return today is None or today == day

    def _served_day(self, page: MinutePage, asked: date) -> date:
        """The day the today endpoint served: KIS's date after the answer; without a ``Date``
        header, the rows' own date. Raises when the asked day is after it: no bars exist yet."""
        served = self.kis_today()
        if served is None:
            served = asked if page.bars or page.oldest is None else page.oldest.date()
        if asked > served:
            raise KisNotYet(f"{asked} is after KIS's today ({served}): there are no bars of it yet")
        return served

    def _require_past_days(self, day: date) -> None:
        if self.settings.environment != "real":
            raise KisUnsupported(
                f"Cannot fetch {day} on a mock account: KIS's today is {self.kis_today()}, past days come only "
                f"from the past-day endpoint ({endpoints.PAST_MINUTES_TR_ID}), which KIS serves to real "
                "accounts only, and the today endpoint has no past days."
            )

    def _walk(
        self,
        result: BarsResult,
        session: SessionWindow,
        fetch: Callable[..., MinutePage],
        page_rows: int,
        first: MinutePage | None = None,
    ) -> None:
        """Page backwards from the close: cursor = oldest row - 1 minute, until the start of the
        venue's trading day or a short page."""
        opens, last = trading_day(session)
        closes = session.close.astimezone(KST)
        cursor = closes
        page = first or self._call(result, lambda c: fetch(c, until=cursor.time()))
        while True:
            _collect(result, page, keep=lambda minute: opens <= minute <= last)
            oldest = page.oldest
            # Stop at the open, on a short page, and if the server ignored the cursor (no progress).
            if page.rows < page_rows or oldest is None or oldest <= opens or oldest > cursor:
                break
            cursor = oldest - ONE_MINUTE
            page = self._call(result, lambda c: fetch(c, until=cursor.time()))
        self.log.info(
            "%s %s: %s bars, %s rejected rows, %s pages, %s EGW00201 retried",
            result.code, session.day, len(result.bars), len(result.rejected), result.pages, result.rate_limited,
        )

    def _call(self, result: BarsResult, request: Callable[[KisClient], Any]) -> Any:
        """One endpoint call for ``result``, counted as a page with the EGW00201 answers it retried."""
        client = self.get_conn()
        rate_limited = client.counters["rate_limited"]
        answer = request(client)
        result.rate_limited += client.counters["rate_limited"] - rate_limited
        result.pages += 1
        return answer


def _probe_page(client: KisClient) -> MinutePage:
    """One page of :data:`PROBE_CODE`'s minute bars up to KIS's now. KIS's clock, not this
    machine's, says what today is: when its answer tells another time than the one asked (a
    simulator replaying a past day, a stored token leaving the clock unread), the page is asked
    again at KIS's time."""
    asked = (client.server_now() or datetime.now(KST)).astimezone(KST)
    page = endpoints.today_minute_bars(client, PROBE_CODE, day=asked.date(), until=asked.time())
    served = client.server_now()
    if served is not None and abs(served - asked) > ONE_MINUTE:
        served = served.astimezone(KST)
        page = endpoints.today_minute_bars(client, PROBE_CODE, day=served.date(), until=served.time())
    return page


def _collect(result: BarsResult, page: MinutePage, *, keep: Callable[[datetime], bool]) -> None:
    """Add the page's bars whose minute passes ``keep`` and that are not already in ``result``."""
    result.rejected.extend(page.rejected)
    seen = {bar.minute for bar in result.bars}
    for bar in page.bars:
        if keep(bar.minute) and bar.minute not in seen:
            seen.add(bar.minute)
            result.bars.append(bar)
    result.bars.sort(key=lambda bar: bar.minute)

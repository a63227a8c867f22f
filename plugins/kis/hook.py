"""The KIS Open API hook: token, shared pacing, retries and error mapping, and the minute-bar calls.

DAG tasks see only :meth:`KisHook.recent_bars` and :meth:`KisHook.session_bars` and the
:class:`BarsResult` they return; HTTP, tokens and rate limits stay in here.

Connection (``kis_default``, e.g. ``AIRFLOW_CONN_KIS_DEFAULT``), an ``http`` connection:

- host/port/schema: ``https://openapi.koreainvestment.com:9443`` (real),
  ``https://openapivts.koreainvestment.com:29443`` (mock), or the simulator (``http``);
- login: the app key; password: the app secret;
- extra: ``environment`` ("real" | "mock"), ``custtype`` ("P"), ``rate_limit`` (requests per
  second, default 20 real / 2 mock), ``rate_limit_safety`` (fraction of it used, default 0.8),
  ``state_conn_id`` (Postgres connection of the shared token and limiter state, default
  ``kis_market_db``), ``token_issue_interval`` (seconds between token issues, default 60), and the
  http provider's request options (``timeout``, ``verify``, ``proxies``). See docs/hook.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import requests
import tenacity
from requests import Request, Response, Session

from airflow.providers.http.hooks.http import HttpHook
from kis.bars import KST, Bar
from kis.errors import (
    RATE_LIMITED,
    TOKEN_REJECTED,
    TOKEN_THROTTLED,
    UNKNOWN_CODE,
    KisApiError,
    KisRateLimited,
    KisResponseError,
    KisTokenError,
    KisTransientError,
    KisUnknownCode,
    KisUnsupported,
)
from kis.parsing import RejectedRow, day_volume, parse_int, parse_rows, validate_code
from kis.rate_limit import SharedRateLimiter
from kis.schema import migrate
from kis.token_store import IssuedToken, TokenStore, app_key_hash

if TYPE_CHECKING:
    import psycopg

TOKEN_ENDPOINT = "/oauth2/tokenP"
# KIS API portal: 주식당일분봉조회 (FHKST03010200), today's minute bars, 30 rows a page, newest first.
TODAY_ENDPOINT = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"
TODAY_TR_ID = "FHKST03010200"
TODAY_PAGE_ROWS = 30
# KIS API portal: 주식일별분봉조회 (FHKST03010230), a past day's minute bars, real accounts only.
DAILY_ENDPOINT = "/uapi/domestic-stock/v1/quotations/inquire-time-dailychartprice"
DAILY_TR_ID = "FHKST03010230"
DAILY_PAGE_ROWS = 120
# KIS API portal: 국내주식기간별시세(일/주/월/년) (FHKST03010100), daily OHLCV rows, newest first;
# real and mock accounts.
PERIOD_ENDPOINT = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
PERIOD_TR_ID = "FHKST03010100"

ONE_MINUTE = timedelta(minutes=1)
DEFAULT_RATE_LIMIT = {"real": 20.0, "mock": 2.0}
DEFAULT_TIMEOUT = (3.05, 10.0)  # (connect, read) seconds
# Extras that configure this hook. HttpHook would send every unknown extra as an HTTP header.
CONFIG_EXTRAS = frozenset(
    {"environment", "custtype", "rate_limit", "rate_limit_safety", "state_conn_id", "token_issue_interval"}
)


class SessionWindow(Protocol):
    """What the hook needs of a trading day (``kis.calendar.Session`` is one)."""

    day: date
    open: datetime
    close: datetime


@dataclass(frozen=True)
class KisSettings:
    """The connection, read once per hook. Secrets are kept out of ``repr``."""

    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    environment: str
    custtype: str
    rate_limit: float
    rate_limit_safety: float
    state_conn_id: str
    token_issue_interval: float

    @classmethod
    def from_connection(cls, login: str | None, password: str | None, extra: Mapping[str, Any]) -> KisSettings:
        if not login or not password:
            raise ValueError("The KIS connection needs login (the app key) and password (the app secret)")
        environment = str(extra.get("environment", "real")).lower()
        if environment not in DEFAULT_RATE_LIMIT:
            raise ValueError(f"KIS connection extra 'environment' must be 'real' or 'mock', got {environment!r}")
        return cls(
            app_key=login,
            app_secret=password,
            environment=environment,
            custtype=str(extra.get("custtype", "P")),
            rate_limit=float(extra.get("rate_limit", DEFAULT_RATE_LIMIT[environment])),
            rate_limit_safety=float(extra.get("rate_limit_safety", 0.8)),
            state_conn_id=str(extra.get("state_conn_id", "kis_market_db")),
            token_issue_interval=float(extra.get("token_issue_interval", 60)),
        )


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


class KisHook(HttpHook):
    """Interact with the KIS Open API (real, mock, or the simulator).

    One hook per task (or per process): it keeps a keep-alive HTTP session and one connection to
    the state database; use it as a context manager or call :meth:`close`. Do not share an
    instance across a ``fork``.

    :param kis_conn_id: the ``http`` connection of the API, see the module docstring.
    :param max_attempts: attempts per request for EGW00201, 5xx, timeouts and bad bodies.
    :param backoff_max: the longest wait between two attempts, seconds (exponential, jittered).
    """

    conn_name_attr = "kis_conn_id"
    default_conn_name = "kis_default"
    conn_type = "http"
    hook_name = "KIS Open API"

    def __init__(self, kis_conn_id: str = default_conn_name, *, max_attempts: int = 12, backoff_max: float = 8.0):
        super().__init__(method="GET", http_conn_id=kis_conn_id)
        self.kis_conn_id = kis_conn_id
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        #: requests sent, and their failures by kind (rate_limited, transient, token_refused)
        self.counters: Counter[str] = Counter()
        self._session: Session | None = None
        self._state_conn: psycopg.Connection[Any] | None = None

    # --- connection handling -------------------------------------------------------------------

    @cached_property
    def settings(self) -> KisSettings:
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.kis_conn_id)
        settings = KisSettings.from_connection(conn.login, conn.password, conn.extra_dejson)
        mask_secret(settings.app_key)
        mask_secret(settings.app_secret)
        return settings

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None) -> Session:
        """The hook's keep-alive session, made once: base URL, the KIS headers, no Basic auth."""
        if self._session is None:
            kis_headers = {
                "content-type": "application/json; charset=utf-8",
                "appkey": self.settings.app_key,
                "appsecret": self.settings.app_secret,
                "custtype": self.settings.custtype,
            }
            self._session = super().get_conn(headers={**kis_headers, **(headers or {})}, extra_options=extra_options)
        return self._session

    def _configure_session_from_auth(self, session: Session, connection: Any) -> Session:
        # KIS authenticates by the appkey/appsecret headers and a Bearer token; HttpHook's Basic auth
        # would send the secret base64-encoded and overwrite the Bearer header.
        session.auth = None
        return session

    def _configure_session_from_extra(self, session: Session, connection: Any, extra_options: dict[str, Any]) -> Session:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        for key in CONFIG_EXTRAS:  # configuration, not headers: never send it to the server
            session.headers.pop(key, None)
        return session

    @property
    def state_conn(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the state database, whose tables are ensured once."""
        if self._state_conn is None:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            conn = PostgresHook(postgres_conn_id=self.settings.state_conn_id).get_conn()
            conn.autocommit = True
            migrate(conn)  # the token and limiter tables (010_kis_api_state.sql); one query when current
            self._state_conn = conn
        return self._state_conn

    @cached_property
    def limiter(self) -> SharedRateLimiter:
        s = self.settings
        return SharedRateLimiter(self.state_conn, app_key_hash(s.app_key), s.rate_limit, s.rate_limit_safety)

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(
            self.state_conn,
            app_key_hash(self.settings.app_key),
            self._issue_token,
            min_issue_interval=self.settings.token_issue_interval,
        )

    def close(self) -> None:
        """Close the HTTP session and the state connection."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._state_conn is not None:
            self._state_conn.close()
            self._state_conn = None

    def __enter__(self) -> KisHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- sending and checking --------------------------------------------------------------------

    def _send(self, method: str, endpoint: str, *, headers: dict[str, str], **request: Any) -> tuple[int, dict]:
        """One paced request; returns the status and JSON body, or raises a typed error."""
        self.limiter.acquire()
        session = self.get_conn()
        prepared = session.prepare_request(Request(method, self.url_from_endpoint(endpoint), headers=headers, **request))
        options = {**self.merged_extra, "check_response": False}
        options.setdefault("timeout", DEFAULT_TIMEOUT)
        self.counters["requests"] += 1
        try:
            response = self.run_and_check(session, prepared, options)
        except (requests.Timeout, requests.ConnectionError) as exc:
            # from None: the requests exception holds the prepared request and its secret headers.
            raise KisTransientError(type(exc).__name__, "no answer from KIS", None) from None
        return response.status_code, self._check_envelope(response)

    @staticmethod
    def _check_envelope(response: Response) -> dict:
        """The JSON body; raises the typed error its ``msg_cd``/``error_code`` and status call for."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if status >= 500:
                raise KisTransientError(f"HTTP{status}", "server error without a KIS body", status)
            raise KisResponseError("MALFORMED", "the body is not a KIS JSON object", status)
        # Data calls answer msg_cd/msg1, the token endpoint OAuth-style error_code/error_description.
        msg_cd = str(body.get("msg_cd") or body.get("error_code") or "")
        msg1 = str(body.get("msg1") or body.get("error_description") or "")
        if msg_cd == RATE_LIMITED:
            raise KisRateLimited(msg_cd, msg1, status)
        if msg_cd in TOKEN_REJECTED or msg_cd == TOKEN_THROTTLED:
            raise KisTokenError(msg_cd, msg1, status)
        if status >= 500:
            raise KisTransientError(msg_cd or f"HTTP{status}", msg1, status)
        if status >= 400:
            raise KisApiError(msg_cd or f"HTTP{status}", msg1, status)
        return body

    def _with_retries(self, send: Callable[[], tuple[int, dict]]) -> tuple[int, dict]:
        """``send`` retried on EGW00201 and transient failures: exponential backoff with full jitter."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((KisRateLimited, KisTransientError)),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_random_exponential(multiplier=0.25, max=self.backoff_max),
            before_sleep=self._before_retry,
            reraise=True,
        )
        return retrying(send)

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        kind = "rate_limited" if isinstance(exc, KisRateLimited) else "transient"
        self.counters[kind] += 1
        self.log.warning(
            "KIS %s (attempt %s of %s); retrying in %.2f s",
            getattr(exc, "msg_cd", exc),
            state.attempt_number,
            self.max_attempts,
            state.upcoming_sleep,
        )

    def _issue_token(self) -> IssuedToken:
        """Call ``/oauth2/tokenP`` once (with the usual retries); used by the token store only."""
        s = self.settings
        payload = {"grant_type": "client_credentials", "appkey": s.app_key, "appsecret": s.app_secret}
        status, body = self._with_retries(lambda: self._send("POST", TOKEN_ENDPOINT, headers={}, json=payload))
        token, expires_in = body.get("access_token"), parse_int(str(body.get("expires_in", "")))
        if not isinstance(token, str) or not token or not expires_in:
            raise KisTokenError(
                str(body.get("error_code") or "NOTOKEN"), "the token endpoint answered without a token", status
            )
        return IssuedToken(access_token=token, expires_in=float(expires_in))

    def _get(self, endpoint: str, tr_id: str, params: dict[str, str]) -> dict:
        """An authorized GET with retries; a refused token is replaced and the call retried once."""
        token = self.tokens.get()
        try:
            _, body = self._with_retries(lambda: self._send("GET", endpoint, headers=self._auth(token, tr_id), params=params))
        except KisTokenError as exc:
            if exc.msg_cd not in TOKEN_REJECTED:
                raise
            self.counters["token_refused"] += 1
            self.log.warning("KIS refused the token (%s): getting a new one and retrying once", exc.msg_cd)
            self.tokens.invalidate(token)
            token = self.tokens.get()
            _, body = self._with_retries(lambda: self._send("GET", endpoint, headers=self._auth(token, tr_id), params=params))
        return body

    @staticmethod
    def _auth(token: str, tr_id: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}", "tr_id": tr_id}

    # --- the minute-bar calls --------------------------------------------------------------------

    def recent_bars(self, code: str, *, until: datetime) -> BarsResult:
        """The closed bars of today up to ``until`` (included): one request, at most 30 bars.

        :param code: the stock code.
        :param until: the last closed minute (from the run's logical time and the calendar); the
            request never asks past it, and a row after it (the forming minute) is dropped.
        """
        until = until.astimezone(KST).replace(second=0, microsecond=0)
        result = BarsResult(code=validate_code(code), day=until.date())
        rows, summary = self._page(result, TODAY_ENDPOINT, TODAY_TR_ID, self._today_params(code, until))
        self._collect(result, rows, keep=lambda minute: minute <= until)
        result.cumulative_volume = parse_int(summary.get("acml_vol"))
        return result

    def session_bars(self, code: str, session: SessionWindow, *, today: date) -> BarsResult:
        """Every bar of ``code`` in ``session``, walked backwards from the close, and the day's volume.

        :param session: the trading day (``kis.calendar.Session``): its day, open and close.
        :param today: the run's session date; today is served by the today endpoint, a past day by
            the daily endpoint, which only real accounts have. For a past day the daily endpoint
            gives no day volume, so one more request, to the period-price endpoint
            (FHKST03010100), fetches it: without it, minutes without trades could not be told from
            lost ones.
        """
        validate_code(code)
        if session.day > today:
            raise ValueError(f"{session.day} is after today ({today}): there are no bars yet")
        if session.day == today:
            return self._walk(code, session, TODAY_ENDPOINT, TODAY_TR_ID, TODAY_PAGE_ROWS, self._today_params)
        if self.settings.environment != "real":
            raise KisUnsupported(
                f"Cannot fetch {session.day} on a mock account: past days come only from the daily endpoint "
                f"({DAILY_TR_ID}), which KIS serves to real accounts only, and the today endpoint has no past days."
            )
        result = self._walk(code, session, DAILY_ENDPOINT, DAILY_TR_ID, DAILY_PAGE_ROWS, self._daily_params)
        result.cumulative_volume = self._day_volume(result)
        return result

    def _day_volume(self, result: BarsResult) -> int | None:
        """``acml_vol`` of ``result``'s day from its FHKST03010100 row; None when KIS has no row for it."""
        yyyymmdd = result.day.strftime("%Y%m%d")
        params = {
            "FID_COND_MRKT_DIV_CODE": "J",
            "FID_INPUT_ISCD": result.code,
            "FID_INPUT_DATE_1": yyyymmdd,
            "FID_INPUT_DATE_2": yyyymmdd,
            "FID_PERIOD_DIV_CODE": "D",
            # Original, not adjusted (0): an adjusted history rescales the volumes of the days before a
            # split, and they would no longer add up to the minute volumes, which are as traded.
            "FID_ORG_ADJ_PRC": "1",
        }
        rows, _ = self._page(result, PERIOD_ENDPOINT, PERIOD_TR_ID, params)
        volume = day_volume(rows, result.day)
        if volume is None:
            self.log.warning("%s %s: no day volume from KIS (%s rows)", result.code, result.day, len(rows))
        return volume

    @staticmethod
    def _today_params(code: str, cursor: datetime) -> dict[str, str]:
        return {
            "FID_ETC_CLS_CODE": "",
            "FID_COND_MRKT_DIV_CODE": "J",  # KRX only (NX is Nextrade, UN both)
            "FID_INPUT_ISCD": code,
            "FID_INPUT_HOUR_1": cursor.strftime("%H%M%S"),
            "FID_PW_DATA_INCU_YN": "Y",
        }

    @staticmethod
    def _daily_params(code: str, cursor: datetime) -> dict[str, str]:
        return {
            "FID_COND_MRKT_DIV_CODE": "J",
            "FID_INPUT_ISCD": code,
            "FID_INPUT_DATE_1": cursor.strftime("%Y%m%d"),
            "FID_INPUT_HOUR_1": cursor.strftime("%H%M%S"),
            "FID_PW_DATA_INCU_YN": "N",
            "FID_FAKE_TICK_INCU_YN": "",  # blank, but required
        }

    def _walk(
        self,
        code: str,
        session: SessionWindow,
        endpoint: str,
        tr_id: str,
        page_rows: int,
        params: Callable[[str, datetime], dict[str, str]],
    ) -> BarsResult:
        """Page backwards from the close: cursor = oldest row - 1 minute, until the open or a short page."""
        result = BarsResult(code=code, day=session.day)
        opens, closes = session.open.astimezone(KST), session.close.astimezone(KST)
        cursor = closes
        while True:
            rows, summary = self._page(result, endpoint, tr_id, params(code, cursor))
            if result.pages == 1 and endpoint == TODAY_ENDPOINT:
                result.cumulative_volume = parse_int(summary.get("acml_vol"))
            self._collect(result, rows, keep=lambda minute: opens <= minute <= closes)
            oldest = min(filter(None, map(_row_minute, rows)), default=None)
            # Stop at the open, on a short page, and if the server ignored the cursor (no progress).
            if len(rows) < page_rows or oldest is None or oldest <= opens or oldest > cursor:
                break
            cursor = oldest - ONE_MINUTE
        self.log.info(
            "%s %s: %s bars, %s rejected rows, %s pages, %s EGW00201 retried",
            code, session.day, len(result.bars), len(result.rejected), result.pages, result.rate_limited,
        )
        return result

    def _page(self, result: BarsResult, endpoint: str, tr_id: str, params: dict[str, str]) -> tuple[list, dict]:
        """One page of rows (``output2``: minutes, or days of the period endpoint) and ``output1``."""
        rate_limited = self.counters["rate_limited"]
        body = self._get(endpoint, tr_id, params)
        result.rate_limited += self.counters["rate_limited"] - rate_limited
        result.pages += 1
        rt_cd, msg_cd, msg1 = body.get("rt_cd"), str(body.get("msg_cd", "")), str(body.get("msg1", ""))
        if rt_cd == "7":  # KIS: no data
            return [], {}
        if rt_cd != "0":
            raise KisUnknownCode(result.code, msg_cd, msg1, 200) if msg_cd in UNKNOWN_CODE else KisApiError(msg_cd, msg1, 200)
        rows, summary = body.get("output2"), body.get("output1") or {}
        if not isinstance(rows, list) or not isinstance(summary, dict):
            raise KisResponseError("MALFORMED", "the response has no output2 rows", 200)
        if not rows and summary.get("stck_prpr") == "0":
            # The other reported shape of an unknown code: a quote of price 0 and no bars.
            raise KisUnknownCode(result.code, msg_cd, "no quote for this code (price 0)", 200)
        at = params.get("FID_INPUT_HOUR_1") or params["FID_INPUT_DATE_1"]
        self.log.info("%s %s page %s at %s: %s rows", result.code, tr_id, result.pages, at, len(rows))
        return rows, summary

    @staticmethod
    def _collect(result: BarsResult, rows: list, *, keep: Callable[[datetime], bool]) -> None:
        """Add the valid rows whose minute passes ``keep`` and that are not already in ``result``."""
        parsed = parse_rows(rows, code=result.code, day=result.day)
        result.rejected.extend(parsed.rejected)
        seen = {bar.minute for bar in result.bars}
        for bar in parsed.bars:
            if keep(bar.minute) and bar.minute not in seen:
                seen.add(bar.minute)
                result.bars.append(bar)
        result.bars.sort(key=lambda bar: bar.minute)


def _row_minute(row: Any) -> datetime | None:
    """A row's minute when its date and time parse (also for rows rejected for other reasons)."""
    try:
        return datetime.strptime(row["stck_bsop_date"] + row["stck_cntg_hour"], "%Y%m%d%H%M%S").replace(tzinfo=KST)
    except (KeyError, TypeError, ValueError):
        return None

"""The simulator's HTTP API: the KIS endpoints the collector uses, and the ``/_sim/`` control API.

The behaviour, error codes and HTTP statuses are documented in ``simulator/README.md``; the
specification is docs/kis-api.md. One ``Simulator`` is one server's whole state. It runs on one
asyncio event loop, so handlers change the state between ``await`` points without locks.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time as monotonic_time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kis.bar import KST, Bar
from kis.masters import StockMarket
from kis.venues import Venue
from simulator.faults import FaultConfig, FaultInjector
from simulator.listings import built_listings
from simulator.market import CODE_PATTERN, Market, Quote, default_nextrade_codes
from simulator.masters import master_zip
from simulator.sessions import Sessions

__all__ = ["DEFAULT_APPKEY", "DEFAULT_APPSECRET", "Simulator", "SimulatorConfig", "create_app"]

DEFAULT_APPKEY = "SIMULATOR-APPKEY"
DEFAULT_APPSECRET = "SIMULATOR-APPSECRET"
# On every answer: the simulator's, not KIS's (kis.master_hook refuses its master files for a real KIS).
SIMULATOR_MARK = (b"x-kis-simulator", b"1")
# KIS portal notice of 2026-04-20 (docs/kis-api.md, "Rate limit"): 18/s real, 1/s mock, per app key.
RATE_LIMITS = {"real": 18, "mock": 1}
SAME_TOKEN_WINDOW_SECONDS = 6 * 3600
HISTORY_DAYS = 365
ONE_MINUTE = timedelta(minutes=1)
TODAY_PAGE_ROWS = 30
DAILY_PAGE_ROWS = 120
PERIOD_PAGE_ROWS = 100

QUOTATIONS = "/uapi/domestic-stock/v1/quotations"
TODAY_PATH = f"{QUOTATIONS}/inquire-time-itemchartprice"
DAILY_PATH = f"{QUOTATIONS}/inquire-time-dailychartprice"
PERIOD_PATH = f"{QUOTATIONS}/inquire-daily-itemchartprice"
TODAY_TR_ID = "FHKST03010200"
DAILY_TR_ID = "FHKST03010230"
PERIOD_TR_ID = "FHKST03010100"
# FID_COND_MRKT_DIV_CODE (docs/kis-api.md, "Market codes"): KRX, Nextrade, both together.
MARKETS = {"J": Venue.KRX, "NX": Venue.NEXTRADE, "UN": Venue.UNIFIED}
# KIS's download server's files (docs/stock-masters.md), by the name in their path.
MASTER_FILES = {f"{market.file_name}.zip": market for market in StockMarket}

# (HTTP status, msg_cd, msg1) of every envelope error the simulator answers.
ERRORS: dict[str, tuple[int, str, str]] = {
    "bad_appkey": (500, "EGW00103", "유효하지 않은 AppKey입니다."),
    "bad_appsecret": (500, "EGW00105", "유효하지 않은 AppSecret입니다."),
    "invalid_token": (500, "EGW00121", "유효하지 않은 token 입니다."),
    "token_not_found": (500, "EGW00122", "token을 찾을 수 없습니다."),
    "expired_token": (500, "EGW00123", "기간이 만료된 token 입니다."),
    "rate": (500, "EGW00201", "초당 거래건수를 초과하였습니다."),
    "bad_custtype": (500, "EGW00208", "고객유형(custtype)이 유효하지 않습니다."),
    "bad_tr_id": (200, "OPSQ0002", "없는 서비스 코드 입니다"),
    "bad_market": (200, "OPSQ2001", "ERROR INPUT FIELD NOT FOUND [FID_COND_MRKT_DIV_CODE]"),
    "bad_field": (200, "OPSQ2002", "ERROR INPUT FIELD SIZE"),
    "unknown_code": (200, "OPSQ1001", "ERROR INPUT STOCK CODE: 종목코드를 확인하세요"),
    "mock_unsupported": (200, "90000000", "모의투자에서는 해당업무가 제공되지 않습니다."),
}
OK = ("0", "MCA00000", "정상처리 되었습니다.")
NO_DATA = ("7", "KIOK0560", "조회할 자료가 없습니다.")
ROW_FIELDS = ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_prpr", "cntg_vol", "acml_tr_pbmn")
# prdy_vrss_sign of the period rows: 2 up, 3 unchanged, 5 down (1 and 4, the price limits, are not simulated).
CHANGE_SIGNS = {1: "2", 0: "3", -1: "5"}


@dataclass
class SimulatorConfig:
    """Everything a run is started with; ``python -m simulator`` maps its options onto it."""

    mode: str = "real"
    # The accepted (app key, app secret) pairs: several accounts, each with its own token and limit.
    appkeys: tuple[tuple[str, str], ...] = ((DEFAULT_APPKEY, DEFAULT_APPSECRET),)
    now: datetime | None = None  # the market clock at start; None: the wall clock
    seed: int = 0
    rate_limit: int | None = None  # None: 18/s real, 1/s mock
    token_lifetime_seconds: float = 86400
    token_throttle_seconds: float = 60
    faults: dict[str, Any] | None = None
    latency_ms: float | None = None  # shortcut for faults["latency_ms"]
    splits: list[dict[str, Any]] | None = None  # shortcut for faults["splits"]
    nxt_codes: list[str] | None = None  # shortcut for faults["nxt_codes"]; None: the default watch-list's

    def __post_init__(self) -> None:
        if self.mode not in RATE_LIMITS:
            raise ValueError(f"mode must be one of {sorted(RATE_LIMITS)}, not {self.mode!r}")
        if self.now is not None and self.now.tzinfo is None:
            raise ValueError("now must be time-zone aware (e.g. 2026-11-25T10:31:00+09:00)")
        self.appkeys = tuple((str(key), str(secret)) for key, secret in self.appkeys)
        keys = [key for key, _ in self.appkeys]
        if not keys or len(set(keys)) != len(keys) or not all(keys):
            raise ValueError(f"appkeys must be distinct non-empty app keys, each with its secret; got {keys}")

    @property
    def effective_rate_limit(self) -> int:
        return self.rate_limit if self.rate_limit is not None else RATE_LIMITS[self.mode]

    def fault_dict(self) -> dict[str, Any]:
        faults = dict(self.faults or {})
        if self.latency_ms is not None:
            faults.setdefault("latency_ms", self.latency_ms)
        if self.splits is not None:
            faults.setdefault("splits", self.splits)
        if self.nxt_codes is not None:
            faults.setdefault("nxt_codes", self.nxt_codes)
        return faults


class MarketClock:
    """The simulated "now" (KST): starts where it is set and runs on in real time from there."""

    def __init__(self, start: datetime | None) -> None:
        self.set(start or datetime.now(KST))

    def now(self) -> datetime:
        return self._anchor + timedelta(seconds=monotonic_time.monotonic() - self._anchored_at)

    def set(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("the clock needs a time-zone aware time")
        self._anchor, self._anchored_at = now.astimezone(KST), monotonic_time.monotonic()

    def advance(self, seconds: float) -> None:
        self.set(self.now() + timedelta(seconds=seconds))


class AnswerHeaders:
    """ASGI wrapper: every response's ``Date`` is the market clock, as KIS's answers carry KIS's
    clock; and every response carries ``X-KIS-Simulator: 1``, which no KIS server sends, so that a
    client can tell the simulator's invented market from KIS's (simulator/README.md).

    RFC 9110 §6.6.1: an origin server sends ``Date`` in IMF-fixdate (GMT). Wrapping the whole app,
    not a middleware inside it, covers every answer: API, control, 404/405 and server errors alike.
    The server must not add its own (uvicorn: ``date_header=False``).
    """

    def __init__(self, app: ASGIApp, clock: MarketClock) -> None:
        self.app, self.clock = app, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", http_date(self.clock.now()).encode("latin-1")))
                headers.append(SIMULATOR_MARK)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def http_date(at: datetime) -> str:
    """IMF-fixdate, e.g. ``Wed, 25 Nov 2026 01:31:00 GMT`` (RFC 9110 §5.6.7)."""
    return format_datetime(at.astimezone(UTC).replace(microsecond=0), usegmt=True)


@dataclass
class _Token:
    value: str
    appkey: str
    issued_at: float  # time.monotonic(): tokens live in real time, whatever the market clock says
    expires_at: float
    revoked: bool = False

    def valid(self, at: float) -> bool:
        return not self.revoked and at < self.expires_at


@dataclass
class Counters:
    """What benchmarks and tests read: request counts, peak one-second rates, EGW00201s, tokens."""

    requests_by_endpoint: Counter[str] = field(default_factory=Counter)
    requests_by_appkey: Counter[str] = field(default_factory=Counter)
    peak_per_second: int = 0
    peak_per_second_by_appkey: dict[str, int] = field(default_factory=dict)
    egw00201: int = 0
    tokens_issued: int = 0
    tokens_issued_by_appkey: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    _arrivals: deque[float] = field(default_factory=deque)
    _arrivals_by_appkey: dict[str, deque[float]] = field(default_factory=dict)

    def count(self, endpoint: str, appkey: str) -> None:
        self.requests_by_endpoint[endpoint] += 1
        self.requests_by_appkey[appkey] += 1

    def arrive(self, appkey: str, at: float) -> None:
        """A data call arrives: the peaks are the most calls seen in any one-second window."""
        self.peak_per_second = max(self.peak_per_second, _slide(self._arrivals, at))
        window = self._arrivals_by_appkey.setdefault(appkey, deque())
        peak = _slide(window, at)
        self.peak_per_second_by_appkey[appkey] = max(self.peak_per_second_by_appkey.get(appkey, 0), peak)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_by_endpoint": dict(self.requests_by_endpoint),
            "requests_by_appkey": dict(self.requests_by_appkey),
            "peak_per_second": self.peak_per_second,
            "peak_per_second_by_appkey": dict(self.peak_per_second_by_appkey),
            "egw00201": self.egw00201,
            "tokens_issued": self.tokens_issued,
            "tokens_issued_by_appkey": dict(self.tokens_issued_by_appkey),
            "faults_injected": dict(self.faults_injected),
        }


def _slide(window: deque[float], at: float) -> int:
    """Append ``at`` to a sliding one-second window and return how many events it now holds."""
    window.append(at)
    while window[0] <= at - 1.0:
        window.popleft()
    return len(window)


class ApiError(Exception):
    """An answer in the KIS envelope with ``rt_cd`` "1"; ``ERRORS`` gives its status and code."""

    def __init__(self, kind: str, detail: str | None = None) -> None:
        super().__init__(kind)
        self.kind, self.detail = kind, detail


class Simulator:
    """The state of one simulator server and its Starlette app (``self.app``)."""

    def __init__(self, config: SimulatorConfig, sessions: Sessions | None = None) -> None:
        self.config = config
        self.sessions = sessions or Sessions()
        self.clock = MarketClock(config.now)
        self.counters = Counters()
        self.tokens: dict[str, _Token] = {}
        self.current_token: dict[str, _Token] = {}
        self.last_issue: dict[str, float] = {}
        self.accepted: dict[str, deque[float]] = {}
        self.appsecrets = dict(config.appkeys)
        self.revocations: dict[str, Revocation] = {}
        self.listings = built_listings(config.seed)
        self.market = Market(config.seed, self.sessions, listings=self.listings)
        self._master_zips: dict[tuple[StockMarket, date, str | None], bytes] = {}
        self.set_faults(config.fault_dict())
        # Decides the HTTP shape of each EGW00201 (500 + envelope or 200 + rt_cd "1"), repeatably.
        self.shape_rng = random.Random(config.seed)
        self.app = self._build_app()

    def set_faults(self, raw: dict[str, Any]) -> None:
        self.faults = FaultInjector(FaultConfig.parse(raw))
        config = self.faults.config
        self.market.halts = config.halts
        self.market.splits = config.splits
        self.market.nxt_codes = default_nextrade_codes() if config.nxt_codes is None else config.nxt_codes
        self.market.unpredicted = config.unpredicted_minutes

    # --- the app -------------------------------------------------------------------------------

    def _build_app(self) -> ASGIApp:
        routes = [
            Route("/oauth2/tokenP", self.token, methods=["POST"]),
            Route("/oauth2/revokeP", self.revoke, methods=["POST"]),
            Route(TODAY_PATH, self._data_endpoint(TODAY_PATH, TODAY_TR_ID, self.today_page), methods=["GET"]),
            Route(DAILY_PATH, self._data_endpoint(DAILY_PATH, DAILY_TR_ID, self.daily_page), methods=["GET"]),
            Route(
                PERIOD_PATH,
                self._data_endpoint(PERIOD_PATH, PERIOD_TR_ID, self.period_page),
                methods=["GET"],
            ),
            Route("/common/master/{file}", self.master_file, methods=["GET"]),
            Route("/_sim/clock", self.control_clock, methods=["GET", "POST"]),
            Route("/_sim/listing", self.control_listing, methods=["GET"]),
            Route("/_sim/truth", self.control_truth, methods=["GET"]),
            Route("/_sim/counters", self.control_counters, methods=["GET"]),
            Route("/_sim/counters/reset", self.control_counters_reset, methods=["POST"]),
            Route("/_sim/faults", self.control_faults, methods=["GET", "POST"]),
            Route("/_sim/tokens/expire", self.control_tokens_expire, methods=["POST"]),
            Route("/_sim/appkeys", self.control_appkeys, methods=["GET"]),
            Route("/_sim/appkeys/revoke", self.control_appkeys_revoke, methods=["POST"]),
        ]

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            what = "method not allowed" if exc.status_code == 405 else "no such path"
            message = f"{what}: {request.method} {request.url.path}"
            return JSONResponse(
                {"rt_cd": "1", "msg_cd": f"HTTP{exc.status_code}", "msg1": message},
                status_code=exc.status_code,
                headers=exc.headers,
            )

        app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
        return AnswerHeaders(app, self.clock)

    # --- OAuth ---------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """``POST /oauth2/tokenP``: the same token within 6 h, else a new one, at most one per throttle window."""
        body = await _json_body(request)
        appkey = str(body.get("appkey", ""))
        self.counters.count("tokenP", appkey)
        await self._latency()
        if body.get("grant_type") != "client_credentials":
            return _oauth_error(400, "EGW00002", "grant_type 이 올바르지 않습니다 (client_credentials).")
        if failure := self._check_credentials(appkey, str(body.get("appsecret", ""))):
            return _oauth_error(403, *failure)
        at = monotonic_time.monotonic()
        current = self.current_token.get(appkey)
        if current and current.valid(at) and at - current.issued_at < SAME_TOKEN_WINDOW_SECONDS:
            return self._token_response(current, at)
        if at - self.last_issue.get(appkey, -float("inf")) < self.config.token_throttle_seconds:
            return _oauth_error(403, "EGW00133", "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)")
        token = _Token(
            value=f"SIM.{secrets.token_urlsafe(32)}",
            appkey=appkey,
            issued_at=at,
            expires_at=at + self.config.token_lifetime_seconds,
        )
        self.tokens[token.value] = self.current_token[appkey] = token
        self.last_issue[appkey] = at
        self.counters.tokens_issued += 1
        self.counters.tokens_issued_by_appkey[appkey] += 1
        return self._token_response(token, at)

    async def revoke(self, request: Request) -> Response:
        """``POST /oauth2/revokeP``: the token stops working; the next tokenP issues a new one."""
        body = await _json_body(request)
        appkey = str(body.get("appkey", ""))
        self.counters.count("revokeP", appkey)
        await self._latency()
        if failure := self._check_credentials(appkey, str(body.get("appsecret", ""))):
            return _oauth_error(403, *failure)
        token = self.tokens.get(str(body.get("token", "")))
        if token is None or token.appkey != appkey:
            return _oauth_error(403, "EGW00121", "유효하지 않은 token 입니다.")
        token.revoked = True
        return JSONResponse({"code": 200, "message": "접근토큰 폐기에 성공하였습니다"})

    def _check_credentials(self, appkey: str, appsecret: str) -> tuple[str, str] | None:
        """EGW00103 for an app key never issued or revoked (a revoked key answers as an unknown one:
        docs/kis-api.md, K14), EGW00105 for a wrong secret."""
        revocation = self.revocations.get(appkey)
        if appkey not in self.appsecrets or (revocation is not None and revocation.reached(self.clock.now())):
            return ERRORS["bad_appkey"][1:]
        if appsecret != self.appsecrets[appkey]:
            return ERRORS["bad_appsecret"][1:]
        return None

    def _token_response(self, token: _Token, at: float) -> Response:
        remaining = max(0, int(token.expires_at - at))
        # Expiry in wall-clock KST: the client compares it with its own clock, not the market clock.
        expires = datetime.now(KST) + timedelta(seconds=remaining)
        return JSONResponse(
            {
                "access_token": token.value,
                "token_type": "Bearer",
                "expires_in": remaining,
                "access_token_token_expired": expires.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )

    # --- data calls: the gateway part, shared by every data endpoint ---------------------------

    def _data_endpoint(
        self, path: str, tr_id: str, page: Callable[[Request], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """The handler of a data path: counting, latency, rate limit, header checks, faults, then ``page``."""
        endpoint = path.rsplit("/", 1)[-1]

        async def handle(request: Request) -> Response:
            appkey = request.headers.get("appkey", "")
            self.counters.count(endpoint, appkey)
            if (revocation := self.revocations.get(appkey)) is not None:
                revocation.count_request()
            arrived = monotonic_time.monotonic()
            self.counters.arrive(appkey, arrived)
            await self._latency()
            try:
                self._rate_limit(appkey, arrived)
                self._check_headers(request, tr_id)
                fault = self.faults.draw_error()
                if fault is not None:
                    self.counters.faults_injected[fault] += 1
                if fault == "rate_storm":
                    raise ApiError("rate")
                if fault == "http_5xx":
                    return self._server_error()
                payload = page(request)
            except ApiError as err:
                return self._error_response(err)
            return self._deliver(payload, fault)

        return handle

    async def _latency(self) -> None:
        delay = self.faults.latency_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    def _rate_limit(self, appkey: str, at: float) -> None:
        """A sliding one-second window of accepted calls per app key; rejected calls use no budget."""
        window = self.accepted.setdefault(appkey, deque())
        while window and window[0] <= at - 1.0:
            window.popleft()
        if len(window) >= self.config.effective_rate_limit:
            raise ApiError("rate")
        window.append(at)

    def _check_headers(self, request: Request, tr_id: str) -> None:
        headers = request.headers
        appkey = headers.get("appkey", "")
        if failure := self._check_credentials(appkey, headers.get("appsecret", "")):
            raise ApiError("bad_appkey" if failure[0] == "EGW00103" else "bad_appsecret")
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError("token_not_found")
        token = self.tokens.get(value.strip())
        if token is None or token.revoked or token.appkey != appkey:
            raise ApiError("invalid_token")
        if not token.valid(monotonic_time.monotonic()):
            raise ApiError("expired_token")
        if headers.get("tr_id") != tr_id:
            raise ApiError("bad_tr_id", f"tr_id {headers.get('tr_id')!r}: this path takes {tr_id}")
        if headers.get("custtype") not in ("P", "B"):
            raise ApiError("bad_custtype")

    def _error_response(self, err: ApiError) -> Response:
        status, msg_cd, msg1 = ERRORS[err.kind]
        if err.kind == "rate":
            self.counters.egw00201 += 1
            status = self.shape_rng.choice((500, 200))
        body = {"rt_cd": "1", "msg_cd": msg_cd, "msg1": msg1 if err.detail is None else f"{msg1} ({err.detail})"}
        return JSONResponse(body, status_code=status)

    def _server_error(self) -> Response:
        """An HTTP 500/502/503 as a gateway gives it: sometimes an HTML page, sometimes nothing."""
        rng = self.faults.rng
        status = rng.choice((500, 502, 503))
        if rng.random() < 0.5:
            return Response(status_code=status)
        return Response(f"<html><body><h1>{status} Server Error</h1></body></html>", status, media_type="text/html")

    def _deliver(self, payload: dict[str, Any], fault: str | None) -> Response:
        """The normal answer, damaged by a body fault when one was drawn."""
        rng = self.faults.rng
        if fault == "missing_fields" and payload.get("output2"):
            row = rng.choice(payload["output2"])
            del row[rng.choice(list(row))]
        text = json.dumps(payload, ensure_ascii=False)
        if fault == "malformed_json":
            text = text.replace('"', "'", 7)  # single quotes: looks like JSON, parses as nothing
        elif fault == "truncated_body":
            text = text[: rng.randrange(1, max(2, len(text) - 1))]
        return Response(text, media_type="application/json; charset=utf-8")

    # --- the data endpoints --------------------------------------------------------------------

    def today_page(self, request: Request) -> dict[str, Any]:
        """FHKST03010200: today's bars, 30 rows newest first, ending at and including the cursor."""
        query = request.query_params
        code, venue = self._target(query)
        cursor_time = _hhmmss(query, "FID_INPUT_HOUR_1")
        if self._not_traded(code, venue):
            return self._unlisted_envelope(code)
        now = self.clock.now()
        today = now.date()
        quote = self.market.quote(code, now, venue)
        session = self.market.session(code, today, venue)
        if session is None or now < session.open:
            return self._envelope(OK, code, quote, [])
        cursor = datetime.combine(today, cursor_time.replace(second=0), tzinfo=KST)
        dropped = self.faults.config.is_dropped
        rows = [(bar, value) for bar, value in quote.rows if not dropped(code, bar.minute, venue)]
        # Asking past now: the not-yet-traded minutes come back flat at the current price.
        now_minute = now.replace(second=0, microsecond=0)
        lead = self.faults.config.rows_after_cursor
        if lead is not None and cursor < now_minute:
            # Modelled, unconfirmed: a server whose clock is ahead of the caller's answers up to its
            # own minute, the forming bar included, so rows after the caller's cursor come back.
            cursor = min(now_minute, cursor + lead * ONE_MINUTE) if lead else now_minute
        rows += [
            (Bar(code, minute, quote.price, quote.price, quote.price, quote.price, 0), quote.value)
            for minute in session.bar_minutes
            if now_minute < minute <= cursor
        ]
        page = sorted((row for row in rows if row[0].minute <= cursor), key=lambda row: row[0].minute, reverse=True)
        return self._envelope(OK, code, quote, [_row(*row) for row in page[:TODAY_PAGE_ROWS]])

    def daily_page(self, request: Request) -> dict[str, Any]:
        """FHKST03010230: closed bars of a date, 120 rows newest first; earlier sessions fill the page."""
        if self.config.mode != "real":
            raise ApiError("mock_unsupported")
        query = request.query_params
        code, venue = self._target(query)
        cursor_time = _hhmmss(query, "FID_INPUT_HOUR_1")
        day = _yyyymmdd(query, "FID_INPUT_DATE_1")
        if query.get("FID_FAKE_TICK_INCU_YN") is None:
            raise ApiError("bad_field", "FID_FAKE_TICK_INCU_YN is required (blank)")
        if self._not_traded(code, venue):
            return self._unlisted_envelope(code)
        now = self.clock.now()
        quote = self.market.quote(code, now, venue)  # output1 is today's quote whatever the date asked
        oldest = now.date() - timedelta(days=HISTORY_DAYS)
        if not oldest <= day <= now.date():
            return self._envelope(NO_DATA, code, quote, [])
        cursor = min(datetime.combine(day, cursor_time.replace(second=0), tzinfo=KST), now)
        page: list[tuple[Bar, int]] = []
        while len(page) < DAILY_PAGE_ROWS and day >= oldest:
            rows = self._daily_rows(code, day, venue)
            page += [row for row in reversed(rows) if row[0].minute <= cursor and row[0].minute + ONE_MINUTE <= now]
            day -= timedelta(days=1)
        return self._envelope(OK, code, quote, [_row(*row) for row in page[:DAILY_PAGE_ROWS]])

    def _daily_rows(self, code: str, day: date, venue: Venue) -> list[tuple[Bar, int]]:
        """A day's final bars with the cumulative traded value, zero-volume and dropped minutes left out."""
        rows, value = [], 0
        for bar, cumulative in self.market.quote(code, datetime.combine(day, time(23, 59), tzinfo=KST), venue).rows:
            value = cumulative
            if bar.volume > 0 and not self.faults.config.is_dropped(code, bar.minute, venue):
                rows.append((bar, value))
        return rows

    def period_page(self, request: Request) -> dict[str, Any]:
        """FHKST03010100: one daily row per session from DATE_1 to DATE_2, newest first, at most 100.

        Each row sums up that day's ground truth (today's: the day so far); a range longer than 100
        sessions gives its newest 100. Real and mock accounts alike.
        """
        query = request.query_params
        code, venue = self._target(query)
        start, end = _yyyymmdd(query, "FID_INPUT_DATE_1"), _yyyymmdd(query, "FID_INPUT_DATE_2")
        if query.get("FID_PERIOD_DIV_CODE") != "D":
            raise ApiError("bad_field", "FID_PERIOD_DIV_CODE: the simulator serves daily rows (D) only")
        # 0 adjusted (수정주가), 1 original (원주가): the official sample, see simulator/README.md.
        adjusted = query.get("FID_ORG_ADJ_PRC")
        if adjusted not in ("0", "1"):
            raise ApiError("bad_field", "FID_ORG_ADJ_PRC must be 0 (adjusted) or 1 (original)")
        if self._not_traded(code, venue):
            return self._unlisted_envelope(code)
        now = self.clock.now()
        sessions = self.sessions.sessions_between(start, min(end, now.date()), venue)
        rows = []
        for session in reversed(sessions[-PERIOD_PAGE_ROWS:]):
            quote = self.market.quote(code, min(now, datetime.combine(session.day, time(23, 59), tzinfo=KST)), venue)
            if not quote.rows:
                continue  # today before the open: no row yet
            # Adjusted rows put a day before a split on today's share basis; a split after today
            # has not happened yet.
            ratio = self.market.split_ratio(code, session.day, now.date()) if adjusted == "0" else 1.0
            rows.append(_period_row(quote, self.market.reference_price(code, session.day), ratio))
        return self._envelope(OK, code, self.market.quote(code, now, venue), rows)

    def _target(self, query: Any) -> tuple[str, Venue]:
        """The code and venue a quotation asks for, or the error KIS gives for a bad one."""
        market = query.get("FID_COND_MRKT_DIV_CODE")
        if market not in MARKETS:
            raise ApiError("bad_market", f"{market!r}: the simulator serves {', '.join(MARKETS)}")
        code = query.get("FID_INPUT_ISCD", "")
        if not CODE_PATTERN.match(code):
            raise ApiError("bad_field", f"FID_INPUT_ISCD {code!r}")
        if code in self.faults.config.unknown_codes or not self.market.is_listed(code, self.clock.now().date()):
            raise ApiError("unknown_code", code)
        return code, MARKETS[market]

    def _not_traded(self, code: str, venue: Venue) -> bool:
        return venue is Venue.NEXTRADE and not self.market.trades_on_nextrade(code)

    def _unlisted_envelope(self, code: str) -> dict[str, Any]:
        """``NX`` for a code Nextrade does not trade: a success without a quote (K13, assumed): price
        0 and no rows, the shape ``kis.endpoints`` reads as an unknown code."""
        rt_cd, msg_cd, msg1 = OK
        output1 = {field: "0" for field in ("stck_prpr", "stck_prdy_clpr", "prdy_vrss", "acml_vol", "acml_tr_pbmn")}
        return {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1, "output1": {"hts_kor_isnm": "", **output1}, "output2": []}

    def _envelope(
        self, status: tuple[str, str, str], code: str, quote: Quote, rows: list[dict[str, str]]
    ) -> dict[str, Any]:
        """The KIS body: the status, ``output1`` (the quote at its moment) and ``rows`` as ``output2``."""
        rt_cd, msg_cd, msg1 = status
        return {
            "rt_cd": rt_cd,
            "msg_cd": msg_cd,
            "msg1": msg1,
            "output1": {
                "hts_kor_isnm": self.market.name(code),
                "stck_prpr": str(quote.price),
                "stck_prdy_clpr": str(quote.previous_close),
                "prdy_vrss": str(quote.price - quote.previous_close),
                "acml_vol": str(quote.volume),
                "acml_tr_pbmn": str(quote.value),
            },
            "output2": rows,
        }

    # --- KIS's download server ------------------------------------------------------------------

    async def master_file(self, request: Request) -> Response:
        """``GET /common/master/kospi_code.mst.zip`` (and kosdaq, konex): the market clock's day's
        file, as KIS's download server serves it (no credentials, no rate limit)."""
        market = MASTER_FILES.get(request.path_params["file"])
        if market is None:
            raise HTTPException(404)
        self.counters.requests_by_endpoint[market.file_name] += 1
        await self._latency()
        damage = self.faults.config.damaged_masters.get(market)
        key = (market, self.clock.now().date(), damage)
        if key not in self._master_zips:
            if len(self._master_zips) > 12:
                self._master_zips.clear()
            self._master_zips[key] = master_zip(self.listings, market, key[1], self.market.start_price, damage)
        return Response(self._master_zips[key], media_type="application/zip")

    # --- control API ---------------------------------------------------------------------------

    async def control_clock(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            try:
                if "now" in body:
                    self.clock.set(datetime.fromisoformat(body["now"]))
                if "advance_seconds" in body:
                    self.clock.advance(float(body["advance_seconds"]))
            except (TypeError, ValueError) as err:
                return JSONResponse({"error": str(err)}, status_code=400)
        return JSONResponse({"now": self.clock.now().isoformat()})

    async def control_truth(self, request: Request) -> Response:
        try:
            code = request.query_params["code"]
            day = date.fromisoformat(request.query_params["date"])
            at = request.query_params.get("at")
            at_time = datetime.fromisoformat(at) if at else None
            if at_time is not None and at_time.tzinfo is None:
                raise ValueError("at needs an offset")
            venue = Venue(request.query_params.get("venue", Venue.KRX.value))
        except (KeyError, ValueError) as err:
            return JSONResponse(
                {
                    "error": "need code, date=YYYY-MM-DD, optionally at=ISO 8601 with an offset and "
                    f"venue=krx|nxt|unified: {err}"
                },
                status_code=400,
            )
        market = self.market
        return JSONResponse(
            {
                "code": code,
                "date": day.isoformat(),
                "venue": venue.value,
                "nxt_listed": market.trades_on_nextrade(code),
                "bars": [bar.as_record() for bar in market.day_bars(code, day, venue)],
                "session_volume": market.session_volume(code, day, venue),
                "cumulative_volume": market.cumulative_volume(code, day, at_time, venue),
                "off_session": [trade.as_record() for trade in market.off_session_trades(code, day, venue)],
                "absences": market.absences(code, day, venue),
            }
        )

    async def control_listing(self, request: Request) -> Response:
        """``GET /_sim/listing?date=YYYY-MM-DD``: every code listed that day, as its master files
        describe it (the truth a universe is compared against)."""
        try:
            day = date.fromisoformat(request.query_params["date"])
        except (KeyError, ValueError) as err:
            return JSONResponse({"error": f"need date=YYYY-MM-DD: {err}"}, status_code=400)
        listings = self.listings
        codes = [
            {
                "code": listing.code,
                "name": listing.name,
                "market": listing.market.value,
                "group": listing.group,
                "listed_on": listing.listed_on.isoformat(),
                "halted": listings.halted(listing.code, day),
                "liquidation": listings.liquidation(listing, day),
                "administrative": listings.administrative(listing, day),
                "spac": listing.kind == "spac",
                "preferred": listing.kind == "preferred",
            }
            for listing in listings.on(day)
        ]
        return JSONResponse({"date": day.isoformat(), "codes": codes})

    async def control_counters(self, request: Request) -> Response:
        return JSONResponse(self.counters.as_dict())

    async def control_counters_reset(self, request: Request) -> Response:
        self.counters = Counters()
        return JSONResponse(self.counters.as_dict())

    async def control_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.set_faults(await _json_body(request))
            except ValueError as err:
                return JSONResponse({"error": str(err)}, status_code=400)
        return JSONResponse(self.faults.config.raw)

    async def control_tokens_expire(self, request: Request) -> Response:
        at = monotonic_time.monotonic()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, at)
        return JSONResponse({"expired": len(self.tokens)})


    async def control_appkeys(self, request: Request) -> Response:
        return JSONResponse(self._appkeys_state())

    async def control_appkeys_revoke(self, request: Request) -> Response:
        """``POST /_sim/appkeys/revoke {"appkey", "at"}``: the key is refused from the market clock's
        ``at`` on (default now), as KIS refuses a revoked key; or ``{"appkey", "after_requests": n}``:
        from its (n+1)-th data call after this one (a key revoked in the middle of a run)."""
        body = await _json_body(request)
        appkey = str(body.get("appkey", ""))
        try:
            if appkey not in self.appsecrets:
                raise ValueError(f"{appkey!r} is not an app key of this simulator")
            if "after_requests" in body:
                revocation = Revocation(requests_left=int(body["after_requests"]))
            else:
                at = datetime.fromisoformat(body["at"]) if body.get("at") else self.clock.now()
                if at.tzinfo is None:
                    raise ValueError("at needs an offset")
                revocation = Revocation(at=at)
        except (TypeError, ValueError) as err:
            error = f"need appkey and at (ISO 8601 with an offset) or after_requests: {err}"
            return JSONResponse({"error": error}, status_code=400)
        self.revocations[appkey] = revocation
        return JSONResponse(self._appkeys_state())

    def _appkeys_state(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "appkeys": [
                {"appkey": key, "revoked": key in self.revocations and self.revocations[key].reached(now)}
                for key in self.appsecrets
            ]
        }


@dataclass
class Revocation:
    """When KIS starts refusing an app key: a moment of the market clock, or after a number of its
    data calls (each call counted on arrival, before it is checked)."""

    at: datetime | None = None
    requests_left: int | None = None

    def count_request(self) -> None:
        if self.requests_left is not None:
            self.requests_left -= 1

    def reached(self, now: datetime) -> bool:
        if self.requests_left is not None:
            return self.requests_left < 0
        return self.at is not None and now >= self.at


def create_app(config: SimulatorConfig | None = None) -> ASGIApp:
    """The ASGI app of a new simulator.

    ``uvicorn simulator.app:create_app --factory --no-date-header`` works too.
    """
    return Simulator(config or SimulatorConfig()).app


def _row(bar: Bar, cumulative_value: int) -> dict[str, str]:
    return {
        "stck_bsop_date": bar.minute.strftime("%Y%m%d"),
        "stck_cntg_hour": bar.minute.strftime("%H%M%S"),
        "stck_oprc": str(bar.open),
        "stck_hgpr": str(bar.high),
        "stck_lwpr": str(bar.low),
        "stck_prpr": str(bar.close),
        "cntg_vol": str(bar.volume),
        "acml_tr_pbmn": str(cumulative_value),
    }


def _period_row(quote: Quote, reference: float, ratio: float = 1.0) -> dict[str, str]:
    """A day as FHKST03010100 shows it, from the day's bars as ``quote`` sees them.

    ``reference`` is the day's reference price (the previous close, re-based on a split day);
    ``ratio`` the splits to adjust for: prices divided by it, volumes multiplied (values unchanged).
    """
    bars = [bar for bar, _ in quote.rows]
    # From the first trade on: a Nextrade day can start with flat no-trade minutes at the previous close.
    bars = bars[next((i for i, bar in enumerate(bars) if bar.volume > 0), 0) :]

    def price(won: float) -> int:
        return int(won / ratio + 0.5)  # adjusted prices are whole won, off the tick grid if need be

    close = price(quote.price)
    change = close - price(reference)
    return {
        "stck_bsop_date": bars[0].minute.strftime("%Y%m%d"),
        "stck_clpr": str(close),
        "stck_oprc": str(price(bars[0].open)),
        "stck_hgpr": str(price(max(bar.high for bar in bars))),
        "stck_lwpr": str(price(min(bar.low for bar in bars))),
        "acml_vol": str(int(quote.volume * ratio + 0.5)),
        "acml_tr_pbmn": str(quote.value),
        "flng_cls_code": "00",  # none, even on a split day: its codes are not documented in what we have
        "prtt_rate": "0.00",
        "mod_yn": "N",
        "prdy_vrss_sign": CHANGE_SIGNS[(change > 0) - (change < 0)],
        "prdy_vrss": str(change),
        "revl_issu_reas": "",
    }


def _hhmmss(query: Any, name: str) -> time:
    raw = query.get(name, "")
    try:
        if len(raw) != 6 or not raw.isdigit():
            raise ValueError(raw)
        return time(int(raw[:2]), int(raw[2:4]), int(raw[4:]))
    except ValueError as err:
        raise ApiError("bad_field", f"{name} {raw!r}: HHMMSS") from err


def _yyyymmdd(query: Any, name: str) -> date:
    raw = query.get(name, "")
    try:
        if len(raw) != 8 or not raw.isdigit():
            raise ValueError(raw)
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError as err:
        raise ApiError("bad_field", f"{name} {raw!r}: YYYYMMDD") from err


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _oauth_error(status: int, code: str, description: str) -> Response:
    return JSONResponse({"error_code": code, "error_description": description}, status_code=status)

"""The KIS Open API transport: paced, authorized, retried requests, and KIS's errors typed.

:class:`KisClient` knows no endpoint: :mod:`kis.endpoints` has one function per endpoint on top of
it, and :class:`kis.hook.KisHook` builds it from an Airflow connection, handing it the token
endpoint's function. One client is one keep-alive HTTP session plus the app key's shared state (the
token store and the rate limiter, both kept in PostgreSQL so that every process using the key
agrees on them).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import tenacity
from psycopg import errors
from requests import Response

from kis import metrics
from kis.errors import (
    CREDENTIALS_REJECTED,
    RATE_LIMITED,
    TOKEN_REJECTED,
    TOKEN_THROTTLED,
    KisApiError,
    KisKeyRefused,
    KisRateLimited,
    KisResponseError,
    KisTokenError,
    KisTransientError,
)
from kis.rate_limit import SharedRateLimiter
from kis.token_store import IssuedToken, TokenStore, app_key_hash

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
T = TypeVar("T")

# Per app key, across every process: KIS portal notice of 2026-04-20 (docs/kis-api.md, "Rate limit").
DEFAULT_RATE_LIMIT = {"real": 18.0, "mock": 1.0}
# The fraction of it the hook uses: the jitter between a slot and the request's arrival (docs/hook.md).
DEFAULT_RATE_LIMIT_SAFETY = 0.8
DEFAULT_TIMEOUT = (3.05, 10.0)  # (connect, read) seconds
# requests.Session attributes a connection extra may set, as the http provider's connections do.
SESSION_EXTRAS = ("verify", "proxies", "cert", "trust_env")


@dataclass(frozen=True)
class KisSettings:
    """What a KIS connection configures. Secrets are kept out of ``repr``.

    :param base_url: ``scheme://host:port`` of the API (real, mock, or the simulator).
    :param session_options: ``requests.Session`` attributes from the extras (``verify``, ...).
    """

    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    base_url: str
    environment: str
    custtype: str
    rate_limit: float
    rate_limit_safety: float
    state_conn_id: str
    token_issue_interval: float
    timeout: Any = DEFAULT_TIMEOUT
    session_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def paced_rate(self) -> float:
        """The requests/s the hook sends at most: KIS's limit less the safety margin."""
        return self.rate_limit * self.rate_limit_safety

    @classmethod
    def from_connection(
        cls, *, login: str | None, password: str | None, base_url: str, extra: Mapping[str, Any]
    ) -> KisSettings:
        if not login or not password:
            raise ValueError("The KIS connection needs login (the app key) and password (the app secret)")
        # The connection form writes a field left empty as null (or ""): the default applies.
        extra = {key: value for key, value in extra.items() if value not in (None, "")}
        environment = str(extra.get("environment", "real")).lower()
        if environment not in DEFAULT_RATE_LIMIT:
            raise ValueError(f"KIS connection extra 'environment' must be 'real' or 'mock', got {environment!r}")
        return cls(
            app_key=login,
            app_secret=password,
            base_url=base_url.rstrip("/"),
            environment=environment,
            custtype=str(extra.get("custtype", "P")),
            rate_limit=float(extra.get("rate_limit", DEFAULT_RATE_LIMIT[environment])),
            rate_limit_safety=float(extra.get("rate_limit_safety", DEFAULT_RATE_LIMIT_SAFETY)),
            state_conn_id=str(extra.get("state_conn_id", "kis_market_db")),
            token_issue_interval=float(extra.get("token_issue_interval", 60)),
            timeout=extra.get("timeout", DEFAULT_TIMEOUT),
            session_options={key: extra[key] for key in SESSION_EXTRAS if key in extra},
        )


class KisClient:
    """Sends requests to the KIS Open API for one app key.

    Every request waits for its slot of the shared rate limiter; EGW00201, 5xx, timeouts and bad
    bodies are retried with jittered exponential backoff; a data call whose token KIS refuses gets
    a new token and is retried once. Errors carry KIS's code and text, never a credential.

    :param settings: the connection's settings.
    :param state_conn: an autocommit connection to the state database (owned by the caller).
    :param issue_token: calls the token endpoint with this client (``kis.endpoints.issue_token``);
        only the token store calls it, when no stored token serves.
    :param max_attempts: attempts per request for EGW00201, 5xx, timeouts and bad bodies.
    :param backoff_max: the longest wait between two attempts, seconds.
    :param prepare_state: brings the state database's tables up to date and returns what it
        applied; called when a request finds them missing or behind (a new database), and the
        request is made once more.
    """

    def __init__(
        self,
        settings: KisSettings,
        state_conn: psycopg.Connection[Any],
        *,
        issue_token: Callable[[KisClient], IssuedToken],
        max_attempts: int = 12,
        backoff_max: float = 8.0,
        prepare_state: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.settings = settings
        self._prepare_state = prepare_state
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        #: requests sent, and the failures retried by kind (rate_limited, transient, token_refused)
        self.counters: Counter[str] = Counter()
        key = app_key_hash(settings.app_key)
        self.limiter = SharedRateLimiter(state_conn, key, settings.rate_limit, settings.rate_limit_safety)
        self.tokens = TokenStore(
            state_conn, key, lambda: issue_token(self), min_issue_interval=settings.token_issue_interval
        )
        self.session = requests.Session()
        # KIS authenticates by these headers plus a Bearer token, never by HTTP auth.
        self.session.headers.update(
            {
                "content-type": "application/json; charset=utf-8",
                "appkey": settings.app_key,
                "appsecret": settings.app_secret,
                "custtype": settings.custtype,
            }
        )
        for name, value in settings.session_options.items():
            setattr(self.session, name, value)
        # KIS's clock as its last answer's Date header told it, and when (monotonic) that was.
        self._server_clock: tuple[datetime, float] | None = None

    def __repr__(self) -> str:
        return f"KisClient({self.settings!r})"

    def close(self) -> None:
        self.session.close()

    def server_now(self) -> datetime | None:
        """KIS's clock now, from the ``Date`` header of its latest answer; None before any answer.

        KIS decides what "today" is (its today endpoint serves its own current day, whatever the
        caller means), so the hook asks this, not the worker's clock or a run's logical date. On a
        real account both clocks agree to the second; the simulator sends its market clock here.
        """
        if self._server_clock is None:
            return None
        at, seen = self._server_clock
        return at + timedelta(seconds=time.monotonic() - seen)

    def token(self) -> str:
        """The app key's access token (the shared one, or a newly issued one)."""
        return self._with_state(self.tokens.get)

    def post(self, endpoint: str, payload: Mapping[str, Any]) -> tuple[int, dict]:
        """An unauthorized POST (the token endpoint), retried; returns the status and body.

        Only the token store calls it, inside its locked transaction: a missing state table is
        recovered by the caller (:meth:`token`, :meth:`get`) once that transaction has rolled back.
        """
        return self._with_retries(lambda: self._send("POST", endpoint, headers={}, json=dict(payload)))

    def get(self, endpoint: str, tr_id: str, params: Mapping[str, str]) -> dict:
        """An authorized GET, retried; a refused token is replaced and the call retried once."""
        return self._with_state(lambda: self._get(endpoint, tr_id, params))

    def _with_state(self, call: Callable[[], T]) -> T:
        """``call()``, and once more after ``prepare_state`` when the state tables are missing or
        behind: the database tells at the call's first statement, before anything is sent to KIS."""
        try:
            return call()
        except (errors.UndefinedTable, errors.UndefinedColumn, errors.UndefinedFunction):
            if self._prepare_state is None:
                raise
            # Maybe by another process meanwhile: whoever applied it, the call is made once more.
            if applied := self._prepare_state():
                log.info("State database upgraded: %s", ", ".join(applied))
            return call()

    def _get(self, endpoint: str, tr_id: str, params: Mapping[str, str]) -> dict:
        token = self.tokens.get()
        try:
            _, body = self._with_retries(lambda: self._send("GET", endpoint, headers=_auth(token, tr_id), params=params))
        except KisKeyRefused as exc:
            self.tokens.refused(exc)
            raise
        except KisTokenError as exc:
            if exc.msg_cd not in TOKEN_REJECTED:
                raise
            self.counters["token_refused"] += 1
            metrics.token_refused()
            log.warning("KIS refused the token (%s): getting a new one and retrying once", exc.msg_cd)
            self.tokens.invalidate(token)
            token = self.tokens.get()
            _, body = self._with_retries(lambda: self._send("GET", endpoint, headers=_auth(token, tr_id), params=params))
        return body

    def _send(self, method: str, endpoint: str, *, headers: dict[str, str], **request: Any) -> tuple[int, dict]:
        """One paced request; returns the status and JSON body, or raises a typed error."""
        self.limiter.acquire()
        self.counters["requests"] += 1
        metrics.request_sent(headers.get("tr_id"))
        try:
            response = self.session.request(
                method, f"{self.settings.base_url}{endpoint}", headers=headers, timeout=self.settings.timeout, **request
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            # from None: the requests exception holds the prepared request and its secret headers.
            raise KisTransientError(type(exc).__name__, "no answer from KIS", None) from None
        self._read_clock(response)
        return response.status_code, check_envelope(response)

    def _read_clock(self, response: Response) -> None:
        try:
            at = parsedate_to_datetime(response.headers["Date"])
        except (KeyError, TypeError, ValueError):
            return  # RFC 9110 lets a 5xx answer leave Date out: keep the last reading
        if at.tzinfo is not None:
            self._server_clock = (at, time.monotonic())

    def _with_retries(self, send: Callable[[], tuple[int, dict]]) -> tuple[int, dict]:
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
        metrics.request_retried(kind)
        log.warning(
            "KIS %s (attempt %s of %s); retrying in %.2f s",
            getattr(exc, "msg_cd", exc),
            state.attempt_number,
            self.max_attempts,
            state.upcoming_sleep,
        )


def check_envelope(response: Response) -> dict:
    """The JSON body; raises the typed error its ``msg_cd``/``error_code`` and status call for.

    KIS answers errors both as HTTP 200 with ``rt_cd`` != "0" (left to the endpoint functions,
    which know what "no data" means for them) and as HTTP 4xx/5xx with a JSON body.
    """
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
    if msg_cd in CREDENTIALS_REJECTED:
        raise KisKeyRefused(msg_cd, msg1, status)  # a wrong key stays wrong: no retry, though HTTP 500
    if status >= 500:
        raise KisTransientError(msg_cd or f"HTTP{status}", msg1, status)
    if status >= 400:
        raise KisApiError(msg_cd or f"HTTP{status}", msg1, status)
    return body


def _auth(token: str, tr_id: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "tr_id": tr_id}

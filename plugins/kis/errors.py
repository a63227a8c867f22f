"""Typed errors of the KIS Open API.

Every error carries only what KIS said (``msg_cd``, ``msg1``) and the HTTP status: never the app
key, the app secret, a token or a request header, so an exception can be logged, shown in the
Airflow UI or pushed to an XCom without leaking a credential.
"""

from __future__ import annotations

#: EGW00201: more requests per second than the app key's limit ("초당 거래건수를 초과하였습니다.").
RATE_LIMITED = "EGW00201"
#: EGW00133: a token was issued less than a minute ago for this app key.
TOKEN_THROTTLED = "EGW00133"
#: EGW00121 invalid, EGW00122 not found, EGW00123 expired: the token must be dropped and re-issued.
TOKEN_REJECTED = frozenset({"EGW00121", "EGW00122", "EGW00123"})
#: EGW00103 unknown app key, EGW00105 wrong app secret: on any HTTP status (KIS sends 500), never retried.
CREDENTIALS_REJECTED = frozenset({"EGW00103", "EGW00105"})
#: How KIS says a stock code does not exist. Unconfirmed for the real API (see docs/kis-api.md, K9): OPSQ1001
#: is what the simulator answers; the hook also treats a price-0 quote without bars as unknown.
UNKNOWN_CODE = frozenset({"OPSQ1001"})


class KisError(Exception):
    """Base class of everything the KIS hook raises on purpose."""


class KisApiError(KisError):
    """KIS answered with an error envelope (``rt_cd`` != "0"), whatever the HTTP status.

    :param msg_cd: the KIS message code, e.g. ``EGW00201``.
    :param msg1: the KIS message text.
    :param status: the HTTP status of the response, when there was one.
    """

    def __init__(self, msg_cd: str, msg1: str, status: int | None = None) -> None:
        self.msg_cd = msg_cd
        self.msg1 = msg1
        self.status = status
        super().__init__(f"KIS {msg_cd}: {msg1}" + (f" (HTTP {status})" if status is not None else ""))

    def __reduce__(self):
        # Keeps the three fields across pickling (multiprocessing, Airflow's exception transport).
        return (type(self), (self.msg_cd, self.msg1, self.status))


class KisRateLimited(KisApiError):
    """EGW00201: over the per-second limit of the app key; retried with backoff by the hook."""


class KisTokenError(KisApiError):
    """The token was refused (EGW00121/122/123) or could not be issued (EGW00133 and the like)."""


class KisKeyRefused(KisApiError):
    """KIS refused the app key or its secret (EGW00103, EGW00105): a bad, revoked or locked-out key.
    Never retried: the work moves to another key (:mod:`kis.app_keys`)."""


class KisUnknownCode(KisApiError):
    """The stock code is not known to KIS: an error for that code only."""

    def __init__(self, code: str, msg_cd: str, msg1: str, status: int | None = None) -> None:
        super().__init__(msg_cd, msg1, status)
        self.code = code
        self.args = (f"unknown stock code {code}: KIS {msg_cd}: {msg1} (HTTP {status})",)

    def __reduce__(self):
        return (type(self), (self.code, self.msg_cd, self.msg1, self.status))


class KisTransientError(KisApiError):
    """A failure worth retrying a bounded number of times: 5xx, timeouts, connection errors."""


class KisResponseError(KisTransientError):
    """The body was not the JSON envelope KIS sends (malformed or truncated); retried like a 5xx."""


class KisUnsupported(KisError):
    """The request cannot be served by this account or endpoint (e.g. a past day on a mock account)."""


class KisNotYet(KisError):
    """The asked day is after KIS's today: there are no bars of it yet."""

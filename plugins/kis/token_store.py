"""The KIS access token of an app key, shared by every worker through the state database.

KIS wants one token per app key per day: each issue sends the account holder a KakaoTalk message
and issuance is throttled to one a minute (EGW00133). So the token lives in one row of
``kis_api_token`` keyed by the SHA-256 of the app key, encrypted with Airflow's Fernet key, and:

- every process reads it without locking while it is fresh (and keeps it in memory until then);
- when it is missing, refused or due for refresh, a process locks the row (``INSERT ... ON
  CONFLICT DO UPDATE`` takes the row lock for the transaction), checks again, and only then
  issues a new one; the others queue on the lock and read what the first one stored, so fifty
  processes asking at 09:00 cause exactly one issue;
- the time of the last call to the token endpoint is kept, and the next one waits until the
  minimum interval has passed; an EGW00133 anyway (another client used the key) is waited out;
- a refused key (EGW00103/EGW00105) is kept with that time: within the interval the key's other
  workers get the same refusal from the row at once, neither waiting nor asking KIS again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kis import metrics
from kis.errors import TOKEN_THROTTLED, KisError, KisKeyRefused, KisTokenError
from kis.resources import load_sql

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def app_key_hash(app_key: str) -> str:
    """The state-table key of an app key: its SHA-256, so the key itself is never stored."""
    return hashlib.sha256(app_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What ``/oauth2/tokenP`` answered."""

    access_token: str
    expires_in: float  # seconds

    def __repr__(self) -> str:  # never show the token, whatever prints this object
        return f"IssuedToken(access_token='***', expires_in={self.expires_in})"


def _fernet():
    """Airflow's Fernet; refuses to run without a key, since the token must not be stored in clear."""
    from airflow.sdk.crypto import get_fernet

    fernet = get_fernet()
    if not fernet.is_encrypted:
        raise KisError(
            "No Fernet key configured: the KIS token is stored encrypted with Airflow's Fernet key. "
            "Set [core] fernet_key (AIRFLOW__CORE__FERNET_KEY)."
        )
    return fernet


def _mask(secret: str) -> None:
    """Register ``secret`` with Airflow's secrets masker (task process and supervisor)."""
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


class TokenStore:
    """The shared token of one app key.

    :param conn: an autocommit psycopg connection to the state database (owned by the caller).
    :param app_key_hash: the row key, see :func:`app_key_hash`.
    :param issue: calls the token endpoint once; raises :class:`KisTokenError` on EGW00133.
    :param min_issue_interval: seconds between two calls to the token endpoint (KIS: 60).
    :param refresh_margin: start refreshing this long before expiry (capped at a tenth of the
        token's lifetime, so short-lived test tokens are not refreshed at once).
    :param throttle_retries: how many EGW00133 answers in a row are waited out before giving up.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        app_key_hash: str,
        issue: Callable[[], IssuedToken],
        *,
        min_issue_interval: float = 60.0,
        refresh_margin: float = 3600.0,
        throttle_retries: int = 3,
    ) -> None:
        self._conn = conn
        self._key = {"app_key_hash": app_key_hash}
        self._issue = issue
        self.min_issue_interval = min_issue_interval
        self.refresh_margin = refresh_margin
        self.throttle_retries = throttle_retries
        self.issued = 0  # tokens this process obtained from KIS
        self._fernet = _fernet()
        # In-process copy: (token, its ciphertext as stored, monotonic time to look again).
        self._cached: tuple[str, str, float] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(app_key_hash={self._key['app_key_hash'][:12]}..., issued={self.issued})"

    def get(self) -> str:
        """A valid token: from memory, else from the table, else a newly issued one."""
        if self._cached and time.monotonic() < self._cached[2]:
            return self._cached[0]
        row = self._conn.execute(load_sql("kis_api_token_read.sql"), self._key).fetchone()
        if row and (token := self._usable(row[0], row[1])):
            return token
        return self._get_locked()

    def invalidate(self, token: str) -> None:
        """Drop ``token`` after KIS refused it, unless another worker already replaced it."""
        if self._cached and self._cached[0] == token:
            self._conn.execute(
                load_sql("kis_api_token_invalidate.sql"), {**self._key, "token_ciphertext": self._cached[1]}
            )
        self._cached = None

    def refused(self, refusal: KisKeyRefused) -> None:
        """KIS refused the key at a data call: kept in the key's row, so that its other workers get
        :class:`KisKeyRefused` from :meth:`get` within the issue interval instead of one refused
        request each (a lockout is what repeated refused requests risk)."""
        self._record_refusal(refusal)
        self._cached = None

    def _record_refusal(self, refusal: KisKeyRefused) -> None:
        self._conn.execute(
            load_sql("kis_api_token_refused.sql"),
            {**self._key, "refused_code": refusal.msg_cd, "refused_message": refusal.msg1},
        )

    def _usable(self, ciphertext: str | None, refresh_in: float | None) -> str | None:
        """The decrypted token when it is stored and not yet due for refresh (and cache it)."""
        if ciphertext is None or refresh_in is None or refresh_in <= 0:
            return None
        try:
            token = self._fernet.decrypt(ciphertext.encode()).decode()
        except Exception:  # a rotated Fernet key or a damaged value: issue a new token
            log.warning("The stored KIS token cannot be decrypted with the current Fernet key; replacing it")
            return None
        self._remember(token, ciphertext, refresh_in)
        return token

    def _remember(self, token: str, ciphertext: str, refresh_in: float) -> None:
        if not self._cached or self._cached[0] != token:
            _mask(token)
        self._cached = (token, ciphertext, time.monotonic() + refresh_in)

    def _get_locked(self) -> str:
        """Under the row lock: reuse what another worker just stored, or issue one token."""
        failure: KisError | None = None
        with self._conn.transaction():
            row = self._conn.execute(load_sql("kis_api_token_lock.sql"), self._key).fetchone()
            ciphertext, refresh_in, _expires_in, since_last_issue, refused_code, refused_message = row
            if token := self._usable(ciphertext, refresh_in):
                return token
            if refused_code is not None and since_last_issue < self.min_issue_interval:
                raise KisKeyRefused(refused_code, refused_message or "")
            try:
                issued = self._issue_respecting_throttle(since_last_issue)
            except KisError as exc:
                # Commit anyway: the recorded time of the attempt keeps the next one from hammering.
                failure = exc
                if isinstance(exc, KisKeyRefused):
                    self._record_refusal(exc)
            else:
                self._save(issued)
        if failure is not None:
            raise failure
        return self._cached[0]  # type: ignore[index]  # set by _save

    def _issue_respecting_throttle(self, since_last_issue: float | None) -> IssuedToken:
        throttled = 0
        while True:
            if since_last_issue is not None and since_last_issue < self.min_issue_interval:
                wait = self.min_issue_interval - since_last_issue
                log.info("Waiting %.1f s: KIS issues at most one token a minute per app key", wait)
                time.sleep(wait)
            self._conn.execute(load_sql("kis_api_token_mark_issue.sql"), self._key)
            try:
                return self._issue()
            except KisTokenError as exc:
                if exc.msg_cd != TOKEN_THROTTLED:
                    raise
                metrics.token_throttled()
                throttled += 1
                if throttled > self.throttle_retries:
                    raise
                log.warning("KIS throttled token issuance (%s); waiting before asking again", exc.msg_cd)
                since_last_issue = 0.0

    def _save(self, issued: IssuedToken) -> None:
        _mask(issued.access_token)
        ciphertext = self._fernet.encrypt(issued.access_token.encode()).decode()
        refresh_in = issued.expires_in - min(self.refresh_margin, issued.expires_in / 10)
        self._conn.execute(
            load_sql("kis_api_token_save.sql"),
            {**self._key, "token_ciphertext": ciphertext, "expires_in": issued.expires_in, "refresh_in": refresh_in},
        )
        self.issued += 1
        metrics.token_issued()
        self._remember(issued.access_token, ciphertext, refresh_in)
        log.info("Issued a new KIS access token (valid %.0f s); stored encrypted for every worker", issued.expires_in)

"""A request-rate limiter shared through PostgreSQL by every process that uses one app key.

KIS counts requests per app key per second (18/s real, 1/s mock) across all callers, so a
per-process limiter is not enough once several Airflow workers run. This is GCRA (the generic cell
rate algorithm) without burst, kept in one row per app key: each request reserves the next slot in
one atomic ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (``include/sql/kis_api_rate_acquire.sql``)
and sleeps until it. Slots are spaced ``1 / (rate * safety)`` apart, so whatever the number of
processes, at most ``floor(rate * safety) + 1`` slots fall in any one-second window; the
``safety`` factor (0.8 by default: 14.4/s of 18, 0.8/s of 1) absorbs the jitter between reserving a slot and the request
reaching the server (see docs/hook.md for the arithmetic).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kis.resources import load_sql

if TYPE_CHECKING:
    import psycopg


class SharedRateLimiter:
    """Paces the requests of one app key across processes and machines.

    :param conn: an autocommit psycopg connection to the state database (owned by the caller).
    :param app_key_hash: the row key (a hash of the app key, never the key).
    :param rate: the server's limit in requests per second.
    :param safety: the fraction of ``rate`` actually used, in (0, 1].
    """

    def __init__(self, conn: psycopg.Connection[Any], app_key_hash: str, rate: float, safety: float = 0.8):
        if rate <= 0 or not 0 < safety <= 1:
            raise ValueError(f"rate must be > 0 and safety in (0, 1], got {rate} and {safety}")
        self._conn = conn
        self._app_key_hash = app_key_hash
        self.interval = 1.0 / (rate * safety)

    def acquire(self) -> None:
        """Reserve the next slot of the app key and sleep until it comes."""
        row = self._conn.execute(
            load_sql("kis_api_rate_acquire.sql"),
            {"app_key_hash": self._app_key_hash, "interval": self.interval},
        ).fetchone()
        wait = row[0] if row else 0.0
        if wait > 0:
            time.sleep(wait)

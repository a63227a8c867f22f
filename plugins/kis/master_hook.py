"""The Airflow face of KIS's download server: the stock master files, as bytes with the server's clock.

Connection ``kis_master`` (``AIRFLOW_CONN_KIS_MASTER``), of type ``http``: the host with its scheme
(``https://new.real.download.dws.co.kr``, or the simulator's ``http://127.0.0.1:8765``), or host,
``schema`` and port as the http provider reads them. Without the connection, KIS's download server.
The server asks for no credential (KIS's samples download the files with a plain GET). Extras:
``verify`` (false, or a CA bundle's path: KIS's samples switch certificate checks off, for a reason
they do not give), ``timeout`` (seconds), ``proxies``.

The project's simulator marks its answers (``X-KIS-Simulator``, simulator/README.md). Its files
describe an invented market: the hook refuses them unless the KIS connection (``kis_default``) is
that same simulator, so that a deployment on a real account whose ``kis_master`` was left at the
simulator (compose's default until ``KIS_MASTER_URL`` is set) fails instead of storing them as
KIS's universe. The check reads that connection once, only when the header is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any, Self
from urllib.parse import urlsplit

import requests
from airflow.sdk.bases.hook import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from kis.masters import StockMarket
from kis.provider import base_url
from kis.resources import KIS_CONN_ID, KIS_MASTER_CONN_ID

#: KIS's download server (koreainvestment/open-trading-api, stocks_info/kis_*_code_mst.py).
DEFAULT_BASE_URL = "https://new.real.download.dws.co.kr"
DEFAULT_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds: a file is a few hundred kB
#: The header of every answer of the project's simulator (simulator/README.md); KIS sends none.
SIMULATOR_HEADER = "X-KIS-Simulator"


class SimulatedMasters(AirflowFailException):
    """The master files came from the project's simulator, but KIS is another server: they are not
    KIS's. A setting to change, not a failure a retry mends."""


@dataclass(frozen=True)
class MasterDownload:
    """One downloaded ``<market>_code.mst.zip``, and when the server says it served it."""

    market: StockMarket
    url: str
    content: bytes
    served_at: datetime | None  # the answer's Date header: the server's clock; None without one


class KisMasterHook(BaseHook):
    """Downloads KIS's stock master files (see the module docstring for the connection).

    :param kis_master_conn_id: the connection of the download server.
    :param kis_conn_id: the KIS connection, which a simulator serving the files must be.
    """

    conn_name_attr = "kis_master_conn_id"
    default_conn_name = KIS_MASTER_CONN_ID
    conn_type = "http"
    hook_name = "KIS stock masters"

    def __init__(self, kis_master_conn_id: str = default_conn_name, kis_conn_id: str = KIS_CONN_ID) -> None:
        super().__init__()
        self.kis_master_conn_id = kis_master_conn_id
        self.kis_conn_id = kis_conn_id
        self._session: requests.Session | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @cached_property
    def _settings(self) -> tuple[str, dict[str, Any]]:
        """The base URL and the connection's extras; KIS's server when the connection is not defined."""
        try:
            conn = self.get_connection(self.kis_master_conn_id)
        except AirflowNotFoundException:
            self.log.info("No connection %s: KIS's download server %s", self.kis_master_conn_id, DEFAULT_BASE_URL)
            return DEFAULT_BASE_URL, {}
        return base_url(conn), conn.extra_dejson

    @property
    def base_url(self) -> str:
        return self._settings[0]

    @cached_property
    def _kis_url(self) -> str | None:
        """The KIS connection's URL; None when it is not defined."""
        try:
            return base_url(self.get_connection(self.kis_conn_id))
        except AirflowNotFoundException:
            return None

    def get_conn(self) -> requests.Session:
        """The keep-alive session of this hook, with the connection's ``verify`` and ``proxies``."""
        if self._session is None:
            extra = self._settings[1]
            session = requests.Session()
            for option in ("verify", "proxies"):
                if option in extra:
                    setattr(session, option, extra[option])
            self._session = session
        return self._session

    def download(self, market: StockMarket) -> MasterDownload:
        """``market``'s zipped master file; raises ``requests.HTTPError`` on an answer other than 200."""
        url = f"{self.base_url}{market.path}"
        timeout = self._settings[1].get("timeout", DEFAULT_TIMEOUT)
        response = self.get_conn().get(url, timeout=timeout)
        response.raise_for_status()
        if SIMULATOR_HEADER in response.headers and _server(self._kis_url) != _server(self.base_url):
            raise SimulatedMasters(
                f"{url} was served by the project's KIS simulator (its {SIMULATOR_HEADER} header): an "
                f"invented market, while the KIS connection {self.kis_conn_id} is "
                f"{self._kis_url or 'not defined'}. Nothing was stored. Point {self.kis_master_conn_id} at "
                f"KIS's download server: in compose, set KIS_MASTER_URL={DEFAULT_BASE_URL} in .env; "
                "elsewhere, leave the connection undefined."
            )
        self.log.info("%s: %d bytes (Last-Modified %s)", url, len(response.content), response.headers.get("Last-Modified"))
        return MasterDownload(market, url, response.content, _served_at(response.headers.get("Date")))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _served_at(header: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(header) if header else None
    except (TypeError, ValueError):
        return None


def _server(url: str | None) -> tuple[str | None, int | None] | None:
    """The host and port a URL reaches (the scheme's port when it names none)."""
    if url is None:
        return None
    parts = urlsplit(url)
    return parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)

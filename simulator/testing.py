"""Run a simulator inside a test: ``with run_simulator(now=...) as sim: ...``.

The server runs in a background thread on a free port of 127.0.0.1 and is stopped on exit. Every
control call goes through the HTTP control API, so the same calls work against a simulator
started as a separate process.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import httpx
import uvicorn

from kis.bar import KST, Bar
from simulator.app import DEFAULT_APPKEY, DEFAULT_APPSECRET, Simulator, SimulatorConfig
from simulator.sessions import Sessions

__all__ = ["SimulatorHandle", "run_simulator"]

STARTUP_TIMEOUT_SECONDS = 10.0


class SimulatorHandle:
    """A running simulator: its address and credentials, and the control API as methods."""

    def __init__(self, host: str, port: int, appkeys: Sequence[tuple[str, str]], mode: str) -> None:
        self.host, self.port = host, port
        self.base_url = f"http://{host}:{port}"
        #: the accepted (app key, app secret) pairs; ``appkey`` and ``appsecret`` are the first
        self.appkeys, self.mode = list(appkeys), mode
        self.appkey, self.appsecret = self.appkeys[0]
        self._http = httpx.Client(base_url=self.base_url, timeout=10.0)

    def now(self) -> datetime:
        return datetime.fromisoformat(self._call("GET", "/_sim/clock")["now"]).astimezone(KST)

    def set_now(self, now: datetime | str) -> None:
        self._call("POST", "/_sim/clock", {"now": now if isinstance(now, str) else now.isoformat()})

    def advance(self, seconds: float) -> None:
        self._call("POST", "/_sim/clock", {"advance_seconds": seconds})

    def set_faults(self, faults: dict[str, Any]) -> None:
        self._call("POST", "/_sim/faults", faults)

    def counters(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/counters")

    def reset_counters(self) -> None:
        self._call("POST", "/_sim/counters/reset")

    def expire_tokens(self) -> None:
        self._call("POST", "/_sim/tokens/expire")

    def revoke_appkey(
        self, appkey: str, at: datetime | str | None = None, *, after_requests: int | None = None
    ) -> None:
        """KIS refuses ``appkey`` (EGW00103) from the market clock's ``at`` on (None: now), or, with
        ``after_requests``, once it has made that many more data calls."""
        body: dict[str, Any] = {"appkey": appkey}
        if after_requests is not None:
            body["after_requests"] = after_requests
        elif at is not None:
            body["at"] = at if isinstance(at, str) else at.isoformat()
        self._call("POST", "/_sim/appkeys/revoke", body)

    def truth(self, code: str, day: date, venue: str = "krx") -> list[Bar]:
        """The bars of ``code`` on ``day`` at ``venue`` (``krx``, ``nxt`` or ``unified``), as traded."""
        return [Bar.from_record(record) for record in self._truth(code, day, venue=venue)["bars"]]

    def cumulative_volume(self, code: str, day: date, at: datetime | str | None = None, venue: str = "krx") -> int:
        """The day volume (``acml_vol``) as KIS shows it at ``at``; None: the whole day's.

        It is not the sum of the bars (that is :meth:`session_volume`) once an off-session trade is made.
        """
        return int(self._truth(code, day, at, venue)["cumulative_volume"])

    def session_volume(self, code: str, day: date, venue: str = "krx") -> int:
        """The volume of the bars: the sum of :meth:`truth`'s."""
        return int(self._truth(code, day, venue=venue)["session_volume"])

    def off_session(self, code: str, day: date, venue: str = "krx") -> list[dict[str, Any]]:
        """KRX's off-session trades of the day: ``{"at", "session", "volume"}`` each, in time order
        (the unified view's are KRX's; Nextrade has none)."""
        return list(self._truth(code, day, venue=venue)["off_session"])

    def absences(self, code: str, day: date, venue: str = "krx") -> list[dict[str, Any]]:
        """The grid minutes of ``venue`` without a bar, ``{"minute", "reason"}`` each."""
        return list(self._truth(code, day, venue=venue)["absences"])

    def listing(self, day: date) -> list[dict[str, Any]]:
        """Every code listed on ``day``, as the day's master files describe it: ``{"code", "name",
        "market", "group", "listed_on", "halted", "liquidation", "administrative", "spac", "preferred"}``."""
        return list(self._call("GET", "/_sim/listing", params={"date": day.isoformat()})["codes"])

    def nxt_listed(self, code: str) -> bool:
        """Whether Nextrade trades ``code`` (the fault key ``nxt_codes``)."""
        return bool(self._truth(code, self.now().date())["nxt_listed"])

    def close(self) -> None:
        self._http.close()

    def _truth(self, code: str, day: date, at: datetime | str | None = None, venue: str = "krx") -> dict[str, Any]:
        params = {"code": code, "date": day.isoformat(), "venue": venue}
        if at is not None:
            params["at"] = at if isinstance(at, str) else at.isoformat()
        return self._call("GET", "/_sim/truth", params=params)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None) -> Any:
        response = self._http.request(method, path, json=body, params=params)
        response.raise_for_status()
        return response.json()


@contextmanager
def run_simulator(
    mode: str = "real",
    now: datetime | str | None = "2026-11-25T10:31:00+09:00",
    seed: int = 0,
    appkey: str | None = None,
    appsecret: str | None = None,
    appkeys: Sequence[tuple[str, str]] | None = None,
    rate_limit: int | None = None,
    token_lifetime_seconds: float = 86400,
    token_throttle_seconds: float = 60,
    faults: dict[str, Any] | None = None,
    splits: list[dict[str, Any]] | None = None,
    nxt_codes: list[str] | None = None,
    sessions: Sessions | None = None,
) -> Iterator[SimulatorHandle]:
    """Start a simulator on a free port of 127.0.0.1, yield its handle, stop it on exit.

    ``now`` None starts the market clock at the wall clock; appkey/appsecret None take the
    documented defaults; ``appkeys`` accepts several (app key, app secret) pairs instead; ``splits``
    and ``nxt_codes`` are shortcuts for ``faults["splits"]`` and ``faults["nxt_codes"]`` (None: the
    default watch-list's codes trade on Nextrade). ``sessions`` replaces the sessions the market
    trades in (default :class:`simulator.sessions.Sessions`): a collector tested against other hours
    than its own calendar's, e.g. an after-market from 15:30.
    """
    if appkeys is not None and (appkey or appsecret):
        raise ValueError("give appkeys, or appkey and appsecret, not both")
    config = SimulatorConfig(
        mode=mode,
        appkeys=tuple(appkeys or [(appkey or DEFAULT_APPKEY, appsecret or DEFAULT_APPSECRET)]),
        now=datetime.fromisoformat(now) if isinstance(now, str) else now,
        seed=seed,
        rate_limit=rate_limit,
        token_lifetime_seconds=token_lifetime_seconds,
        token_throttle_seconds=token_throttle_seconds,
        faults=faults,
        splits=splits,
        nxt_codes=nxt_codes,
    )
    app = Simulator(config, sessions).app
    # Binding the socket here, not in uvicorn, gives the port before the thread starts, without a race.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # date_header=False: the app sends its market clock as Date; uvicorn would add a second, wall-clock one.
    server_config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", date_header=False)
    server = uvicorn.Server(server_config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"simulator-{port}", daemon=True)
    thread.start()
    handle = SimulatorHandle("127.0.0.1", port, config.appkeys, mode)
    try:
        _wait_until_serving(handle, thread)
        yield handle
    finally:
        handle.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_until_serving(handle: SimulatorHandle, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        try:
            handle.now()
            return
        except httpx.TransportError:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start on {handle.base_url}") from None
            time.sleep(0.02)

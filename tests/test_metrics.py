"""The collection's metrics as a StatsD server receives them: real runs against the simulator, with
Airflow's StatsD integration on and pointed at a UDP listener of the test's own on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Self

import httpx
import pytest
from kis.endpoints import TODAY_MINUTES_TR_ID
from simulated_day import CODES, TRIGGERED_RUNS_ONLY, kst, wait_for

from devtools import airflow_env, localpg

PREFIX = "airflow."


class StatsdListener:
    """A StatsD server in miniature: counters summed, gauges' last value, timers' samples (ms)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.counters: Counter[str] = Counter()
        self.gauges: dict[str, float] = {}
        self.timers: dict[str, list[float]] = {}
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self.sock.recv(65535).decode()
            except TimeoutError:
                continue
            for line in packet.splitlines():
                name, _, rest = line.partition(":")
                value, kind = rest.split("|")[:2]
                name = name.removeprefix(PREFIX)
                if kind == "c":
                    self.counters[name] += int(value)
                elif kind == "g":
                    self.gauges[name] = float(value)
                elif kind == "ms":
                    self.timers.setdefault(name, []).append(float(value))
                self._seen.add(name)

    def settle(self) -> None:
        """Returns once every metric sent before the call is read: loopback UDP keeps the order of
        one queue, so a marker sent now arrives after them."""
        marker = f"test.marker.{uuid.uuid4().hex}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.sendto(f"{PREFIX}{marker}:1|c".encode(), ("127.0.0.1", self.port))
        wait_for("the StatsD marker", lambda: marker in self._seen, timeout=10, interval=0.05)

    def kis(self, kind: str = "counters") -> dict:
        return {name: value for name, value in getattr(self, kind).items() if name.startswith("kis.")}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    """Airflow's StatsD metrics on, sent to a listener on 127.0.0.1: the ``[metrics]`` options set as
    a deployment sets them, then the Task SDK's stats set up from them as each task process does at
    start (``task_runner.main``); dag.test() runs the tasks in this process."""
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    def set_up_stats() -> None:
        stats.initialize(
            factory=stats_utils.get_stats_factory(), export_legacy_names=conf.getboolean("metrics", "legacy_names_on")
        )

    with StatsdListener() as listener:
        try:
            with pytest.MonkeyPatch.context() as env:
                for name, value in airflow_env.statsd(listener.address).items():
                    env.setenv(name, value)
                set_up_stats()
                yield listener
        finally:
            set_up_stats()  # metrics off again for the tests after this one


def test_runs_report_requests_retries_tokens_bars_lag_and_completeness(simulated_market, statsd):
    day = date(2026, 11, 25)
    # One answer in two an EGW00201 or a 503: retried by the client, counted on both sides.
    with simulated_market(faults={"http_5xx": 0.3, "rate_storm": 0.2}) as market:
        tick = kst("2026-11-25T10:31")
        before = datetime.now(UTC)
        assert market.run("kis_minute_bars", tick).state == "success"
        after = datetime.now(UTC)
        statsd.settle()
        sim = market.sim.counters()
        faults = sim["faults_injected"]
        assert faults.get("rate_storm") and faults.get("http_5xx")  # the run met both kinds
        assert statsd.kis() == {
            # every attempt, per TR id: one request per code, plus the retries, plus the token
            f"kis.requests.{TODAY_MINUTES_TR_ID}": len(CODES) + sim["egw00201"] + faults["http_5xx"],
            "kis.requests.token": sim["tokens_issued"],
            "kis.retries.rate_limited": sim["egw00201"],
            "kis.retries.transient": faults["http_5xx"],
            "kis.token.issued": 1,
            # 30 closed bars of each code, all new: exactly what the database has
            "kis.bars_stored.kis_minute_bars": market.query("SELECT count(*) FROM stock_prices_minute")[0][0],
        }
        (lag,) = statsd.timers["kis.stored_lag.kis_minute_bars"]
        assert (before - tick).total_seconds() * 1000 <= lag <= (after - tick).total_seconds() * 1000

        # The next minute stores one new bar per code and rewrites the bars tampered with; then the
        # backfill the rest of the day but a lost minute, with the token KIS refuses (expired)
        # replaced once.
        market.sim.set_faults({})
        market.query("UPDATE stock_prices_minute SET volume = volume + 1 WHERE datetime = %s", datetime(2026, 11, 25, 10, 30))
        assert market.run("kis_minute_bars", kst("2026-11-25T10:32")).state == "success"
        market.sim.set_faults({"drop_minutes": [{"code": "005930", "minutes": ["09:00"], "date": day.isoformat()}]})
        market.sim.expire_tokens()
        market.sim.reset_counters()
        statsd.settle()
        assert statsd.counters["kis.bars_stored.kis_minute_bars"] == len(CODES) * (30 + 1 + 1)
        bars_before = market.query("SELECT count(*) FROM stock_prices_minute")[0][0]
        requests_before = statsd.kis()
        assert market.run("kis_minute_backfill", kst("2026-11-25T16:00")).state == "success"
        statsd.settle()
        sim = market.sim.counters()["requests_by_endpoint"]
        sent = Counter(statsd.kis()) - Counter(requests_before)
        total = market.query("SELECT count(*) FROM stock_prices_minute WHERE datetime::date = %s", day)[0][0]
        assert total == len(CODES) * 381 - 1
        assert {name: n for name, n in sent.items() if name.startswith("kis.requests.")} == {
            f"kis.requests.{TODAY_MINUTES_TR_ID}": sim["inquire-time-itemchartprice"],
            "kis.requests.token": 1,
        }
        assert sent["kis.token.refused"] == 1 and sent["kis.token.issued"] == 1
        assert sent["kis.bars_stored.kis_minute_backfill"] == total - bars_before
        assert statsd.gauges["kis.completeness.krx"] == total / (len(CODES) * 381)


@pytest.mark.stack
def test_supervised_task_processes_send_the_metrics(pg_cluster):
    """Under the scheduler and the LocalExecutor each task runs in a process of its own, which sets
    up its metrics from ``[metrics]`` at start: those of a minute run reach the StatsD server."""
    from devtools.local_airflow import running_airflow
    from devtools.net import free_port
    from simulator.testing import run_simulator

    port = free_port()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with StatsdListener() as statsd, run_simulator(now="2026-11-25T10:31:02+09:00") as sim:
        env = airflow_env.environment(
            f"metrics_{worker}", api_port=port,
            kis_conn=airflow_env.kis_connection(sim.host, sim.port, appkey=sim.appkey, appsecret=sim.appsecret),
        )
        env |= airflow_env.statsd(statsd.address) | TRIGGERED_RUNS_ONLY | {"AIRFLOW_VAR_KIS_WATCHLIST": "005930,000660"}
        # Fresh databases: a run of the same logical date must not exist from an earlier session.
        localpg.create_database(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1], drop_existing=True)
        localpg.create_database(env["AIRFLOW_CONN_KIS_MARKET_DB"].rsplit("/", 1)[1], drop_existing=True)
        with running_airflow(env), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
            login = {"username": "admin", "password": airflow_env.admin_password()}
            api.headers["Authorization"] = f"Bearer {api.post('/auth/token', json=login).json()['access_token']}"
            dag = "/api/v2/dags/kis_minute_bars"
            wait_for("the dag-processor parses kis_minute_bars", lambda: api.get(dag).status_code == 200)
            assert api.patch(dag, json={"is_paused": False}).status_code == 200
            triggered = api.post(f"{dag}/dagRuns", json={"logical_date": "2026-11-25T10:31:00+09:00"})
            assert triggered.status_code == 200, triggered.text
            run = f"{dag}/dagRuns/{triggered.json()['dag_run_id']}"
            state = wait_for("the run ends", lambda: (s := api.get(run).json()["state"]) in ("success", "failed") and s)
            assert state == "success"
        statsd.settle()
        assert statsd.kis() == {
            f"kis.requests.{TODAY_MINUTES_TR_ID}": 2,
            "kis.requests.token": 1,
            "kis.token.issued": 1,
            "kis.bars_stored.kis_minute_bars": 2 * 30,
        }
        assert len(statsd.timers["kis.stored_lag.kis_minute_bars"]) == 1

"""Fixtures shared by the whole suite: the private PostgreSQL cluster and fresh databases on it;
the tiers of the suite (markers ``slow``, ``stack``, ``solo``, see pyproject.toml)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from devtools import airflow_env, localpg

# Airflow reads its configuration at import, so the suite's local Airflow (its own home, metadata
# database on the private cluster, Fernet key) is set before any test module imports Airflow; the
# cluster itself starts with the first test that needs it (pg_cluster), and not at all without one.
# Each pytest-xdist worker gets its own, so DAG runs of parallel tests never meet.
AIRFLOW_ENV = airflow_env.environment(f"test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
os.environ.update(AIRFLOW_ENV)
# dag.test() cannot finish a run of a DAG that declares deadlines (Airflow 3.3.2, see kis.alerts).
os.environ["KIS_DEADLINE_ALERTS"] = "off"

import psycopg  # noqa: E402
import pytest  # noqa: E402

# The fixtures of a simulated market: a test that has one runs DAGs with dag.test().
DAG_RUNS = {"market", "simulated_market"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that runs DAGs is ``slow``; a ``stack`` test runs in the group ``stack`` (one at a
    time, on one pytest-xdist worker with ``--dist loadgroup``); ``stack`` and ``solo`` tests are
    ``slow`` too: none of these is in ``make test-fast``."""
    for item in items:
        if DAG_RUNS & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("stack"):
            item.add_marker(pytest.mark.xdist_group("stack"))
            if getattr(config.option, "loadgroup", False):  # a pytest-xdist worker under --dist loadgroup
                _join_group(item, "stack")
        if item.get_closest_marker("stack") or item.get_closest_marker("solo"):
            item.add_marker(pytest.mark.slow)


def _join_group(item: pytest.Item, group: str) -> None:
    """What pytest-xdist 3.8 means to do for an ``xdist_group`` mark: the controller groups by the
    ``@group`` suffix of the node id, which the worker sets as ``item._nodeid``. pytest 9.2 keeps
    the id in ``item._id``, so the suffix, and the group, were silently lost: the two workers ran
    stacks at the same time (https://github.com/pytest-dev/pytest-xdist/issues/1386, fix pending).
    Set here, in pytest 9.2's terms; checked, so that the next change fails loudly instead."""
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{item.nodeid}@{group}")
    if not item.nodeid.endswith(f"@{group}"):
        raise pytest.UsageError(f"cannot put {item.nodeid} in the pytest-xdist group {group!r}")


@pytest.fixture(scope="session")
def pg_cluster() -> localpg.Cluster:
    """The private cluster, started when not running (scripts/test.sh stops it afterwards)."""
    localpg.start()
    localpg.wait_until_accepting()
    return localpg.cluster()


@pytest.fixture(scope="session")
def airflow_db(pg_cluster: localpg.Cluster) -> dict[str, str]:
    """The suite's Airflow metadata database, migrated, with the pools imported."""
    airflow_env.prepare(AIRFLOW_ENV)
    return AIRFLOW_ENV


@pytest.fixture
def new_database(pg_cluster: localpg.Cluster) -> Iterator[Callable[[], str]]:
    """A factory of empty databases, dropped after the test; returns each one's DSN."""
    created: list[str] = []

    def make() -> str:
        name = f"t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        created.append(name)
        return localpg.create_database(name)

    yield make
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def market_dsn(new_database: Callable[[], str]) -> str:
    """The DSN of an empty database for one test."""
    return new_database()


@pytest.fixture
def point_kis_at(monkeypatch: pytest.MonkeyPatch, market_dsn: str) -> Callable[..., None]:
    """Points ``kis_default`` and ``kis_master`` (the stock masters) at a simulator, and
    ``kis_market_db`` (the market data and the hook's shared state) at this test's database;
    ``extra`` adds connection extras."""

    def point(sim, **extra) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_KIS_DEFAULT",
            airflow_env.kis_connection(
                sim.host, sim.port, environment=sim.mode, appkey=sim.appkey, appsecret=sim.appsecret, **extra
            ),
        )
        monkeypatch.setenv("AIRFLOW_CONN_KIS_MASTER", airflow_env.master_connection(sim.host, sim.port))
        monkeypatch.setenv("AIRFLOW_CONN_KIS_MARKET_DB", market_dsn)

    return point


# --- a simulated trading day for DAG tests (tests/simulated_day.py) ---------------------------------


# Per module, not per session: dag.test() runs the tasks in this process, on these objects, and a
# run's conf stays in their params, which the DAG's later runs then take as theirs (a backfill's date).
@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from simulated_day import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag


@pytest.fixture
def simulated_market(monkeypatch, point_kis_at, market_dsn, dagbag):
    """``with simulated_market(codes=..., **run_simulator options) as market``: one simulated market."""
    from simulated_day import CODES, Market
    from simulator.testing import run_simulator

    @contextmanager
    def simulate(*, codes=CODES, **simulator):
        # KIS issues one token a minute; a test that expires its token must not wait a whole minute.
        simulator.setdefault("token_throttle_seconds", 1)
        with run_simulator(**simulator) as sim:
            point_kis_at(sim, token_issue_interval=1)
            monkeypatch.setenv("AIRFLOW_VAR_KIS_WATCHLIST", ",".join(codes))
            yield Market(sim, market_dsn, dagbag)

    return simulate


@pytest.fixture
def market(simulated_market):
    with simulated_market() as market:
        yield market


# --- no secret in any test's output ---------------------------------------------------------------
# Every test's captured stdout, stderr and log records (task logs of dag.test() included) are
# scanned for the simulator's app key, app secret and tokens; a hit fails the run at the end.

SECRET_PATTERNS = {
    "app key": re.compile(re.escape(airflow_env.SIMULATOR_APPKEY)),
    "app secret": re.compile(re.escape(airflow_env.SIMULATOR_APPSECRET)),
    "access token": re.compile(r"SIM\.[A-Za-z0-9_-]{20,}"),
}
_secret_leaks: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for section, text in report.sections:
        for what, pattern in SECRET_PATTERNS.items():
            if pattern.search(text):
                _secret_leaks.append(f"{report.nodeid}: {what} in {section!r}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _secret_leaks and not hasattr(session.config, "workerinput"):
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "Secrets found in test output:\n  " + "\n  ".join(sorted(set(_secret_leaks))), red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

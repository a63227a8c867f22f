"""Fixtures shared by the whole suite: the private PostgreSQL cluster and fresh databases on it."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator

# Airflow reads its configuration at import: give the suite its own home and a Fernet key (the
# hook encrypts the shared KIS token with it) before any test module imports Airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="kis-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from cryptography.fernet import Fernet  # noqa: E402

os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())

import psycopg  # noqa: E402
import pytest  # noqa: E402

from devtools import localpg  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> localpg.Cluster:
    """The private cluster, started when it is not running (`make test` stops it afterwards)."""
    localpg.start()
    localpg.wait_until_accepting()
    return localpg.cluster()


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

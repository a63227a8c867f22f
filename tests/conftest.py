"""Fixtures shared by the whole suite: the private PostgreSQL cluster and fresh databases on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from devtools import localpg


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

"""What a task of the KIS DAGs takes from Airflow: its run, the Variables, the market database and
the KIS hook; and how it fails for good.

Every task function takes the run's own time (its logical date, :class:`Run`) and never the wall
clock, so a rerun of an old run fetches and checks the same minutes, and tests drive a simulated day
by choosing logical dates. Airflow's modules are imported where they are used, so that importing a
task module costs a DAG file's parse nothing it does not need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from kis import schema
from kis.bar import KST
from kis.resources import KIS_CONN_ID, MARKET_DB_CONN_ID
from kis.venues import DEFAULT_VENUES, Venue, parse_venues

if TYPE_CHECKING:
    from kis.hook import KisHook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """The DAG run a task belongs to: its ids, for alerts, and its moment, for everything else."""

    dag_id: str
    run_id: str
    at: datetime  # the logical date; for a manual run without one, when it was triggered

    @classmethod
    def of(cls, dag_run: Any) -> Run:
        return cls(dag_run.dag_id, dag_run.run_id, dag_run.logical_date or dag_run.run_after)

    @property
    def day(self) -> date:
        """The run's own date, in KST."""
        return self.at.astimezone(KST).date()


class CollectionFailed(AirflowFailException):
    """A task's work failed in a way that retrying cannot mend: Airflow fails it without retries."""


def variable(key: str, default: str | None = None) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(key, default=default)


def market_db():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DB_CONN_ID).get_conn()


def prepared_market_db(day: date):
    """The market database with its schema current (one query when it is). The partitions a batch
    needs are ensured by the upsert step itself, in its own transaction."""
    conn = market_db()
    applied = schema.migrate(conn, today=day)
    if applied:
        log.info("Market schema upgraded: %s", ", ".join(applied))
    conn.commit()
    return conn


def kis_hook(conn_id: str = KIS_CONN_ID) -> KisHook:
    """The hook of the KIS connection ``conn_id`` (one app key)."""
    from kis.hook import KisHook

    return KisHook(kis_conn_id=conn_id)


def configured_venues() -> tuple[Venue, ...]:
    """The venues of the Variable ``kis_venues`` (default ``["krx"]``)."""
    return parse_venues(variable("kis_venues"))


def scheduled_venues() -> tuple[Venue, ...]:
    """The venues a DAG file's schedule ticks for: :func:`configured_venues`, except in a task's
    own parse of its DAG file (Airflow's parsing context then names the task), which runs no
    schedule: the default, without a Variable request to the API server from every task."""
    from airflow.sdk import get_parsing_context

    return DEFAULT_VENUES if get_parsing_context().task_id is not None else configured_venues()

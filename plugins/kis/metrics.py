"""The collection's Airflow metrics, sent through Airflow's own StatsD / OpenTelemetry integration.

Task code emits through the Task SDK's ``stats`` (what ``airflow.stats.Stats`` now forwards to),
which each task process sets up from ``[metrics]`` at start; with metrics off every call is a no-op.
Every name starts with ``kis.`` (after Airflow's ``statsd_prefix``). StatsD has no tags, so the few
dimensions worth telling apart (TR id, DAG, venue) end the name, as in Airflow's own names.
docs/operations.md, "Metrics", lists them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.observability import stats

if TYPE_CHECKING:
    from kis.verification import DayOutcome

#: The last part of ``kis.requests.<tr_id>`` for the token endpoint, which has no TR id.
TOKEN_ENDPOINT = "token"


def request_sent(tr_id: str | None) -> None:
    """A request sent to KIS (every attempt), counted per TR id."""
    stats.incr(f"kis.requests.{tr_id or TOKEN_ENDPOINT}")


def request_retried(kind: str) -> None:
    """A failed attempt about to be sent again: ``rate_limited`` (EGW00201) or ``transient``."""
    stats.incr(f"kis.retries.{kind}")


def token_issued() -> None:
    stats.incr("kis.token.issued")


def token_refused() -> None:
    """KIS refused the token of a data call: a new one is taken and the call sent once more."""
    stats.incr("kis.token.refused")


def token_throttled() -> None:
    """KIS answered EGW00133 (one token a minute per app key) to a token request."""
    stats.incr("kis.token.throttled")


def bars_stored(context: Any) -> None:
    """The ``on_success_callback`` of the upsert: the bars it inserted or changed, and how long
    after the run's logical date (a minute run's minute) they were stored."""
    ti, dag_run = context["ti"], context["dag_run"]
    counts = ti.xcom_pull(task_ids=ti.task_id)  # by name: kis.dag_parts.upsert_counts
    stats.incr(f"kis.bars_stored.{dag_run.dag_id}", counts["inserted"] + counts["updated"])
    at = dag_run.logical_date or dag_run.run_after
    stats.timing(f"kis.stored_lag.{dag_run.dag_id}", datetime.now(UTC) - at)


def day_verified(day: DayOutcome) -> None:
    """The completeness (0 to 1) of a verified day on its venue."""
    stats.gauge(f"kis.completeness.{day.venue.value}", day.completeness)

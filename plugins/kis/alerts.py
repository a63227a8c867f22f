"""Alerts: the one notifier behind live gap checks, failed verifications and missed deadlines.

Every alert goes to the task log (or the triggerer's log) and to the ``collection_alerts`` table of
the market database, which the dashboard shows. When configured, it also goes out through
Airflow's notifiers: e-mail with the Variable ``kis_alert_email`` (recipients, comma separated)
over the ``smtp_default`` connection, Slack with the Variable ``kis_alert_slack_conn_id`` (a Slack
webhook connection; needs apache-airflow-providers-slack).

The Deadline Alerts of both DAGs are declared here too (``deadline_alerts``, with their configured
intervals, which the dashboard shows as well), together with the one deliberate exception:
``airflow dags test`` parses the DAGs without them, see its docstring.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from kis.bar import KST
from kis.resources import MARKET_DB_CONN_ID, load_sql

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Alert:
    """Something an operator must look at: what, where, and the evidence."""

    # gap | incomplete_day | deadline_missed | unknown_code | fetch_failed | key_refused | invalid_watchlist
    # | left_universe | not_on_venue (information)
    kind: str
    message: str
    trading_date: date | None = None
    dag_id: str | None = None
    run_id: str | None = None
    stock_code: str | None = None
    minutes: Sequence[datetime] = ()
    venue: str | None = None  # krx | nxt | unified; None for an alert about no venue in particular
    details: Mapping[str, Any] = field(default_factory=dict)


# Kinds stored and shown on the dashboard but not forwarded: nothing for an operator to do.
INFORMATION = frozenset({"not_on_venue"})


def send_alert(alert: Alert, *, market_conn_id: str = MARKET_DB_CONN_ID) -> None:
    """Logs, stores and forwards one alert (information only logs and stores); an alert the table
    holds once only (``key_refused``, a connection's key, once a day) and holds already is only
    logged. Storing or forwarding failures are logged, not raised: an alert must never be the
    reason a collection run fails."""
    try:
        stored = _store(alert, market_conn_id)
    except Exception:
        log.exception("Could not store the alert in %s", market_conn_id)
        stored = True  # better forwarded twice than never
    if not stored:
        log.info("%s, alerted already: %s", alert.kind, alert.message)
        return
    if alert.kind in INFORMATION:
        log.info("%s: %s", alert.kind, alert.message)
        return
    log.warning("ALERT %s: %s", alert.kind, alert.message)
    for notifier in _configured_notifiers(alert):
        try:
            notifier.notify({"alert": alert})
        except Exception:
            log.exception("Notifier %s failed", type(notifier).__name__)


def codes_alerted(conn, kind: str, day: date, venue: str | None = None) -> set[str]:
    """The codes with an alert of ``kind`` on ``day`` (e.g. codes KIS called unknown today).

    :param venue: only the alerts about that venue; None: about any venue, or none in particular.
    """
    rows = conn.execute(load_sql("codes_alerted"), {"kind": kind, "day": day, "venue": venue}).fetchall()
    return {code for (code,) in rows}


def resolve_fetched(conn, day: date, venue: str, codes: Sequence[str], *, run_id: str) -> list[str]:
    """Marks resolved the open ``fetch_failed`` alerts of ``codes`` on ``day`` and ``venue``, which a
    later fetch just fetched; returns their codes. One statement for a whole batch."""
    params = {"day": day, "venue": venue, "codes": list(codes), "run_id": run_id}
    return sorted(code for _, code in conn.execute(load_sql("resolve_fetched_alerts"), params))


def resolve_verified(
    conn, day: date, venue: str, complete: Sequence[str], *, day_done: bool, run_id: str
) -> list[tuple[str, str | None]]:
    """Marks resolved the open ``gap`` and ``incomplete_day`` alerts of ``day`` and ``venue`` that a
    later verification settled: those about a code it found ``complete``, and those about the whole
    day when ``day_done`` (it passed with every code complete). Returns their (kind, code)."""
    params = {"day": day, "venue": venue, "complete": list(complete), "day_done": day_done, "run_id": run_id}
    return [(kind, code) for _, kind, code in conn.execute(load_sql("resolve_verified_alerts"), params)]


def _store(alert: Alert, market_conn_id: str) -> bool:
    """Stores ``alert``; False when a once-only alert of its kind was there already."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from kis import schema

    with PostgresHook(postgres_conn_id=market_conn_id).get_conn() as conn:
        # A deadline can be missed before any task of the day has brought the schema up.
        schema.migrate(conn)
        return conn.execute(
            load_sql("insert_collection_alert"),
            {
                "kind": alert.kind,
                "dag_id": alert.dag_id,
                "run_id": alert.run_id,
                "stock_code": alert.stock_code,
                "venue": alert.venue,
                "trading_date": alert.trading_date,
                "minutes": [m.astimezone(KST).replace(tzinfo=None) for m in alert.minutes] or None,
                "message": alert.message,
                "details": json.dumps(dict(alert.details), default=str),
            },
        ).fetchone() is not None


def _configured_notifiers(alert: Alert) -> list[Any]:
    from airflow.sdk import Variable

    notifiers: list[Any] = []
    subject = f"[KIS minute bars] {alert.kind}: {alert.trading_date or ''}"
    recipients = Variable.get("kis_alert_email", default=None)
    if recipients:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers.append(SmtpNotifier(to=recipients, subject=subject, html_content=alert.message))
    slack_conn_id = Variable.get("kis_alert_slack_conn_id", default=None)
    if slack_conn_id:
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
        except ImportError:
            log.error("kis_alert_slack_conn_id is set but apache-airflow-providers-slack is not installed")
        else:
            notifiers.append(SlackWebhookNotifier(slack_webhook_conn_id=slack_conn_id, text=alert.message))
    return notifiers


async def deadline_missed(what: str, context: Mapping[str, Any] | None = None) -> None:
    """Deadline Alert callback (runs in the triggerer): a run was not done in time."""
    dag_run = (context or {}).get("dag_run", {})
    deadline = (context or {}).get("deadline", {})
    logical = dag_run.get("logical_date")
    due = deadline.get("deadline_time")
    alert = Alert(
        kind="deadline_missed",
        message=(
            f"{what} {dag_run.get('dag_id')} / {dag_run.get('dag_run_id')} was not done by "
            f"{kst_text(due) if due else None} (state {dag_run.get('state')})"
        ),
        trading_date=datetime.fromisoformat(logical).astimezone(KST).date() if logical else None,
        dag_id=dag_run.get("dag_id"),
        run_id=dag_run.get("dag_run_id"),
        details={"dag_run": dag_run, "deadline": deadline},
    )
    await asyncio.to_thread(send_alert, alert)


def kst_text(moment: datetime | str) -> str:
    """A moment (aware, or ISO 8601 with its offset, as the scheduler hands it) as KST wall-clock
    time with its label, for messages: ``2026-11-25 17:30:00 KST``."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")


def minute_run_deadline() -> timedelta:
    """How long after its tick a minute run must be done (``KIS_MINUTE_RUN_DEADLINE_SECONDS``)."""
    return timedelta(seconds=int(os.environ.get("KIS_MINUTE_RUN_DEADLINE_SECONDS", "50")))


def backfill_deadline() -> timedelta:
    """How long after 16:00 the backfill must be done (``KIS_BACKFILL_DEADLINE_MINUTES``): by
    default 17:30, an hour after the latest close (16:30 on a CSAT day)."""
    return timedelta(minutes=int(os.environ.get("KIS_BACKFILL_DEADLINE_MINUTES", "90")))


def deadline_alerts(what: str, *, after_logical_date: timedelta, scheduled_at: time | None = None) -> list[Any]:
    """The Deadline Alert of a DAG: the run must be done ``after_logical_date`` after its tick.

    Its name says the exact deadline: Airflow 3.3.2's deadline card renders "Must complete within
    {interval} of {reference}" with the interval humanized by dayjs ("2 hours" for 90 minutes, "a
    minute" for 50 s), a fixed template with no option, and the name beside it in parentheses. A
    daily run's name gives the clock time (``scheduled_at``, KST): "backfill due by 17:30 KST, 90
    min after its 16:00 KST start".

    Airflow 3.3.2's ``dags test`` fails every run of a DAG that declares deadlines, after all its
    tasks succeeded (``DagRun.update_state`` reads the in-memory DAG's alert definitions as if they
    were stored alert ids; the scheduler, which loads the stored DAG, is not affected). So when this
    process is the ``airflow dags test`` command, or ``KIS_DEADLINE_ALERTS=off`` is set (our own
    ``dag.test()`` tests do that), the DAG is declared without them; the scheduler, the
    dag-processor and ``airflow dags list`` still see them.
    """
    switch = os.environ.get("KIS_DEADLINE_ALERTS", "auto").lower()
    if switch == "off" or (switch == "auto" and _is_dags_test_command()):
        return []
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    return [
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
            interval=after_logical_date,
            callback=AsyncCallback(deadline_missed, kwargs={"what": what}),
            name=_deadline_name(what, after_logical_date, scheduled_at),
        )
    ]


def _deadline_name(what: str, interval: timedelta, scheduled_at: time | None) -> str:
    if scheduled_at is None:
        return f"{what} due {_span(interval)} after its scheduled time"
    due = (datetime.combine(date.min, scheduled_at) + interval).time()
    return f"{what} due by {due:%H:%M} KST, {_span(interval)} after its {scheduled_at:%H:%M} KST start"


def _span(interval: timedelta) -> str:
    """``50 s``, ``90 min``: an interval in the unit it was configured in."""
    seconds = int(interval.total_seconds())
    return f"{seconds // 60} min" if seconds >= 120 and seconds % 60 == 0 else f"{seconds} s"


def _is_dags_test_command() -> bool:
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return Path(sys.argv[0]).name == "airflow" and args[:2] == ["dags", "test"]

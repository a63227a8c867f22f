"""The tasks of the backfill DAGs: after the close, the whole day again, then its verification.

``kis_minute_backfill`` covers KRX at 16:00, ``kis_minute_backfill_nextrade`` Nextrade and the
unified view at 20:10; each backfills the venues of ``kis_venues`` it covers (``BackfillDay.of``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from croniter import croniter

from kis import alerts, assets, code_alerts, metrics, storage, task_context, verification
from kis import batches as batching
from kis.alerts import send_alert
from kis.calendar import Session, default_calendar, trading_day
from kis.task_context import CollectionFailed, Run
from kis.venues import Venue

log = logging.getLogger(__name__)


def start_time(cron: str) -> time:
    """When a backfill cron (KST) first starts a run on a weekday: 16:00 for ``0 16 * * 1-5``."""
    monday = datetime(2026, 11, 30)
    return croniter(cron, monday - timedelta(seconds=1)).get_next(datetime).time()


@dataclass(frozen=True)
class BackfillDay:
    """The day a backfill run works on, the run's own date (what the API calls today), and the
    venues it backfills: those of ``kis_venues`` that its DAG covers."""

    day: date
    today: date
    venues: tuple[Venue, ...]

    @classmethod
    def of(cls, dag_run: Any, params: dict[str, Any], covers: Sequence[Venue] = (Venue.KRX,)) -> BackfillDay:
        """The run's ``date`` parameter, or the run's own day when the parameter is empty."""
        today = Run.of(dag_run).day
        day = date.fromisoformat(params["date"]) if params.get("date") else today
        if day > today:
            raise CollectionFailed(f"{day} is after the run's date {today}: there are no bars yet")
        venues = tuple(venue for venue in task_context.configured_venues() if venue in covers)
        return cls(day=day, today=today, venues=venues)

    def session(self, venue: Venue) -> Session | None:
        return default_calendar().session(self.day, venue)

    @property
    def sessions(self) -> dict[Venue, Session]:
        """The venues backfilled that trade on the day, with their sessions."""
        return {venue: session for venue in self.venues if (session := self.session(venue)) is not None}


def plan_backfill(target: BackfillDay) -> list[dict[str, Any]]:
    """The batches of codes to backfill, each with its venue and app keys; empty (the run skips)
    when no venue of the run trades that day."""
    if not target.venues:
        log.info("kis_venues (%s) has no venue this backfill covers: nothing to do", _configured())
        return []
    if not target.sessions:
        log.info("%s has no session of %s: nothing to backfill", target.day, ", ".join(v.label for v in target.venues))
        return []
    with task_context.prepared_market_db(target.day) as conn:
        return batching.run_work(conn, target.day, list(target.sessions)).batches()


def _configured() -> str:
    return ", ".join(venue.value for venue in task_context.configured_venues())


def apply_retention(target: BackfillDay) -> list[str]:
    """Drops the partitions older than ``KIS_MINUTE_RETENTION_MONTHS`` (unset: keeps everything).

    A task of its own, off the path to the verification: blocked by another session's lock, it
    fails after the lock timeout (``storage.apply_retention``) and Airflow retries it later.
    """
    keep_months = storage.retention_months()
    if keep_months is None:
        log.info("%s is unset: every month is kept", storage.RETENTION_MONTHS_ENV)
        return []
    with task_context.market_db() as conn:
        conn.autocommit = True  # DETACH PARTITION ... CONCURRENTLY cannot run in a transaction block
        removed = storage.apply_retention(conn, keep_months, today=target.today)
    log.info("Retention (%d months): removed partitions %s", keep_months, ", ".join(removed) or "none")
    return removed


def backfill_wait_until(dag_run: Any, params: dict[str, Any], covers: Sequence[Venue] = (Venue.KRX,)) -> str:
    """When the day of every venue backfilled is over, closing print included (the close sensor's target)."""
    sessions = BackfillDay.of(dag_run, params, covers).sessions.values()
    ends = [trading_day(session)[1] for session in sessions]
    return max(ends).isoformat() if ends else dag_run.run_after.isoformat()


def fetch_session_bars(
    codes: Sequence[str],
    venue: Venue,
    target: BackfillDay,
    run: Run,
    *,
    conn_ids: Sequence[str] | None = None,
    ti: Any | None = None,
) -> dict[str, Any]:
    """Every bar of the day on ``venue`` for each code, with the day volumes KIS reported
    (``"volumes"``), and the codes that failed (``"failed"``), asked with the app key of
    ``conn_ids[0]`` (the next ones should KIS refuse it): a code that fails is reported on its own
    and the others' bars still reach the upsert (see :func:`kis.batches.fetch_batch`)."""
    session = target.session(venue)
    return batching.fetch_batch(
        codes,
        lambda hook, code: hook.session_bars(code, session),
        day=target.day,
        run=run,
        venue=venue,
        conn_ids=conn_ids,
        day_volumes=True,
        ti=ti,
    )


def verify_day(
    target: BackfillDay,
    batches: Sequence[dict[str, Any]] | None,
    fetched: Sequence[dict[str, Any]],
    run: Run,
    outlet_events: Any = None,
) -> dict[str, Any]:
    """Verifies the day of each venue backfilled into the report table; raises, after alerting,
    when a venue's day falls short. Otherwise announces each venue's day on its Asset through
    ``outlet_events`` (:mod:`kis.assets`): Airflow emits the events when the task succeeds.

    A day falls short when its completeness is under the Variable ``kis_completeness_threshold``
    (0.98): the expected bars that are stored or explained (a VI, a halt, a minute without trades,
    when the day's volumes add up), over the expected bars; or when a code has no bar at all. Gaps
    are alerted by name even when the day passes. Bars served outside a venue's grid are stored
    and reported (``unexpected``), never counted against the day.
    """
    if batches is None:
        raise CollectionFailed("Nothing was fetched: the trading-day gate failed (see its log)")
    with task_context.market_db() as conn:
        code_alerts.resolve_fetch_alerts(conn, fetched, target.day, run)
    threshold = float(task_context.variable("kis_completeness_threshold", "0.98"))
    outcomes: list[verification.DayOutcome] = []
    for venue, session in target.sessions.items():
        # An unknown code is alerted as that, not as a gap; a code the venue does not trade is information.
        codes = batching.known_codes(batches, session.day, venue)
        volumes: dict[str, int] = {}
        for result in filter(None, fetched):  # a fetch task that failed outright pulls None
            if result.get("venue", Venue.KRX.value) == venue.value:
                volumes |= result["volumes"]
        with task_context.market_db() as conn:
            report = storage.verify_day(
                conn, session.day, session.bar_minutes, codes, volumes or None,
                run_id=run.run_id, venue=venue.value, closing=session.closing_bar,
            )
            day = verification.outcome(session.day, report, threshold, venue=venue)
            # Before this verification's own alert: what it settled is resolved, what it finds is new.
            resolved = alerts.resolve_verified(
                conn, session.day, venue.value, verification.complete_codes(report),
                day_done=not day.alerted, run_id=run.run_id,
            )
        if resolved:
            log.info("Settled by this verification, resolved: %s", ", ".join(f"{kind} {code or 'of the day'}" for kind, code in resolved))
        text = verification.format_report(report)
        log.info("Verification of %s on %s:\n%s", session.day, venue.label, text)
        if day.alerted:
            send_alert(verification.shortfall_alert(day, text, dag_id=run.dag_id, run_id=run.run_id))
        outcomes.append(day)
        metrics.day_verified(day)
    short = [day for day in outcomes if not day.passed]
    if short:
        raise CollectionFailed(
            "; ".join(
                f"{day.day} on {day.venue.label} is incomplete: {verification.percent(day.completeness)} of the "
                f"expected bars (threshold {verification.percent(day.threshold)}); codes with gaps: "
                f"{', '.join(day.codes_with_gaps) or 'none'}"
                for day in short
            )
            + " (see the reports above)"
        )
    batching.fail_when_fetches_failed(batches, fetched)
    if outlet_events is not None:
        assets.announce_verified_days(outlet_events, outcomes)
    return {day.venue.value: day.summary() for day in outcomes}

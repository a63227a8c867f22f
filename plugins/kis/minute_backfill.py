"""The tasks of ``kis_minute_backfill``: after the close, the whole day again, then its verification."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from kis import collection, storage, verification
from kis.alerts import send_alert
from kis.bars import KST
from kis.calendar import CLOSING_PRINT_GRACE, Session, default_calendar
from kis.collection import CollectionFailed, Run

log = logging.getLogger(__name__)


def backfill_deadline() -> timedelta:
    """How long after 16:00 the backfill must be done (``KIS_BACKFILL_DEADLINE_MINUTES``): by
    default 17:30, an hour after the latest close (16:30 on a CSAT day)."""
    return timedelta(minutes=int(os.environ.get("KIS_BACKFILL_DEADLINE_MINUTES", "90")))


@dataclass(frozen=True)
class BackfillDay:
    """The day a backfill run works on, and the run's own date (what the API calls today)."""

    session: Session | None
    day: date
    today: date

    @classmethod
    def of(cls, dag_run: Any, params: dict[str, Any]) -> BackfillDay:
        """The run's ``date`` parameter, or the run's own day when the parameter is empty."""
        today = Run.of(dag_run).at.astimezone(KST).date()
        day = date.fromisoformat(params["date"]) if params.get("date") else today
        if day > today:
            raise CollectionFailed(f"{day} is after the run's date {today}: there are no bars yet")
        return cls(session=default_calendar().session(day), day=day, today=today)


def plan_backfill(target: BackfillDay) -> list[list[str]]:
    """The batches of codes to backfill; empty (the run skips) when the day has no session."""
    if target.session is None:
        log.info("%s is not a KRX session: nothing to backfill", target.day)
        return []
    with collection.prepared_market_db(target.day) as conn:
        return collection.watchlist_batches(conn, target.day)


def apply_retention(target: BackfillDay) -> list[str]:
    """Drops the partitions older than ``KIS_MINUTE_RETENTION_MONTHS`` (unset: keeps everything).

    A task of its own, off the path to the verification: blocked by another session's lock, it
    fails after the lock timeout (``storage.apply_retention``) and Airflow retries it later.
    """
    keep_months = storage.retention_months()
    if keep_months is None:
        log.info("%s is unset: every month is kept", storage.RETENTION_MONTHS_ENV)
        return []
    with collection.market_db() as conn:
        conn.autocommit = True  # DETACH PARTITION ... CONCURRENTLY cannot run in a transaction block
        removed = storage.apply_retention(conn, keep_months, today=target.today)
    log.info("Retention (%d months): removed partitions %s", keep_months, ", ".join(removed) or "none")
    return removed


def backfill_wait_until(dag_run: Any, params: dict[str, Any]) -> str:
    """When the day's session is over, closing print included (the close sensor's target)."""
    target = BackfillDay.of(dag_run, params)
    return (target.session.close + CLOSING_PRINT_GRACE).isoformat() if target.session else target.day.isoformat()


def fetch_session_bars(
    codes: Sequence[str], target: BackfillDay, run: Run, *, batch: int, batches: int, ti: Any | None = None
) -> dict[str, Any]:
    """Every bar of the day for each code, with the day volumes KIS reported, and the codes that
    failed (``"failed"``): a code that fails is reported on its own and the others' bars still
    reach the upsert (see :func:`kis.collection.fetch_batch`)."""

    def fetch(hook: Any, code: str) -> Any:
        result = hook.session_bars(code, target.session)
        collection.log_rejects(code, result.rejected)
        log.info(
            "Batch %d/%d, %s: %d pages, %d bars, %d rejected rows",
            batch + 1, batches, code, result.pages, len(result.bars), len(result.rejected),
        )
        return result

    def assemble(fetched: dict[str, Any]) -> dict[str, Any]:
        return {
            "bars": [bar.as_record() for result in fetched.values() for bar in result.bars],
            "volumes": {
                code: result.cumulative_volume for code, result in fetched.items() if result.cumulative_volume is not None
            },
            "rejected": {code: len(result.rejected) for code, result in fetched.items()},
        }

    return collection.fetch_batch(codes, fetch, assemble, day=target.day, run=run, ti=ti)


def verify_day(
    target: BackfillDay, batches: Sequence[Sequence[str]] | None, fetched: Sequence[dict[str, Any]], run: Run
) -> dict[str, Any]:
    """Verifies the day into the report table; raises, after alerting, when the day falls short.

    The day falls short when its completeness is under the Variable ``kis_completeness_threshold``
    (0.98): the expected bars that are stored or explained (a VI, a halt, a minute without trades,
    when the day's volumes add up), over the expected bars; or when a code has no bar at all. Gaps
    are alerted by name even when the day passes.
    """
    if batches is None:
        raise CollectionFailed("Nothing was fetched: the trading-day gate failed (see its log)")
    session = target.session
    codes = collection.known_codes(batches, session.day)  # an unknown code is alerted as that, not as a gap
    volumes: dict[str, int] = {}
    for result in filter(None, fetched):  # a fetch task that failed outright pulls None
        volumes |= result["volumes"]
    with collection.market_db() as conn:
        report = storage.verify_day(conn, session.day, session.bar_minutes, codes, volumes or None, run_id=run.run_id)
    day = verification.outcome(session.day, report, float(collection.variable("kis_completeness_threshold", "0.98")))
    text = verification.format_report(report)
    log.info("Verification of %s:\n%s", session.day, text)
    if day.alerted:
        send_alert(verification.shortfall_alert(day, text, dag_id=run.dag_id, run_id=run.run_id))
    if not day.passed:
        raise CollectionFailed(
            f"{session.day} is incomplete: {verification.percent(day.completeness)} of the expected bars "
            f"(threshold {verification.percent(day.threshold)}); codes with gaps: "
            f"{', '.join(day.codes_with_gaps) or 'none'} (see the report above)"
        )
    collection.fail_when_fetches_failed(batches, fetched)
    return day.summary()

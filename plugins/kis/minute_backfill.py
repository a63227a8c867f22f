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
    if target.day < target.today:
        with collection.kis_hook() as hook:
            if hook.settings.environment != "real":
                raise CollectionFailed(
                    f"{target.day} is a past date: KIS serves past minute bars (FHKST03010230) to real "
                    "accounts only, and the kis_default connection is a mock account"
                )
    with collection.prepared_market_db(target.day) as conn:
        keep_months = storage.retention_months()
        if keep_months is not None:
            removed = storage.apply_retention(conn, keep_months, today=target.today)
            log.info("Retention (%d months): removed partitions %s", keep_months, ", ".join(removed) or "none")
        return collection.watchlist_batches(conn, target.day)


def backfill_wait_until(dag_run: Any, params: dict[str, Any]) -> str:
    """When the day's session is over, closing print included (the close sensor's target)."""
    target = BackfillDay.of(dag_run, params)
    return (target.session.close + CLOSING_PRINT_GRACE).isoformat() if target.session else target.day.isoformat()


def fetch_session_bars(codes: Sequence[str], target: BackfillDay, *, batch: int, batches: int) -> dict[str, Any]:
    """Every bar of the day for each code, with the day volumes KIS reported."""
    records: list[dict[str, Any]] = []
    volumes: dict[str, int] = {}
    rejected: dict[str, int] = {}
    with collection.kis_hook() as hook:
        for code in codes:
            result = hook.session_bars(code, target.session, today=target.today)
            collection.log_rejects(code, result.rejected)
            records.extend(bar.as_record() for bar in result.bars)
            rejected[code] = len(result.rejected)
            if result.cumulative_volume is not None:
                volumes[code] = result.cumulative_volume
            log.info(
                "Batch %d/%d, %s: %d pages, %d bars, %d rejected rows",
                batch + 1, batches, code, result.pages, len(result.bars), len(result.rejected),
            )
    return {"bars": records, "volumes": volumes, "rejected": rejected}


def verify_day(
    target: BackfillDay, batches: Sequence[Sequence[str]] | None, fetched: Sequence[dict[str, Any]], run: Run
) -> dict[str, Any]:
    """Verifies the day into the report table; raises, after alerting, when the day falls short.

    The day falls short when a code has a gap its volumes do not explain, or when its completeness
    is under the Variable ``kis_completeness_threshold`` (0.98): the expected bars that are stored
    or explained (a VI, a halt, a minute without trades, when the day's volumes add up), over the
    expected bars.
    """
    if batches is None:
        raise CollectionFailed("Nothing was fetched: the trading-day gate failed (see its log)")
    session = target.session
    codes = [code for batch in batches for code in batch]
    volumes: dict[str, int] = {}
    for result in fetched:
        volumes |= result["volumes"]
    with collection.market_db() as conn:
        report = storage.verify_day(conn, session.day, session.bar_minutes, codes, volumes or None, run_id=run.run_id)
    day = verification.outcome(session.day, report, float(collection.variable("kis_completeness_threshold", "0.98")))
    text = verification.format_report(report)
    log.info("Verification of %s:\n%s", session.day, text)
    if not day.passed:
        send_alert(verification.shortfall_alert(day, text, dag_id=run.dag_id, run_id=run.run_id))
        raise CollectionFailed(
            f"{session.day} is incomplete: {day.completeness:.2%} of the expected bars, "
            f"gaps in {', '.join(day.codes_with_gaps) or 'no code'} (see the report above)"
        )
    collection.fail_when_fetches_failed(batches, fetched)
    return day.summary()

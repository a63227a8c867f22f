"""The tasks of ``kis_minute_bars``: every minute of the session, the closed bars of the watch-list."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from kis import alerts, collection, storage
from kis.alerts import Alert, send_alert
from kis.bars import KST
from kis.calendar import default_calendar
from kis.collection import CollectionFailed, Run
from kis.errors import KisError, KisUnknownCode
from kis.verification import minutes_text

log = logging.getLogger(__name__)

# A closed minute still missing this long after it closed is a live gap: every run re-reads the
# last 30 minutes, so a minute one run missed is normally healed by the next.
LIVE_GAP_AFTER = timedelta(minutes=2)


def minute_run_deadline() -> timedelta:
    """How long after its tick a minute run must be done (``KIS_MINUTE_RUN_DEADLINE_SECONDS``)."""
    return timedelta(seconds=int(os.environ.get("KIS_MINUTE_RUN_DEADLINE_SECONDS", "50")))


def plan_minute_run(run: Run) -> list[list[str]]:
    """The batches of codes to fetch for the run's minute; empty (the run skips) outside the session."""
    if not default_calendar().in_collection_window(run.at):
        log.info("No session to collect at %s KST: skipping without calling KIS", run.at.astimezone(KST))
        return []
    day = run.at.astimezone(KST).date()
    with collection.prepared_market_db(day) as conn:
        return collection.watchlist_batches(conn, day)


def fetch_recent_bars(codes: Sequence[str], run: Run) -> list[dict[str, Any]]:
    """The closed bars of the last 30 minutes before the run's minute for each code, as records.

    An unknown code is alerted (once: later runs of the day leave it out) and skipped; any other
    failure raises after the other codes were asked, so Airflow retries the task.
    """
    until = default_calendar().last_closed_minute(run.at)
    if until is None:
        return []
    records: list[dict[str, Any]] = []
    failed: list[str] = []
    unknown: list[str] = []
    with collection.kis_hook() as hook:
        for code in codes:
            try:
                result = hook.recent_bars(code, until=until)
            except KisUnknownCode as err:
                collection.alert_unknown_code(code, err, until.date(), run)
                unknown.append(code)
                continue
            except KisError as err:
                log.error("%s: %s", code, err)
                failed.append(code)
                continue
            collection.log_rejects(code, result.rejected)
            records.extend(bar.as_record() for bar in result.bars)
            log.info("%s: %d closed bars up to %s", code, len(result.bars), until.strftime("%H:%M"))
    if failed:
        raise RuntimeError(f"KIS failed for {', '.join(failed)} after the hook's own retries")
    if unknown and not records:
        raise CollectionFailed(f"KIS does not know {', '.join(unknown)}: alerted, not asked again today")
    return records


def check_live_gaps(batches: Sequence[Sequence[str]], fetched: Sequence[Any], run: Run) -> int:
    """Alerts, once per gap, the closed minutes still missing ``LIVE_GAP_AFTER`` after they closed;
    then fails when a fetch task failed, so the run shows red until that task is cleared."""
    calendar = default_calendar()
    session = calendar.session(run.at.astimezone(KST).date())
    horizon = calendar.last_closed_minute(run.at - LIVE_GAP_AFTER) if session else None
    gaps: list[tuple[str, datetime]] = []
    if horizon is not None:
        # The closing bar may print up to five minutes late; the day's verification checks it.
        minutes = [m for m in session.bar_minutes if m <= horizon and m != session.closing_bar]
        with collection.market_db() as conn:
            # A code KIS called unknown (maybe in this very run) is alerted as that, not as gaps.
            unknown = alerts.codes_alerted(conn, "unknown_code", session.day)
            codes = [code for batch in batches for code in batch if code not in unknown]
            gaps = storage.live_gaps(conn, codes, minutes, run_id=run.run_id)
    by_code: dict[str, list[datetime]] = {}
    for code, minute in gaps:
        by_code.setdefault(code, []).append(minute.replace(tzinfo=KST))
    for code, missing in by_code.items():
        send_alert(
            Alert(
                kind="gap",
                message=(
                    f"{code}: {len(missing)} closed minute(s) still missing: {minutes_text(missing)}"
                    " (a VI or a halt also leaves minutes without bars; the backfill's verification decides)"
                ),
                trading_date=session.day,
                dag_id=run.dag_id,
                run_id=run.run_id,
                stock_code=code,
                minutes=missing,
            )
        )
    collection.fail_when_fetches_failed(batches, fetched)
    return len(gaps)
